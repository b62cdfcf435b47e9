"""Plain-text output for the command line: 100 columns, pipes, progress bars.

Text is wrapped to :data:`WIDTH` columns whatever the terminal, so the
output reads the same in a pipe, a log or a code review. Progress bars
(Keras' own ``Progbar``) are drawn on stderr only when it is a terminal and
the work is big; in a pipe nothing but the result is written.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import textwrap
from collections.abc import Callable, Iterable
from typing import IO, Any

__all__ = ["WIDTH", "Progress", "escape", "human_size", "progress_for", "wrap"]

WIDTH = 100
MIB = 1 << 20
PROGRESS_MIN_BYTES = 100 * MIB
"""Files smaller than this are handled without a progress bar."""

_PROGRESS_ENV = "KERAS_SAFE_PROGRESS_MIN_BYTES"


# C0 and C1 controls (but newline), and the Unicode controls that reorder
# or hide text on a terminal: strings from a file may carry any of them.
_CONTROLS = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        0x200E,
        0x200F,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
    if code != 0x0A
}


def escape(text: str) -> str:
    """``text`` with every control character (but newline) shown as an escape.

    Everything the command line prints passes through here: class names,
    manifest fields and messages come from files, and a raw escape sequence
    in them would drive the terminal (move the cursor, rewrite lines, set
    the window title).
    """
    return text.translate(_CONTROLS)


def wrap(text: str, width: int = WIDTH) -> str:
    """Wrap every line of ``text`` to ``width`` columns, keeping its indentation.

    Continuation lines get four more spaces than the line they continue, so
    a wrapped list item still reads as one item.
    """
    lines = []
    for line in text.splitlines():
        if len(line) <= width:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines.extend(
            textwrap.wrap(
                line.strip(),
                width=width,
                initial_indent=indent,
                subsequent_indent=indent + "    ",
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def human_size(size: int) -> str:
    """``"4.3 KiB"``, ``"97.2 MiB"``; bytes below 1 KiB as ``"512 B"``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


class Progress:
    """Progress bars on a stream, one per phase of work, counted in bytes.

    ``progress(title, total_bytes)`` finishes the previous phase, prints
    ``title`` and returns ``advance(n_bytes)`` for the new one.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._bar: Any = None
        self._target = 0
        self._seen = 0

    def __call__(self, title: str, total: int) -> Callable[[int], None]:
        import keras  # only when a bar is actually drawn

        self.close()
        print(escape(f"{title}..."), file=self._stream, flush=True)
        self._target = max(1, math.ceil(total / MIB))
        self._seen = 0
        self._bar = keras.utils.Progbar(self._target, unit_name="MiB")
        return self._advance

    def _advance(self, size: int) -> None:
        self._seen += size
        self._update(min(self._target, self._seen // MIB))

    def _update(self, value: int, finalize: bool = False) -> None:
        # Progbar writes to sys.stdout, which holds the command's result.
        with contextlib.redirect_stdout(self._stream):
            self._bar.update(value, finalize=finalize)

    def note(self, text: str) -> None:
        """A status line (for steps whose progress cannot be measured)."""
        self.close()
        print(escape(text), file=self._stream, flush=True)

    def close(self) -> None:
        """Finish the current bar, if any."""
        if self._bar is not None:
            self._update(self._target, finalize=True)
            self._bar = None


def progress_for(paths: Iterable[Any], stream: IO[str] | None = None) -> Progress | None:
    """A :class:`Progress` when ``stream`` is a terminal and a file is big, else None.

    ``KERAS_SAFE_PROGRESS_MIN_BYTES`` overrides the size threshold.
    """
    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    try:
        threshold = int(os.environ.get(_PROGRESS_ENV, PROGRESS_MIN_BYTES))
    except ValueError:
        threshold = PROGRESS_MIN_BYTES
    sizes = []
    for path in paths:
        try:
            sizes.append(os.path.getsize(path))
        except OSError:
            continue
    if not sizes or max(sizes) < threshold:
        return None
    return Progress(stream)
