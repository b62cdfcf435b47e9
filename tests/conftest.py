"""Shared test helpers: fresh Python processes and throwaway modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import keras_safe

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_python(
    code: str,
    *args: str,
    path: list[Path] | None = None,
    check: bool = True,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; ``path`` entries go on its sys.path.

    With ``check=True`` a non-zero exit fails the test with the child's output.
    """
    paths = [str(p) for p in (path or [])] + [str(ROOT)]
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"child process exited with {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def write_module(directory: Path, name: str, source: str) -> Path:
    """Write ``source`` as module ``name`` (dots make packages) under ``directory``."""
    parts = name.split(".")
    folder = directory
    for package in parts[:-1]:
        folder = folder / package
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").touch()
    target = folder / f"{parts[-1]}.py"
    target.write_text(textwrap.dedent(source))
    return target


@pytest.fixture
def scope() -> Iterator[keras_safe.Registry]:
    """A registry scope: whatever the test registers is undone afterwards."""
    with keras_safe.registry.scope() as registry:
        yield registry
