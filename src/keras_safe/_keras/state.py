"""Writing and reading a model's variables (the ``model.weights.h5`` member).

The weights file is written in place into the archive being saved and read
through a store that records which datasets Keras consumed, translates
renamed weight paths and lets keras_safe check each dataset before Keras
reads it.
"""

from __future__ import annotations

import io
import math
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

import h5py
import keras
import numpy as np
from keras.src.saving import saving_lib
from keras.src.saving.keras_saveable import KerasSaveable

from keras_safe._keras import compat
from keras_safe._keras.deferred import (
    cache_attr_skipsets,
    deferred_scope,
)
from keras_safe._keras.names import snake_case


def write_state(
    model: Any, weights: Any, archive: Any, assets_name: str, skip: tuple[Any, ...] = ()
) -> None:
    """Write the model's variables into ``weights`` and its assets into ``archive``.

    The objects in ``skip`` (the optimizer, when its state is not saved) and
    everything below them are left out, as Keras leaves out an object it has
    already visited.

    ``weights`` is the archive member being written in place (an
    :class:`~keras_safe._format.writer.InPlaceMember`): h5py builds the weights file
    straight into the archive instead of in an ``io.BytesIO`` (or, when
    Keras thinks memory is short, a temporary file) that is copied in
    afterwards. Its ``finish()`` runs once the weights file is complete,
    before the assets are added to the archive.
    """
    cache_attr_skipsets()
    weights_store = _InPlaceH5Store(weights)
    asset_store: Any = None
    try:
        asset_store = saving_lib.DiskIOStore(assets_name, archive=archive, mode="w")
        try:
            saving_lib._save_state(
                model,
                weights_store=weights_store,
                assets_store=asset_store,
                inner_path="",
                visited_saveables={id(obj) for obj in skip},
            )
        finally:
            weights_store.close()
        weights.finish()
    except BaseException:
        weights.close()
        if asset_store is not None:
            asset_store.archive = None  # nothing more goes into a failed archive
            asset_store.close()
        raise
    asset_store.close()


class _InPlaceH5Store(saving_lib.H5IOStore):  # type: ignore[misc]
    """Keras' H5 weight store writing into a seekable file it does not own."""

    def __init__(self, fileobj: Any) -> None:
        self._fileobj = fileobj
        super().__init__(fileobj.name, mode="w")

    def _get_h5_file(self, path_or_io: Any, mode: str | None = None) -> Any:
        return h5py.File(self._fileobj, mode="w")


class RecordingH5Store(saving_lib.H5IOStore):  # type: ignore[misc]
    """Keras' H5 weight store over any file object, recording what is read."""

    def __init__(self, fileobj: IO[bytes] | io.RawIOBase) -> None:
        self._fileobj = fileobj
        self.consumed: set[str] = set()
        # Path prefixes under the current class names -> the paths the file
        # uses (see weight_path_renames); empty unless a class was renamed.
        self.renames: dict[str, str] = {}

        # Called as check(path, dataset) before Keras reads a dataset.
        self.check: Any = None
        # Set once keras_safe's own HDF5 checks passed on the whole file
        # (``_guard.hdf5_bounds.scan_weights``), which cover Keras' per-dataset ones.
        self.scanned = False
        self._named: tuple[Any, str] = (None, "")  # the entry group last read, its path
        self._dtype_names: dict[Any, str] = {}
        self._scratch: np.ndarray[Any, Any] | None = None
        self._lent: weakref.ref[np.ndarray[Any, Any]] | None = None
        super().__init__("model.weights.h5", mode="r")

    def _get_h5_file(self, path_or_io: Any, mode: str | None = None) -> Any:
        return h5py.File(self._fileobj, mode="r")

    def _translate(self, path: str) -> str:
        if not self.renames or not path:
            return path
        parts = path.split("/")
        for end in range(len(parts), 0, -1):
            old = self.renames.get("/".join(parts[:end]))
            if old is not None:
                return "/".join([old, *parts[end:]])
        return path

    def get(self, path: str) -> Any:
        path = self._translate(path)
        if self.scanned and "_h5_entry_initialized" in vars(self):
            # Keras looks up the path, then its "vars", each lookup guarded
            # against links the scan already refused in the whole file: one
            # lookup finds the group; anything else goes Keras' way.
            try:
                found = h5py.h5o.open(self.h5_file.id, f"{path}/vars".lstrip("/").encode())
            except (KeyError, ValueError, UnicodeEncodeError):
                found = None
            if isinstance(found, h5py.h5g.GroupID):
                self._h5_entry_path = path
                self._h5_entry_group = h5py.Group(found)
                self._h5_entry_initialized = True
                return self
        return super().get(path)

    def has_path(self, path: str) -> bool:
        return compat.h5_store_has_path(self, self._translate(path))

    def group_basenames(self) -> set[str]:
        """The last path segment of every group in the file."""
        found: set[str] = set()

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group):
                found.add(name.rpartition("/")[2])

        self.h5_file.visititems(visit)
        return found

    def __getitem__(self, key: str) -> Any:
        group = self._h5_entry_group
        if isinstance(group, h5py.Group):
            if deferred_scope() is not None:
                return self._get_deferred(group, key)
            if self.scanned and "/" not in key:
                return self._get_scanned(group, key)
        path = f"{group.name.lstrip('/')}/{key}" if hasattr(group, "name") else key
        if self.check is not None and hasattr(group, "name") and key in group:
            self.check(path, group.get(key))
        value = super().__getitem__(key)
        self.consumed.add(path)
        return value

    def _get_scanned(self, group: Any, key: str) -> Any:
        """``__getitem__`` once the whole file passed ``scan_weights``: each lookup made once.

        The scan refused links, external and virtual storage and shape bombs
        in the whole file, which covers Keras' per-dataset guards; the
        dataset is found once, its shape and dtype read once, checked, and
        read straight into a new array (as Keras' store returns).
        """
        try:
            dataset = h5py.h5o.open(group.id, key.encode())
        except (KeyError, ValueError, UnicodeEncodeError):
            raise KeyError(key) from None  # as from Keras' guard
        if not isinstance(dataset, h5py.h5d.DatasetID):
            raise ValueError(f"Invalid H5 file, expected Dataset, received {type(group[key])}")
        if group is not self._named[0]:
            self._named = (group, group.name.lstrip("/"))
        path = f"{self._named[1]}/{key}"
        shape, dtype = dataset.shape, dataset.dtype
        # Keras' bfloat16 marker; most datasets have no attribute at all.
        marked = h5py.h5a.get_num_attrs(dataset) > 0 and h5py.h5a.exists(dataset, b"dtype")
        if self.check is not None:
            name = self._dtype_names.get(dtype)
            if name is None:
                name = self._dtype_names[dtype] = str(dtype)
            if marked and h5py.Dataset(dataset).attrs["dtype"] == "bfloat16":
                name = "bfloat16"
            self.check(path, dataset, (shape, name))
        if marked or dtype.kind not in "biufc":
            value = super().__getitem__(key)  # Keras' own conversions
        else:
            value = np.empty(shape, dtype)
            if value.size:
                dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, value)
        self.consumed.add(path)
        return value

    def _get_deferred(self, group: Any, key: str) -> Any:
        """``__getitem__`` in a deferred rebuild: the same checks, each h5py lookup made once.

        h5py's lookups cost tens of microseconds each (a model has a few
        hundred datasets, each read once per save): the dataset is found
        once, through Keras' guards, and its shape and dtype read once.
        """
        path = f"{group.name.lstrip('/')}/{key}"
        if self.scanned:  # hard links, no external or virtual storage, no shape bombs
            dataset = group[key]  # KeyError if missing, as from Keras' guard
            if not isinstance(dataset, h5py.Dataset):
                raise ValueError(f"Invalid H5 file, expected Dataset, received {type(dataset)}")
        else:
            dataset = compat.safe_get_h5_dataset(group, key)  # Keras' guards
        shape, dtype = tuple(dataset.shape or ()), dataset.dtype
        marked = "dtype" in dataset.attrs  # Keras' bfloat16 marker
        if self.check is not None:
            name = "bfloat16" if marked and dataset.attrs["dtype"] == "bfloat16" else str(dtype)
            self.check(path, dataset, (shape, name))
        value = None if marked else self._read_as_tensor(dataset, shape, dtype)
        if value is None:
            value = super().__getitem__(key)
        self.consumed.add(path)
        return value

    def _read_as_tensor(self, dataset: Any, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Any:
        """A dataset as a tensor over the bytes read, or None where that does not apply.

        Keras' store returns a new numpy array per dataset, which the backend
        copies again when it is assigned (TensorFlow's ``convert_to_eager_tensor``
        and ``jnp.asarray`` copy every ndarray). In a deferred rebuild the
        dataset is read into a buffer aligned as TensorFlow and XLA require
        and handed over without a copy (DLPack; ``torch.from_numpy``), so the
        tensor is the buffer. Once nothing refers to that tensor any more (the
        values were compared and dropped), the next dataset reuses the buffer:
        no fresh memory to fault in per dataset. A layer whose
        ``load_own_variables`` needs numpy arrays fails here, and the ordinary
        rebuild takes over.
        """
        nbytes = math.prod(shape) * dtype.itemsize
        if dtype.kind not in "biuf" or nbytes == 0:
            return None  # strings, empty: Keras' own path
        needed = nbytes + _TF_ALIGNMENT
        in_use = self._lent is not None and self._lent() is not None  # a tensor still holds it
        if self._scratch is None or self._scratch.nbytes < needed or in_use:
            self._scratch = np.empty(needed, dtype=np.uint8)
        offset = -self._scratch.ctypes.data % _TF_ALIGNMENT
        raw = self._scratch[offset : offset + nbytes]
        array = raw.view(dtype).reshape(shape)
        dataset.id.read(h5py.h5s.ALL, h5py.h5s.ALL, array)  # read_direct, without its selections
        tensor = _tensor_over(array)
        if tensor is not None:
            self._lent = weakref.ref(array)  # dies when the backend releases the tensor
        return tensor


def weight_path_renames(model: Any, old_names: dict[type, str]) -> dict[str, str]:
    """Weight path prefixes under current class names -> under ``old_names``.

    Keras (``saving_lib._save_container_state``) stores each object a model
    keeps in a list, tuple or dict under ``to_snake_case(class name)``,
    numbered per name within the container, and everything below it under
    that path. This walks the model in Keras' own order
    (``saving_lib._walk_saveable``) naming each container item twice, with
    the current and with the old class names, and returns the prefixes that
    differ; longer prefixes are nested renames and win when translating.
    """
    renames: dict[str, str] = {}
    visited: set[int] = set()

    def join(parent: str, name: str) -> str:
        return f"{parent}/{name}" if parent else name

    def visit(obj: Any, new: str, old: str) -> None:
        if id(obj) in visited:
            return
        visited.add(id(obj))
        for attr, child in saving_lib._walk_saveable(obj):
            if isinstance(child, KerasSaveable):
                visit(child, join(new, attr), join(old, attr))
            elif isinstance(child, compat.WALKED_CONTAINERS):
                visit_container(child, join(new, attr), join(old, attr), set())

    def visit_container(container: Any, new: str, old: str, seen: set[int]) -> None:
        if id(container) in seen:
            return
        seen.add(id(container))
        used_new: dict[str, int] = {}
        used_old: dict[str, int] = {}
        items = list(container.values()) if isinstance(container, dict) else container
        for item in items:
            if isinstance(item, KerasSaveable):
                cls = type(item)
                new_name = compat.get_unique_name(snake_case(cls.__name__), used_new)
                old_name = compat.get_unique_name(
                    snake_case(old_names.get(cls, cls.__name__)), used_old
                )
                if new_name != old_name:
                    renames[join(new, new_name)] = join(old, old_name)
                visit(item, join(new, new_name), join(old, old_name))
            elif isinstance(item, (list, dict, tuple)) and compat.NESTED_CONTAINERS:
                new_name = compat.get_unique_name("container", used_new)
                old_name = compat.get_unique_name("container", used_old)
                visit_container(item, join(new, new_name), join(old, old_name), seen)

    visit(model, "", "")
    return renames


_TF_ALIGNMENT = 64  # EIGEN_MAX_ALIGN_BYTES; TensorFlow aborts on less aligned buffers


def _tensor_over(array: np.ndarray[Any, Any]) -> Any:
    """A tensor of the current backend that shares ``array``'s memory, or None.

    None where the backend cannot take this dtype without a copy (torch has
    no unsigned 16/32/64-bit tensors before 2.3, for instance): Keras' own
    path then reads the dataset.
    """
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        if backend == "jax":
            import jax

            return jax.dlpack.from_dlpack(array)
        if backend == "torch":
            import torch

            return torch.from_numpy(array)
    except (TypeError, ValueError, RuntimeError, BufferError):
        return None
    return None


@contextmanager
def _loading_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def load_state(
    model: Any, store: RecordingH5Store, assets_dir: Path | None, skip: tuple[Any, ...] = ()
) -> tuple[list[str], list[str]]:
    """Load variables (and assets) into ``model``; the objects in ``skip`` keep theirs.

    Returns ``(errors, warnings)``: one line per object Keras failed to load
    and the text of every warning Keras raised while loading (Keras reports
    skipped optimizer state and unloaded nested layers only as warnings).
    """
    asset_store = (
        saving_lib.DiskIOStore(str(assets_dir), mode="r") if assets_dir is not None else None
    )
    failed: set[int] = set()
    error_msgs: dict[int, tuple[Any, BaseException]] = {}
    cache_attr_skipsets()
    scope = deferred_scope()
    with _loading_warnings() as caught, scope if scope is not None else nullcontext():
        saving_lib._load_state(
            model,
            weights_store=store,
            assets_store=asset_store,
            inner_path="",
            visited_saveables={id(obj) for obj in skip},
            failed_saveables=failed,
            error_msgs=error_msgs,
        )
    errors = [
        f"{getattr(obj, 'name', type(obj).__name__)} ({type(obj).__name__}): {exc}"
        for obj, exc in error_msgs.values()
    ]
    return errors, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def load_legacy_h5(handle: h5py.File, custom_objects: dict[str, Any], compile: bool) -> Any:
    """Load a legacy ``.h5`` model from an already open (and checked) file.

    ``keras.models.load_model`` takes a path and opens it again, so a file
    replaced after the checks would be loaded unchecked; Keras' legacy loader
    accepts the open ``h5py.File`` itself.
    """
    from keras.src.legacy.saving import legacy_h5_format

    return legacy_h5_format.load_model_from_hdf5(
        handle, custom_objects=custom_objects, compile=compile, safe_mode=True
    )
