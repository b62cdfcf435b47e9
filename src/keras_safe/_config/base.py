"""Base classes whose ``get_config``/``from_config`` come from ``__init__``.

``Serializable`` captures the arguments an object is constructed with (bound
to ``__init__``'s signature, which is inspected once, when the class is
defined), checks at construction that every one of them can round-trip, and
derives ``get_config``/``from_config`` from them. ``SerializableLayer`` and
``SerializableModel`` are that mixin on ``keras.layers.Layer`` and
``keras.Model``.

The user's ``__init__`` is never wrapped: arguments are captured in
``__new__``, which receives the same arguments, so Keras' own introspection
of ``__init__`` (and the user's signature in ``help()``) stays untouched.
"""

from __future__ import annotations

import contextvars
import inspect
from typing import Any, ClassVar

import keras
from typing_extensions import Self, override

from keras_safe import _keras
from keras_safe._config import migration
from keras_safe._config.codec import DEFAULT_NUMPY_LIMIT, codec
from keras_safe._config.describe import defined_in_keras
from keras_safe._config.signature import EMPTY, Captured, InitPlan, keras_base_params
from keras_safe.errors import CompatibilityError, KerasSafeError, SerializationError

__all__ = ["Serializable", "SerializableLayer", "SerializableModel"]

# Base-config values (name, trainable, dtype ...) that from_config must hand
# to the Keras base class when the user's __init__ has no **kwargs to carry
# them: (class being rebuilt, values). Consumed by the next __new__ of that
# class, so sublayers built inside __init__ never see it.
_PENDING_BASE: contextvars.ContextVar[tuple[type, dict[str, Any]] | None] = contextvars.ContextVar(
    "keras_safe_pending_base", default=None
)

_RESERVED_ARGUMENTS = frozenset({migration.VERSION_KEY})
_OWN_CLASSES = frozenset({"Serializable", "SerializableLayer", "SerializableModel"})


def _check_class_layout(cls: type) -> bool:
    """Validate the class once; return whether its config is automatic."""
    mro = cls.__mro__
    mixin_index = mro.index(Serializable)
    for klass in mro[:mixin_index]:
        if defined_in_keras(klass) and "get_config" in klass.__dict__:
            # The fix reorders the class's own bases: the Keras class that
            # defines get_config may be further up (keras.Model inherits
            # Layer's), and naming it would tell the user to change a base.
            bases = sorted(cls.__bases__, key=lambda base: not issubclass(base, Serializable))
            names = [
                "keras_safe.Serializable" if base is Serializable else base.__name__
                for base in bases
            ]
            raise SerializationError(
                f"{cls.__qualname__}: keras_safe.Serializable must come before "
                f"{klass.__module__}.{klass.__qualname__} in the class bases, or Keras' "
                f"get_config() hides the automatic one. Write: class {cls.__name__}"
                f"({', '.join(names)})"
            )
    return not any(
        "get_config" in klass.__dict__
        for klass in mro[:mixin_index]
        if not (klass.__module__ == __name__ and klass.__name__ in _OWN_CLASSES)
    )


def _make_plan(cls: type) -> InitPlan:
    signature = inspect.signature(getattr(cls, "__init__"))  # noqa: B009 (mypy: unsound access)
    params = tuple(signature.parameters.values())[1:]  # drop self
    reserved = _RESERVED_ARGUMENTS.intersection(p.name for p in params)
    if reserved:
        raise SerializationError(
            f"{cls.__qualname__}.__init__ has a parameter named {sorted(reserved)[0]!r}, which "
            "keras_safe reserves for its own bookkeeping in configs. Rename the parameter."
        )
    varargs = next((p.name for p in params if p.kind is p.VAR_POSITIONAL), None)
    varkw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    automatic = _check_class_layout(cls)
    limit = int(getattr(cls, "numpy_size_limit", DEFAULT_NUMPY_LIMIT))
    parent_new = super(Serializable, cls).__new__  # type: ignore[misc]
    return InitPlan(
        signature=signature.replace(parameters=params),
        params=params,
        varargs=varargs,
        varkw=varkw,
        base_params=keras_base_params(cls),
        automatic=automatic,
        codec=codec.for_owner(cls.__qualname__, limit),
        new_takes_args=parent_new is not object.__new__,
    )


class Serializable:
    """Mixin deriving ``get_config``/``from_config`` from ``__init__`` arguments.

    Put it first in the bases of any Keras object with a config: losses,
    metrics, initializers, regularizers, constraints, learning-rate
    schedules, or a plain class used as an argument value. Arguments that
    cannot round-trip raise :class:`~keras_safe.SerializationError` when the
    object is constructed. A subclass that defines its own ``get_config`` /
    ``from_config`` keeps them (and skips the construction-time check).

    Attributes:
        numpy_size_limit: Largest numpy argument in bytes (default 1 MiB);
            bigger arrays belong in weights.
        config_version: Version of the class's config (int, default 1),
            written into every config as ``"config_version"``. Bump it when
            the meaning of the arguments changes and translate older configs
            in :meth:`upgrade_config`.

    Example:
        >>> @keras_safe.register(package="my_project")
        ... class FocalLoss(keras_safe.Serializable, keras.losses.Loss):
        ...     def __init__(self, gamma=2.0, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.gamma = gamma
        ...     def call(self, y_true, y_pred):
        ...         return keras.ops.mean((1 - y_pred) ** self.gamma * (y_true - y_pred) ** 2)
        >>> FocalLoss.from_config(FocalLoss(gamma=3.0).get_config()).gamma
        3.0
    """

    numpy_size_limit: ClassVar[int] = DEFAULT_NUMPY_LIMIT
    config_version: ClassVar[int] = migration.DEFAULT_VERSION
    _keras_safe_plan: ClassVar[InitPlan]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        migration.check_class(cls)
        migration.version_hand_written(cls)
        cls._keras_safe_plan = _make_plan(cls)

    @classmethod
    def upgrade_config(cls, config: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Translate a config saved at ``from_version`` into the current one.

        Called once by ``from_config`` when the saved ``config_version`` is
        older than the class's, before the object is built. ``config`` is
        the saved config (without ``"config_version"``) as ``get_config``
        wrote it: plain values as they are, tuples, enum members and nested
        objects in their saved JSON form; values you set may be Python
        objects. The default returns ``config`` unchanged.

        Args:
            config: The saved config; a copy, free to change.
            from_version: The ``config_version`` it was saved at (1 when the
                config does not say).

        Returns:
            The config for the current ``__init__``.

        Example:
            >>> class CustomAttention(keras_safe.SerializableLayer):
            ...     config_version = 3
            ...     @classmethod
            ...     def upgrade_config(cls, config, from_version):
            ...         if from_version < 2:
            ...             config["units"] = config.pop("num_units")
            ...         if from_version < 3:
            ...             config.setdefault("dropout", 0.0)
            ...         return config
        """
        return config

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        plan = cls._keras_safe_plan
        captured = plan.capture(args, kwargs)
        parent = super()
        if plan.new_takes_args:
            instance = parent.__new__(cls, *args, **kwargs)
        else:
            instance = parent.__new__(cls)
        object.__setattr__(instance, "_keras_safe_captured", captured)
        pending = _PENDING_BASE.get()
        if pending is not None and pending[0] is cls:
            object.__setattr__(instance, "_keras_safe_base", pending[1])
            _PENDING_BASE.set(None)
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        base = self.__dict__.pop("_keras_safe_base", None)
        if base:
            kwargs = {**base, **kwargs}
        super().__init__(*args, **kwargs)

    def _keras_safe_base_config(self) -> dict[str, Any]:
        parent = super()
        if not hasattr(parent, "get_config"):
            return {}
        try:
            return dict(parent.get_config())
        except NotImplementedError:  # e.g. LearningRateSchedule
            return {}

    def get_config(self) -> dict[str, Any]:
        """The base Keras config merged with every ``__init__`` argument, as JSON data."""
        cls = type(self)
        plan = cls._keras_safe_plan
        captured: Captured | None = self.__dict__.get("_keras_safe_captured")
        if captured is None:
            raise SerializationError(
                f"{cls.__qualname__}: the constructor arguments of this object were not "
                "captured (it was not created by calling the class), so its config is "
                "unknown. Create it with "
                f"{cls.__name__}(...) or {cls.__name__}.from_config(config)."
            )
        config = self._keras_safe_base_config()
        base_keys = set(config)
        encode = plan.codec.encode
        arguments = captured.arguments
        for param in plan.params:
            name = param.name
            if param.kind is param.VAR_POSITIONAL:
                items = arguments.get(name, ())
                config[name] = [encode(item, (name, i)) for i, item in enumerate(items)]
            elif param.kind is param.VAR_KEYWORD:
                for key, item in arguments.get(name, {}).items():
                    if key not in base_keys:
                        config[key] = encode(item, (key,))
            elif name not in base_keys:
                value = arguments.get(name, param.default)
                if value is EMPTY:
                    continue
                config[name] = encode(value, (name,))
        config[migration.VERSION_KEY] = cls.config_version
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        """Rebuild an object from :meth:`get_config` output (nested objects included)."""
        if not isinstance(config, dict):
            raise CompatibilityError(
                f"{cls.__qualname__}.from_config expects a dict, got {type(config).__name__}."
            )
        plan = cls._keras_safe_plan
        if migration.MIGRATED.get() is cls:  # a hand-written from_config migrated it
            migration.MIGRATED.set(None)
            saved = cls.config_version
        else:
            config, saved = migration.migrate(cls, config, plan.codec)
        decode = plan.codec.decode
        values = {key: decode(value, (key,)) for key, value in config.items()}
        positional, keywords, base, unclaimed = plan.split(cls, values, saved)
        token = _PENDING_BASE.set((cls, base)) if base else None
        try:
            return cls(*positional, **keywords)
        except (TypeError, ValueError) as exc:
            # A saved argument that **kwargs passes on to a Keras base class
            # which no longer takes it fails there: Layer.__init__ raises
            # ValueError("Unrecognized keyword arguments ...") and classes
            # without **kwargs (Loss.__init__) a TypeError. Both name it.
            rejected = [name for name in unclaimed if repr(name) in str(exc)]
            if not rejected or isinstance(exc, KerasSafeError):
                raise
            raise CompatibilityError(plan.mismatch(cls, rejected, [], saved)) from exc
        finally:
            if token is not None:
                _PENDING_BASE.reset(token)


class SerializableLayer(Serializable, keras.layers.Layer):  # type: ignore[misc]
    """A ``keras.layers.Layer`` that needs no ``get_config``/``from_config``.

    Example:
        >>> @keras_safe.register(package="my_project")
        ... class Scale(keras_safe.SerializableLayer):
        ...     def __init__(self, factor=2.0, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.factor = factor
        ...     def call(self, x):
        ...         return x * self.factor
        >>> Scale.from_config(Scale(factor=3.0).get_config()).factor
        3.0
    """

    @override
    def build_from_config(self, config: dict[str, Any]) -> None:
        """Create the layer's weights when a saved model is rebuilt.

        A layer without its own ``build`` whose sublayers are made in
        ``__init__`` gets them built by running ``call`` on symbolic inputs of
        the saved shape (as Keras does for models), so their weights exist
        when the saved values are loaded into them.
        """
        if (
            config
            and type(self).build is keras.layers.Layer.build
            and _keras.has_unbuilt_sublayers(self)
        ):
            _keras.build_by_running(self, config)
        super().build_from_config(config)


class SerializableModel(Serializable, keras.Model):  # type: ignore[misc]
    """A subclassed ``keras.Model`` that needs no ``get_config``/``from_config``.

    The config holds the constructor arguments; the model is rebuilt by
    calling the class, and its weights are restored by Keras as usual.

    Example:
        >>> @keras_safe.register(package="my_project")
        ... class Classifier(keras_safe.SerializableModel):
        ...     def __init__(self, hidden=32, classes=3, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.hidden = keras.layers.Dense(hidden, activation="relu")
        ...         self.out = keras.layers.Dense(classes)
        ...     def call(self, x):
        ...         return self.out(self.hidden(x))
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _keras.is_functional_init(args, kwargs):
            # A subclass calling super().__init__(inputs, outputs) becomes
            # Functional. Keras' own way (models/model.py:
            # inject_functional_model_class) rewrites SerializableModel's
            # bases too, which breaks every subclassed SerializableModel.
            _keras.add_functional_base(type(self))
        super().__init__(*args, **kwargs)

    @override
    def _keras_safe_base_config(self) -> dict[str, Any]:
        # A model built with inputs/outputs inside __init__ becomes Functional,
        # whose get_config describes the graph; the arguments rebuild it instead.
        return dict(keras.layers.Layer.get_config(self))
