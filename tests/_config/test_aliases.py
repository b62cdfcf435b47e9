"""Renamed classes: aliases bring back the config and the weights (in process, with
registry scopes standing in for two versions of the code; test_evolution.py does
the same across fresh processes)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import keras_safe

X = np.random.default_rng(0).random((3, 4)).astype("float32")


def layer_class(name: str, package: str, aliases: tuple[str, ...] = ()) -> Any:
    """A registered layer class called ``name`` with one (4, 4) kernel."""

    def __init__(self: Any, units: int = 4, **kwargs: Any) -> None:
        keras_safe.SerializableLayer.__init__(self, **kwargs)
        self.units = units

    def build(self: Any, input_shape: Any) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

    def call(self: Any, x: Any) -> Any:
        return keras.ops.tanh(x @ self.kernel)

    body = {"__init__": __init__, "build": build, "call": call, "__module__": package}
    body["__qualname__"] = f"{package}.{name}"  # two classes may share a name
    cls = type(name, (keras_safe.SerializableLayer,), body)
    return keras_safe.register(package=package, aliases=aliases)(cls)


def stack_class(blocks: list[Any]) -> Any:
    """A subclassed model keeping instances of ``blocks`` in a list attribute."""

    @keras_safe.register(package="models")
    class Stack(keras_safe.SerializableModel):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.blocks = [cls() for cls in blocks]

        def call(self, x: Any) -> Any:
            for block in self.blocks:
                x = block(x)
            return x

    return Stack


def functional(layers: list[Any], stack: Any) -> keras.Model:
    inputs = keras.Input((4,))
    x = inputs
    for cls in layers:
        x = cls()(x)
    return keras.Model(inputs, stack()(x))


def save_v1(path: Path, gate_name: str = "Gate", package: str = "old") -> np.ndarray:
    with keras_safe.registry.scope():
        unit, gate = layer_class("Unit", "lib"), layer_class(gate_name, package)
        model = functional([unit, gate, unit, gate], stack_class([gate, unit, gate]))
        keras_safe.save(model, path)
        return keras.ops.convert_to_numpy(model(X))


def load_quietly(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_safe.CompatibilityWarning)
        return keras_safe.load(path)


def test_renamed_class_brings_back_config_and_weights(tmp_path: Path) -> None:
    expected = save_v1(tmp_path / "m.keras")
    with keras_safe.registry.scope():
        unit = layer_class("Unit", "lib")
        gated = layer_class("GatedUnit", "new", aliases=("old>Gate",))
        stack_class([gated, unit, gated])
        restored = load_quietly(tmp_path / "m.keras")
        assert sum(isinstance(layer, gated) for layer in restored.layers) == 2
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(X)), expected)
        assert keras_safe.inspect(tmp_path / "m.keras").aliases == {"old>Gate": "new>GatedUnit"}


def test_class_renamed_to_a_name_another_class_has(tmp_path: Path) -> None:
    # Keras numbers weight paths per class name within a list: renaming Gate to
    # a second class called Unit shifts the numbers of the other Unit's paths.
    expected = save_v1(tmp_path / "m.keras")
    with keras_safe.registry.scope():
        unit = layer_class("Unit", "lib")
        renamed = layer_class("Unit", "other", aliases=("old>Gate",))
        stack_class([renamed, unit, renamed])
        restored = load_quietly(tmp_path / "m.keras")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(X)), expected)


def test_class_used_only_inside_a_subclassed_model(tmp_path: Path) -> None:
    # The config never names the renamed class: the weight paths of the file tell.
    with keras_safe.registry.scope():
        gate = layer_class("Gate", "old")
        model = functional([], stack_class([gate, gate]))
        keras_safe.save(model, tmp_path / "m.keras")
        expected = keras.ops.convert_to_numpy(model(X))
    with keras_safe.registry.scope():
        gated = layer_class("GatedUnit", "new", aliases=("old>Gate",))
        stack_class([gated, gated])
        restored = load_quietly(tmp_path / "m.keras")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(X)), expected)
        # A file written after the rename has the new paths and loads as is.
        keras_safe.save(functional([], stack_class([gated, gated])), tmp_path / "new.keras")
        load_quietly(tmp_path / "new.keras")


def test_package_renamed(tmp_path: Path) -> None:
    expected = save_v1(tmp_path / "m.keras")
    with keras_safe.registry.scope():
        unit = layer_class("Unit", "lib")
        gate = layer_class("Gate", "renamed_pkg", aliases=("old>Gate",))
        stack_class([gate, unit, gate])
        with pytest.warns(keras_safe.CompatibilityWarning) as caught:
            restored = keras_safe.load(tmp_path / "m.keras")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(X)), expected)
    message = str(caught[0].message)
    assert "old>Gate: saved under this key, now an alias of renamed_pkg>Gate" in message


def test_renamed_class_without_alias_is_missing_with_the_alias_fix(tmp_path: Path) -> None:
    save_v1(tmp_path / "m.keras")
    with keras_safe.registry.scope():
        unit = layer_class("Unit", "lib")
        gated = layer_class("GatedUnit", "new")
        stack_class([gated, unit, gated])
        with pytest.raises(keras_safe.MissingObjectsError) as info:
            keras_safe.load(tmp_path / "m.keras")
    assert "old>Gate" in str(info.value)
    assert "@keras_safe.register(..., aliases=('old>Gate',))" in str(info.value)
