"""Codec handlers for classes, enums, functions and Keras objects."""

from __future__ import annotations

import enum
import sys
import types
from typing import Any

import keras
import numpy as np

from keras_safe import _keras
from keras_safe._config.codec_core import (
    JSON,
    TAG,
    Codec,
    Handler,
    PathT,
    bad_file,
    fail,
    find_registered,
    format_path,
    lookup,
    plain_json,
    registered_key,
    unsupported,
)
from keras_safe._config.codec_numpy import check_dtype_of, parse_dtype
from keras_safe._config.describe import defined_in_keras
from keras_safe.errors import CompatibilityError, UnsafeModelError

_BUILTIN_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}


def _check_type(codec: Codec, value: Any, path: PathT) -> None:
    _encode_type(codec, value, path)


def _encode_type(codec: Codec, value: Any, path: PathT) -> JSON:
    if issubclass(value, np.generic):
        name = check_dtype_of(codec, value, np.dtype(value), path)
        return {TAG: "numpy_type", "dtype": name}
    if value in _BUILTIN_TYPES.values():
        return {TAG: "builtin_type", "name": value.__name__}
    key = registered_key(value)
    if key is not None:
        return {TAG: "class", "module": value.__module__, "registered_name": key}
    public = _keras.public_keras_name(value)
    if public is not None:
        module, _, name = public.rpartition(".")
        return {TAG: "class", "module": module, "class_name": name}
    fail(
        codec,
        path,
        value,
        f"the unregistered class {value.__qualname__}",
        'register it: put @keras_safe.register(package="your_project") on the class.',
    )


def _decode_type(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    tag = data[TAG]
    if tag == "numpy_type":
        return parse_dtype(data.get("dtype"), path).type
    if tag == "builtin_type":
        name = data.get("name")
        if name not in _BUILTIN_TYPES:
            bad_file(path, f"names an unsupported builtin type {name!r}")
        return _BUILTIN_TYPES[name]
    key = data.get("registered_name")
    if isinstance(key, str):
        return lookup(find_registered, key, path, "class")
    module, name = data.get("module"), data.get("class_name")
    if isinstance(module, str) and isinstance(name, str):
        obj = _keras.keras_symbol(f"{module}.{name}")
        if isinstance(obj, type):
            return obj
    bad_file(path, "names a class that is neither registered nor a Keras built-in")


def _check_enum(codec: Codec, value: Any, path: PathT) -> None:
    if registered_key(type(value)) is None:
        fail(
            codec,
            path,
            value,
            f"a member of the unregistered enum {type(value).__qualname__}",
            'register the enum: put @keras_safe.register(package="your_project") on it.',
        )


def _encode_enum(codec: Codec, value: Any, path: PathT) -> JSON:
    _check_enum(codec, value, path)
    cls = type(value)
    return {
        TAG: "enum",
        "module": cls.__module__,
        "registered_name": registered_key(cls),
        "member": value.name,
    }


def _decode_enum(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    key, member = data.get("registered_name"), data.get("member")
    if not isinstance(key, str) or not isinstance(member, str):
        bad_file(path, "is an enum member without registered_name and member")
    cls = lookup(find_registered, key, path, "enum")
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        bad_file(path, f"names {key!r} as an enum, but it is not one")
    try:
        return cls[member]
    except KeyError:
        owner = codec.owner or "the class"
        at = f'config["{path[0]}"]' if len(path) == 1 else f"the value at {format_path(path)}"
        raise CompatibilityError(
            f"Config value at `{format_path(path)}` is {key}.{member}, but the enum "
            f"{cls.__qualname__} has no member {member!r} any more (it has "
            f"{', '.join(cls.__members__)}). Fix, either: keep the old name as an alias "
            f"in the enum ({member} = <the replacing member's value>), or bump "
            f"{owner}.config_version and, in {owner}.upgrade_config, replace {at} (saved "
            f'as {{..., "member": {member!r}}}) with the replacing member.'
        ) from None


def _function_form(codec: Codec, value: Any, path: PathT) -> JSON:
    key = registered_key(value)
    if key is not None:
        return {
            "module": value.__module__,
            "class_name": "function",
            "config": key,
            "registered_name": key,
        }
    public = _keras.public_keras_name(value)
    if public is not None:
        module, _, name = public.rpartition(".")
        return {"module": module, "class_name": "function", "config": name, "registered_name": None}
    if value.__name__ == "<lambda>":
        fail(
            codec,
            path,
            value,
            "a lambda",
            "a lambda has no name to find it by when the model is loaded. Use a named "
            "function and register it:\n"
            '    @keras_safe.register(package="your_project")\n'
            "    def my_function(x): ...",
        )
    fail(
        codec,
        path,
        value,
        f"the unregistered function {value.__qualname__}",
        f"register it so a fresh process can find it:\n"
        f'    @keras_safe.register(package="your_project")\n'
        f"    def {value.__name__}(...): ...",
    )


def _check_function(codec: Codec, value: Any, path: PathT) -> None:
    _function_form(codec, value, path)


def _check_nothing(codec: Codec, value: Any, path: PathT) -> None:
    return None


def _check_keras_object(codec: Codec, value: Any, path: PathT) -> None:
    if is_tf_dtype(value):
        return
    cls = type(value)
    if not hasattr(value, "get_config"):
        unsupported(codec, value, path)
    if defined_in_keras(cls) or registered_key(cls) is not None:
        return
    fail(
        codec,
        path,
        value,
        f"an instance of the unregistered class {cls.__qualname__}",
        "register the class so a fresh process can rebuild it: put "
        '@keras_safe.register(package="your_project") on it (subclass '
        "keras_safe.SerializableLayer / Serializable to get its config for free).",
    )


def _encode_keras_object(codec: Codec, value: Any, path: PathT) -> JSON:
    if is_tf_dtype(value):
        return _encode_tf_dtype(codec, value, path)
    _check_keras_object(codec, value, path)
    data = plain_json(keras.saving.serialize_keras_object(value))
    if _keras.sharing_objects():
        # One object passed to several layers (tied weights) must load as one
        # object. Keras marks a repeat only on the configs it still holds
        # (serialization_lib.record_object_after_serialization), but every
        # get_config() result has been copied by then (serialize_dict), so the
        # first occurrence would load as a separate object. Mark each one.
        data["shared_object_id"] = id(value)
    return data


def _decode_keras_object(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    try:
        obj = keras.saving.deserialize_keras_object(data)
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, (CompatibilityError, UnsafeModelError)):
            raise
        module = data.get("module")
        name = data.get("registered_name") or data.get("class_name")
        raise CompatibilityError(
            f"Could not rebuild the {name!r} (module {module!r}) at `{format_path(path)}`: "
            f"{exc}\nFix: make sure the class is registered (@keras_safe.register) and its "
            "module is imported, or pass it in custom_objects."
        ) from exc
    inner = data.get("config")
    if (
        isinstance(obj, keras.layers.Layer)
        and isinstance(inner, dict)
        and inner.get("trainable") is False
        and obj.trainable
    ):
        # Some Keras classes drop their own flag in from_config
        # (Sequential.from_config builds cls(name=name) only).
        obj.trainable = False
    return obj


# -- TensorFlow dtypes ---------------------------------------------------------------
#
# A tf.DType argument (tf.float32) is stored by name under every backend. It
# comes back as a tf.DType where TensorFlow is the backend or already
# imported (so a model verified in the process that saved it compares
# equal), and otherwise as the dtype's name, which every Keras API accepts in
# place of a dtype object; neither needs TensorFlow imported to decode.

_TF_DTYPE_NAMES = frozenset(
    {
        "bfloat16", "bool", "complex64", "complex128", "float16", "float32", "float64",
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "string",
        "float8_e4m3fn", "float8_e5m2",
    }
)  # fmt: skip
_TF_ONLY_DTYPE_NAMES = frozenset(
    {"qint8", "qint16", "qint32", "quint8", "quint16", "resource", "variant"}
)


def _tensorflow_if_imported() -> Any:
    """The TensorFlow module if the backend is TensorFlow or it was imported, else None."""
    if "tensorflow" not in sys.modules and keras.backend.backend() == "tensorflow":
        import tensorflow  # noqa: F401
    return sys.modules.get("tensorflow")


def is_tf_dtype(value: Any) -> bool:
    """Whether ``value`` is a ``tf.DType`` (without importing TensorFlow)."""
    module = sys.modules.get("tensorflow")
    dtype_class = getattr(getattr(module, "dtypes", None), "DType", None)
    return dtype_class is not None and isinstance(value, dtype_class)


def _encode_tf_dtype(codec: Codec, value: Any, path: PathT) -> JSON:
    return {TAG: "tf_dtype", "dtype": value.name}


def _decode_tf_dtype(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    name = data.get("dtype")
    if not isinstance(name, str) or name not in _TF_DTYPE_NAMES | _TF_ONLY_DTYPE_NAMES:
        bad_file(path, f"names an unknown TensorFlow dtype {name!r}")
    tf = _tensorflow_if_imported()
    if tf is not None:
        if not hasattr(tf.dtypes, name):
            raise CompatibilityError(
                f"Config value at `{format_path(path)}` is the TensorFlow dtype tf.{name}, "
                f"which TensorFlow {tf.__version__} does not have. Fix: install the TensorFlow "
                "release the file was saved with (keras-safe inspect shows it)."
            )
        return tf.dtypes.as_dtype(name)
    if name in _TF_ONLY_DTYPE_NAMES:
        raise CompatibilityError(
            f"Config value at `{format_path(path)}` is the TensorFlow dtype tf.{name}, which "
            f"has no equivalent on the {keras.backend.backend()} backend. Fix: load this file "
            "with KERAS_BACKEND=tensorflow."
        )
    return name


def register_object_handlers(c: Codec) -> None:
    """Classes, enum members, functions, and (as the fallback) Keras objects."""
    for tag in ("class", "numpy_type", "builtin_type"):
        handler = Handler(tag, _check_type, _encode_type, _decode_type, tag)
        c.register((type,) if tag == "class" else (), handler)
    c.register((enum.Enum,), Handler("enum", _check_enum, _encode_enum, _decode_enum, "enum"))
    c.register(
        (types.FunctionType, types.BuiltinFunctionType),
        Handler("function", _check_function, _function_form),
    )
    tf_dtype = Handler("tf_dtype", _check_nothing, _encode_tf_dtype, _decode_tf_dtype, "tf_dtype")
    c.register((), tf_dtype)  # found by the fallback: by type would need TensorFlow imported
    c.set_fallback(Handler("keras_object", _check_keras_object, _encode_keras_object))
    c.set_object_decoder(_decode_keras_object)
