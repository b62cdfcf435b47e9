"""Every runnable example in examples/ runs to completion in a fresh process.

An example is a script with an ``if __name__ == "__main__":`` guard (modules
without one are libraries the scripts import); each must exit 0, and exits
non-zero when what it demonstrates does not hold.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SRC

EXAMPLES = ROOT / "examples"
_REQUIRES = re.compile(r"^# example-requires: (\w+)$", re.MULTILINE)
_MAIN_GUARD = re.compile(r"""^if __name__ == ["']__main__["']:""", re.MULTILINE)
TIMEOUT = 600  # seconds; each example takes seconds on an idle machine


def runnable_examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.py") if _MAIN_GUARD.search(p.read_text()))


def test_examples_are_discovered() -> None:
    names = {p.name for p in runnable_examples()}
    assert {"attention.py", "subclassed_model.py", "custom_loss_metric.py"} <= names
    assert "residual_mlp.py" not in names  # a library module, imported by an example


@pytest.mark.slow
@pytest.mark.parametrize("example", runnable_examples(), ids=lambda p: p.name)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    for module in _REQUIRES.findall(example.read_text()):
        if importlib.util.find_spec(module) is None:  # a test dependency (keras-hub)
            pytest.skip(f"{example.name} needs {module}, which is not installed")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert proc.returncode == 0, (
        f"{example.name} exited with {proc.returncode}\n--- stdout\n{proc.stdout}"
        f"\n--- stderr\n{proc.stderr[-6000:]}"
    )
