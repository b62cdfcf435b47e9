"""The README's Python examples run, in order, in a fresh process."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT, run_python

FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)


def readme_blocks() -> list[str]:
    return FENCE.findall((ROOT / "README.md").read_text())


def test_readme_has_examples() -> None:
    assert len(readme_blocks()) >= 8


def test_readme_examples_run_in_order(tmp_path: Path) -> None:
    script = "\n\n".join(readme_blocks())
    (tmp_path / "readme_examples.py").write_text(script)
    proc = run_python(
        "import runpy, os, sys; os.chdir(sys.argv[1]); "
        "runpy.run_path('readme_examples.py', run_name='__main__')",
        str(tmp_path),
    )
    assert "Mixer: argument `activation` is a lambda" in proc.stdout
