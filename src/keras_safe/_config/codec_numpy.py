"""Codec handlers for numpy arrays, numpy scalars, dtypes and bytes."""

from __future__ import annotations

import base64
import math
from typing import Any

import ml_dtypes
import numpy as np

from keras_safe._config.codec_core import JSON, SCALARS, TAG, Codec, Handler, PathT, bad_file, fail

_DTYPE_KINDS = frozenset("biuf")
_ML_DTYPES = frozenset(
    name
    for name in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3b11fnuz", "int4", "uint4")
    if hasattr(ml_dtypes, name)
)
# bool, the signed and unsigned integers and the IEEE floats.
_NUMPY_NAMES = frozenset(str(np.dtype(code).name) for code in "?bhilqBHILQefd")
# Longest numpy str item (characters). Decoding a scalar or a dtype allocates
# by the declared length, so a file must not be able to ask for any length;
# encoding refuses longer items so that everything written can be read.
_MAX_STR_LENGTH = 1 << 16


def _dtype_name(dtype: np.dtype[Any]) -> str | None:
    name = str(dtype.name)
    if dtype.kind in _DTYPE_KINDS and name in _NUMPY_NAMES:
        return name
    if dtype.kind == "U":
        length = dtype.itemsize // 4
        return f"<U{length}" if length <= _MAX_STR_LENGTH else None
    if name in _ML_DTYPES:
        return name
    return None


def parse_dtype(name: Any, path: PathT) -> np.dtype[Any]:
    if not isinstance(name, str):
        bad_file(path, f"has a dtype that is not a string ({name!r})")
    if name in _ML_DTYPES:
        return np.dtype(getattr(ml_dtypes, name))  # type: ignore[no-any-return]
    if name in _NUMPY_NAMES:
        return np.dtype(name)
    if name.startswith("<U") and name[2:].isdigit() and int(name[2:]) <= _MAX_STR_LENGTH:
        return np.dtype(name)
    bad_file(path, f"has an unsupported dtype {name!r}")


def check_dtype_of(codec: Codec, value: Any, dtype: np.dtype[Any], path: PathT) -> str:
    name = _dtype_name(dtype)
    if name is None and dtype.kind == "U":
        fail(
            codec,
            path,
            value,
            f"numpy str data of dtype {dtype}",
            f"numpy str items are limited to {_MAX_STR_LENGTH} characters in a config; "
            "pass a Python str, or store long text as an asset or a weight.",
        )
    if name is None:
        fail(
            codec,
            path,
            value,
            f"numpy data of dtype {dtype}",
            "use a numeric, bool or str dtype (object, complex, void and datetime arrays "
            "have no faithful JSON form).",
        )
    return name


def _check_ndarray(codec: Codec, value: Any, path: PathT) -> None:
    check_dtype_of(codec, value, value.dtype, path)
    if value.nbytes > codec.numpy_limit:
        fail(
            codec,
            path,
            value,
            f"a numpy array of {value.nbytes / (1 << 20):.1f} MiB (limit "
            f"{codec.numpy_limit / (1 << 20):.1f} MiB)",
            "the config is not the place for bulk data. Store it as a weight in build(), "
            "e.g. self.table = self.add_weight(shape=array.shape, initializer="
            "keras.initializers.Constant(array), trainable=False), and pass only its shape.",
        )


def _encode_ndarray(codec: Codec, value: Any, path: PathT) -> JSON:
    name = check_dtype_of(codec, value, value.dtype, path)
    if value.nbytes > codec.numpy_limit:
        _check_ndarray(codec, value, path)
    return {TAG: "ndarray", "dtype": name, "shape": list(value.shape), "value": value.tolist()}


def _decode_ndarray(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    dtype = parse_dtype(data.get("dtype"), path)
    shape = data.get("shape")
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        bad_file(path, "is an array without a valid shape")
    size = math.prod(shape) * dtype.itemsize
    if size > codec.numpy_limit:
        bad_file(path, f"declares a {size}-byte array, over the limit of {codec.numpy_limit}")
    try:
        array = np.array(data.get("value"), dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        bad_file(path, f"holds values that do not fit dtype {dtype} ({exc})")
    if array.size == 0 and math.prod(shape) == 0:
        # tolist() of an empty array drops the axes after the first zero-length
        # one ((0, 3) -> []), so only the declared shape can restore them.
        array = array.reshape(shape)
    if list(array.shape) != shape:
        bad_file(path, f"holds values of shape {list(array.shape)}, not the declared {shape}")
    return array


def _check_numpy_scalar(codec: Codec, value: Any, path: PathT) -> None:
    check_dtype_of(codec, value, value.dtype, path)


def _encode_numpy_scalar(codec: Codec, value: Any, path: PathT) -> JSON:
    name = check_dtype_of(codec, value, value.dtype, path)
    item = value.item()
    return {
        TAG: "numpy_scalar",
        "dtype": name,
        "value": float(item) if name in _ML_DTYPES else item,
    }


def _decode_numpy_scalar(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    dtype = parse_dtype(data.get("dtype"), path)
    raw = data.get("value")
    if type(raw) not in SCALARS or raw is None:
        bad_file(path, "is a numpy scalar without a scalar value")
    try:
        return np.array(raw, dtype=dtype)[()]
    except (TypeError, ValueError, OverflowError) as exc:
        bad_file(path, f"holds a value that does not fit dtype {dtype} ({exc})")


def _check_np_dtype(codec: Codec, value: Any, path: PathT) -> None:
    check_dtype_of(codec, value, value, path)


def _encode_np_dtype(codec: Codec, value: Any, path: PathT) -> JSON:
    return {TAG: "dtype", "dtype": check_dtype_of(codec, value, value, path)}


def _decode_np_dtype(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    return parse_dtype(data.get("dtype"), path)


def _encode_bytes(codec: Codec, value: Any, path: PathT) -> JSON:
    return {TAG: "bytes", "base64": base64.b64encode(value).decode("ascii")}


def _decode_bytes(codec: Codec, data: dict[str, Any], path: PathT) -> Any:
    text = data.get("base64")
    if not isinstance(text, str):
        bad_file(path, "is bytes without base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        bad_file(path, "is bytes whose base64 text is invalid")


def _check_bytes(codec: Codec, value: Any, path: PathT) -> None:
    if type(value) is not bytes:
        fail(codec, path, value, "a bytes-like object other than bytes", "pass bytes(value).")
    if len(value) > codec.numpy_limit:
        fail(
            codec,
            path,
            value,
            f"{len(value)} bytes of data",
            "store bulk data as a weight or an asset, not in the config.",
        )


def register_numpy_handlers(c: Codec) -> None:
    """numpy arrays, numpy scalars, numpy dtypes and bytes."""
    c.register(
        (np.ndarray,),
        Handler("ndarray", _check_ndarray, _encode_ndarray, _decode_ndarray, "ndarray"),
    )
    c.register(
        (np.generic,),
        Handler(
            "numpy_scalar",
            _check_numpy_scalar,
            _encode_numpy_scalar,
            _decode_numpy_scalar,
            "numpy_scalar",
        ),
    )
    c.register(
        (np.dtype,), Handler("dtype", _check_np_dtype, _encode_np_dtype, _decode_np_dtype, "dtype")
    )
    c.register((bytes,), Handler("bytes", _check_bytes, _encode_bytes, _decode_bytes, "bytes"))
