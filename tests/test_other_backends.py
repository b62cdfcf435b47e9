"""keras_safe under JAX and PyTorch, each checked in a fresh process.

- Nothing keras_safe does imports TensorFlow unless TensorFlow is the backend:
  saving (verified, with sample input), loading, inspecting, verifying and the
  command line, with TensorFlow installed or not.
- ``save(roundtrip=True)`` takes the deferred rebuild (its fast path) on every
  backend for an ordinary trained model.
- A ``tf.DType`` argument saved under TensorFlow loads under JAX.

A backend that is not installed is skipped (the main CI job has TensorFlow
only; ``./dev.sh test-backends`` runs this file with JAX and with PyTorch),
or fails if ``KERAS_SAFE_REQUIRE_BACKENDS`` names it, as in tests/test_backends.py.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path

import pytest
from conftest import run_python, tensorflow_installed, write_module

pytestmark = pytest.mark.slow


def _needs(backend: str) -> None:
    """Skip unless ``backend`` is installed; fail if KERAS_SAFE_REQUIRE_BACKENDS names it."""
    if importlib.util.find_spec(backend) is None:
        required = os.environ.get("KERAS_SAFE_REQUIRE_BACKENDS", "").split(",")
        if backend in required:
            pytest.fail(f"{backend} is not installed, and KERAS_SAFE_REQUIRE_BACKENDS names it")
        pytest.skip(f"{backend} is not installed here")


LAYERS = '''
import keras
import keras_safe


@keras_safe.register(package="backend_tests")
class Scale(keras_safe.SerializableLayer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w * self.factor


@keras_safe.register(package="backend_tests")
class Cast(keras_safe.SerializableLayer):
    """Holds a dtype given as a tf.DType under TensorFlow."""

    def __init__(self, to="float32", **kwargs):
        super().__init__(**kwargs)
        self.to = to

    def call(self, x):
        return keras.ops.cast(x, self.to)


def build(compiled=True):
    inputs = keras.Input((4,))
    x = Scale(3.0, name="scale")(inputs)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    if compiled:
        model.compile(optimizer="adam", loss="mse")
    return model
'''

NO_TENSORFLOW = """
import contextlib, io, json, sys
import numpy as np
import keras
import keras_safe
from keras_safe import cli
from keras_safe._ops.rebuild import last_verification
import backend_layers

path = sys.argv[1]
model = backend_layers.build(compiled=False)
x = np.random.default_rng(0).random((8, 4)).astype("float32")
model(x)
manifest = keras_safe.save(model, path, sample_input=x)
verified_by = last_verification()
loaded = keras_safe.load(path)
same = np.array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))
keras_safe.inspect(path)
report = keras_safe.verify(path)
with contextlib.redirect_stdout(io.StringIO()):
    codes = [cli.main(["inspect", path]), cli.main(["verify", path])]
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "tensorflow_imported": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")[:5],
    "verified_by": verified_by,
    "same_outputs": same,
    "report_ok": report.ok,
    "cli": codes,
    "recorded": dict(manifest.environment),
}))
"""


def _result(proc_stdout: str) -> dict[str, object]:
    lines = [line for line in proc_stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc_stdout
    result: dict[str, object] = json.loads(lines[-1][len("RESULT ") :])
    return result


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_no_tensorflow_import_outside_the_tensorflow_backend(tmp_path: Path, backend: str) -> None:
    _needs(backend)
    write_module(tmp_path, "backend_layers", LAYERS)
    proc = run_python(
        NO_TENSORFLOW,
        str(tmp_path / "m.keras"),
        path=[tmp_path],
        env={"KERAS_BACKEND": backend},
    )
    result = _result(proc.stdout)
    assert result["backend"] == backend
    assert result["tensorflow_imported"] == [], "keras_safe imported TensorFlow"
    assert result["verified_by"] == ["deferred", None]
    assert result["same_outputs"] and result["report_ok"] and result["cli"] == [0, 0]
    recorded = result["recorded"]
    assert isinstance(recorded, dict) and recorded["backend"] == backend
    # The version is read from the installed package's metadata instead.
    if tensorflow_installed():
        assert recorded["tensorflow"] == importlib.metadata.version("tensorflow")
    else:
        assert recorded["tensorflow"] is None


DEFERRED = """
import json, sys
import numpy as np
import keras
import keras_safe
from keras_safe._ops.rebuild import last_verification
import backend_layers

model = backend_layers.build()
x = np.random.default_rng(0).random((8, 4)).astype("float32")
model.fit(x, x[:, :2], verbose=0)
paths = []
for name, sample in (("a.keras", None), ("b.keras", x)):
    keras_safe.save(model, sys.argv[1] + "/" + name, sample_input=sample)
    paths.append(last_verification())
print("RESULT " + json.dumps({"backend": keras.backend.backend(), "paths": paths}))
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_verify_takes_the_deferred_rebuild_on_every_backend(tmp_path: Path, backend: str) -> None:
    _needs(backend)
    write_module(tmp_path, "backend_layers", LAYERS)
    proc = run_python(DEFERRED, str(tmp_path), path=[tmp_path], env={"KERAS_BACKEND": backend})
    result = _result(proc.stdout)
    assert result["backend"] == backend
    assert result["paths"] == [["deferred", None], ["deferred", None]]


SAVE_TF_DTYPE = """
import sys
import keras
import tensorflow as tf
import keras_safe
import backend_layers

inputs = keras.Input((4,))
model = keras.Model(inputs, backend_layers.Cast(tf.float16, name="cast")(inputs))
keras_safe.save(model, sys.argv[1])
print(model.get_layer("cast").get_config()["to"])
"""

LOAD_TF_DTYPE = """
import json, sys
import numpy as np
import keras
import keras_safe
from keras_safe._config.codec import TAG, codec
import backend_layers

model = keras_safe.load(sys.argv[1])
layer = model.get_layer("cast")
out = model(np.ones((1, 4), "float32"))
try:
    codec.decode({TAG: "tf_dtype", "dtype": "qint8"}, ("to",))
    refused = None
except keras_safe.CompatibilityError as exc:
    refused = str(exc)
print("RESULT " + json.dumps({
    "value": layer.to,
    "type": type(layer.to).__name__,
    "out_dtype": keras.backend.standardize_dtype(out.dtype),
    "tensorflow_imported": "tensorflow" in sys.modules,
    "refused": refused,
}))
"""


def test_a_tensorflow_dtype_argument_saved_under_tensorflow_loads_under_jax(
    tmp_path: Path,
) -> None:
    _needs("tensorflow")
    _needs("jax")
    write_module(tmp_path, "backend_layers", LAYERS)
    path = str(tmp_path / "m.keras")
    saved = run_python(SAVE_TF_DTYPE, path, path=[tmp_path], env={"KERAS_BACKEND": "tensorflow"})
    assert "'__keras_safe__': 'tf_dtype', 'dtype': 'float16'" in saved.stdout
    proc = run_python(LOAD_TF_DTYPE, path, path=[tmp_path], env={"KERAS_BACKEND": "jax"})
    result = _result(proc.stdout)
    # The dtype's name: what every Keras API takes for a dtype, no TensorFlow needed.
    assert result["value"] == "float16" and result["type"] == "str"
    assert result["out_dtype"] == "float16"
    assert not result["tensorflow_imported"]
    refused = result["refused"]
    assert isinstance(refused, str)
    assert "tf.qint8, which has no equivalent on the jax backend" in refused
    assert "Fix: load this file with KERAS_BACKEND=tensorflow" in refused
