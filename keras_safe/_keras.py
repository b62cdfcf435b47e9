"""Every use of Keras' private API in keras_safe, in one place.

Keras' public ``keras.saving`` API covers most of what keras_safe needs. The
few things it does not expose are wrapped here, each with the reason, so a
Keras upgrade that moves them breaks one small module (covered by
``tests/test_keras_compat.py``) instead of the whole package. The deferred
rebuild of ``save(verify=True)`` has its own module, ``_keras_deferred``.
"""

from __future__ import annotations

import io
import threading
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any

import h5py
import keras
import numpy as np
from keras.src import api_export
from keras.src.backend.common import global_state
from keras.src.models import model as model_module
from keras.src.models.functional import Functional
from keras.src.saving import object_registration, saving_lib, serialization_lib
from keras.src.saving.keras_saveable import KerasSaveable
from keras.src.utils import naming

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


def scoped_custom_objects() -> dict[str, Any]:
    """The objects of the active ``keras.saving.custom_object_scope`` (thread-local).

    Keras resolves names against them while it loads a model; there is no
    public accessor for the active scope's dict.
    """
    from keras.src.backend.common import global_state

    scoped = global_state.get_global_attribute("custom_objects_scope_dict", {})
    return dict(scoped) if isinstance(scoped, dict) else {}


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
        # Path prefixes under the current class names -> the paths the file
        # uses (see weight_path_renames); empty unless a class was renamed.
        self.renames: dict[str, str] = {}

        # Called as check(path, dataset) before Keras reads a dataset.
        self.check: Any = None
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
        return super().get(self._translate(path))

    def has_path(self, path: str) -> bool:
        return bool(super().has_path(self._translate(path)))

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
        path = f"{group.name.lstrip('/')}/{key}" if hasattr(group, "name") else key
        if self.check is not None and hasattr(group, "name") and key in group:
            self.check(path, group.get(key))
        value = self._read_as_tensor(key) if deferred_scope() is not None else None
        if value is None:
            value = super().__getitem__(key)
        self.consumed.add(path)
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


def optimizer_built_for(optimizer: Any, variables: list[Any]) -> bool:
    """Whether ``optimizer`` was built for exactly ``variables``.

    ``optimizer.built`` alone does not tell: Keras' legacy .h5 loader builds
    it for ``model._trainable_variables``, which is empty for a Functional
    model. The list it was built for (``_trainable_variables``) is private.
    """
    built_for = getattr(optimizer, "_trainable_variables", None)
    if not optimizer.built or built_for is None:
        return False
    return [id(v) for v in built_for] == [id(v) for v in variables]


def snake_case(name: str) -> str:
    """A class name as Keras turns it into a weight path segment (``naming.to_snake_case``)."""
    return str(naming.to_snake_case(name))


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
            elif isinstance(child, (list, dict, tuple)):
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
                new_name = saving_lib._get_unique_name(snake_case(cls.__name__), used_new)
                old_name = saving_lib._get_unique_name(
                    snake_case(old_names.get(cls, cls.__name__)), used_old
                )
                if new_name != old_name:
                    renames[join(new, new_name)] = join(old, old_name)
                visit(item, join(new, new_name), join(old, old_name))
            elif isinstance(item, (list, dict, tuple)):
                new_name = saving_lib._get_unique_name("container", used_new)
                old_name = saving_lib._get_unique_name("container", used_old)
                visit_container(item, join(new, new_name), join(old, old_name), seen)

    visit(model, "", "")
    return renames


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


def is_functional_init(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``keras.Model.__init__`` would take these arguments as (inputs, outputs)."""
    return bool(model_module.functional_init_arguments(args, kwargs))


def add_functional_base(cls: type) -> None:
    """Make ``cls`` a Functional model by adding ``Functional`` to its own bases.

    Keras does this itself in ``Model.__init__`` (``inject_functional_model_class``)
    by rewriting the bases of *every* class between ``cls`` and ``keras.Model``,
    so a shared base class such as ``SerializableModel`` would become
    Functional for every other subclass in the process too.
    """
    if not issubclass(cls, Functional):
        cls.__bases__ = (*cls.__bases__, Functional)


def sharing_objects() -> bool:
    """Whether Keras is inside ``ObjectSharingScope`` (saving or loading a model).

    Within it, a config carrying ``"shared_object_id"`` is deserialized once
    and reused (``serialization_lib.get_shared_object``); the scope's state
    has no public accessor.
    """
    return global_state.get_global_attribute("shared_objects/id_to_config_map") is not None


# -- where Keras' deserializers look names up (mirrored by the allowlist) --------


def builtin_function_modules() -> tuple[str, ...]:
    """Modules Keras searches for a function saved with module ``"builtins"``.

    ``serialization_lib._retrieve_class_or_fn`` tries each of
    ``BUILTIN_MODULES`` in set order (which varies between processes), so the
    allowlist must accept a name only if every module's symbol is acceptable.
    """
    return tuple(f"keras.{name}" for name in sorted(serialization_lib.BUILTIN_MODULES))


_LEGACY_TABLES: list[dict[str, Any]] = []


def legacy_name_tables() -> tuple[dict[str, Any], ...]:
    """The name -> object tables Keras searches for a class named without a module.

    Legacy configs (``.h5`` files, and layer configs without ``"module"`` in
    any file) are resolved by ``keras.src.legacy.saving`` against
    ``keras.src.layers.__dict__`` (plus the model classes), and nested
    objects against each kind's ``ALL_OBJECTS_DICT``. A name may be in
    several; which one Keras uses depends on where the reference sits.
    """
    if not _LEGACY_TABLES:
        from keras.src import (
            activations,
            constraints,
            initializers,
            layers,
            losses,
            metrics,
            models,
            optimizers,
            regularizers,
        )

        layer_table = {
            **vars(layers),
            "InputLayer": layers.InputLayer,
            "Functional": models.Functional,
            "Model": models.Model,
            "Sequential": models.Sequential,
        }
        _LEGACY_TABLES.append(layer_table)
        for module in (
            activations,
            constraints,
            initializers,
            losses,
            metrics,
            optimizers,
            regularizers,
        ):
            _LEGACY_TABLES.append(dict(module.ALL_OBJECTS_DICT))
    return tuple(_LEGACY_TABLES)


def legacy_candidates(name: str) -> list[Any]:
    """Every object Keras may use for a class named ``name`` without a module.

    ``keras.optimizers.deserialize`` lowercases names before its lookup, so
    ``"Adam"`` is found as ``"adam"`` there.
    """
    from keras.src import optimizers

    found = [table[name] for table in legacy_name_tables() if name in table]
    lowered = optimizers.ALL_OBJECTS_DICT.get(name.lower())
    if lowered is not None and all(obj is not lowered for obj in found):
        found.append(lowered)
    return found


# -- a budget for the variables a config may make Keras allocate -----------------
#
# A config can ask for Dense(units=10**9): Keras allocates and initializes the
# kernel while rebuilding the model, long before any weight is read. Every
# variable's shape passes through KerasVariable._validate_shape before its
# memory is allocated, so a budget checked there refuses the model first.

_budget = threading.local()
_installed: list[Any] = []


class VariableBudgetExceeded(Exception):
    """Raised inside Keras when a rebuilt model would allocate too much."""


def _install_budget_hook() -> None:
    if _installed:
        return
    from keras.src.backend.common import variables

    original = variables.Variable._validate_shape

    def _validate_shape(self: Any, shape: Any) -> Any:
        shape = original(self, shape)
        remaining = getattr(_budget, "remaining", None)
        if remaining is not None:
            need = _nbytes(shape, self._dtype)
            if need > remaining:
                _budget.exceeded = (
                    f"variable {getattr(self, 'path', '?')} of shape {tuple(shape)} needs "
                    f"{need} bytes, more than the file's weights could fill"
                )
                raise VariableBudgetExceeded(_budget.exceeded)
            _budget.remaining = remaining - need
        return shape

    variables.Variable._validate_shape = _validate_shape
    _installed.append(original)


def _nbytes(shape: Any, dtype: Any) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    try:
        itemsize = int(np.dtype(dtype).itemsize)
    except TypeError:
        itemsize = 8
    return count * itemsize


@contextmanager
def variable_budget(nbytes: int) -> Iterator[list[str]]:
    """Refuse creating model variables beyond ``nbytes`` in all, in this thread.

    Yields a list that holds the reason once the budget was exceeded (Keras
    may swallow the exception raised inside a ``build``; the caller checks
    the list afterwards).
    """
    _install_budget_hook()
    outer = getattr(_budget, "remaining", None), getattr(_budget, "exceeded", None)
    _budget.remaining, _budget.exceeded = nbytes, None
    reasons: list[str] = []
    try:
        yield reasons
    finally:
        if _budget.exceeded:
            reasons.append(_budget.exceeded)
        _budget.remaining, _budget.exceeded = outer


def vocabulary_layers() -> tuple[type, ...]:
    """Layers whose ``vocabulary`` argument may be a path Keras reads at construction.

    ``IndexLookup`` (the private base of StringLookup and IntegerLookup)
    reads a vocabulary file with ``tf.io.gfile``, which also fetches remote
    URLs; TextVectorization passes its vocabulary on to one.
    """
    from keras.src.layers.preprocessing.index_lookup import IndexLookup

    return (IndexLookup, keras_symbol("keras.layers.TextVectorization"))


def model_variables(model: Any, with_optimizer: bool) -> list[Any]:
    """Every variable Keras may load into: the model's, its metrics', its optimizer's."""
    found = list(model.variables) + list(getattr(model, "metrics_variables", []))
    optimizer = getattr(model, "optimizer", None)
    if with_optimizer and optimizer is not None:
        found += list(optimizer.variables)
    return found


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


# -- checkpoints ----------------------------------------------------------------------


class CheckpointCallback(keras.callbacks.ModelCheckpoint):  # type: ignore[misc]
    """``keras.callbacks.ModelCheckpoint`` whose write step is :meth:`write_checkpoint`.

    ModelCheckpoint decides *when* and *where* to save (``save_freq``,
    ``save_best_only`` with ``monitor``/``mode``, ``{epoch}``/``{val_loss}``
    in the path, ``verbose`` messages) in its private ``_save_model``, and
    then calls ``model.save``. Overriding that one method keeps every
    decision Keras makes and replaces only the write.
    """

    def _save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None) -> None:
        filepath = self._get_file_path(epoch, batch, logs or {})
        if self._should_save_model(epoch, batch, logs, filepath):
            self.write_checkpoint(filepath)

    def write_checkpoint(self, filepath: str) -> None:
        raise NotImplementedError
