"""The README documents every public name, command and error, in the agreed places."""

from __future__ import annotations

import re

from conftest import ROOT

import keras_safe
from keras_safe import cli, errors

README = (ROOT / "README.md").read_text()
LAST_SECTIONS = [
    "## Command line",
    "## Checkpoints during training",
    "## Testing your own layers",
    "## API reference",
    "## Troubleshooting",
    "## Performance",
]


def _section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    following = README.find("\n## ", start + 1)
    return README[start : following if following != -1 else len(README)]


def test_tool_sections_close_the_readme_in_order() -> None:
    titles = re.findall(r"^## .+$", README, flags=re.MULTILINE)
    assert titles[-len(LAST_SECTIONS) :] == LAST_SECTIONS


def test_api_reference_names_every_public_name() -> None:
    reference = _section("## API reference")
    names = [f"keras_safe.{name}" for name in keras_safe.__all__]
    names += [
        "keras_safe.callbacks.SafeCheckpoint",
        "keras_safe.callbacks.checkpoint_destination",
        "keras_safe.testing.assert_roundtrip",
    ]
    missing = [name for name in names if not re.search(rf"{re.escape(name)}\b", reference)]
    assert not missing, f"not in the API reference: {missing}"


def test_command_line_section_covers_every_command() -> None:
    section = _section("## Command line")
    for command in ("inspect", "verify", "diff", "upgrade"):
        assert f"keras-safe {command} " in section, command
        assert command in cli.build_parser().format_help()
    assert "python -m keras_safe" in section and "Exit status" in section


def test_troubleshooting_covers_every_error() -> None:
    section = _section("## Troubleshooting")
    for name in errors.__all__:
        if name != "KerasSafeError":
            assert f"### `{name}`" in section, name
