"""keras_safe.testing.assert_roundtrip: passes for what round-trips, names what does not."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

import keras_safe
from keras_safe.errors import _UsageError
from keras_safe.testing import assert_roundtrip

X = np.random.default_rng(0).random((4, 6)).astype("float32")


@pytest.fixture
def layers(scope: keras_safe.Registry) -> dict[str, Any]:
    """Custom classes, registered for the test only."""

    @keras_safe.register(package="rt")
    class Mixer(keras_safe.SerializableLayer):
        def __init__(self, units: int, window: tuple[int, int] = (2, 2), **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.window = window
            self.inner = keras.layers.Dense(units)

        def build(self, input_shape: Any) -> None:
            self.inner.build(input_shape)

        def call(self, x: Any) -> Any:
            return self.inner(x)

    @keras.saving.register_keras_serializable(package="rt")
    class ListsWindow(keras.layers.Layer):  # hand-written config: the tuple comes back a list
        def __init__(self, units: int, window: Any = (2, 2), **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.window = window

        def call(self, x: Any) -> Any:
            return x

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units, "window": self.window}

    @keras.saving.register_keras_serializable(package="rt")
    class ForgetsScale(keras.layers.Layer):
        def __init__(self, units: int, scale: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.scale = scale

        def call(self, x: Any) -> Any:
            return x * self.scale

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

    @keras.saving.register_keras_serializable(package="rt")
    class Flagged(keras.layers.Layer):  # state set after construction is not in the config
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.use_bias = False

        def build(self, input_shape: Any) -> None:
            self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")
            if self.use_bias:
                self.bias = self.add_weight(shape=(2,), name="bias")

        def call(self, x: Any) -> Any:
            y = keras.ops.matmul(x, self.kernel)
            return y + self.bias if self.use_bias else y

    @keras_safe.register(package="rt")
    class Focal(keras_safe.Serializable, keras.losses.Loss):
        def __init__(self, gamma: float = 2.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.gamma = gamma

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return keras.ops.mean((y_true - y_pred) ** 2)

    class Unregistered(keras_safe.Serializable, keras.losses.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return keras.ops.mean(y_pred)

    return {c.__name__: c for c in (Mixer, ListsWindow, ForgetsScale, Flagged, Focal, Unregistered)}


def test_passes_for_layers_models_and_other_objects(layers: dict[str, Any]) -> None:
    assert_roundtrip(layers["Mixer"](3, window=(1, 3)), X)
    assert_roundtrip(keras.layers.Dense(3, activation="relu"), X)

    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(1)(layers["Mixer"](4)(inputs)))
    model.compile(optimizer="adam", loss=layers["Focal"](gamma=1.5))
    model.fit(X, np.ones((4, 1)), verbose=0)
    assert_roundtrip(model, X)

    assert_roundtrip(layers["Focal"](gamma=3.0))
    assert_roundtrip(keras.initializers.HeNormal(seed=3))
    assert_roundtrip(keras.metrics.AUC(num_thresholds=50))
    built = layers["Mixer"](2)
    built.build((None, 6))
    assert_roundtrip(built)  # built layers need no sample input


def test_a_tuple_that_comes_back_a_list_is_named(layers: dict[str, Any]) -> None:
    with pytest.raises(AssertionError) as error:
        assert_roundtrip(layers["ListsWindow"](3, name="lw"), X)
    message = str(error.value)
    assert "ListsWindow 'lw': its config does not round-trip" in message
    assert "ListsWindow.window: original (2, 2) (tuple), rebuilt [2, 2]" in message
    assert "Fix: get_config() must return every constructor argument" in message


def test_an_argument_missing_from_get_config_is_named(layers: dict[str, Any]) -> None:
    with pytest.raises(AssertionError) as error:
        assert_roundtrip(layers["ForgetsScale"](3, scale=2.0), X)
    assert (
        "ForgetsScale.scale: an argument of __init__ that get_config() does not return, so a "
        "rebuilt object gets its default 1.0"
    ) in str(error.value)


def test_custom_layers_inside_a_model_are_checked(layers: dict[str, Any]) -> None:
    inputs = keras.Input((6,))
    model = keras.Model(inputs, layers["ListsWindow"](3, name="inner")(inputs), name="outer")
    with pytest.raises(AssertionError, match=r"Functional 'outer' > ListsWindow 'inner'"):
        assert_roundtrip(model, X)


def test_weights_that_do_not_load_are_named(layers: dict[str, Any]) -> None:
    flagged = layers["Flagged"](name="flagged")
    flagged.use_bias = True
    with pytest.raises(AssertionError) as error:
        assert_roundtrip(flagged, X)
    message = str(error.value)
    assert "Flagged 'flagged' does not survive keras_safe.save / keras_safe.load" in message
    assert "2 weights in the file were not loaded into any variable: " in message
    assert "layers/flagged/vars/0, layers/flagged/vars/1" in message


def test_unregistered_classes_fail_with_the_fix(layers: dict[str, Any]) -> None:
    with pytest.raises(AssertionError) as error:
        assert_roundtrip(layers["Unregistered"]())
    assert "Unregistered is not registered, so a fresh process cannot rebuild it" in str(
        error.value
    )
    assert "@keras_safe.register(package=" in str(error.value)


def test_unbuilt_layer_without_sample_and_non_keras_objects(layers: dict[str, Any]) -> None:
    with pytest.raises(_UsageError, match="needs sample_input"):
        assert_roundtrip(layers["Mixer"](3))
    with pytest.raises(_UsageError, match="got dict"):
        assert_roundtrip({"units": 3})
