"""tools/check_dist.py: the CI check of the built wheel and sdist catches what it must."""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import check_dist

METADATA = "Metadata-Version: 2.4\nName: keras_safe\nLicense-Expression: Apache-2.0\n" + "".join(
    f"Requires-Dist: {dep}\n"
    for dep in check_dist.tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
)


def make_wheel(path: Path, files: set[str], metadata: str = METADATA) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in sorted(files):
            archive.writestr(name, "")
        archive.writestr("keras_safe-0.1.0.dist-info/METADATA", metadata)
        archive.writestr("keras_safe-0.1.0.dist-info/licenses/LICENSE", "Apache License")
    return path


def test_a_wheel_with_every_module_passes(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "ok.whl", check_dist.tree_files())
    assert check_dist.check_wheel(wheel) == []
    assert "keras_safe/_keras/state.py" in check_dist.tree_files()
    assert "keras_safe/py.typed" in check_dist.tree_files()


def test_a_wheel_without_a_subpackage_fails(tmp_path: Path) -> None:
    # What `packages = ["keras_safe"]` used to build: no keras_safe/_keras.
    files = {f for f in check_dist.tree_files() if not f.startswith("keras_safe/_keras/")}
    problems = check_dist.check_wheel(make_wheel(tmp_path / "broken.whl", files))
    assert "wheel lacks keras_safe/_keras/__init__.py" in problems


def test_a_wheel_with_foreign_files_or_wrong_metadata_fails(tmp_path: Path) -> None:
    files = check_dist.tree_files() | {"tests/_ops/test_saving.py", "keras_safe/model.keras"}
    metadata = METADATA.replace("Apache-2.0", "MIT").replace("Requires-Dist: keras>", "X: ")
    problems = check_dist.check_wheel(make_wheel(tmp_path / "odd.whl", files, metadata))
    assert "wheel has tests/_ops/test_saving.py, not in src/keras_safe" in problems
    assert "wheel has keras_safe/model.keras, not in src/keras_safe" in problems
    assert any("License-Expression is 'MIT'" in p for p in problems)
    assert any(p.startswith("METADATA lacks dependency 'keras>=") for p in problems)


def test_an_sdist_without_tests_fails(tmp_path: Path) -> None:
    sdist = tmp_path / "keras_safe-0.1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in ["pyproject.toml", "LICENSE", "README.md", "SECURITY.md", "CHANGELOG.md"]:
            info = tarfile.TarInfo(f"keras_safe-0.1.0/{name}")
            archive.addfile(info, io.BytesIO(b""))
    problems = check_dist.check_sdist(sdist)
    assert "sdist lacks tests/_ops/test_saving.py" in problems
    assert "sdist lacks src/keras_safe/_keras/state.py" in problems


@pytest.mark.parametrize("member", ["LICENSE", "SECURITY.md"])
def test_the_files_the_package_promises_exist(member: str) -> None:
    assert (ROOT / member).is_file()
