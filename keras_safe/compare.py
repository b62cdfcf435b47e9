"""Differences between two configs and between two sets of weights, as sentences.

Used by ``save(verify=True)``, :func:`keras_safe.diff` and
``keras_safe.testing.assert_roundtrip``: each difference names the layer,
the argument or weight, and both values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import keras
import numpy as np

__all__ = ["config_differences", "strictly_equal", "weight_differences"]

_MAX_SHOWN = 200


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _label(node: Any) -> str | None:
    if not isinstance(node, dict) or not isinstance(node.get("class_name"), str):
        return None
    inner = node.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    if isinstance(name, str) and node["class_name"] != "function":
        return f"{name} ({node['class_name']})"
    return None


def config_differences(saved: Any, rebuilt: Any, where: str = "") -> list[str]:
    """Every place two configs differ, values and types both (1 != 1.0 != True).

    Locations read ``"model (Functional) > attention (CustomAttention).units"``.
    """
    return list(_diff(saved, rebuilt, where))


def _diff(a: Any, b: Any, where: str) -> Iterator[str]:
    if type(a) is not type(b) and not (type(a) in (list, tuple) and type(b) in (list, tuple)):
        yield (
            f"{where or 'config'}: saved {_short(a)} ({type(a).__name__}), "
            f"rebuilt {_short(b)} ({type(b).__name__})"
        )
        return
    if isinstance(a, dict):
        label = _label(a)
        if label is not None:
            where = f"{where} > {label}" if where else label
        for key in dict.fromkeys([*a, *b]):
            if key == "shared_object_id":
                continue  # object identities of one process, not part of the model
            child = where if key in ("config", "layers") else f"{where}.{key}"
            if key not in a:
                yield f"{child}: not saved, rebuilt has {_short(b[key])}"
            elif key not in b:
                yield f"{child}: saved {_short(a[key])}, missing after rebuilding"
            else:
                yield from _diff(a[key], b[key], child)
        return
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            yield f"{where or 'config'}: saved {len(a)} items, rebuilt has {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from _diff(x, y, where if _label(x) else f"{where}[{i}]")
        return
    if a != b and not (isinstance(a, float) and a != a and b != b):
        yield f"{where or 'config'}: saved {_short(a)}, rebuilt {_short(b)}"


def strictly_equal(a: Any, b: Any) -> bool:
    """Deep equality that also compares types (and treats NaN as equal to NaN)."""
    return not any(True for _ in _diff(a, b, ""))


def _as_numpy(value: Any) -> np.ndarray[Any, Any]:
    """A variable's (or tensor's) values as numpy, without copying where possible.

    ``keras.ops.convert_to_numpy`` copies; a TensorFlow (or JAX) tensor on
    the CPU exposes its buffer to ``np.asarray`` instead, and a variable's
    read aliases the variable's memory, so comparing two 100M-parameter
    models reads their weights rather than duplicating them.
    """
    try:
        return np.asarray(keras.ops.convert_to_tensor(value))
    except (TypeError, ValueError, RuntimeError):  # e.g. torch tensors that need grad
        return np.asarray(keras.ops.convert_to_numpy(value))


def _bits_equal(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.hasobject:
        return bool(np.array_equal(a, b))
    left = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    right = np.ascontiguousarray(b).reshape(-1).view(np.uint8)
    # Compared as the widest integers the size allows: the same bits, with an
    # eighth of the element-wise work and temporary memory of uint8.
    for wide in (np.uint64, np.uint32, np.uint16):
        if left.size % np.dtype(wide).itemsize == 0:
            left, right = left.view(wide), right.view(wide)
            break
    return bool(np.array_equal(left, right))


def weight_differences(
    saved: Iterable[Any],
    rebuilt: Iterable[Any],
    what: str = "weight",
    value_of: Callable[[Any], Any] | None = None,
) -> list[str]:
    """Every variable whose path, shape, dtype or bits differ between two lists.

    ``value_of(variable)`` gives a rebuilt variable's value where it is not
    held by the variable itself (a stateless rebuild); None means it was
    never loaded.
    """
    saved, rebuilt = list(saved), list(rebuilt)
    problems: list[str] = []
    if len(saved) != len(rebuilt):
        problems.append(
            f"the saved model has {len(saved)} {what}s, the rebuilt one has {len(rebuilt)}"
        )
    for a, b in zip(saved, rebuilt, strict=False):
        name = getattr(a, "path", None) or getattr(a, "name", "?")
        other = getattr(b, "path", None) or getattr(b, "name", "?")
        value = b if value_of is None else value_of(b)
        if value is None:
            problems.append(f"{what} {name}: {other} was not loaded from the file")
            continue
        left, right = _as_numpy(a), _as_numpy(value)
        if left.shape != right.shape or left.dtype != right.dtype:
            problems.append(
                f"{what} {name}: saved {left.dtype}{list(left.shape)}, rebuilt {other} is "
                f"{right.dtype}{list(right.shape)}"
            )
        elif not _bits_equal(left, right):
            changed = int(np.count_nonzero(left != right)) if left.dtype.kind in "biuf" else -1
            detail = f"{changed} of {left.size} values differ" if changed >= 0 else "values differ"
            problems.append(f"{what} {name}: {detail} after reloading (loaded into {other})")
        if len(problems) >= _MAX_SHOWN:
            break
    return problems
