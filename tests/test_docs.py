"""The README documents every public name, command and error, in the agreed places."""

from __future__ import annotations

import os
import re
import sys

import pytest
from conftest import ROOT
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

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


def _supported_rows() -> list[dict[str, str]]:
    block = README.split("<!-- supported-versions")[1].split("<!-- end supported-versions")[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def _ci_jobs() -> list[tuple[str, str]]:
    jobs = []
    for line in (ROOT / ".ci" / "keras-versions").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keras, tensorflow = line.split()[:2]
            jobs.append((keras.removeprefix("keras=="), tensorflow.removeprefix("tensorflow==")))
    return jobs


def test_supported_versions_table_matches_the_ci_jobs() -> None:
    rows = _supported_rows()
    # the first row is the main job (the whole suite), the others one job each
    assert rows[0]["Tested in CI"] == "the whole suite"
    assert [(r["Keras"], r["TensorFlow"]) for r in rows[1:]] == _ci_jobs()
    assert all(r["Backend"] == "tensorflow" for r in rows)


def test_declared_keras_floor_is_the_oldest_tested_release() -> None:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {
        name: Version(spec.split(">=")[1])
        for spec in dependencies
        if ">=" in spec
        for name in [spec.split(">=")[0]]
    }
    oldest = min(Version(r["Keras"]) for r in _supported_rows())
    assert floors["keras"] == Version(f"{oldest.major}.{oldest.minor}")
    assert floors["tensorflow"] <= min(Version(r["TensorFlow"]) for r in _supported_rows())


@pytest.mark.skipif(
    not os.environ.get("KERAS_SAFE_TEST_INSTALLED") or bool(os.environ.get("KERAS_SAFE_CI_JOB")),
    reason="checks the main CI job's environment: ./dev.sh test",
)
def test_first_row_is_what_the_main_job_installs() -> None:
    import keras
    import tensorflow as tf

    row = _supported_rows()[0]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (row["Python"], row["Keras"], row["TensorFlow"]) == (
        python,
        keras.version(),
        tf.__version__,
    ), "a newer release was installed: test it, then update the README's table"
