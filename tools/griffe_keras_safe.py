"""Griffe extension: what mkdocstrings needs to read keras_safe's docstrings.

Subpackages without ``__init__.py``:

keras_safe's private subpackages (``_config``, ``_format``, ``_ops`` ...) are
implicit namespace packages inside a regular package. Python imports them,
but Griffe (which mkdocstrings uses to read the code without importing it)
skips them, so the public names that ``keras_safe/__init__.py`` re-exports
from them could not be documented. This extension adds them to the loaded
package after the fact.

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

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.filepath is None or isinstance(pkg.filepath, list):
            return
        self._add_namespaces(pkg, Path(pkg.filepath).parent, loader)

    def _add_namespaces(self, parent: griffe.Module, folder: Path, loader: Any) -> None:
        for sub in sorted(folder.iterdir()):
            if not sub.is_dir() or sub.name == "__pycache__" or (sub / "__init__.py").exists():
                continue
            if sub.name in parent.members or not any(sub.glob("*.py")):
                continue
            namespace = loader._create_module(sub.name, [sub])
            parent.set_member(sub.name, namespace)
            for source in sorted(sub.glob("*.py")):
                module = loader._load_module(
                    source.stem, source, submodules=False, parent=namespace
                )
                namespace.set_member(source.stem, module)
            self._add_namespaces(namespace, sub, loader)
