"""The weights part of :func:`keras_safe.diff`: which weights differ, and how.

Both weight files are opened as HDF5 windows over their archives and
compared dataset by dataset, a slice of rows at a time, so two big models
are never in memory at once. Values are compared bit for bit (NaN equals
NaN, -0.0 differs from 0.0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h5py
import ml_dtypes
import numpy as np

from keras_safe._format.integrity import Progress
from keras_safe._format.reader import WEIGHTS, ArchiveReader
from keras_safe._guard.hdf5_bounds import datasets
from keras_safe._ops.compare import bits_differ

__all__ = ["WeightChange", "weight_changes"]

_CHUNK_BYTES = 16 << 20
_BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True)
class WeightChange:
    """One weight that differs, by its path in the weights file (``layers/hidden/vars/0``).

    Layers of Functional and Sequential models appear under their names
    (Keras' own keys, ``layers/dense_1``, shift when a layer is inserted).
    ``owner`` is the name of the layer (or optimizer) holding the weight.
    ``change`` is ``"added"`` (only in b), ``"removed"`` (only in a),
    ``"shape"`` (shape or dtype changed) or ``"values"``; for values,
    ``changed`` of ``size`` values differ, by at most ``max_abs``.
    """

    path: str
    change: str
    a: str | None
    b: str | None
    changed: int | None = None
    size: int | None = None
    max_abs: float | None = None
    owner: str | None = None

    def __str__(self) -> str:
        shown = self.owner and f"/{self.owner}/" not in f"/{self.path}/"
        where = f"{self.path} ({self.owner})" if shown else self.path
        if self.change == "added":
            return f"{where}: only in b {self.b}"
        if self.change == "removed":
            return f"{where}: only in a {self.a}"
        if self.change == "shape":
            return f"{where}: a {self.a}, b {self.b}"
        amount = f"{self.changed:,} of {self.size:,} values differ"
        if self.max_abs is not None:
            amount += f" (max abs difference {self.max_abs:.6g})"
        return f"{where} {self.a}: {amount}"


def _by_layer_name(datasets: dict[str, Any]) -> dict[str, Any] | None:
    """The datasets keyed with layer names instead of Keras' class-based keys.

    Keras files the layers of a Functional or Sequential model under keys made
    from class names and positions (``layers/dense_1``), so inserting a layer
    shifts the keys of the layers after it; the layer's own name is stored
    next to its weights. None if two weights would get the same key.
    """
    keyed: dict[str, Any] = {}
    for path, dataset in datasets.items():
        parts = path.split("/")
        for i in range(1, len(parts) - 1):
            if parts[i - 1] != "layers":
                continue
            group = dataset.file["/".join(parts[: i + 1])]
            holder = group.get("vars")
            name = holder.attrs.get("name") if holder is not None else None
            if isinstance(name, str) and name and "/" not in name:
                parts[i] = name
        key = "/".join(parts)
        if key in keyed:
            return None
        keyed[key] = dataset
    return keyed


def _paired_keys(
    left: dict[str, Any], right: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Key both sides by layer name when that pairs at least as many weights as paths do.

    Retrained models pair the same either way; a model with an inserted layer
    pairs correctly only by name; two models whose layers got different
    automatic names (``dense_3`` / ``dense_7``) pair only by path.
    """
    named_left, named_right = _by_layer_name(left), _by_layer_name(right)
    if named_left is None or named_right is None:
        return left, right
    if len(named_left.keys() & named_right.keys()) >= len(left.keys() & right.keys()):
        return named_left, named_right
    return left, right


def _natural(path: str) -> list[Any]:
    """Sort key putting ``vars/2`` before ``vars/10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _dtype(dataset: Any) -> np.dtype[Any]:
    # Keras stores bfloat16 weights as uint16 and says so in an attribute.
    dtype: np.dtype[Any] = _BFLOAT16
    if dataset.attrs.get("dtype") != "bfloat16":
        dtype = np.dtype(dataset.dtype)
    return dtype


def _describe(dataset: Any) -> str:
    return f"{_dtype(dataset)}{list(dataset.shape)}"


def _owner(dataset: Any) -> str | None:
    name = dataset.parent.attrs.get("name")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return name if isinstance(name, str) else None


def _datasets(handle: Any) -> dict[str, Any]:
    return {} if handle is None else datasets(handle)


def _open_weights(reader: ArchiveReader) -> Any:
    if not reader.has(WEIGHTS):
        return None
    return h5py.File(reader.window(WEIGHTS), "r")


def weight_changes(
    reader_a: ArchiveReader, reader_b: ArchiveReader, progress: Progress | None
) -> list[WeightChange]:
    file_a, file_b = _open_weights(reader_a), _open_weights(reader_b)
    try:
        left, right = _paired_keys(_datasets(file_a), _datasets(file_b))
        common = [name for name in left if name in right]
        total = sum(left[n].size * left[n].dtype.itemsize for n in common)
        advance = None if progress is None else progress("comparing weights", total)
        changes = []
        for name in sorted({*left, *right}, key=_natural):
            if name not in right:
                changes.append(
                    WeightChange(
                        name, "removed", _describe(left[name]), None, owner=_owner(left[name])
                    )
                )
            elif name not in left:
                changes.append(
                    WeightChange(
                        name, "added", None, _describe(right[name]), owner=_owner(right[name])
                    )
                )
            else:
                change = _compare_dataset(name, left[name], right[name], advance)
                if change is not None:
                    changes.append(change)
        return changes
    finally:
        for handle in (file_a, file_b):
            if handle is not None:
                handle.close()


def _compare_dataset(
    name: str, a: Any, b: Any, advance: Callable[[int], None] | None
) -> WeightChange | None:
    owner = _owner(b)
    if a.shape != b.shape or _dtype(a) != _dtype(b):
        return WeightChange(name, "shape", _describe(a), _describe(b), owner=owner)
    changed, largest = 0, None
    for block_a, block_b in zip(_blocks(a), _blocks(b), strict=True):
        differs = bits_differ(block_a, block_b)
        count = int(np.count_nonzero(differs))
        if count and (block_a.dtype.kind in "biuf" or block_a.dtype == _BFLOAT16):
            gap = np.abs(block_a[differs].astype("float64") - block_b[differs].astype("float64"))
            gap = gap[~np.isnan(gap)]
            if gap.size:
                largest = max(largest or 0.0, float(gap.max()))
        changed += count
        if advance is not None:
            advance(block_a.nbytes)
    if not changed:
        return None
    return WeightChange(
        name, "values", _describe(a), _describe(b), changed, int(a.size), largest, owner
    )


def _blocks(dataset: Any) -> Iterator[np.ndarray[Any, Any]]:
    """The dataset's values, a slice of rows at a time (scalars whole)."""
    dtype = _dtype(dataset)
    if dataset.ndim == 0 or dataset.shape[0] == 0:
        yield np.atleast_1d(np.asarray(dataset[()])).view(dtype)
        return
    row_bytes = max(1, dataset.size // dataset.shape[0]) * dtype.itemsize
    step = max(1, _CHUNK_BYTES // row_bytes)
    for start in range(0, dataset.shape[0], step):
        yield np.asarray(dataset[start : start + step]).view(dtype)
