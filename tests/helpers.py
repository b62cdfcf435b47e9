"""Builders shared by the save/load tests: throwaway projects and small models."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import keras
import numpy as np
from conftest import write_module

import keras_safe

# A project with a few custom components, as users write them.
PROJECT = """
import keras
import keras_safe


@keras_safe.register(package="{package}")
def swish2(x):
    return x * keras.ops.sigmoid(x)


@keras_safe.register(package="{package}")
class Scale(keras_safe.SerializableLayer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w * self.factor


@keras_safe.register(package="{package}")
class Block(keras_safe.SerializableLayer):
    def __init__(self, units, activation=swish2, inner=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, activation=activation)
        self.inner = inner if inner is not None else keras.layers.BatchNormalization()

    def call(self, x, training=False):
        return self.inner(self.dense(x), training=training)


@keras_safe.register(package="{package}")
class HalfMSE(keras_safe.Serializable, keras.losses.Loss):
    def __init__(self, weight=0.5, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight

    def call(self, y_true, y_pred):
        return self.weight * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


@keras_safe.register(package="{package}")
class Halving(keras_safe.Serializable, keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, start=0.01, every=10):
        self.start = start
        self.every = every

    def __call__(self, step):
        return self.start * 0.5 ** keras.ops.floor(keras.ops.cast(step, "float32") / self.every)


def build(width=6):
    inputs = keras.Input((width,))
    x = Block(8, name="block")(inputs)
    x = Scale(3.0, name="scale")(x)
    outputs = keras.layers.Dense(1, name="head")(x)
    model = keras.Model(inputs, outputs, name="net")
    model.compile(
        optimizer=keras.optimizers.Adam(Halving()),
        loss=HalfMSE(),
        metrics=["mae"],
    )
    return model
"""


def sample(rows: int = 8, width: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, width)).astype("float32")


@contextmanager
def project(directory: Path, source: str = PROJECT, package: str = "proj") -> Iterator[ModuleType]:
    """Write ``source`` as ``<unique>.layers`` under ``directory`` and import it.

    The module name is unique per call (so tests never share a cached
    module); the registry key package is ``package``; registrations are undone
    and the module forgotten on exit.
    """
    name = f"proj_{uuid.uuid4().hex[:8]}"
    write_module(directory, f"{name}.layers", textwrap.dedent(source).format(package=package))
    sys.path.insert(0, str(directory))
    try:
        with keras_safe.registry.scope():
            module = importlib.import_module(f"{name}.layers")
            yield module
    finally:
        sys.path.remove(str(directory))
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[loaded]


def trained(module: ModuleType) -> keras.Model:
    """The project's model after one training step (so optimizer state exists)."""
    model = module.build()
    x = sample()
    model.fit(x, np.ones((len(x), 1), "float32"), batch_size=len(x), verbose=0)
    return model


LOAD_AND_COMPARE = """
import sys
import keras
import numpy as np
import keras_safe

path, inputs, expected = sys.argv[1:4]
model = keras_safe.load(path, {kwargs})
out = keras.ops.convert_to_numpy(model(np.load(inputs), training=False))
np.testing.assert_array_equal(out, np.load(expected))
steps = int(model.optimizer.iterations.numpy()) if model.optimizer else -1
print("LOADED", type(model).__name__, steps)
"""


def save_io(tmp_path: Path, model: keras.Model) -> tuple[str, str]:
    """Save a sample input and the model's output on it; return both paths."""
    x = sample()
    inputs, expected = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(inputs, x)
    np.save(expected, keras.ops.convert_to_numpy(model(x, training=False)))
    return str(inputs), str(expected)


__all__ = ["LOAD_AND_COMPARE", "PROJECT", "keras", "project", "sample", "save_io", "trained"]
