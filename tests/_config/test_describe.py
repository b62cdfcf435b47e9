"""Which installed distribution provides a module, asked of the one a file names first."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from keras_safe._config.describe import distribution_of, distribution_providing


def _install(root: Path, name: str, version: str, files: dict[str, str]) -> None:
    """A distribution on ``root`` (no top_level.txt: its top-level names come from RECORD)."""
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
