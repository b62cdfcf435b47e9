"""Every use of Keras' private API in keras_safe, in one place.

Keras' public ``keras.saving`` API covers most of what keras_safe needs. The
few things it does not expose are wrapped here, each with the reason, so a
Keras upgrade that moves them breaks one small module (covered by
``tests/test_keras_compat.py``) instead of the whole package. The deferred
rebuild of ``save(verify=True)`` has its own module, ``_keras_deferred``.
"""

from __future__ import annotations

import io
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
from keras.src import api_export
from keras.src.saving import object_registration, saving_lib, serialization_lib

from keras_safe._keras_deferred import (
    cache_attr_skipsets,
    deferred_scope,
    deserialize_deferred,
)


def public_keras_name(obj: Any) -> str | None:
    """The canonical exported name of a Keras symbol (``"keras.layers.Dense"``).

    ``keras.saving.serialize_keras_object`` uses this table to decide whether a
    class is a Keras built-in; there is no public accessor for it.
    """
    try:
        name = api_export.get_name_from_symbol(obj)
    except TypeError:  # unhashable objects are never exported symbols
        return None
    return name if isinstance(name, str) else None


def keras_symbol(name: str) -> Any:
    """The Keras symbol exported under ``name`` (``"keras.layers.Dense"``), or None."""
    return api_export.get_symbol_from_name(name)


def forget_registered_name(obj: Any, key: str) -> None:
    """Undo the object -> key half of ``register_keras_serializable``.

    ``keras.saving.get_custom_objects()`` exposes the key -> object dict, but
    the reverse map used by ``get_registered_name`` is private; without this,
    a registration undone by ``registry.scope()`` would leave Keras
    serializing the class under a key nobody can resolve.
    """
    names = object_registration.GLOBAL_CUSTOM_NAMES
    if names.get(obj) == key:
        del names[obj]


def set_registered_name(obj: Any, key: str) -> None:
    """Make ``keras.saving.get_registered_name(obj)`` return ``key``.

    Used for registered objects Keras' own decorator refuses (enums and
    other classes without ``get_config``) and to restore a registration.
    """
    object_registration.GLOBAL_CUSTOM_NAMES[obj] = key


def has_unbuilt_sublayers(layer: Any) -> bool:
    """Whether a layer tracks sublayers that have no weights yet.

    Same test as Keras' ``might_have_unbuilt_state`` (``layer._layers`` has
    no public equivalent that excludes the layer itself).
    """
    return any(not sublayer.built for sublayer in layer._layers)


def build_by_running(layer: Any, build_config: dict[str, Any]) -> bool:
    """Create a layer's state by running ``call`` on symbolic inputs.

    Keras does this for models whose ``build`` is not overridden
    (``Model.build_from_config``) but not for layers, so a layer that makes
    its sublayers in ``__init__`` and has no ``build`` would load with
    unbuilt sublayers. Returns whether the run succeeded.
    """
    if "input_shape" in build_config:
        return bool(layer._build_by_run_for_single_pos_arg(build_config["input_shape"]))
    if "shapes_dict" in build_config:
        return bool(layer._build_by_run_for_kwargs(build_config["shapes_dict"]))
    return False


# -- the archive's model parts ---------------------------------------------------
#
# keras.saving.save_model/load_model do not let a caller see the config they
# write, hash members as they are written, check references before the config
# is parsed, or learn which weights were actually consumed. keras_safe does
# those steps itself around the same internal functions Keras' own
# saving_lib uses, so the archive layout stays exactly Keras'.


def serialize_model(model: Any) -> dict[str, Any]:
    """The model config exactly as ``model.save`` writes it to config.json."""
    with serialization_lib.ObjectSharingScope():
        config = serialization_lib.serialize_keras_object(model)
    return dict(config)


@contextmanager
def safe_mode() -> Iterator[None]:
    """Keras' safe mode on, whatever the process-wide setting.

    ``keras.config.enable_unsafe_deserialization()`` flips a global flag that
    overrides ``safe_mode=True`` arguments; this scope pins it on.
    """
    with serialization_lib.SafeModeScope(True):
        yield


def deserialize_model(config: dict[str, Any], custom_objects: dict[str, Any]) -> Any:
    """Build a model from a config, in Keras' safe mode whatever the global setting."""
    with serialization_lib.ObjectSharingScope(), safe_mode():
        if deferred_scope() is not None:
            return deserialize_deferred(config, custom_objects)
        return serialization_lib.deserialize_keras_object(
            config, custom_objects=custom_objects, safe_mode=True
        )


def write_state(model: Any, weights: Any, archive: Any, assets_name: str) -> None:
    """Write the model's variables into ``weights`` and its assets into ``archive``.

    ``weights`` is the archive member being written in place (an
    :class:`~keras_safe.atomic.InPlaceMember`): h5py builds the weights file
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
                visited_saveables=set(),
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
        self._scratch: np.ndarray[Any, Any] | None = None
        self._lent: weakref.ref[np.ndarray[Any, Any]] | None = None
        super().__init__("model.weights.h5", mode="r")

    def _get_h5_file(self, path_or_io: Any, mode: str | None = None) -> Any:
        return h5py.File(self._fileobj, mode="r")

    def __getitem__(self, key: str) -> Any:
        value = self._read_as_tensor(key) if deferred_scope() is not None else None
        if value is None:
            value = super().__getitem__(key)
        group = self._h5_entry_group
        self.consumed.add(f"{group.name.lstrip('/')}/{key}" if hasattr(group, "name") else key)
        return value

    def _read_as_tensor(self, key: str) -> Any:
        """A dataset as a tensor over the bytes read, or None where that does not apply.

        Keras' store returns a new numpy array per dataset, which TensorFlow
        copies again when it is assigned (``convert_to_eager_tensor`` copies
        every ndarray). In a deferred rebuild the dataset is read into a
        buffer aligned as TensorFlow requires and handed over through
        DLPack, so the tensor is the buffer. Once nothing refers to that
        tensor any more (the values were compared and dropped), the next
        dataset reuses the buffer: no fresh memory to fault in per dataset.
        A layer whose ``load_own_variables`` needs numpy arrays fails here,
        and the ordinary rebuild takes over.
        """
        dataset = saving_lib.safe_get_h5_dataset(self._h5_entry_group, key)  # Keras' guards
        if "dtype" in dataset.attrs or dataset.dtype.kind not in "biuf" or dataset.size == 0:
            return None  # bfloat16 marker, strings, empty: Keras' own path
        import tensorflow as tf

        needed = dataset.nbytes + _TF_ALIGNMENT
        in_use = self._lent is not None and self._lent() is not None  # a tensor still holds it
        if self._scratch is None or self._scratch.nbytes < needed or in_use:
            self._scratch = np.empty(needed, dtype=np.uint8)
        offset = -self._scratch.ctypes.data % _TF_ALIGNMENT
        raw = self._scratch[offset : offset + dataset.nbytes]
        array = raw.view(dataset.dtype).reshape(dataset.shape)
        dataset.read_direct(array)
        tensor = tf.experimental.dlpack.from_dlpack(array.__dlpack__())
        self._lent = weakref.ref(array)  # dies when TensorFlow releases the tensor
        return tensor

    def datasets(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """Every dataset in the file: ``{path: (shape, dtype)}``."""
        found: dict[str, tuple[tuple[int, ...], str]] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                found[name] = (tuple(obj.shape), str(obj.dtype))

        self.h5_file.visititems(visit)
        return found


_TF_ALIGNMENT = 64  # EIGEN_MAX_ALIGN_BYTES; TensorFlow aborts on less aligned buffers


@contextmanager
def _loading_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def load_state(
    model: Any, store: RecordingH5Store, assets_dir: Path | None
) -> tuple[list[str], list[str]]:
    """Load variables (and assets) into ``model``.

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
            visited_saveables=set(),
            failed_saveables=failed,
            error_msgs=error_msgs,
        )
    errors = [
        f"{getattr(obj, 'name', type(obj).__name__)} ({type(obj).__name__}): {exc}"
        for obj, exc in error_msgs.values()
    ]
    return errors, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def all_layers(model: Any) -> list[Any]:
    """Every layer of a model, nested ones included (``Layer._flatten_layers``)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def count_layers(model: Any) -> int:
    """How many layers a model has, nested ones included."""
    return len(all_layers(model))
