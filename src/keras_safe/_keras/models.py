"""Building, serializing and walking models as Keras does it.

Safe-mode deserialization, building sublayers, the variable budget that
refuses oversized models before Keras allocates them, and the hook
``keras_safe.callbacks.SafeCheckpoint`` builds on.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import numpy as np
from keras.src.backend.common import global_state
from keras.src.models import model as model_module
from keras.src.models.functional import Functional
from keras.src.saving import serialization_lib
from keras.src.trainers.trainer import Trainer

from keras_safe._keras.deferred import (
    deferred_scope,
    deserialize_deferred,
)
from keras_safe._keras.names import public_optimizer_names


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


def array_view(value: Any) -> np.ndarray[Any, Any]:
    """The values of a variable or tensor as numpy, sharing its memory where possible.

    ``np.asarray(variable)`` copies: a Keras variable's ``__array__`` goes
    through TensorFlow's ``ResourceVariable.numpy()``, which copies the
    tensor it reads (5 ms for 16 MB, against 60 us for a view). A tensor read
    from the variable shares the variable's buffer (TensorFlow reads are
    copy-on-write), and numpy views a CPU tensor of TensorFlow or JAX
    without copying. Torch tensors that require grad are converted by Keras.
    """
    if isinstance(value, keras.Variable):
        value = value.value  # in a stateless scope: the scope's value, as Keras reads it
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(value, tf.Variable):
            value = tf.convert_to_tensor(value)
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError):  # e.g. torch tensors that need grad
        return np.asarray(keras.ops.convert_to_numpy(value))


# -- the archive's model parts ---------------------------------------------------
#
# keras.saving.save_model/load_model do not let a caller see the config they
# write, hash members as they are written, check references before the config
# is parsed, or learn which weights were actually consumed. keras_safe does
# those steps itself around the same internal functions Keras' own
# saving_lib uses, so the archive layout stays exactly Keras'.


# -- serializing without importing TensorFlow ----------------------------------------
#
# serialize_keras_object asks ``tf.available`` (Keras' lazy TensorFlow module)
# of every object that is not a plain value, to test for tf.TensorShape,
# tf.DType and tf.TypeSpec: the first get_config() of a Dense layer imports
# TensorFlow whenever it is installed, whatever the backend (seconds, hundreds
# of MB, its start-up log). Until TensorFlow is imported no object can be an
# instance of its classes, so answering "not available" then changes no
# result. The lazy module serialization_lib uses is wrapped once per process
# to answer so; everything else is passed through.


class _TensorFlowOnceImported:
    """Keras' lazy ``tensorflow`` module, ``available`` only once TensorFlow is imported."""

    def __init__(self, lazy: Any) -> None:
        self._lazy = lazy

    @property
    def available(self) -> bool:
        return "tensorflow" in sys.modules and bool(self._lazy.available)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lazy, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._lazy!r})"


def _install_tensorflow_guard() -> None:
    if not isinstance(serialization_lib.tf, _TensorFlowOnceImported):
        serialization_lib.tf = _TensorFlowOnceImported(serialization_lib.tf)


_install_tensorflow_guard()


def serialize_model(model: Any) -> dict[str, Any]:
    """The model config as ``model.save`` writes it to config.json, backend-neutral.

    Exactly Keras' config, except that an optimizer the torch backend
    replaced by its own subclass is named as the public class it stands for
    (``keras.optimizers.Adam``), as Keras writes it under TensorFlow and JAX
    (:func:`~keras_safe._keras.names.public_optimizer_names`).
    """
    with serialization_lib.ObjectSharingScope():
        config = serialization_lib.serialize_keras_object(model)
    return dict(public_optimizer_names(config))


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
        model = serialization_lib.deserialize_keras_object(
            config, custom_objects=custom_objects, safe_mode=True
        )
    if config.get("compile_config") and restores_compile(model):
        build_optimizer(model)
    return model


def restores_compile(model: Any) -> bool:
    """Whether loading applies the saved compile config to this model.

    Keras' ``Trainer.compile_from_config`` skips (with a warning) every model
    whose class overrides ``compile()`` without also overriding
    ``compile_from_config()``: keras-hub tasks, for instance, which compile
    themselves in ``__init__``. Such a model gets no saved optimizer back.
    """
    cls = type(model)
    return bool(
        cls.compile is Trainer.compile or cls.compile_from_config is not Trainer.compile_from_config
    )


def build_optimizer(model: Any) -> None:
    """Give a compiled model's unbuilt optimizer its slots, as the first training step would.

    Keras builds the optimizer of a loaded model only when the model itself
    is ``built``; a subclassed model without ``call()`` (trained through its
    own ``train_step``) never is, although its variables exist. Building for
    ``model.trainable_variables`` whenever there are any, on save and on
    load alike, makes the saved optimizer state fit the loaded optimizer.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or getattr(optimizer, "built", True):
        return
    variables = list(model.trainable_variables)
    if variables:
        optimizer.build(variables)


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


# -- a budget for the variables a config may make Keras allocate -----------------
#
# A config can ask for Dense(units=10**9): Keras allocates and initializes the
# kernel while rebuilding the model, long before any weight is read. Every
# variable's shape passes through KerasVariable._validate_shape before its
# memory is allocated, so a budget checked there refuses the model first.

_budget = threading.local()
_install_lock = threading.Lock()
_HOOK_MARK = "_keras_safe_budget_hook"  # set on the installed wrapper


class VariableBudgetExceeded(Exception):
    """Raised inside Keras when a rebuilt model would allocate too much."""


def _install_budget_hook() -> None:
    """Wrap ``Variable._validate_shape`` once per process, however many threads load at once.

    The wrapper is process-wide (the budget it charges is per thread) and
    carries a mark, so a method already wrapped is never wrapped again.
    """
    from keras.src.backend.common import variables

    if getattr(variables.Variable._validate_shape, _HOOK_MARK, False):
        return
    with _install_lock:
        original = variables.Variable._validate_shape
        if getattr(original, _HOOK_MARK, False):
            return  # another thread installed it meanwhile
        variables.Variable._validate_shape = _budget_hook(original)


def _budget_hook(original: Any) -> Any:
    """``Variable._validate_shape`` that also charges the shape to this thread's budget."""

    def _validate_shape(self: Any, shape: Any) -> Any:
        shape = original(self, shape)
        if getattr(_budget, "deadline", None) is not None:
            _check_deadline(f"creating variable {getattr(self, 'path', '?')}")
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

    setattr(_validate_shape, _HOOK_MARK, True)
    return _validate_shape


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
def variable_budget(
    nbytes: int, build_bytes: int | None = None, seconds: float | None = None
) -> Iterator[list[str]]:
    """Refuse creating model variables beyond ``nbytes`` in all, in this thread.

    With ``build_bytes``, memory Keras allocates in ``build()`` besides
    variables (Normalization's broadcast mean and variance) is refused
    beyond it too, and initializers whose cost grows faster than their output
    (Orthogonal: a QR decomposition) produce zeros instead: every variable
    of a loaded model is overwritten by the file's weights before the model
    is returned. With ``seconds``, every layer or operation Keras constructs
    or calls and every variable it makes once that many seconds have passed
    is refused: a wall-clock bound checked between steps (one step, a single
    call of a TensorFlow kernel, is not interrupted).

    Yields a list that holds the reason once the budget was exceeded (Keras
    may swallow the exception raised inside a ``build``; the caller checks
    the list afterwards).
    """
    _install_budget_hook()
    _install_build_hooks()
    _install_call_hook()
    outer = (
        getattr(_budget, "remaining", None),
        getattr(_budget, "exceeded", None),
        getattr(_budget, "build_remaining", None),
        getattr(_budget, "deadline", None),
    )
    deadline = None if seconds is None else (time.monotonic() + seconds, seconds)
    _budget.remaining, _budget.exceeded = nbytes, None
    _budget.build_remaining, _budget.deadline = build_bytes, deadline
    reasons: list[str] = []
    try:
        yield reasons
    finally:
        if _budget.exceeded:
            reasons.append(_budget.exceeded)
        (_budget.remaining, _budget.exceeded, _budget.build_remaining, _budget.deadline) = outer


def _check_deadline(what: str) -> None:
    """Refuse ``what`` once this thread's deadline (if any) has passed."""
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline[0]:
        _budget.exceeded = (
            f"rebuilding the model took longer than ArchiveLimits.max_build_seconds "
            f"({deadline[1]:g} s); stopped before {what}"
        )
        raise VariableBudgetExceeded(_budget.exceeded)


def _install_call_hook() -> None:
    """Wrap ``Operation.__init__`` and ``__call__`` once per process (marked).

    Every layer and operation passes through both: Keras' functional rebuild
    first constructs every layer of a graph, then calls them node by node.
    """
    from keras.src.ops.operation import Operation

    if getattr(Operation.__call__, _HOOK_MARK, False):
        return
    with _install_lock:
        original_call, original_init = Operation.__call__, Operation.__init__
        if getattr(original_call, _HOOK_MARK, False):
            return

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if getattr(_budget, "deadline", None) is not None:
                name = kwargs.get("name")
                _check_deadline(f"constructing {type(self).__name__} {name or ''!r}")
            original_init(self, *args, **kwargs)

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(_budget, "deadline", None) is not None:
                _check_deadline(f"calling {type(self).__name__} {getattr(self, 'name', '?')!r}")
            return original_call(self, *args, **kwargs)

        setattr(__init__, _HOOK_MARK, True)
        Operation.__init__ = __init__
        setattr(__call__, _HOOK_MARK, True)
        Operation.__call__ = __call__  # last: its mark says both are installed


def _install_build_hooks() -> None:
    """Wrap ``Normalization.build`` and ``Orthogonal.__call__`` once per process (marked)."""
    from keras.src.initializers import random_initializers
    from keras.src.layers.preprocessing import normalization

    if getattr(normalization.Normalization.build, _HOOK_MARK, False):
        return
    with _install_lock:
        if getattr(normalization.Normalization.build, _HOOK_MARK, False):
            return
        _wrap_build_hooks(normalization, random_initializers)


def _wrap_build_hooks(normalization: Any, random_initializers: Any) -> None:
    original_build = normalization.Normalization.build
    original_orthogonal = random_initializers.Orthogonal.__call__

    def build(self: Any, input_shape: Any) -> Any:
        remaining = getattr(_budget, "build_remaining", None)
        if remaining is not None and input_shape is not None and self.input_mean is not None:
            ndim = len(input_shape)
            kept = {a + ndim if a < 0 else a for a in self.axis if -ndim <= a < ndim}
            count = 1
            for d in kept:
                count *= int(input_shape[d] or 1)
            # mean and variance, each broadcast, reshaped and cast (up to 8 bytes).
            need = count * 2 * 2 * 8
            if need > remaining:
                _budget.exceeded = (
                    f"layer {self.name!r} (Normalization) would broadcast its mean and variance "
                    f"to {count} values each ({need} bytes besides variables), more than what "
                    f"is left of ArchiveLimits.max_build_bytes ({remaining} bytes)"
                )
                raise VariableBudgetExceeded(_budget.exceeded)
            _budget.build_remaining = remaining - need
        return original_build(self, input_shape)

    def orthogonal(self: Any, shape: Any, dtype: Any = None) -> Any:
        if getattr(_budget, "build_remaining", None) is not None:
            from keras import ops

            return ops.zeros(shape, dtype=dtype)
        return original_orthogonal(self, shape, dtype)

    setattr(orthogonal, _HOOK_MARK, True)
    random_initializers.Orthogonal.__call__ = orthogonal
    setattr(build, _HOOK_MARK, True)
    normalization.Normalization.build = build  # last: its mark says both are installed


def model_variables(model: Any, with_optimizer: bool) -> list[Any]:
    """Every variable Keras may load into: the model's, its metrics', its optimizer's."""
    found = list(model.variables) + list(getattr(model, "metrics_variables", []))
    optimizer = getattr(model, "optimizer", None)
    if with_optimizer and optimizer is not None:
        found += list(optimizer.variables)
    return found


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
