"""Weights files checked from their HDF5 metadata before any weight is read.

An HDF5 file can declare a dataset of any shape while storing nothing (a
fill value, or a compressed chunk), point a name at another file (external
links, external raw storage, virtual datasets), ask for a compression
filter the HDF5 library would load as a native plugin, or hold types that
read back as Python objects. Keras reads whole datasets into memory before
it compares their shapes with the model's variables. So, reading metadata
only:

* :func:`scan_weights` walks every link, object and attribute once: only hard
  links, no external/virtual storage, only built-in filters, numeric data,
  small attributes, a bounded object count, and datasets that together
  declare no more bytes than the file holds.
* :class:`DatasetChecker` makes the store refuse, before reading it, a
  dataset whose shape and dtype match no variable of the rebuilt model
  (integer counters excepted: int64 under TensorFlow, int32 elsewhere, so
  one of the other width is accepted when its values fit).

:func:`datasets` and :func:`dataset_shapes` list what a (checked) file holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5g, h5l, h5o, h5s, h5t

from keras_safe._format.limits import ArchiveLimits
from keras_safe.errors import IntegrityError, UnsafeModelError

__all__ = ["DatasetChecker", "dataset_shapes", "datasets", "scan_weights"]

# deflate, shuffle, fletcher32, szip, nbit, scale-offset: built into HDF5.
# Any other filter id makes HDF5 search its plugin path for a shared library.
_BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6})
_DATA_KINDS = frozenset("biufc")
_MAX_OPAQUE = 16  # bfloat16 and friends are stored as small opaque types
_MAX_VLEN_ELEMENTS = 100_000


def open_weights(source: Any, where: str, limits: ArchiveLimits, file_size: int) -> Any:
    """``h5py.File(source)``, returned only after :func:`scan_weights` passed on it.

    Every reader of an untrusted weights file opens it here (or scans the
    file it opened), so no command reads a dataset stored outside the file.
    """
    try:
        handle = h5py.File(source, "r")
    except OSError as exc:
        raise IntegrityError(f"{where} is not valid HDF5: {exc}") from exc
    try:
        scan_weights(handle, where, limits, file_size)
    except BaseException:
        handle.close()
        raise
    return handle


def scan_weights(
    handle: Any,
    where: str,
    limits: ArchiveLimits,
    file_size: int,
    shapes: dict[str, tuple[tuple[int, ...], str]] | None = None,
) -> int:
    """Check every object reachable from ``handle``; return the bytes its datasets declare.

    Args:
        handle: An open ``h5py.File`` (or group).
        where: Names the file or member in messages.
        limits: ``max_h5_objects`` and ``max_h5_attribute_bytes`` apply.
        file_size: Bytes the weights occupy; datasets may not declare more.
        shapes: If given, filled with what :func:`dataset_shapes` returns
            (the walk has read every dataset's shape and dtype already), or
            left empty where an object is reached by two paths (then call
            :func:`dataset_shapes`, which names each object once).

    Raises:
        UnsafeModelError: naming the first offending object.
    """
    # Low-level h5py calls throughout: the high-level objects cost tens of
    # microseconds per lookup, and a model has a few hundred objects.
    seen: set[Any] = set()
    stack: list[tuple[str, Any]] = [("", handle.id)]
    count, declared = 0, 0
    found: dict[str, tuple[tuple[int, ...], str]] = {}
    checked: dict[Any, str] = {}  # dtypes that passed, and their names
    shared = False
    while stack:
        prefix, group = stack.pop()
        _check_attributes(group, prefix or "/", where, limits)
        _check_name_lists(group, prefix or "/", where)
        # Past the object limit, one more link is enough to refuse the file.
        for raw, kind, address in _links(group, limits.max_h5_objects - count + 1):
            name = _decoded(raw)
            path = f"{prefix}/{name}" if prefix else name
            count += 1
            if count > limits.max_h5_objects:
                raise UnsafeModelError(
                    f"{where} holds more than {limits.max_h5_objects} HDF5 objects "
                    "(ArchiveLimits.max_h5_objects)."
                )
            if kind != h5l.TYPE_HARD:
                raise UnsafeModelError(
                    f"{where}: {path!r} is an HDF5 {_LINK_KINDS.get(kind, 'user-defined link')}; "
                    "a weights file "
                    "points only to its own objects (soft and external links are refused)."
                )
            if address in seen:  # reached by another path
                shared = True
                continue
            seen.add(address)
            obj = h5o.open(group, raw)
            if isinstance(obj, h5g.GroupID):
                stack.append((path, obj))
            elif isinstance(obj, h5d.DatasetID):
                size, shape, dtype = _check_dataset(obj, path, where, limits, checked)
                declared += size
                found[path] = (shape, checked[dtype])
            else:
                what = "Datatype" if isinstance(obj, h5t.TypeID) else type(obj).__name__
                raise UnsafeModelError(f"{where}: {path!r} is an HDF5 {what}.")
    if declared > file_size:
        raise UnsafeModelError(
            f"{where}: its datasets declare {declared} bytes but the file holds {file_size}; "
            "a dataset whose data is not in the file would be made up when read (an HDF5 "
            "shape bomb). Refusing it."
        )
    if shapes is not None and not shared:
        shapes.update(found)
    return declared


_LINK_KINDS = {h5l.TYPE_SOFT: "SoftLink", h5l.TYPE_EXTERNAL: "ExternalLink"}


def _links(group: Any, most: int) -> list[tuple[bytes, int, int | None]]:
    """``(name, link type, object address or None)`` of the first ``most`` links in ``group``.

    ``group`` is a low-level ``GroupID``; the links come in h5py's order (by name).
    """
    found: list[tuple[bytes, int, int | None]] = []

    def collect(name: bytes, info: Any) -> bool:
        # ``info`` is valid only during the call.
        kind = info.type
        found.append((name, kind, info.u if kind == h5l.TYPE_HARD else None))
        return len(found) >= most  # True stops the iteration

    group.links.iterate(collect, info=True)
    return found


def _decoded(name: bytes) -> str:
    """A link name as h5py's high-level API spells it (UTF-8, else the bytes' repr)."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return str(name)


def _check_name_lists(group: Any, path: str, where: str) -> None:
    # Legacy .h5 files list a group's weights and layers by name; Keras reads
    # every name listed, so one dataset named a million times is read a
    # million times. A file Keras wrote never repeats a name.
    if not h5a.get_num_attrs(group):
        return
    attrs = h5py.AttributeManager(h5py.Group(group))
    for key in ("weight_names", "layer_names"):
        if key not in attrs:
            continue
        names = attrs[key]
        listed = [bytes(n) if isinstance(n, (bytes, np.bytes_)) else str(n) for n in names]
        if len(set(listed)) != len(listed):
            raise UnsafeModelError(
                f"{where}: attribute {key!r} of {path!r} names the same object more than "
                f"once ({len(listed)} names, {len(set(listed))} distinct); Keras would read it "
                "once per name. Refusing it."
            )


def _check_dataset(
    ds: Any, path: str, where: str, limits: ArchiveLimits, checked: dict[Any, str]
) -> tuple[int, tuple[int, ...], Any]:
    """Refuse what a weights dataset (an ``h5d.DatasetID``) may not be.

    Returns (declared bytes, shape, dtype); ``checked`` maps the dtypes that
    passed to their names (a model has a handful, in hundreds of datasets).
    """
    plist = ds.get_create_plist()
    virtual = plist.get_layout() == h5d.VIRTUAL
    if virtual or plist.get_external_count() > 0:
        raise UnsafeModelError(
            f"{where}: dataset {path!r} keeps its data in another file "
            f"({'virtual' if virtual else 'external storage'}); refusing it."
        )
    for index in range(plist.get_nfilters()):
        filter_id = plist.get_filter(index)[0]
        if filter_id not in _BUILTIN_FILTERS:
            raise UnsafeModelError(
                f"{where}: dataset {path!r} uses HDF5 filter {filter_id}, which HDF5 would "
                "load as a plugin library; refusing it."
            )
    dtype = ds.dtype
    if dtype not in checked:
        _check_type(dtype, f"dataset {path!r}", where)
        checked[dtype] = str(dtype)
    _check_attributes(ds, path, where, limits)
    space = ds.get_space()
    if space.get_simple_extent_type() == h5s.NULL:
        raise UnsafeModelError(f"{where}: dataset {path!r} has no shape (a null dataspace).")
    shape = tuple(space.shape)
    return int(math.prod(shape)) * int(dtype.itemsize), shape, dtype


def _check_type(dtype: Any, what: str, where: str) -> None:
    if dtype.kind in _DATA_KINDS or (
        dtype.kind == "V" and dtype.fields is None and dtype.itemsize <= _MAX_OPAQUE
    ):
        return
    raise UnsafeModelError(
        f"{where}: {what} holds {dtype} values; weights are numbers. Refusing it."
    )


def _check_attributes(obj: Any, path: str, where: str, limits: ArchiveLimits) -> None:
    """Bound the attributes of ``obj`` (a low-level h5py object id)."""
    for index in range(h5a.get_num_attrs(obj)):
        attr = h5a.open(obj, index=index)
        try:
            size = attr.get_storage_size()
        except RuntimeError:  # HDF5 reports an empty attribute's 0 bytes as an error
            size = 0
        elements = attr.get_space().get_simple_extent_npoints()
        kind = attr.get_type()
        vlen = kind.get_class() == h5py.h5t.VLEN or (
            kind.get_class() == h5py.h5t.STRING and kind.is_variable_str()
        )
        if size > limits.max_h5_attribute_bytes or (vlen and elements > _MAX_VLEN_ELEMENTS):
            name = _decoded(attr.name)
            raise UnsafeModelError(
                f"{where}: attribute {name!r} of {path!r} holds {elements} values in {size} "
                f"bytes (limit {limits.max_h5_attribute_bytes}, "
                "ArchiveLimits.max_h5_attribute_bytes)."
            )


def datasets(handle: Any) -> dict[str, Any]:
    """Every dataset below ``handle`` (an open file or group): ``{path: h5py.Dataset}``."""
    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    handle.visititems(visit)
    return found


def dataset_shapes(handle: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every dataset below ``handle``: ``{path: (shape, dtype)}``."""
    return {name: (tuple(ds.shape), str(ds.dtype)) for name, ds in datasets(handle).items()}


class DatasetChecker:
    """A check the weights store runs on each dataset before Keras reads it.

    A dataset Keras is about to read must have the shape and dtype of one
    of the model's variables (Keras would refuse it only after reading it
    all), but for the cast Keras makes when a file moves between backends:
    int64 integers for an int32 variable of that shape, or the reverse,
    when every value fits. Keras catches exceptions raised while loading a
    layer, so every refusal is also kept in :attr:`refusals` for the caller
    to raise.
    """

    def __init__(self, variables: Iterable[Any], where: str) -> None:
        self.where = where
        self.refusals: list[str] = []
        self.known: set[tuple[tuple[int, ...], str]] = set()
        for variable in variables:
            dtype = str(getattr(variable.dtype, "name", variable.dtype))
            self.known.add((tuple(int(d) for d in variable.shape), dtype))
        self.largest = max((math.prod(shape) for shape, _ in self.known), default=0)

    def __call__(
        self, path: str, ds: Any, described: tuple[tuple[int, ...], str] | None = None
    ) -> None:
        """Refuse ``ds`` unless it fits a variable; ``described``: its (shape, dtype), if known.

        ``ds`` is an ``h5py.Dataset``, or a low-level ``DatasetID`` with ``described``.
        """
        if isinstance(ds, h5d.DatasetID) and described is not None:
            ds = _LazyDataset(ds)
        elif not isinstance(ds, h5py.Dataset):
            return
        if described is not None:
            shape, dtype = tuple(int(d) for d in described[0]), described[1]
        else:
            shape = tuple(int(d) for d in (ds.shape or ()))
            dtype = "bfloat16" if ds.attrs.get("dtype") == "bfloat16" else str(ds.dtype)
        if (shape, dtype) in self.known:
            return
        other = _INTEGER_TWINS.get(dtype)
        if other is not None and (shape, other) in self.known:
            message = _cast_problem(ds, dtype, other)
            if message is None:
                return
        else:
            size = "larger than any" if math.prod(shape) > self.largest else "unlike any"
            message = (
                f"has shape {shape} and dtype {dtype}, {size} variable of the model rebuilt "
                "from the config; refused before reading it."
            )
        message = f"{self.where}: dataset {path!r} {message}"
        self.refusals.append(message)
        raise UnsafeModelError(message)


class _LazyDataset:
    """An ``h5py.Dataset`` made from a ``DatasetID`` only when read (see ``_cast_problem``)."""

    def __init__(self, dataset_id: Any) -> None:
        self._id = dataset_id

    def __getitem__(self, key: Any) -> Any:
        return h5py.Dataset(self._id)[key]


# The one change of dtype accepted on load, as Keras makes it (a variable casts
# what it is assigned): integer variables declared with dtype "int", such as
# the optimizer's step counter, are int64 under TensorFlow and int32 under
# JAX and torch. A value narrowed to int32 must fit, or Keras would wrap it.
_INTEGER_TWINS = {"int64": "int32", "int32": "int64"}


def _cast_problem(ds: Any, saved: str, target: str) -> str | None:
    """Why ``ds`` (integers of dtype ``saved``) cannot become ``target``, or None.

    Its shape is that of a variable of the model, so reading it takes no more
    memory than the variable does.
    """
    if np.iinfo(target).bits >= np.iinfo(saved).bits:
        return None
    values = np.asarray(ds[()])
    if values.size == 0:
        return None
    low, high = int(values.min()), int(values.max())
    limits = np.iinfo(target)
    if limits.min <= low and high <= limits.max:
        return None
    return (
        f"holds {saved} values from {low} to {high}, which do not fit the {target} variable of "
        f"the model rebuilt from the config (Keras casts {saved} to {target} when the file "
        "moves between backends, and would wrap them); refused."
    )
