"""What the first ``keras_safe.load`` of a process imports and computes, per backend.

The first load in a fresh process should cost about what Keras' own
``load_model`` costs. These tests keep its one-time work from growing back
without measuring time: in fresh processes under each installed backend,
``keras_safe.load`` may import only the keras_safe modules that load needs,
nothing else that ``keras.models.load_model`` of the same file does not
import, and may not scan every installed distribution when the file's
custom objects come from no installed distribution. Nor may the first
``keras_safe.save``, whose manifest names the distribution of each custom
object: it asks the distribution named like the object's package first.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from conftest import run_python, write_module

pytestmark = pytest.mark.slow

BACKENDS = ("tensorflow", "jax", "torch")

# The keras_safe modules a load of a keras_safe archive may import, beyond
# those that defining a registered SerializableLayer imports. Saving,
# rebuilding, diffing, upgrading, the command line, callbacks and testing
# helpers are not among them.
LOAD_MODULES = {
    "keras_safe._format",
    "keras_safe._format.integrity",
    "keras_safe._format.limits",
    "keras_safe._format.manifest",
    "keras_safe._format.reader",
    "keras_safe._format.ziplayout",
    "keras_safe._guard",
    "keras_safe._guard.allowlist",
    "keras_safe._guard.containment",
    "keras_safe._guard.gate",
    "keras_safe._guard.hdf5_bounds",
    "keras_safe._guard.json_bounds",
    "keras_safe._guard.references",
    "keras_safe._guard.resources",
    "keras_safe._guard.screen",
    "keras_safe._ops",
    "keras_safe._ops.drift",
    "keras_safe._ops.foreign",
    "keras_safe._ops.load",
    "keras_safe._ops.options",
}
# Named so that a failure says plainly what came back.
NEVER_ON_LOAD = {
    "keras_safe._ops.save",
    "keras_safe._ops.rebuild",
    "keras_safe._ops.diff",
    "keras_safe._ops.diff_weights",
    "keras_safe._ops.compare",
    "keras_safe._ops.upgrade",
    "keras_safe._format.writer",
    "keras_safe._format.inplace",
    "keras_safe._cli",
    "keras_safe.cli",
    "keras_safe.callbacks",
    "keras_safe.testing",
    "matplotlib",
}

LAYERS = """
import keras
import keras_safe


@keras_safe.register(package="import_tests")
class Scale(keras_safe.SerializableLayer):
    def __init__(self, units, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.factor = factor
        self.dense = keras.layers.Dense(units)

    def call(self, x):
        return self.dense(x) * self.factor


@keras_safe.register(package="import_tests")
class Gate(keras_safe.SerializableLayer):
    def __init__(self, activation="sigmoid", **kwargs):
        super().__init__(**kwargs)
        self.activation = activation

    def call(self, x):
        return x * keras.activations.get(self.activation)(x)
"""

SAVE = """
import sys
import numpy as np
import keras
import keras_safe
import import_layers

inputs = keras.Input((8,))
x = import_layers.Scale(16, 0.5)(inputs)
x = import_layers.Gate()(x)
model = keras.Model(inputs, keras.layers.Dense(1)(import_layers.Scale(4)(x)))
model.compile(optimizer="adam", loss="mse")
rng = np.random.default_rng(0)
model.fit(rng.random((32, 8)), rng.random((32, 1)), epochs=1, verbose=0)
keras_safe.save(model, sys.argv[1])
"""

LOAD = """
import json, sys
import keras
import import_layers
import keras_safe._config.describe as describe

before = set(sys.modules)
if sys.argv[2] == "keras_safe":
    import keras_safe
    keras_safe.load(sys.argv[1])
else:
    keras.models.load_model(sys.argv[1])
print("RESULT " + json.dumps({
    "backend": keras.backend.backend(),
    "new": sorted(set(sys.modules) - before),
    "scans": describe._distributions_by_package.cache_info().currsize,
}))
"""


def _needs(backend: str) -> None:
    if importlib.util.find_spec(backend) is None:
        required = os.environ.get("KERAS_SAFE_REQUIRE_BACKENDS", "").split(",")
        if backend in required:
            pytest.fail(f"{backend} is not installed, and KERAS_SAFE_REQUIRE_BACKENDS names it")
        pytest.skip(f"{backend} is not installed here")


def _load(path: Path, side: str, code: Path, backend: str) -> dict[str, object]:
    proc = run_python(LOAD, str(path), side, path=[code], env={"KERAS_BACKEND": backend})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    result: dict[str, object] = json.loads(lines[-1][len("RESULT ") :])
    assert result["backend"] == backend
    return result


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_first_load_imports_only_what_loading_needs(tmp_path: Path, backend: str) -> None:
    _needs(backend)
    write_module(tmp_path, "import_layers", LAYERS)
    path = tmp_path / "m.keras"
    run_python(SAVE, str(path), path=[tmp_path], env={"KERAS_BACKEND": backend})

    plain = _load(path, "keras", tmp_path, backend)
    safe = _load(path, "keras_safe", tmp_path, backend)
    plain_new, safe_new = set(plain["new"]), set(safe["new"])  # type: ignore[call-overload]
    ours = {name for name in safe_new if name.split(".")[0] == "keras_safe"}
    assert ours - LOAD_MODULES == set(), "keras_safe.load imported more of keras_safe"
    assert not {name.split(".")[0] for name in safe_new} & NEVER_ON_LOAD
    assert not ours & NEVER_ON_LOAD
    # Nothing from outside keras_safe that Keras' own load does not import:
    # no TensorFlow under JAX or PyTorch, no importlib.metadata scans' modules.
    assert safe_new - ours - plain_new == set()
    if backend != "tensorflow":
        assert not any(name.split(".")[0] == "tensorflow" for name in safe_new)
    # The custom objects come from no installed distribution: the file records
    # no distribution version, so drift has nothing to compare and no reason
    # to scan every installed distribution.
    assert safe["scans"] == 0


SAVE_SCANS = """
import json, sys
import keras
import keras_safe
import keras_safe._config.describe as describe

module = __import__(sys.argv[2], fromlist=["Scale"])
inputs = keras.Input((8,))
outputs = module.Gate()(module.Scale(4)(inputs))
model = keras.Model(inputs, outputs)
keras_safe.save(model, sys.argv[1], roundtrip=False)
scans = describe._distributions_by_package.cache_info().currsize
records = sorted(
    [o.key, o.distribution, o.version] for o in keras_safe.inspect(sys.argv[1]).objects
)
print("RESULT " + json.dumps({
    "scans": scans,
    "records": records,
    "full_scan": list(describe.distribution_of(sys.argv[2])),
}))
"""


def _install(root: Path, name: str, version: str) -> None:
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n{name}/layers.py,,\n")


@pytest.mark.parametrize("installed", [False, True], ids=["local", "installed"])
def test_the_first_save_scans_no_distributions(tmp_path: Path, installed: bool) -> None:
    package = "scan_layers_dist" if installed else "scan_layers_local"
    write_module(tmp_path, f"{package}.layers", LAYERS)
    if installed:
        _install(tmp_path, package, "2.1.0")
    path = tmp_path / "m.keras"
    proc = run_python(SAVE_SCANS, str(path), f"{package}.layers", path=[tmp_path])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["scans"] == 0
    expected = [package, "2.1.0"] if installed else [None, None]
    assert result["records"] == [
        ["import_tests>Gate", *expected],
        ["import_tests>Scale", *expected],
    ]
    # The full scan, made afterwards, names the same distribution.
    assert result["full_scan"] == expected
