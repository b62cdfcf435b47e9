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
from keras.src.backend.common.keras_tensor import KerasTensor
from keras.src.layers.layer import Layer
from keras.src.saving import object_registration, saving_lib, serialization_lib
from keras.src.utils.python_utils import is_default

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

    @property
    def live_model(self) -> Any:
        """The model being rebuilt, if the scope has it: its layers lend their output specs."""
        return None

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
    - under TensorFlow its variables then get a scalar ``tf.Variable`` as
      placeholder, because TensorFlow's optimizer keys its slots by the real
      ``tf.Variable`` (and reads nothing else of it); JAX's and torch's key
      them by the Keras variable, which keeps no value at all. No
      weight-sized memory is allocated. The scope must treat any read of
      these values as a failure to confirm (``keras_safe._ops.rebuild``
      does): only what loading records is ever compared. During the symbolic calls the
      variables read as zeros (``_ZerosPending``);
    - the optimizer and the rest of the compile arguments are created outside
      the scope (Keras refuses variables made from values, such as every
      optimizer's iteration count, inside one);
    - ``compile`` and ``optimizer.build`` (Adam's two slots per weight) run in
      the scope again;
    - given the live model (``scope.live_model``), a rebuilt layer whose call
      matches a call of its live twin takes that call's output shapes
      instead of tracing ``call()`` again (see ``_SpecLender``).
    """
    scope, pending = _DEFERRED.scope, _DEFERRED.pending
    compile_config = config.get("compile_config")
    created = len(pending)
    live = getattr(scope, "live_model", None)
    with scope, _lending_specs(live):
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


# -- output specs lent by the live model -------------------------------------------


_PLAIN = (type(None), bool, int, float, str)
_NOT_STATE = frozenset({"_auto_config"})  # the live layer's recorded constructor call
_MISSING = object()


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` if it is plain data (scalars, strings and containers of them), else _MISSING."""
    if isinstance(value, _PLAIN):
        return value
    if depth < 4 and isinstance(value, (list, tuple)):
        items = [_plain(v, depth + 1) for v in value]
        # lists and tuples alike: shapes read from a config are lists
        return _MISSING if any(i is _MISSING for i in items) else ("sequence", *items)
    if depth < 4 and isinstance(value, dict):
        pairs = {k: _plain(v, depth + 1) for k, v in value.items()}
        return _MISSING if _MISSING in pairs.values() else pairs
    return _MISSING


def _same_state(live: Any, rebuilt: Any) -> bool:
    """Whether every attribute of the live layer is in the rebuilt one, alike.

    Plain data (numbers, strings, flags and containers of them) must be
    equal, anything else of the same type. An attribute set on the live
    layer after it was constructed (which the config does not carry) thus
    stops the rebuilt layer from borrowing.
    """
    mine, theirs = vars(live), vars(rebuilt)
    for key, value in mine.items():
        if key in _NOT_STATE:
            continue
        other = theirs.get(key, _MISSING)
        if other is _MISSING:
            return False
        a, b = _plain(value), _plain(other)
        if a is _MISSING or b is _MISSING:
            if type(value) is not type(other):
                return False
        elif a != b:
            return False
    return True


def _same_argument(a: Any, b: Any) -> bool:
    """Whether two call arguments are alike: tensors by shape and dtype, other values equal."""
    if isinstance(a, KerasTensor) or isinstance(b, KerasTensor):
        return (
            isinstance(a, KerasTensor)
            and isinstance(b, KerasTensor)
            and tuple(a.shape) == tuple(b.shape)
            and a.dtype == b.dtype
            and bool(getattr(a, "sparse", False)) == bool(getattr(b, "sparse", False))
            and bool(getattr(a, "ragged", False)) == bool(getattr(b, "ragged", False))
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_argument(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_argument(a[k], b[k]) for k in a)
    if isinstance(a, _PLAIN):
        return bool(a == b)
    return a is b


class _SpecLender:
    """The output specs of the live model's layer calls, for the rebuilt model's layers.

    Rebuilding a functional model calls each layer on symbolic inputs, and
    Keras traces ``call()`` to learn the output's shape and dtype (with the
    TensorFlow backend, a graph per layer: most of the rebuild's time for a
    model of small layers). The live model made the same calls when it was
    built. A rebuilt layer borrows the output spec of a call of its live
    twin (same name, same class, every attribute alike: ``_same_state``)
    whose arguments have the same shapes, dtypes and values; it is built
    from the rebuilt input shapes as usual (``build()`` runs), and its
    config, weights and optimizer state are compared afterwards as ever. A
    layer that does not match traces ``call()`` as Keras would.
    """

    def __init__(self, live: Any) -> None:
        self._layers: dict[str, Any] = {}
        repeated: set[str] = set()
        for layer in [live, *live._flatten_layers(include_self=False, recursive=True)]:
            if layer.name in self._layers:
                repeated.add(layer.name)
            self._layers[layer.name] = layer
        for name in repeated:  # names that are not unique cannot be matched
            del self._layers[name]
        self.lent = 0

    def lend(self, layer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The output spec for ``layer(*args, **kwargs)``, or _MISSING."""
        live = self._layers.get(layer.name)
        if live is None or type(live) is not type(layer) or not _same_state(live, layer):
            return _MISSING
        for node in live._inbound_nodes:
            arguments = node.arguments
            if len(node.outputs) == 1 and _same_argument(
                (tuple(arguments.args), dict(arguments.kwargs)), (tuple(args), dict(kwargs))
            ):
                out = node.outputs[0]
                self.lent += 1
                return KerasTensor(
                    tuple(out.shape),
                    dtype=out.dtype,
                    sparse=bool(getattr(out, "sparse", False)),
                    **({"ragged": True} if getattr(out, "ragged", False) else {}),
                )
        return _MISSING


_LENDING_LOCK = threading.Lock()
_LENDING_USERS = 0
_TRACED_SPEC = Layer.compute_output_spec


def _lent_or_traced_spec(self: Any, *args: Any, **kwargs: Any) -> Any:
    lender = getattr(_DEFERRED, "lender", None)
    if (
        lender is not None
        and is_default(self.compute_output_shape)
        # not reached through super() from a class with its own compute_output_spec
        and type(self).compute_output_spec is _lent_or_traced_spec
    ):
        lent = lender.lend(self, args, kwargs)
        if lent is not _MISSING:
            return lent
    return _TRACED_SPEC(self, *args, **kwargs)


@contextmanager
def _lending_specs(live: Any) -> Iterator[None]:
    """Within this context (this thread only), rebuilt layers borrow the live model's specs.

    ``Layer.compute_output_spec`` is replaced while any thread is in such a
    context; elsewhere the replacement calls Keras' own.
    """
    global _LENDING_USERS
    if live is None:
        yield
        return
    _DEFERRED.lender = _SpecLender(live)
    with _LENDING_LOCK:
        if _LENDING_USERS == 0:
            Layer.compute_output_spec = _lent_or_traced_spec
        _LENDING_USERS += 1
    try:
        yield
    finally:
        _DEFERRED.lender = None
        with _LENDING_LOCK:
            _LENDING_USERS -= 1
            if _LENDING_USERS == 0:
                Layer.compute_output_spec = _TRACED_SPEC


def _give_placeholder(variable: Any) -> None:
    if keras.backend.backend() != "tensorflow":
        # JAX and torch optimizers key their slots by the Keras variable itself
        # (``id``): the variable stays without a value of its own, and any read
        # outside what loading assigned reads its zeros initializer, which the
        # scope sees as a read of an unloaded value.
        return
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
