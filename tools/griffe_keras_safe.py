"""Griffe extension: keras_safe's docstrings as mkdocstrings renders them.

Docstring markup: the docstrings are Google style with Sphinx roles. For the
rendered pages (the source is not changed), an ``Example:`` section is read
as ``Examples:`` (so its ``>>>`` lines are shown as code), and a role such as
``:func:`~keras_safe.load``` becomes code, linked when the API reference
documents its target.

Used by ``mkdocs.yml`` (``plugins: mkdocstrings: handlers: python: options:
extensions``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "api.md"
_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)(\(\))?`")
_EXAMPLE = re.compile(r"^(\s*)Example:$", re.MULTILINE)


def documented() -> set[str]:
    """The identifiers the API reference renders (its ``::: name`` lines)."""
    return set(re.findall(r"^::: (\S+)$", API_PAGE.read_text(), re.MULTILINE))


def markdown_docstring(text: str, targets: set[str]) -> str:
    def role(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        shown = f"`{target.rsplit('.', 1)[-1] if short else target}`"
        full = target if target.startswith("keras_safe.") else f"keras_safe.{target}"
        return f"[{shown}][{full}]" if full in targets else shown

    return _ROLE.sub(role, _EXAMPLE.sub(r"\1Examples:", text))


class KerasSafeDocstrings(griffe.Extension):
    def __init__(self) -> None:
        self.targets = documented()

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value, self.targets)
