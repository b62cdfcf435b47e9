"""JSON from a file, parsed only once it is known to be small and shallow.

``json.loads`` turns every byte into Python objects and recurses once per
nesting level (a few thousand ``[`` end in ``RecursionError``, which Keras
lets escape). Size, nesting depth and the number of values are measured
first, in C-speed passes over the bytes, so a hostile member is refused
before it costs memory or a deep stack.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from keras_safe._format.limits import ArchiveLimits
from keras_safe.errors import IntegrityError, UnsafeModelError

__all__ = ["json_depth", "parse_json_object"]

_QUOTE = ord('"')
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_INTEREST = _STEP != 0
_INTEREST[_QUOTE] = True


def json_depth(data: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``data``, brackets inside strings ignored.

    Vectorized: escaped characters are dropped (a backslash outside a string
    is not JSON anyway), then every remaining quote opens or closes a string,
    and a bracket counts when an even number of quotes precede it.
    """
    text = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    codes = np.frombuffer(text, dtype=np.uint8)
    marks = codes[_INTEREST[codes]]
    if marks.size == 0:
        return 0
    outside = (np.cumsum(marks == _QUOTE, dtype=np.int64) & 1) == 0
    steps = _STEP[marks].astype(np.int64) * outside
    return max(0, int(np.cumsum(steps).max()))


def parse_json_object(data: bytes, where: str, limits: ArchiveLimits) -> dict[str, Any]:
    """Parse ``data`` (a JSON member or attribute) that must hold an object.

    Args:
        data: The raw bytes.
        where: Names the member for messages (``"config.json in model.keras"``).
        limits: Size, depth and item bounds.

    Raises:
        UnsafeModelError: larger, deeper or with more values than ``limits`` allow.
        IntegrityError: not JSON, or not a JSON object.
    """
    if len(data) > limits.max_json_bytes:
        raise UnsafeModelError(
            f"{where} is {len(data)} bytes (limit {limits.max_json_bytes}, "
            "ArchiveLimits.max_json_bytes); no model config is that large."
        )
    items = data.count(b",") + data.count(b"[") + data.count(b"{")
    if items > limits.max_json_items:
        raise UnsafeModelError(
            f"{where} holds about {items} values (limit {limits.max_json_items}, "
            "ArchiveLimits.max_json_items)."
        )
    depth = json_depth(data)
    if depth > limits.max_json_depth:
        raise UnsafeModelError(
            f"{where} is nested {depth} levels deep (limit {limits.max_json_depth}, "
            "ArchiveLimits.max_json_depth); model configs are a few dozen levels deep."
        )
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where} is not valid JSON ({exc}).") from exc
    except RecursionError:  # not reachable within the depth limit; kept as a backstop
        raise UnsafeModelError(f"{where} is nested too deeply to be a model.") from None
    if not isinstance(value, dict):
        raise IntegrityError(f"{where} should hold a JSON object, not {type(value).__name__}.")
    return value
