"""The value codec's machinery: handler dispatch, errors and containers.

See :mod:`keras_safe._config.codec` for the JSON forms; the handlers of numpy
values and of objects live in ``_codec_numpy`` and ``_codec_objects``.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias

import keras

from keras_safe import _keras
from keras_safe._config.registry import registry
from keras_safe.errors import CompatibilityError, SerializationError, UnsafeModelError, _see_docs

JSON: TypeAlias = Any
PathT: TypeAlias = tuple[str | int, ...]

TAG = "__keras_safe__"
"""The key that marks a tagged value in a config."""

DEFAULT_NUMPY_LIMIT = 1 << 20
"""Largest numpy argument (bytes) kept in a config; larger ones belong in weights."""

SCALARS = (type(None), bool, int, float, str)
_RESERVED_KEYS = frozenset({TAG, "class_name"})


def format_path(path: PathT) -> str:
    """``("blocks", 2, "kernel_initializer")`` -> ``"blocks[2].kernel_initializer"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = part
    return text or "<value>"


def fail(codec: Codec, path: PathT, value: Any, problem: str, fix: str) -> NoReturn:
    where = (
        f"{codec.owner}: argument `{format_path(path)}`"
        if codec.owner
        else (f"`{format_path(path)}`")
    )
    raise SerializationError(
        f"{where} is {problem} (type {type_name(value)}), which cannot be saved.\nFix: {fix}\n"
        + _see_docs("SerializationError")
    )


def bad_file(path: PathT, problem: str) -> NoReturn:
    raise UnsafeModelError(
        f"Config value at `{format_path(path)}` {problem}; keras_safe never writes that, "
        "so the file was edited or not written by keras_safe. Refusing to decode it."
    )


def type_name(value: Any) -> str:
    cls = value if isinstance(value, type) else type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def registered_key(obj: Any) -> str | None:
    """The key ``obj`` is registered under, with keras_safe or with Keras, else None."""
    key = registry.key_of(obj)
    if key is not None:
        return key
    try:
        key = keras.saving.get_registered_name(obj)
    except (AttributeError, TypeError):
        return None
    if key and ">" in key and keras.saving.get_registered_object(key) is obj:
        return str(key)
    # While Keras loads a model, objects passed as custom_objects are findable
    # by the key they were given under, registered or not.
    for name, candidate in _keras.scoped_custom_objects().items():
        if candidate is obj:
            return name
    return None


def tracked_by_keras(value: Any) -> bool:
    # Keras wraps lists/dicts assigned to layer attributes (TrackedList ...);
    # passing one on to another constructor is common and means the plain type.
    return type(value).__module__.split(".", 1)[0] in ("keras", "tensorflow")


def lookup(registered: Callable[[str], Any], key: str, path: PathT, what: str) -> Any:
    obj = registered(key)
    if obj is None:
        raise CompatibilityError(
            f"Config value at `{format_path(path)}` refers to {what} {key!r}, which is not "
            "registered in this process. Import the module that defines it (it must be "
            "decorated with @keras_safe.register), or pass it in custom_objects."
        )
    return obj


def find_registered(key: str) -> Any:
    obj = registry.get(key)
    if obj is None:
        obj = keras.saving.get_registered_object(key)
    return obj


@dataclass(frozen=True)
class Handler:
    """How one type of value is checked, encoded to JSON and decoded back.

    ``tag`` is the ``"__keras_safe__"`` tag ``decode`` answers for (None for
    values that encode to plain JSON or to Keras' own object form).
    """

    name: str
    check: Callable[[Codec, Any, PathT], None]
    encode: Callable[[Codec, Any, PathT], JSON]
    decode: Callable[[Codec, dict[str, Any], PathT], Any] | None = None
    tag: str | None = None


class Codec:
    """Dispatches values to :class:`Handler`\\ s by type.

    ``owner`` (a class name) and ``numpy_limit`` only shape error messages and
    limits; :meth:`for_owner` returns a copy sharing the handler table.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, Handler] = {}
        self._by_tag: dict[str, Handler] = {}
        self._cache: dict[type, Handler | None] = {}
        self._fallback: Handler | None = None
        self._object_decoder: Callable[[Codec, dict[str, Any], PathT], Any] | None = None
        self.owner = ""
        self.numpy_limit = DEFAULT_NUMPY_LIMIT

    def for_owner(self, owner: str, numpy_limit: int = DEFAULT_NUMPY_LIMIT) -> Codec:
        """A view of this codec whose errors name ``owner``."""
        view = object.__new__(Codec)
        view.__dict__.update(self.__dict__)
        view.owner = owner
        view.numpy_limit = numpy_limit
        return view

    def register(self, types_: tuple[type, ...], handler: Handler) -> None:
        """Use ``handler`` for values of ``types_`` (and their subclasses)."""
        for cls in types_:
            self._by_type[cls] = handler
        if handler.tag is not None:
            self._by_tag[handler.tag] = handler
        self._cache.clear()

    def set_fallback(self, handler: Handler) -> None:
        """Use ``handler`` for values no registered type matches."""
        self._fallback = handler
        self._cache.clear()

    def set_object_decoder(self, decode: Callable[[Codec, dict[str, Any], PathT], Any]) -> None:
        """Decode dicts in Keras' object form (``{"class_name": ...}``) with ``decode``."""
        self._object_decoder = decode

    def handler_for(self, value: Any) -> Handler | None:
        """The handler for ``value``'s type, or None if nothing handles it."""
        cls = type(value)
        try:
            return self._cache[cls]
        except KeyError:
            pass
        handler: Handler | None = None
        if issubclass(cls, enum.Enum):  # before str/int: StrEnum, IntEnum
            handler = self._by_type.get(enum.Enum)
        else:
            for base in cls.__mro__:
                if base in self._by_type:
                    handler = self._by_type[base]
                    break
        if handler is None:
            handler = self._fallback
        self._cache[cls] = handler
        return handler

    # -- the three operations -------------------------------------------------

    def check(self, value: Any, path: PathT = ()) -> None:
        """Raise SerializationError unless ``value`` can round-trip."""
        if type(value) in SCALARS:
            return
        handler = self.handler_for(value)
        if handler is None:
            unsupported(self, value, path)
        handler.check(self, value, path)

    def encode(self, value: Any, path: PathT = ()) -> JSON:
        """``value`` as JSON-compatible data (dicts, lists, str, numbers, None)."""
        if type(value) in SCALARS:
            return value
        handler = self.handler_for(value)
        if handler is None:
            unsupported(self, value, path)
        return handler.encode(self, value, path)

    def decode(self, data: JSON, path: PathT = ()) -> Any:
        """The value ``data`` (from :meth:`encode`) stands for."""
        if type(data) in SCALARS:
            return data
        if type(data) is list:
            return [self.decode(item, (*path, i)) for i, item in enumerate(data)]
        if type(data) is tuple:  # Keras-side configs may still hold tuples
            return [self.decode(item, (*path, i)) for i, item in enumerate(data)]
        if type(data) is not dict:
            bad_file(path, f"has type {type(data).__name__}")
        if TAG in data:
            tag = data[TAG]
            handler = self._by_tag.get(tag) if isinstance(tag, str) else None
            if handler is None or handler.decode is None:
                bad_file(path, f"has unknown tag {tag!r}")
            return handler.decode(self, data, path)
        if "class_name" in data and self._object_decoder is not None:
            return self._object_decoder(self, data, path)
        return {key: self.decode(item, (*path, key)) for key, item in data.items()}


def _is_tensor(value: Any) -> bool:
    """A tensor or variable of the backend, or of any framework already imported."""
    if isinstance(value, keras.Variable) or keras.ops.is_tensor(value):
        return True
    # A TensorFlow tensor under JAX, say: checked only where that framework is
    # imported (a value of its type cannot exist otherwise).
    for module, names in (
        ("tensorflow", ("Tensor", "Variable")),
        ("jax", ("Array",)),
        ("torch", ("Tensor",)),
    ):
        framework = sys.modules.get(module)
        kinds = [getattr(framework, name, None) for name in names]
        if any(isinstance(k, type) and isinstance(value, k) for k in kinds):
            return True
    return False


def unsupported(codec: Codec, value: Any, path: PathT) -> NoReturn:
    if _is_tensor(value):
        fail(
            codec,
            path,
            value,
            "a tensor",
            "pass a numpy array or Python numbers instead, or create the tensor as a "
            "weight in build() (self.add_weight(...)) so it is saved with the weights.",
        )
    if isinstance(value, keras.KerasTensor):
        fail(
            codec,
            path,
            value,
            "a symbolic KerasTensor",
            "pass shapes or sizes to __init__ and build the graph in build()/call().",
        )
    if hasattr(value, "read") or hasattr(value, "fileno"):
        fail(
            codec,
            path,
            value,
            "an open file or stream",
            "pass the file's path as a str and open it where it is needed.",
        )
    fail(
        codec,
        path,
        value,
        "an object of an unsupported type",
        "pass plain values (numbers, strings, lists, tuples, dicts, numpy arrays), Keras "
        "objects, or an instance of a class registered with @keras_safe.register that "
        "subclasses keras_safe.Serializable.",
    )


def _check_items(codec: Codec, values: Any, path: PathT) -> None:
    for i, item in enumerate(values):
        codec.check(item, (*path, i))


def _check_list(codec: Codec, value: Any, path: PathT) -> None:
    if type(value) is not list and not tracked_by_keras(value):
        fail(codec, path, value, "a list subclass", "pass a plain list.")
    _check_items(codec, value, path)


def _encode_list(codec: Codec, value: Any, path: PathT) -> JSON:
    return [codec.encode(item, (*path, i)) for i, item in enumerate(value)]


def _check_tuple(codec: Codec, value: Any, path: PathT) -> None:
    if type(value) is not tuple:
        fail(
            codec,
            path,
            value,
            "a namedtuple or tuple subclass",
            "pass a plain tuple or a dict, or a registered keras_safe.Serializable class.",
        )
    _check_items(codec, value, path)


def _encode_tuple(codec: Codec, value: Any, path: PathT) -> JSON:
    return {TAG: "tuple", "items": _encode_list(codec, value, path)}


def _decode_tuple(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    items = data.get("items")
    if type(items) is not list:
        bad_file(path, "is a tuple without a list of items")
    return tuple(codec.decode(item, (*path, i)) for i, item in enumerate(items))


def _check_dict(codec: Codec, value: Any, path: PathT) -> None:
    if type(value) is not dict and not tracked_by_keras(value):
        fail(codec, path, value, "a dict subclass", "pass a plain dict.")
    for key, item in value.items():
        if type(key) is not str:
            codec.check(key, (*path, f"<key {key!r}>"))
        codec.check(item, (*path, str(key)))


def _encode_dict(codec: Codec, value: Any, path: PathT) -> JSON:
    if all(type(key) is str for key in value) and not _RESERVED_KEYS.intersection(value):
        return {key: codec.encode(item, (*path, key)) for key, item in value.items()}
    return {
        TAG: "dict",
        "items": [
            [codec.encode(key, (*path, f"<key {key!r}>")), codec.encode(item, (*path, str(key)))]
            for key, item in value.items()
        ],
    }


def _decode_dict(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    items = data.get("items")
    if type(items) is not list or not all(type(p) is list and len(p) == 2 for p in items):
        bad_file(path, "is a dict without a list of [key, value] pairs")
    result = {}
    for key_data, item in items:
        key = codec.decode(key_data, path)
        try:
            hash(key)
        except TypeError:
            bad_file(path, f"has an unhashable dict key {key!r}")
        result[key] = codec.decode(item, (*path, str(key)))
    return result


def plain_json(data: Any) -> JSON:
    """Keras configs may hold tuples; JSON cannot tell them from lists."""
    if type(data) is dict:
        return {key: plain_json(item) for key, item in data.items()}
    if type(data) in (list, tuple):
        return [plain_json(item) for item in data]
    return data


def register_container_handlers(c: Codec) -> None:
    """Lists, tuples and dicts."""
    c.register((list,), Handler("list", _check_list, _encode_list))
    c.register((tuple,), Handler("tuple", _check_tuple, _encode_tuple, _decode_tuple, "tuple"))
    c.register((dict,), Handler("dict", _check_dict, _encode_dict, _decode_dict, "dict"))
