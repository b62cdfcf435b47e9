"""The Python examples of the README and of every docs page run.

Each page's ```python blocks run in order, as one script, in a fresh process
and a fresh directory, so a page can only use what it defines itself. Blocks
that must not run (shell commands, output, JSON) use other fence languages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, run_python

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
ANY_FENCE = re.compile(r"^```(\S*)", re.MULTILINE)
# Fence languages that are shown and never run.
NOT_RUN = {"bash", "text", "json", "yaml", "toml", "pycon"}

# What some pages must print: the examples show real messages.
EXPECTED_OUTPUT = {
    "README.md": ["['my_project>Block']"],
    "docs/guides/base-classes.md": ["Mixer: argument `activation` is a lambda"],
    "docs/guides/config-evolution.md": [
        "saved argument `num_units` is not accepted by Gate.__init__ any more",
        "config v1 when saved, v2 now (translated by Gate.upgrade_config)",
        "this code understands up to v2",
    ],
    "docs/guides/testing.md": ["Pool.mode: an argument of __init__"],
}


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text())


def test_pages_with_examples_are_found() -> None:
    with_examples = {page_id(p) for p in pages() if blocks(p)}
    assert {
        "README.md",
        "docs/guides/base-classes.md",
        "docs/guides/registration.md",
        "docs/guides/save-load.md",
        "docs/guides/security.md",
        "docs/guides/config-evolution.md",
        "docs/guides/checkpoints.md",
        "docs/guides/testing.md",
        "docs/format.md",
        "docs/reference/api.md",
    } <= with_examples
    assert sum(len(blocks(p)) for p in pages()) >= 30


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_fence_is_run_or_declared_not_to(page: Path) -> None:
    languages = set(ANY_FENCE.findall(page.read_text())) - {""}
    unknown = languages - NOT_RUN - {"python"}
    assert not unknown, f"{page_id(page)}: fences {unknown} are neither run nor in NOT_RUN"


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in pages() if blocks(p)], ids=page_id)
def test_page_examples_run_in_order(page: Path, tmp_path: Path) -> None:
    script = "\n\n".join(blocks(page))
    (tmp_path / "page_examples.py").write_text(script)
    proc = run_python(
        "import runpy, os, sys; os.chdir(sys.argv[1]); "
        "runpy.run_path('page_examples.py', run_name='__main__')",
        str(tmp_path),
    )
    for expected in EXPECTED_OUTPUT.get(page_id(page), []):
        assert expected in proc.stdout, f"{page_id(page)} did not print {expected!r}"
