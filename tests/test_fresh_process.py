"""A model of several custom layers, saved here, loads in a fresh process.

The fresh process imports only the module that defines the layers and calls
plain ``keras.models.load_model``: no custom_objects, no keras_safe calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import run_python

import keras_safe

MODULE = "fresh_layers"
SOURCE = '''
"""Custom layers covering what a config must carry across processes."""

import enum

import keras
import numpy as np
from keras import ops

import keras_safe

PACKAGE = "fresh_layers"


@keras_safe.register(package=PACKAGE)
class Pooling(enum.Enum):
    SUM = "sum"
    MEAN = "mean"


@keras_safe.register(package=PACKAGE)
def scaled_swish(x):
    return 1.5 * x * ops.sigmoid(x)


@keras_safe.register(package=PACKAGE)
class Affine(keras_safe.SerializableLayer):
    """A numpy and a tuple argument; a sublayer made in __init__, no build()."""

    def __init__(self, units, scale=np.ones(1, dtype="float32"), clip=(-3.0, 3.0), **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale, self.clip = units, scale, clip
        self.dense = keras.layers.Dense(units)

    def call(self, x):
        return ops.clip(ops.multiply(self.dense(x), self.scale), self.clip[0], self.clip[1])


@keras_safe.register(package=PACKAGE)
class Gate(keras_safe.SerializableLayer):
    """No **kwargs: name, trainable and dtype come back through from_config."""

    def __init__(self, pooling=Pooling.SUM, axes=(1,)):
        super().__init__()
        self.pooling, self.axes = pooling, axes

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="w")

    def call(self, x):
        gated = x * ops.sigmoid(self.w)
        reduce = ops.sum if self.pooling is Pooling.SUM else ops.mean
        return ops.concatenate([gated, reduce(gated, axis=self.axes, keepdims=True)], axis=-1)


@keras_safe.register(package=PACKAGE)
class Project(keras_safe.SerializableLayer):
    """Applies a layer it is given: passing one Dense to two of these ties them."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        return ops.tanh(self.dense(x))


@keras_safe.register(package=PACKAGE)
class Residual(keras_safe.SerializableLayer):
    """A layer argument, a registered activation, a list of layers, a nested Gate."""

    def __init__(self, inner, activation=scaled_swish, extra=(), **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.activation = keras.activations.get(activation)
        self.extra = list(extra)
        self.gate = Gate(pooling=Pooling.MEAN)

    def call(self, x):
        x = self.gate(x + self.activation(self.inner(x)))
        for layer in self.extra:
            x = layer(x)
        return x


def build_model():
    inputs = keras.Input((6,))
    tied = keras.layers.Dense(6, name="tied")
    x = Project(tied, name="project_2")(Project(tied, name="project_1")(inputs))
    scale = np.linspace(0.5, 1.5, 6, dtype="float32")
    x = Residual(
        Affine(6, scale=scale, clip=(-2.0, 2.0), name="affine"),
        extra=[keras.layers.Dense(5, activation=scaled_swish)],
        name="residual",
    )(x)
    gate = Gate(pooling=Pooling.SUM, axes=(1,))
    gate.trainable = False
    x = gate(x)
    outputs = keras.layers.Dense(3, activation=scaled_swish, name="head")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    return model
'''

CHILD = f"""
import json, sys
from pathlib import Path

import keras, numpy as np
import {MODULE} as m  # the only import: it registers the custom objects

folder = Path(sys.argv[1])
model = keras.models.load_model(folder / "model.keras")
data = np.load(folder / "data.npz")

np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(data["x"])), data["expected"])
config = json.loads(json.dumps(model.get_config()))  # Keras' own parts hold tuples
assert config == json.loads((folder / "config.json").read_text())
weights = model.get_weights()
assert len(weights) == len(data.files) - 2
for i, got in enumerate(weights):
    np.testing.assert_array_equal(got, data[f"arr_{{i}}"])

residual = model.get_layer("residual")
assert type(residual) is m.Residual and residual.activation is m.scaled_swish
affine = residual.inner
assert type(affine) is m.Affine and affine.name == "affine"
assert affine.scale.dtype == np.float32 and affine.scale.shape == (6,)
np.testing.assert_array_equal(affine.scale, np.linspace(0.5, 1.5, 6, dtype="float32"))
assert affine.clip == (-2.0, 2.0) and type(affine.clip) is tuple
assert residual.gate.pooling is m.Pooling.MEAN
assert [type(layer) for layer in residual.extra] == [keras.layers.Dense]
gate = [layer for layer in model.layers if type(layer) is m.Gate][0]
assert gate.pooling is m.Pooling.SUM and gate.axes == (1,) and type(gate.axes) is tuple
assert gate.trainable is False
assert model.get_layer("head").activation is m.scaled_swish
# The Dense passed to both Project layers is still one layer (tied weights).
assert model.get_layer("project_1").dense is model.get_layer("project_2").dense
print("LOADED-OK", len(weights))
"""


@pytest.mark.slow
def test_model_of_custom_layers_loads_in_a_fresh_process(
    tmp_path: Path, scope: keras_safe.Registry, import_module_from: Any
) -> None:
    module: Any = import_module_from(MODULE, SOURCE)
    model = module.build_model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    model.run_eagerly = True  # what is tested is the file, not graph tracing: keep it quick
    model.fit(x, rng.normal(size=(16, 3)).astype("float32"), epochs=1, batch_size=8, verbose=0)
    expected = keras.ops.convert_to_numpy(model(x))
    weights = model.get_weights()
    assert len(weights) == 10  # tied dense, affine dense, both gates, extra dense, head
    np.savez(tmp_path / "data.npz", *weights, x=x, expected=expected)
    config = model.get_config()
    (tmp_path / "config.json").write_text(json.dumps(config))
    residual = config["layers"][3]
    assert residual["registered_name"] == "fresh_layers>Residual"
    assert residual["config"]["inner"]["config"]["clip"] == {
        "__keras_safe__": "tuple",
        "items": [-2.0, 2.0],
    }
    model.save(tmp_path / "model.keras")

    proc = run_python(CHILD, str(tmp_path), path=[tmp_path])
    assert f"LOADED-OK {len(weights)}" in proc.stdout


def test_the_fresh_process_needs_the_defining_module(
    tmp_path: Path, scope: keras_safe.Registry, import_module_from: Any
) -> None:
    # The claim above is only meaningful if loading really needs the module:
    # with the registrations undone, plain Keras cannot find the classes.
    with keras_safe.registry.scope():
        module: Any = import_module_from(MODULE, SOURCE)
        model = module.build_model()
        model.save(tmp_path / "model.keras")
    with pytest.raises(TypeError, match="Could not locate class 'Project'"):
        keras.models.load_model(tmp_path / "model.keras")
