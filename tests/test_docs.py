"""The docs document every public name, command and error, in the agreed places.

The README is the landing page (its install table is kept true here); the
manual is the docs/ site (mkdocs.yml), whose API reference, command line and
errors pages are checked against the code.
"""

from __future__ import annotations

import inspect
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
DOCS = ROOT / "docs"
API_REFERENCE = (DOCS / "reference" / "api.md").read_text()
COMMAND_LINE = (DOCS / "cli.md").read_text()
ERRORS = (DOCS / "errors.md").read_text()

sys.path.insert(0, str(ROOT / "tools"))
import docs_hooks  # noqa: E402


def test_readme_is_a_landing_page() -> None:
    assert len(README.encode()) <= 10 * 1024
    for target in re.findall(r"\]\(([^)#:]+)\)", README):  # relative links
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    for page in ("SECURITY.md", "CHANGELOG.md", "CONTRIBUTING.md", "docs/reference/api.md"):
        assert f"]({page})" in README, page
    assert "./dev.sh demo" in README and "./dev.sh test" in README


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = re.findall(r"^\s+- (?:[^:]+: )?(\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M)
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages


def test_api_reference_names_every_public_name() -> None:
    names = [f"keras_safe.{name}" for name in keras_safe.__all__]
    names += [
        "keras_safe.callbacks.SafeCheckpoint",
        "keras_safe.callbacks.checkpoint_destination",
        "keras_safe.testing.assert_roundtrip",
    ]
    missing = [name for name in names if not re.search(rf"{re.escape(name)}\b", API_REFERENCE)]
    assert not missing, f"not in the API reference: {missing}"


def test_api_reference_documents_real_objects() -> None:
    # Each `::: keras_safe.x.y` line renders the docstrings of an object that exists.
    directives = re.findall(r"^::: (\S+)$", API_REFERENCE, re.MULTILINE)
    assert len(directives) >= 25
    for path in directives:
        parts = path.split(".")
        obj = keras_safe
        for part in parts[1:]:
            obj = getattr(obj, part)
        assert obj.__doc__, f"{path} has no docstring to render"
    aliases = {"safe_save", "safe_load"}
    undocumented = [
        name
        for name in keras_safe.__all__
        if name not in aliases
        and (inspect.isclass(obj := getattr(keras_safe, name)) or inspect.isfunction(obj))
        and f"keras_safe.{name}" not in directives
    ]
    assert not undocumented, f"no `::: keras_safe.NAME` for {undocumented}"


def test_command_line_page_covers_every_command() -> None:
    generated = docs_hooks.cli_help_markdown()
    assert docs_hooks.CLI_HELP_MARKER in COMMAND_LINE  # the help text is generated in place
    for command in ("inspect", "verify", "diff", "upgrade"):
        assert f"keras-safe {command} " in COMMAND_LINE, command
        assert command in cli.build_parser().format_help()
        assert f"usage: keras-safe {command} " in generated, command
    assert "python -m keras_safe" in COMMAND_LINE and "Exit status" in COMMAND_LINE


def test_troubleshooting_covers_every_error() -> None:
    # One anchor per class (errors.md#IntegrityError), with its message and fix.
    for name in errors.__all__:
        assert f"## `{name}` {{ #{name} }}" in ERRORS, name
        assert f"(../errors.md#{name})" in API_REFERENCE, name


def test_benchmark_page_keeps_the_markers_the_benchmark_replaces() -> None:
    page = (DOCS / "benchmarks.md").read_text()
    assert page.count("<!-- bench:begin -->") == 1 and page.count("<!-- bench:end -->") == 1
    assert page.count("<!-- bench-chart -->") == 1 and page.count("<!-- bench-chart:end -->") == 1
    assert "--markdown docs/benchmarks.md" in page


def _supported_rows() -> list[dict[str, str]]:
    block = README.split("<!-- supported-versions")[1].split("<!-- end supported-versions")[0]
    lines = [line for line in block.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]
    ]


def _ci_jobs() -> list[tuple[str, str, str]]:
    jobs = []
    for line in (ROOT / ".ci" / "keras-versions").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "below-range" not in line:
            keras, tensorflow, _, *options = line.split()
            main = _supported_rows()[0]["Python"]  # jobs run on the main job's Python by default
            python = next((o.split("=")[1] for o in options if o.startswith("python=")), main)
            jobs.append(
                (python, keras.removeprefix("keras=="), tensorflow.removeprefix("tensorflow=="))
            )
    return jobs


def test_supported_versions_table_matches_the_ci_jobs() -> None:
    rows = _supported_rows()
    # the first row is the main job (the whole suite), the others one job each
    assert rows[0]["Tested in CI"] == "the whole suite"
    assert [(r["Python"], r["Keras"], r["TensorFlow"]) for r in rows[1:]] == _ci_jobs()
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


BACKENDS = (DOCS / "guides" / "backends.md").read_text()


def _backend_jobs() -> list[list[str]]:
    lines = (ROOT / ".ci" / "backends").read_text().splitlines()
    return [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_backends_guide_names_every_backend_job() -> None:
    jobs = _backend_jobs()
    assert {job[1] for job in jobs} == {"jax", "torch"}
    assert "<!-- backend-jobs" in BACKENDS
    for name, _backend, packages, files, *options in jobs:
        assert f"job `{name}`" in BACKENDS, name
        assert all((ROOT / "tests" / f).is_file() for f in files.split(",")), files
        for package in packages.split(","):
            assert f"`{package}`" in BACKENDS, package
        assert options in ([], ["without-tensorflow"], ["all-backends"]), options
    assert any(job[4:] == ["without-tensorflow"] for job in jobs)
    assert any(job[4:] == ["all-backends"] and "test_backends.py" in job[3] for job in jobs)


def test_install_without_tensorflow_lists_the_other_requirements() -> None:
    block = BACKENDS.split("<!-- install-without-tensorflow")[1].split("```")[1]
    commands = [line.split("#")[0].split() for line in block.splitlines()]
    installs = [c for c in commands if c[:2] == ["pip", "install"]]
    assert installs[0] == ["pip", "install", "--no-deps", "keras_safe"]
    listed = sorted(arg.strip('"') for arg in installs[1][2:])
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert listed == sorted(d for d in dependencies if not d.startswith("tensorflow"))


@pytest.mark.skipif(
    not os.environ.get("KERAS_SAFE_MAIN_JOB"),
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
