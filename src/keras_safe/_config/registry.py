"""The registry of custom objects: ``@keras_safe.register`` and ``keras_safe.registry``.

A registered object is known to keras_safe under a key ``"package>name"``
(Keras' own convention) and, at the same time, to Keras' global custom
objects, so ``keras.models.load_model`` finds it too. Unlike Keras, a key
can only ever mean one definition: registering a different class under a
key that is taken raises :class:`~keras_safe.RegistrationError` instead of
silently replacing it.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import keras

from keras_safe import _keras
from keras_safe._config.describe import definition_of, distribution_of, kind_of
from keras_safe.errors import RegistrationError, _see_docs

__all__ = ["Registry", "RegistryEntry", "register", "registry"]

T = TypeVar("T")


@dataclass(frozen=True)
class RegistryEntry:
    """One registered object, as listed by :meth:`Registry.entries`.

    ``distribution`` and ``version`` name the installed distribution that
    provides the object's module (``None`` for code that is not installed,
    e.g. a script or a notebook).
    """

    key: str
    obj: Any
    kind: str
    module: str
    qualname: str
    distribution: str | None
    version: str | None
    aliases: tuple[str, ...] = ()

    @property
    def definition(self) -> str:
        """``"module.qualname"``: where the object is defined."""
        return f"{self.module}.{self.qualname}"


@dataclass(frozen=True)
class _Record:
    key: str
    obj: Any
    kind: str
    module: str
    qualname: str
    aliases: tuple[str, ...]


class Registry:
    """Custom objects known to keras_safe, kept in sync with Keras' own.

    Use the global instance :data:`keras_safe.registry`; objects get into it
    through :func:`keras_safe.register`.

    Example:
        >>> "my_project>CustomAttention" in keras_safe.registry
        True
        >>> keras_safe.registry.get("my_project>CustomAttention")
        <class 'my_project.layers.CustomAttention'>
    """

    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._aliases: dict[str, str] = {}
        self._keys_by_id: dict[int, str] = {}
        self._lock = threading.RLock()
        self._journals: list[list[Callable[[], None]]] = []

    # -- lookup ---------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The object registered under ``key`` (or one of its aliases), else ``default``."""
        record = self._record(key)
        return default if record is None else record.obj

    def entry(self, key: str) -> RegistryEntry | None:
        """The :class:`RegistryEntry` for ``key`` (or an alias of it), else None."""
        record = self._record(key)
        return None if record is None else self._entry(record)

    def key_of(self, obj: Any) -> str | None:
        """The key ``obj`` is registered under, or None if it is not registered."""
        key = self._keys_by_id.get(id(obj))
        if key is not None and self._records[key].obj is obj:
            return key
        return None

    def canonical_key(self, key: str) -> str | None:
        """The current key for ``key``, following aliases; None if unknown."""
        record = self._record(key)
        return None if record is None else record.key

    def _record(self, key: str) -> _Record | None:
        record = self._records.get(key)
        if record is None and key in self._aliases:
            record = self._records.get(self._aliases[key])
        return record

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._record(key) is not None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._records))

    def __repr__(self) -> str:
        return f"<keras_safe.Registry with {len(self)} objects>"

    def entries(self) -> list[RegistryEntry]:
        """Every registered object with its kind, definition and distribution."""
        return [self._entry(record) for record in list(self._records.values())]

    def _entry(self, record: _Record) -> RegistryEntry:
        distribution, version = distribution_of(record.module)
        return RegistryEntry(
            key=record.key,
            obj=record.obj,
            kind=record.kind,
            module=record.module,
            qualname=record.qualname,
            distribution=distribution,
            version=version,
            aliases=record.aliases,
        )

    def custom_objects(self) -> dict[str, Any]:
        """A ``custom_objects`` dict for Keras: every key and alias -> object."""
        objects = {key: record.obj for key, record in self._records.items()}
        for alias, key in self._aliases.items():
            objects.setdefault(alias, self._records[key].obj)
        return objects

    # -- registration ---------------------------------------------------------

    def add(self, obj: Any, key: str, aliases: tuple[str, ...] = ()) -> None:
        """Register ``obj`` under ``key`` (and ``aliases``); see :func:`register`."""
        module, qualname = definition_of(obj)
        record = _Record(key, obj, kind_of(obj), module, qualname, tuple(aliases))
        with self._lock:
            self._check_free(key, record)
            for alias in aliases:
                self._check_free(alias, record)
            previous_key = self.key_of(obj)
            if previous_key is not None and previous_key != key:
                raise RegistrationError(
                    f"{record.module}.{record.qualname} is already registered as "
                    f"{previous_key!r}; it cannot also be registered as {key!r}. "
                    "To keep files saved under the old key loading, register it once "
                    f"with aliases: @keras_safe.register(..., aliases=({previous_key!r},))"
                )
            self._journal_undo(key, aliases)
            old = self._records.get(key)
            if old is not None:
                self._keys_by_id.pop(id(old.obj), None)
                for alias in old.aliases:
                    self._aliases.pop(alias, None)
            self._records[key] = record
            self._keys_by_id[id(obj)] = key
            for alias in aliases:
                self._aliases[alias] = key
            _register_with_keras(obj, key, aliases)

    def _check_free(self, key: str, record: _Record) -> None:
        taken = self._record(key)
        if taken is not None and (taken.module, taken.qualname) != (
            record.module,
            record.qualname,
        ):
            raise RegistrationError(
                f"Cannot register {record.module}.{record.qualname} as {key!r}: that key "
                f"already names {taken.module}.{taken.qualname}. A key must mean one "
                "definition, or files saved with one would load the other. Give one of "
                "them another name: @keras_safe.register(package=..., name=...)\n"
                + _see_docs("RegistrationError")
            )
        if taken is None:
            existing = keras.saving.get_custom_objects().get(key)
            if existing is not None and definition_of(existing) != (record.module, record.qualname):
                module, qualname = definition_of(existing)
                raise RegistrationError(
                    f"Cannot register {record.module}.{record.qualname} as {key!r}: Keras' "
                    f"global custom objects already map that key to {module}.{qualname} "
                    "(registered with keras.saving.register_keras_serializable). Give one "
                    "of them another name: @keras_safe.register(package=..., name=...)"
                )

    def _journal_undo(self, key: str, aliases: tuple[str, ...]) -> None:
        if not self._journals:
            return
        records, names_by_id, alias_map = (
            dict(self._records),
            dict(self._keys_by_id),
            dict(self._aliases),
        )
        keras_objects = keras.saving.get_custom_objects()
        keras_before = {k: keras_objects.get(k) for k in (key, *aliases)}

        def undo() -> None:
            # Restore copies: this undo runs again when each enclosing scope
            # exits, and a snapshot made live would be changed by later
            # registrations before then.
            self._records, self._keys_by_id, self._aliases = (
                dict(records),
                dict(names_by_id),
                dict(alias_map),
            )
            for k, previous in keras_before.items():
                current = keras_objects.get(k)
                if current is not None and current is not previous:
                    _keras.forget_registered_name(current, k)
                if previous is None:
                    keras_objects.pop(k, None)
                else:
                    keras_objects[k] = previous
                    if k == key:  # an alias is never the name an object is saved under
                        _keras.set_registered_name(previous, k)

        for journal in self._journals:
            journal.append(undo)

    @contextlib.contextmanager
    def scope(self) -> Iterator[Registry]:
        """Undo, on exit, every registration made inside the ``with`` block.

        Meant for tests that define custom classes: nothing they register
        leaks into the rest of the process (here or in Keras' own registry).

        Example:
            >>> with keras_safe.registry.scope():
            ...     @keras_safe.register(package="test")
            ...     class Temporary(keras_safe.SerializableLayer):
            ...         pass
            >>> "test>Temporary" in keras_safe.registry
            False
        """
        journal: list[Callable[[], None]] = []
        with self._lock:
            self._journals.append(journal)
        try:
            yield self
        finally:
            with self._lock:
                # By identity: list.remove compares by ==, and two scopes'
                # journals are equal lists when they hold the same undos.
                self._journals = [j for j in self._journals if j is not journal]
                for undo in reversed(journal):
                    undo()


def _register_with_keras(obj: Any, key: str, aliases: tuple[str, ...]) -> None:
    package, _, name = key.partition(">")
    if inspect.isclass(obj) and not hasattr(obj, "get_config"):
        # Keras' decorator refuses classes without get_config (enums); the
        # two maps it would fill are set directly.
        keras.saving.get_custom_objects()[key] = obj
        _keras.set_registered_name(obj, key)
    else:
        keras.saving.register_keras_serializable(package=package, name=name)(obj)
    objects = keras.saving.get_custom_objects()
    for alias in aliases:
        objects[alias] = obj


registry = Registry()
"""The global :class:`Registry` that :func:`register` fills."""


def _validate_part(label: str, value: object) -> str:
    if not isinstance(value, str) or not value or ">" in value:
        raise RegistrationError(
            f"register() needs a non-empty {label} without '>' (it separates package "
            f"from name in the key), got {value!r}."
        )
    return value


def _validate_obj(obj: Any, name: str) -> None:
    if inspect.isclass(obj):
        if issubclass(obj, enum.Enum):
            return
        if not (hasattr(obj, "get_config") and hasattr(obj, "from_config")):
            raise RegistrationError(
                f"Cannot register class {obj.__module__}.{obj.__qualname__}: it has no "
                "get_config()/from_config(), so it could not be saved. Subclass "
                "keras_safe.Serializable (or SerializableLayer / SerializableModel) to "
                "get both derived from __init__."
            )
        return
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        if obj.__name__ == "<lambda>" and name == "<lambda>":
            raise RegistrationError(
                "Cannot register a lambda without a name: every lambda is called "
                "'<lambda>'. Use a def, or pass name=: "
                "keras_safe.register(name='my_fn')(lambda x: x)"
            )
        return
    raise RegistrationError(
        f"register() takes a class or a function, got {type(obj).__name__} {obj!r}. "
        "Register the class of the object instead."
    )


@overload
def register(obj: T, /) -> T: ...


@overload
def register(
    obj: None = None,
    /,
    *,
    package: str = "Custom",
    name: str | None = None,
    aliases: tuple[str, ...] | list[str] = (),
) -> Callable[[T], T]: ...


def register(
    obj: Any = None,
    /,
    *,
    package: str = "Custom",
    name: str | None = None,
    aliases: tuple[str, ...] | list[str] = (),
) -> Any:
    """Register a class or function so saved models can find it again.

    The key is ``"{package}>{name or obj.__name__}"``. The object goes into
    :data:`keras_safe.registry` and into Keras' global custom objects, so
    ``keras.models.load_model`` finds it as well. Registering the same
    definition again (module reload, notebook cell re-run) replaces it;
    registering another definition under a taken key raises
    :class:`~keras_safe.RegistrationError`.

    Args:
        obj: The class or function (when used as a bare decorator).
        package: First part of the key; use your project's import name.
        name: Second part of the key; defaults to ``obj.__name__``.
        aliases: Old keys (``"old_pkg>OldName"``) under which files saved
            before a rename still resolve to this object.

    Returns:
        ``obj`` unchanged, or a decorator that registers and returns it.

    Example:
        >>> @keras_safe.register(package="my_project")
        ... class CustomAttention(keras_safe.SerializableLayer):
        ...     def __init__(self, units, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.units = units
    """
    if isinstance(obj, str):
        raise RegistrationError(
            f"register({obj!r}) got a string where the object belongs. The package is a "
            f"keyword argument: @keras_safe.register(package={obj!r})"
        )
    _validate_part("package", package)
    if name is not None:
        _validate_part("name", name)
    if isinstance(aliases, str):
        raise RegistrationError(
            f"aliases must be a tuple of keys, got the string {aliases!r}; "
            f"write aliases=({aliases!r},)"
        )
    for alias in aliases:
        old_package, sep, old_name = (
            alias.partition(">") if isinstance(alias, str) else ("", "", "")
        )
        if not sep or not old_package or not old_name:
            raise RegistrationError(f"Alias {alias!r} is not a key of the form 'package>Name'.")

    def decorator(target: T) -> T:
        object_name = name if name is not None else getattr(target, "__name__", "")
        _validate_obj(target, object_name)
        registry.add(target, f"{package}>{object_name}", tuple(aliases))
        return target

    if obj is None:
        return decorator
    return decorator(obj)
