"""Differences between two configs and between two sets of weights, as sentences.

Used by ``save(roundtrip=True)``, :func:`keras_safe.diff` and
``keras_safe.testing.assert_roundtrip``: each difference names the layer,
the argument or weight, and both values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_safe import _keras
from keras_safe._config.describe import defined_in_keras
from keras_safe.errors import _UsageError

__all__ = [
    "SAVED_REBUILT",
    "Sides",
    "bits_differ",
    "config_differences",
    "output_differences",
    "strictly_equal",
    "weight_differences",
]

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


@dataclass(frozen=True)
class Sides:
    """How the two compared configs are named in the sentences."""

    left: str = "saved"
    right: str = "rebuilt"
    only_left: str = "saved {value}, missing after rebuilding"
    only_right: str = "not saved, rebuilt has {value}"
    layer_only_left: str = "saved, missing after rebuilding"
    layer_only_right: str = "not saved, rebuilt has it"
    counts: str = "saved {left} items, rebuilt has {right}"


SAVED_REBUILT = Sides()
"""Sentences of ``save(roundtrip=True)``: the saved config against the rebuilt one."""


def config_differences(
    saved: Any,
    rebuilt: Any,
    where: str = "",
    *,
    sides: Sides = SAVED_REBUILT,
    exact_sequences: bool = False,
) -> list[str]:
    """Every place two configs differ, values and types both (1 != 1.0 != True).

    Locations read ``"model (Functional) > attention (CustomAttention).units"``.
    Lists of layers are paired by layer name, so an inserted layer is one
    difference, not one per following layer. ``exact_sequences`` also tells a
    tuple from a list (configs read back from JSON only have lists).
    """
    return list(_Differ(sides, exact_sequences).diff(saved, rebuilt, where))


class _Differ:
    def __init__(self, sides: Sides, exact_sequences: bool) -> None:
        self.sides = sides
        self.sequences: tuple[type, ...] = (list, tuple)
        self.exact = exact_sequences

    def _same_type(self, a: Any, b: Any) -> bool:
        if type(a) is type(b):
            return True
        return not self.exact and type(a) in self.sequences and type(b) in self.sequences

    def diff(self, a: Any, b: Any, where: str) -> Iterator[str]:
        s = self.sides
        if not self._same_type(a, b):
            yield (
                f"{where or 'config'}: {s.left} {_short(a)} ({_type_name(a)}), "
                f"{s.right} {_short(b)} ({_type_name(b)})"
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
                    yield f"{child}: " + s.only_right.format(value=_short(b[key]))
                elif key not in b:
                    yield f"{child}: " + s.only_left.format(value=_short(a[key]))
                else:
                    yield from self.diff(a[key], b[key], child)
            return
        if isinstance(a, (list, tuple)):
            yield from self._sequence(a, b, where)
            return
        if a != b and not (isinstance(a, float) and a != a and b != b):
            yield f"{where or 'config'}: {s.left} {_short(a)}, {s.right} {_short(b)}"

    def _sequence(self, a: Any, b: Any, where: str) -> Iterator[str]:
        s = self.sides
        left, right = _by_label(a), _by_label(b)
        if (
            left is not None
            and right is not None
            and list(left) != list(right)
            # mostly the same names: pair by name; else (automatic names that
            # differ between processes) by position
            and 2 * len(left.keys() & right.keys()) >= min(len(left), len(right))
        ):
            for label in dict.fromkeys([*left, *right]):
                place = f"{where} > {label}" if where else label
                if label not in left:
                    yield f"{place}: {s.layer_only_right}"
                elif label not in right:
                    yield f"{place}: {s.layer_only_left}"
                else:
                    yield from self.diff(left[label], right[label], where)
            return
        if len(a) != len(b):
            yield f"{where or 'config'}: " + s.counts.format(left=len(a), right=len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from self.diff(x, y, where if _label(x) else f"{where}[{i}]")


def _type_name(value: Any) -> str:
    """``list`` for Keras' TrackedList too: the type as the user wrote it."""
    for base in (list, tuple, dict):
        if isinstance(value, base) and defined_in_keras(type(value)):
            return base.__name__
    return type(value).__name__


def _by_label(items: Any) -> dict[str, Any] | None:
    """``{label: item}`` when every item is a named object with a unique name."""
    labelled = {}
    for item in items:
        label = _label(item)
        if label is None or label in labelled:
            return None
        labelled[label] = item
    return labelled if labelled else None


def strictly_equal(a: Any, b: Any) -> bool:
    """Deep equality that also compares types (and treats NaN as equal to NaN)."""
    return not any(True for _ in _Differ(SAVED_REBUILT, False).diff(a, b, ""))


def _as_numpy(value: Any) -> np.ndarray[Any, Any]:
    """A variable's (or tensor's) values as numpy, without copying where possible.

    So comparing two 100M-parameter models reads their weights rather than
    duplicating them (see ``_keras.array_view``).
    """
    return _keras.array_view(value)


def bits_differ(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Element-wise "not the same bits" of two arrays of one shape and dtype.

    So NaN equals NaN and -0.0 differs from 0.0. Elements that are not 1, 2,
    4 or 8 bytes of plain data (objects, strings, complex128) are compared
    as values.
    """
    if not a.dtype.hasobject and a.dtype.kind not in "SU" and a.dtype.itemsize in (1, 2, 4, 8):
        view = np.dtype(f"u{a.dtype.itemsize}")
        differs: np.ndarray[Any, Any] = np.ascontiguousarray(a).view(view) != (
            np.ascontiguousarray(b).view(view)
        )
        return differs
    return np.asarray(a != b)


def _bits_equal(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    """Whether two arrays have the same shape, dtype and bits (see :func:`bits_differ`)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.hasobject:
        return bool(np.array_equal(a, b))
    # Every byte, compared as the widest integers the size allows: the same
    # bits, with an eighth of the element-wise work and temporary memory of uint8.
    left = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    right = np.ascontiguousarray(b).reshape(-1).view(np.uint8)
    for wide in (np.uint64, np.uint32, np.uint16):
        if left.size % np.dtype(wide).itemsize == 0:
            left, right = left.view(wide), right.view(wide)
            break
    return not bits_differ(left, right).any()


def weight_differences(
    saved: Iterable[Any],
    rebuilt: Iterable[Any],
    what: str = "weight",
    value_of: Callable[[Any], Any] | None = None,
    settled: Mapping[int, list[str]] | None = None,
) -> list[str]:
    """Every variable whose path, shape, dtype or bits differ between two lists.

    ``value_of(variable)`` gives a rebuilt variable's value where it is not
    held by the variable itself (a stateless rebuild); None means it was
    never loaded. ``settled`` maps ``id(rebuilt variable)`` to the problems
    already found for it (compared as it was loaded, its value since dropped).
    """
    saved, rebuilt = list(saved), list(rebuilt)
    problems: list[str] = []
    if len(saved) != len(rebuilt):
        problems.append(
            f"the saved model has {len(saved)} {what}s, the rebuilt one has {len(rebuilt)}"
        )
    for a, b in zip(saved, rebuilt, strict=False):
        if settled is not None and id(b) in settled:
            problems += settled[id(b)]
            continue
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


def output_differences(model: Any, rebuilt: Any, sample_input: Any) -> list[str]:
    """Every output of two models that differs on ``sample_input`` (bit for bit)."""
    try:
        expected = keras.tree.flatten(model(sample_input, training=False))
    except Exception as exc:
        message = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())[:500]
        raise _UsageError(
            f"The model {getattr(model, 'name', '')!r} fails on sample_input, so its outputs "
            f"cannot be compared ({type(exc).__name__}: {message}). Fix: pass a sample_input "
            "the model accepts (model(sample_input) must run), or leave sample_input out: the "
            "config and every weight are compared without it."
        ) from exc
    actual = keras.tree.flatten(rebuilt(sample_input, training=False))
    if len(expected) != len(actual):
        return [
            f"outputs: the saved model returns {len(expected)} tensors, the rebuilt one "
            f"{len(actual)}"
        ]
    problems = []
    for i, (a, b) in enumerate(zip(expected, actual, strict=True)):
        left = np.asarray(keras.ops.convert_to_numpy(a))
        right = np.asarray(keras.ops.convert_to_numpy(b))
        if left.shape != right.shape or not np.array_equal(left, right, equal_nan=True):
            diff = (
                np.max(np.abs(left.astype("float64") - right.astype("float64")))
                if left.shape == right.shape
                else "shape"
            )
            problems.append(f"output {i} on sample_input differs (max abs difference {diff})")
    return problems
