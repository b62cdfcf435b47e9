"""MkDocs hooks: pages generated from the code, so they cannot drift from it.

``<!-- cli-help -->`` in a page is replaced by the help text of ``keras-safe``
and of each of its commands, formatted by the argparse parser the command
line itself uses (``keras_safe.cli.build_parser()``), at 100 columns.

Used by ``mkdocs.yml`` (``hooks:``) and by tests/test_docs.py.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI_HELP_MARKER = "<!-- cli-help -->"


@contextlib.contextmanager
def _plain_terminal() -> Iterator[None]:
    """A 100-column terminal without colours, as far as argparse can tell."""
    saved = {name: os.environ.get(name) for name in ("COLUMNS", "NO_COLOR")}
    os.environ.update(COLUMNS="100", NO_COLOR="1")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cli_help_markdown() -> str:
    """The help of ``keras-safe`` and of every command, as Markdown."""
    from keras_safe.cli import build_parser

    with _plain_terminal():
        parser = build_parser()  # the parser reads the width when it is built
        sections = [f"### `keras-safe --help`\n\n```text\n{parser.format_help().rstrip()}\n```\n"]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, command in action.choices.items():
                    sections.append(
                        f"### `keras-safe {name} --help` {{ #help-{name} }}\n\n"
                        f"```text\n{command.format_help().rstrip()}\n```\n"
                    )
    return "\n".join(sections)


def on_config(config: Any, **kwargs: Any) -> Any:
    # Document the checkout's keras_safe, not whichever one is installed.
    source = str(Path(config.config_file_path).resolve().parent / "src")
    if source not in sys.path:
        sys.path.insert(0, source)
    return config


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if CLI_HELP_MARKER in markdown:
        markdown = markdown.replace(CLI_HELP_MARKER, cli_help_markdown())
    return markdown
