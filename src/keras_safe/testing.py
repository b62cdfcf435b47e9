"""``assert_roundtrip``: the one line to add to your own test suite.

It checks what a fresh process will do with your layer, model or other
Keras object: rebuild it from its config (values *and* types: a tuple must
come back a tuple), save it into a real keras_safe archive and load it back,
with every weight and (given a sample input) every output bit for bit equal.
A failure is an ``AssertionError`` naming the argument or weight that
differs.
"""

from __future__ import annotations

import copy
import inspect
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_safe import _keras
from keras_safe._config.base import SerializableLayer
from keras_safe._config.describe import defined_in_keras
from keras_safe._config.registry import register, registry
from keras_safe._ops.compare import (
    Sides,
    config_differences,
    output_differences,
    weight_differences,
)
from keras_safe._ops.load import load
from keras_safe._ops.save import save
from keras_safe.errors import KerasSafeError, _UsageError

__all__ = ["assert_roundtrip"]

ORIGINAL_REBUILT = Sides(
    left="original",
    right="rebuilt",
    only_left="the original has {value}, the rebuilt object does not",
    only_right="not in the original, the rebuilt object has {value}",
    layer_only_left="in the original only",
    layer_only_right="in the rebuilt object only",
    counts="the original has {left} items, the rebuilt object {right}",
)
_CONFIG_FIX = (
    "Fix: get_config() must return every constructor argument, as given (a tuple stays a "
    "tuple), and from_config() must rebuild nested objects; or subclass "
    "keras_safe.SerializableLayer / SerializableModel / Serializable, whose config comes "
    "from __init__."
)


def assert_roundtrip(obj: Any, sample_input: Any = None) -> None:
    """Assert that ``obj`` survives its config and a keras_safe archive unchanged.

    For a layer, a model, or any other Keras object with a config (loss,
    metric, initializer, regularizer, constraint, optimizer, schedule):

    1. ``type(obj).from_config(get_config())``, through JSON as in a file,
       gives an object whose config is equal in values and types;
    2. saved with :func:`keras_safe.save` into a temporary archive (a layer
       is wrapped in a model, another object is held by a layer) and loaded
       with :func:`keras_safe.load`, it has the same config, every weight
       bit for bit, and, given ``sample_input``, the same outputs.

    Args:
        obj: The object to check. Its classes must be registered
            (``@keras_safe.register``), as for saving.
        sample_input: An input batch (array, or a structure of arrays) for
            comparing outputs; needed to build a layer that is not built yet.

    Raises:
        AssertionError: Naming the argument, weight or output that differs,
            or why saving or loading failed.

    Example:
        >>> def test_attention_roundtrip():
        ...     keras_safe.testing.assert_roundtrip(CustomAttention(16), np.zeros((2, 12, 8)))
    """
    label = _label(obj)
    if isinstance(obj, keras.Model):
        _check_config(obj, label, exact=not defined_in_keras(type(obj)))
        for layer in _keras.all_layers(obj):
            if not defined_in_keras(type(layer)):
                _check_config(layer, f"{label} > {_label(layer)}", exact=True)
        _check_archive(obj, sample_input, label)
    elif isinstance(obj, keras.layers.Layer):
        _check_config(obj, label, exact=True)
        _check_archive(_wrap(obj, sample_input, label), sample_input, label)
    elif hasattr(obj, "get_config") and hasattr(type(obj), "from_config"):
        _check_config(obj, label, exact=True)
        _check_held(obj, label)
    else:
        raise _UsageError(
            f"assert_roundtrip takes a Keras layer, model or another object with "
            f"get_config()/from_config(); got {type(obj).__name__}."
        )


def _label(obj: Any) -> str:
    name = getattr(obj, "name", None)
    cls = type(obj).__name__
    return f"{cls} {name!r}" if isinstance(name, str) and name else cls


def _fail(label: str, what: str, problems: list[str], fix: str = "") -> None:
    lines = "\n".join(f"  - {p}" for p in problems)
    raise AssertionError(f"{label}: {what}:\n{lines}" + (f"\n{fix}" if fix else ""))


def _check_config(obj: Any, label: str, exact: bool) -> None:
    """``from_config(get_config())`` through JSON gives the same config."""
    config = obj.get_config()
    try:
        stored = json.loads(json.dumps(config))
    except (TypeError, ValueError) as exc:
        _fail(label, "get_config() returns something a file cannot hold", [str(exc)], _CONFIG_FIX)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rebuilt = type(obj).from_config(copy.deepcopy(stored))  # Keras pops keys
            again = rebuilt.get_config()
    except Exception as exc:  # user code: anything can fail
        raise AssertionError(
            f"{label}: from_config(get_config()) fails: {type(exc).__name__}: {exc}\n{_CONFIG_FIX}"
        ) from exc
    if not exact:  # Keras' own model configs hold tuples that come back as lists
        config = stored
        again = json.loads(json.dumps(again))
    problems = _missing_arguments(obj, config) if not defined_in_keras(type(obj)) else []
    problems += config_differences(
        config, again, type(obj).__name__, sides=ORIGINAL_REBUILT, exact_sequences=exact
    )
    if problems:
        _fail(label, "its config does not round-trip", problems, _CONFIG_FIX)


def _missing_arguments(obj: Any, config: dict[str, Any]) -> list[str]:
    """``__init__`` parameters that get_config() leaves out: they come back as defaults."""
    cls = type(obj)
    try:
        parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    problems = []
    for param in parameters:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in config:
            continue
        after = (
            "its default " + repr(param.default)
            if param.default is not param.empty
            else "no value (from_config fails)"
        )
        problems.append(
            f"{cls.__name__}.{param.name}: an argument of __init__ that get_config() does not "
            f"return, so a rebuilt object gets {after}"
        )
    return problems


def _wrap(layer: Any, sample_input: Any, label: str) -> Any:
    """A functional model around ``layer``, with inputs shaped like ``sample_input``."""
    if sample_input is not None:
        inputs = keras.tree.map_structure(_input_like, sample_input)
    else:
        shape = layer.get_build_config().get("input_shape") if layer.built else None
        if shape is None:
            raise _UsageError(
                f"assert_roundtrip({label}) needs sample_input: the layer is not built, so "
                "the shape of its inputs is unknown. Pass a batch, e.g. "
                "assert_roundtrip(layer, np.zeros((2, 16), 'float32'))."
            )
        inputs = keras.Input(batch_shape=tuple(shape))
    return keras.Model(inputs, layer(inputs))


def _input_like(value: Any) -> Any:
    array = np.asarray(keras.ops.convert_to_numpy(value))
    return keras.Input(shape=array.shape[1:], dtype=keras.backend.standardize_dtype(array.dtype))


def _check_archive(model: Any, sample_input: Any, label: str) -> None:
    """Save into a temporary archive, load it, compare config, weights, outputs."""
    with tempfile.TemporaryDirectory(prefix="keras-safe-roundtrip-") as scratch:
        path = Path(scratch) / "roundtrip.keras"
        try:
            save(model, path, roundtrip=True, sample_input=sample_input)
            loaded = load(path, on_mismatch="ignore")
        except KerasSafeError as exc:
            raise AssertionError(
                f"{label} does not survive keras_safe.save / keras_safe.load:\n{exc}"
            ) from exc
    problems = config_differences(
        json.loads(json.dumps(_keras.serialize_model(model))),
        json.loads(json.dumps(_keras.serialize_model(loaded))),
        sides=ORIGINAL_REBUILT,
    )
    problems += weight_differences(model.weights, loaded.weights)
    if sample_input is not None and not problems:
        problems += output_differences(model, loaded, sample_input)
    if problems:
        _fail(label, "the model loaded from the archive differs", problems)


class _Holder(SerializableLayer):
    """A layer carrying ``value`` as an argument, to put any object into an archive."""

    def __init__(self, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value = value

    def call(self, inputs: Any) -> Any:
        return inputs


def _check_held(obj: Any, label: str) -> None:
    """An object that is not a layer goes into the archive as a layer's argument."""
    cls = type(obj)
    if (
        not defined_in_keras(type(obj))
        and keras.saving.get_registered_object(keras.saving.get_registered_name(cls)) is not cls
    ):
        raise AssertionError(
            f"{label}: class {cls.__module__}.{cls.__qualname__} is not registered, so a fresh "
            "process cannot rebuild it. Fix: decorate it with "
            "@keras_safe.register(package='your_project')."
        )
    with registry.scope():
        register(package="keras_safe.testing")(_Holder)
        try:
            inputs = keras.Input((1,))
            model = keras.Model(inputs, _Holder(obj, name="holder")(inputs))
        except KerasSafeError as exc:
            raise AssertionError(f"{label} cannot be saved as an argument:\n{exc}") from exc
        with tempfile.TemporaryDirectory(prefix="keras-safe-roundtrip-") as scratch:
            path = Path(scratch) / "roundtrip.keras"
            try:
                save(model, path, roundtrip=True)
                loaded = load(path, on_mismatch="ignore").get_layer("holder").value
            except KerasSafeError as exc:
                raise AssertionError(
                    f"{label} does not survive keras_safe.save / keras_safe.load:\n{exc}"
                ) from exc
    if type(loaded) is not type(obj):
        _fail(label, "a different class came back", [f"{type(obj)} became {type(loaded)}"])
    problems = config_differences(
        obj.get_config(),
        loaded.get_config(),
        type(obj).__name__,
        sides=ORIGINAL_REBUILT,
        exact_sequences=True,
    )
    if problems:
        _fail(label, "the object loaded from the archive differs", problems, _CONFIG_FIX)
