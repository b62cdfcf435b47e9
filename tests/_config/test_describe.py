"""Which installed distribution provides a module, asked of one distribution first.

A load asks the distribution its file names; a save asks the one named like
the module's top-level package. Either way the answer must be the one the
full scan of every installed distribution (``distribution_of``) gives.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import keras
import pytest
from conftest import write_module

from keras_safe._config import describe
from keras_safe._config.describe import (
    distribution_of,
    distribution_providing,
    installed_distribution_of,
)


def _install(root: Path, name: str, version: str, files: dict[str, str]) -> None:
    """A distribution on ``root`` (no top_level.txt: its top-level names come from RECORD)."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    record = [f"{relative},," for relative in files] + [f"{info.name}/METADATA,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n")


def test_the_named_distribution_answers_when_it_provides_the_module() -> None:
    expected = ("keras", keras.__version__)
    assert distribution_providing("keras.src.layers", "keras") == expected
    assert distribution_providing("keras.src.layers", "keras") == distribution_of("keras.src")


@pytest.mark.parametrize("named", ["numpy", "no-such-distribution-anywhere", None, ""])
def test_otherwise_every_distribution_is_scanned(named: str | None) -> None:
    # numpy is installed but does not provide keras; the others name nothing.
    assert distribution_providing("keras.src.models", named) == ("keras", keras.__version__)


def test_scripts_belong_to_no_distribution() -> None:
    assert distribution_providing("__main__", "keras") == (None, None)
    assert distribution_providing("no_such_module_anywhere", "keras") == (None, None)


def test_top_level_names_come_from_the_files_without_top_level_txt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(
        tmp_path,
        "recordpkg",
        "1.2.0",
        {"recordpkg_core/__init__.py": "", "recordpkg_core/layers.py": "", "recordsolo.py": ""},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert distribution_providing("recordpkg_core.layers", "recordpkg") == ("recordpkg", "1.2.0")
    assert distribution_providing("recordsolo", "recordpkg") == ("recordpkg", "1.2.0")
    # It does not provide "keras": the answer is then the scan's.
    assert distribution_providing("keras.src", "recordpkg") == ("keras", keras.__version__)


def _scanned(module: str) -> tuple[str | None, str | None]:
    """What a fresh full scan (not the cached one) answers for ``module``."""
    names = importlib.metadata.packages_distributions().get(module.split(".", 1)[0])
    if not names or module.split(".", 1)[0] in ("__main__", "builtins"):
        return None, None
    try:
        return names[0], importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        return names[0], None


SAVED_MODULES = [
    "keras",
    "keras.src.layers",
    "numpy",
    "numpy.random",
    "keras_safe",  # installed from this checkout, editable or not
    "keras_safe._config.base",
    "keras_hub.src.layers",
    "google.protobuf",  # a namespace package several distributions share
    "__main__",
    "builtins",
    "",
    "no_such_module_anywhere",
]


@pytest.mark.parametrize("module", SAVED_MODULES)
def test_a_save_records_what_the_full_scan_gives(module: str) -> None:
    top = module.split(".", 1)[0]
    if module in ("keras_hub.src.layers", "google.protobuf") and not importlib.util.find_spec(top):
        pytest.skip(f"{top} is not installed here")
    assert installed_distribution_of.__wrapped__(module) == distribution_of(module)
    assert installed_distribution_of(module) == _scanned(module)


def test_keras_and_numpy_are_their_own_distributions() -> None:
    assert installed_distribution_of("keras.src.layers") == ("keras", keras.__version__)
    assert installed_distribution_of("numpy.linalg")[0] == "numpy"


def test_every_installed_top_level_name_gets_the_full_scan_answer() -> None:
    # Both ways: the distribution named like the package first, and reading
    # the distributions in order until one provides it.
    for top, names in importlib.metadata.packages_distributions().items():
        assert describe._read_first_providing(top) == names[0], top
        assert installed_distribution_of.__wrapped__(top) == distribution_of.__wrapped__(top), top


def test_a_local_module_belongs_to_no_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_module(tmp_path, "describe_local.layers", "VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("describe_local.layers")
    try:
        assert installed_distribution_of("describe_local.layers") == (None, None)
        assert _scanned("describe_local.layers") == (None, None)
        assert describe._read_first_providing("describe_local") is None
    finally:
        for name in ("describe_local.layers", "describe_local"):
            sys.modules.pop(name, None)


@pytest.fixture
def no_cached_scan() -> Iterator[None]:
    """A full scan made earlier in the process answers first: not one made before these installs."""
    describe._distributions_by_package.cache_clear()
    yield
    describe._distributions_by_package.cache_clear()


@pytest.mark.usefixtures("no_cached_scan")
def test_distributions_without_top_level_txt_read_as_the_scan_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(tmp_path, "samename", "3.0.0", {"samename/__init__.py": "", "samename/x.py": ""})
    _install(tmp_path, "othername", "0.4.0", {"elsewhere_core/__init__.py": ""})
    # Only data files: Python 3.11's scan infers no package from them, later ones do.
    _install(tmp_path, "dataonly", "1.0.0", {"dataonly_files/table.json": "{}"})
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("samename.x", "elsewhere_core", "dataonly_files", "recordless_nothing"):
        top = module.split(".", 1)[0]
        expected = _scanned(module)
        assert installed_distribution_of.__wrapped__(module) == expected, module
        assert describe._read_first_providing(top) == expected[0], module
    assert installed_distribution_of.__wrapped__("samename.x") == ("samename", "3.0.0")
    assert installed_distribution_of.__wrapped__("elsewhere_core") == ("othername", "0.4.0")
