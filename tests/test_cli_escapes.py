"""Strings from a file never reach the terminal raw: inspect, verify and diff escape them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import resource_kit
from hostile_kit import replace_member, resign_manifest, with_config, write_archive

from keras_safe import cli
from keras_safe._cli.terminal import escape

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\r\u202e"


def test_escape_shows_every_control_character_but_newline() -> None:
    assert escape("a\nb") == "a\nb"
    assert escape(ESCAPES) == "\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x0d\\u202e"


@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    members = resource_kit.base_archive(tmp_path)
    metadata = json.loads(dict(members)["metadata.json"])
    metadata["keras_safe"]["environment"]["keras"] = "3.15" + ESCAPES
    versioned = resign_manifest(
        replace_member(members, "metadata.json", json.dumps(metadata).encode())
    )

    def evil_class(config: dict) -> None:
        out = next(x for x in config["config"]["layers"] if x["name"] == "out")
        out["class_name"] = "Evil" + ESCAPES
        out["module"] = "evil"

    return {
        "good": tmp_path / "base.keras",
        "versions": write_archive(tmp_path / "versions.keras", versioned),
        "class": write_archive(tmp_path / "class.keras", with_config(members, evil_class)),
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "{versions}"],
        ["inspect", "{class}"],
        ["verify", "{versions}"],
        ["verify", "{class}"],
        ["diff", "{versions}", "{good}"],
        ["diff", "{class}", "{good}"],
    ],
)
def test_cli_escapes_strings_from_files(
    argv: list[str], hostile: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    cli.main([arg.format(**{k: str(v) for k, v in hostile.items()}) for arg in argv])
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    for raw in ("\x1b", "\x07", "\x9b", "\r", "\u202e"):
        assert raw not in shown, (argv, shown)
    if argv[0] == "verify" or argv == ["inspect", "{versions}"]:
        assert "\\x1b" in shown, shown  # shown, escaped
