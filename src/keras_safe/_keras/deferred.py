"""Keras internals of the deferred rebuild used by ``save(roundtrip=True)``.

Part of the private-API layer (``keras_safe._keras``): a rebuild whose variables
hold no values of their own, loaded in a ``keras.StatelessScope`` that
records what is assigned. ``keras_safe._ops.rebuild`` explains why; this
module only knows how Keras builds, compiles and registers variables.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
from keras.src.backend.common import global_state
from keras.src.saving import object_registration, saving_lib, serialization_lib

__all__ = [
    "ObservingScope",
    "cache_attr_skipsets",
    "deferred_scope",
    "deferred_variables",
    "deserialize_deferred",
]


class ObservingScope(keras.StatelessScope):  # type: ignore[misc]
    """A ``keras.StatelessScope`` (variables left uninitialized) that reports reads and assigns.

    Inside a stateless scope Keras asks the scope's ``get_current_value``
    for every read of a variable and hands every ``assign`` to its
    ``add_update`` (the scope's protocol with Keras, not public API). A
    subclass overrides :meth:`value_read` and :meth:`assigned` instead.
    """

    def __init__(self) -> None:
        super().__init__(initialize_variables=False)

    def value_read(self, variable: Any, value: Any) -> None:
        """Called on every read of ``variable``; ``value`` is None if the scope holds none."""

    def assigned(self, variable: Any, value: Any) -> bool:
        """Called on every assign; return True to take ``value`` (the scope then keeps none)."""
        return False

    def current_value(self, variable: Any) -> Any:
        """The value the scope holds for ``variable`` (None if none), read as Keras reads it."""
        return self.get_current_value(variable)

    # -- the scope's side of Keras' protocol ---------------------------------------

    def get_current_value(self, variable: Any) -> Any:
        value = super().get_current_value(variable)
        self.value_read(variable, value)
        return value

    def add_update(self, update: tuple[Any, Any]) -> None:
        variable, value = update
        if not self.assigned(variable, value):
            super().add_update(update)


def deserialize_deferred(config: dict[str, Any], custom_objects: dict[str, Any]) -> Any:
    """``deserialize_keras_object`` of a model whose variables get no real values.

    The steps of Keras' ``deserialize_keras_object`` and
    ``Trainer.compile_from_config``, taken one by one because each needs a
    different treatment:

    - the model is built in the stateless scope, so no initializer runs
      (generating 100M random numbers takes longer than loading them);
    - its variables then get a scalar ``tf.Variable`` as placeholder,
      because TensorFlow's optimizer keys its slots by the real
      ``tf.Variable`` (and reads nothing else of it); no weight-sized memory
      is allocated. The scope must treat any read of these values as a
      failure to confirm (``keras_safe._ops.rebuild`` does): only what
      loading records is ever compared. During the symbolic calls the
      variables read as zeros (``_ZerosPending``);
    - the optimizer and the rest of the compile arguments are created outside
      the scope (Keras refuses variables made from values, such as every
      optimizer's iteration count, inside one);
    - ``compile`` and ``optimizer.build`` (Adam's two slots per weight) run in
      the scope again.
    """
    scope, pending = _DEFERRED.scope, _DEFERRED.pending
    compile_config = config.get("compile_config")
    created = len(pending)
    with scope:
        model = serialization_lib.deserialize_keras_object(
            {**config, "compile_config": None}, custom_objects=custom_objects, safe_mode=True
        )
    for variable in pending[created:]:
        _give_placeholder(variable)
    del pending[created:]
    if compile_config:
        _compile_deferred(model, compile_config, custom_objects, scope)
    if hasattr(scope, "model_built"):
        scope.model_built(model)
    return model


def _give_placeholder(variable: Any) -> None:
    import tensorflow as tf

    placeholder = tf.Variable(
        tf.zeros((), dtype=variable.dtype), shape=tf.TensorShape(None), trainable=False
    )
    variable._initialize(placeholder)  # a tf.Variable is adopted as is
    variable._initializer = None


def _compile_deferred(
    model: Any, compile_config: dict[str, Any], custom_objects: dict[str, Any], scope: Any
) -> None:
    from keras.src.trainers.trainer import Trainer

    if type(model).compile is not Trainer.compile:  # Keras warns and skips; so do we
        model.compile_from_config(compile_config)
        return
    with object_registration.CustomObjectScope(custom_objects):
        arguments = serialization_lib.deserialize_keras_object(compile_config)
    model.compile(**arguments)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built and model.trainable_variables:
        with scope:  # as _keras.build_optimizer does, for unbuilt models too
            optimizer.build(model.trainable_variables)
    model.compiled = True


_DEFERRED = threading.local()


@contextmanager
def deferred_variables(scope: Any) -> Iterator[None]:
    """Rebuild models whose variables hold no values of their own.

    ``scope`` is an :class:`ObservingScope`. Within this context
    ``_keras.deserialize_model`` builds models without running their
    variables' initializers (see ``deserialize_deferred``) and tells the
    scope (``scope.model_built(model)``, if it has that method);
    ``_keras.load_state`` assigns the loaded values in the scope, which records
    them (``add_update``) instead of copying them into the variables, and
    reads them as tensors over the bytes read rather than copies. Used by
    ``save(roundtrip=True)`` (``keras_safe._ops.rebuild``): the rebuilt model
    exists only to be compared.

    Keras keeps variables created in a stateless scope in a per-thread list,
    to initialize them at the next top-level scope exit (the next symbolic
    call of any model); the ones created here are taken off that list, so
    the discarded model costs nothing later.
    """
    key = "uninitialized_variables"
    kept = list(global_state.get_global_attribute(key) or [])
    pending = _ZerosPending(kept)
    global_state.set_global_attribute(key, pending)
    cache_attr_skipsets()  # Keras' state walk would create an optimizer in the scope
    _DEFERRED.scope, _DEFERRED.pending = scope, pending
    try:
        yield
    finally:
        _DEFERRED.scope = _DEFERRED.pending = None
        global_state.set_global_attribute(key, kept)


class _ZerosPending(list):  # type: ignore[type-arg]
    """Keras' list of variables awaiting initialization, giving each zeros.

    Keras registers every variable created in a stateless scope here
    (``register_uninitialized_variable``); until it has a value, reading it
    runs its initializer, and the symbolic calls that rebuild a functional
    model read every weight. Random initializers there cost graph ops per
    read (four times Keras' own symbolic rebuild for a stack of dense
    layers); zeros cost one op, and are the placeholder value anyway.
    """

    _zeros = keras.initializers.Zeros()

    def append(self, variable: Any) -> None:
        variable._initializer = self._zeros
        super().append(variable)


def cache_attr_skipsets() -> None:
    """Cache the attribute sets Keras' state walk skips, where Keras looks for them.

    ``saving_lib.get_attr_skipset`` builds a reference object of each kind
    (a ``Layer()``, an ``Optimizer(1.0)`` with its variables ...) to list the
    attributes not to visit, and means to cache the result, but stores it
    under ``saving_attr_skipset_*`` while reading ``saving_attr_skiplist_*``:
    every layer and optimizer that saving or loading visits builds a new
    reference object. Storing the sets under the key Keras reads makes the
    walk cheaper and lets it run in a stateless scope (where creating the
    optimizer's variables is refused). Keras' global state is per thread and
    cleared by ``keras.backend.clear_session()``, so this runs before each use.
    """
    for kind in _SKIPSET_KINDS:
        key = f"saving_attr_skiplist_{kind}"
        if global_state.get_global_attribute(key) is None:
            global_state.set_global_attribute(key, saving_lib.get_attr_skipset(kind))


_SKIPSET_KINDS = ("Layer", "Functional", "Sequential", "Metric", "Optimizer", "Loss")


def deferred_scope() -> Any:
    """The scope of the deferred rebuild in progress in this thread, or None."""
    return getattr(_DEFERRED, "scope", None)
