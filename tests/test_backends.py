"""Files move between Keras backends: saved under each, loaded under each.

One fresh process per backend saves (a functional model with a registered
layer, a Sequential, a file written by plain ``model.save``, a checkpoint),
all compiled with Adam and trained one step; then one fresh process per
backend loads every file of every backend and reports what it found. Each
(saver, loader) pair is a test: predictions equal, optimizer state restored
(variables bit-equal where their dtype is the same, the step count equal
where it is not), and one more training step works.

A backend whose package is not installed is skipped with its reason, unless
``KERAS_SAFE_REQUIRE_BACKENDS`` (``"tensorflow,jax,torch"``) names it: then
it fails, so a CI job can demand all three. ``KERAS_SAFE_BACKENDS_REPORT``,
a path, has every finding written there as JSON (prediction differences,
optimizer dtypes) for a look at the numbers.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_python, write_module
from hostile_kit import read_members, with_weights, write_archive

from keras_safe import _keras

pytestmark = pytest.mark.slow

BACKENDS = ("tensorflow", "jax", "torch")
REQUIRE_ENV = "KERAS_SAFE_REQUIRE_BACKENDS"
REPORT_ENV = "KERAS_SAFE_BACKENDS_REPORT"  # a path: every finding written there as JSON
FILES = ("functional", "sequential", "plain", "checkpoint")

LAYERS = '''
import keras
from keras import ops

import keras_safe


@keras_safe.register(package="backend_layers")
class Scaled(keras_safe.SerializableLayer):
    """A Dense whose output is scaled by a trained per-unit factor."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units)

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

    def call(self, x):
        return ops.tanh(self.dense(x)) * self.scale
'''

SAVE = """
import json, sys, zipfile
from pathlib import Path

import keras
import numpy as np

import backend_layers
import keras_safe
from keras_safe import _keras

backend = keras.backend.backend()
out = Path(sys.argv[1]) / backend
out.mkdir(parents=True)
keras.utils.set_random_seed(7)
x = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4)
y = np.stack([x.sum(axis=1), x[:, 0] * x[:, 1]], axis=1)


def functional():
    inputs = keras.Input((4,))
    hidden = backend_layers.Scaled(6, name="scaled")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.Dropout(0.25)(hidden)
    return keras.Model(inputs, keras.layers.Dense(2)(hidden), name="functional")


def sequential():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(2)],
        name="sequential",
    )


def trained(model, **fit):
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, **fit)  # one step
    return model


expected = {}
def record(name, model):
    expected[f"{name}/prediction"] = keras.ops.convert_to_numpy(model(x, training=False))
    for i, variable in enumerate(model.optimizer.variables):
        expected[f"{name}/optimizer/{i}"] = keras.ops.convert_to_numpy(variable)


model = trained(functional())
keras_safe.save(model, out / "functional.keras")
record("functional", model)
model = trained(sequential())
keras_safe.save(model, out / "sequential.keras")
record("sequential", model)
model = trained(functional())
model.save(out / "plain.keras")  # plain Keras: under torch it names torch's Adam
record("plain", model)
checkpoint = keras_safe.callbacks.SafeCheckpoint(out / "checkpoints" / "step.keras", monitor="loss")
model = trained(sequential(), callbacks=[checkpoint])
record("checkpoint", model)
np.savez(out / "expected.npz", **expected)

twins = {
    f"{made.__module__}.{made.__name__}": _keras.public_keras_name(public)
    for public, made in _keras.backend_optimizer_twins().items()
}
written = {}
for name in ("functional", "plain"):
    with zipfile.ZipFile(out / f"{name}.keras") as archive:
        optimizer = json.loads(archive.read("config.json"))["compile_config"]["optimizer"]
    written[name] = [optimizer["module"], optimizer["class_name"], optimizer["registered_name"]]
optimizer = type(model.optimizer).__module__
print(json.dumps({"twins": twins, "optimizer": optimizer, "written": written}))
"""

LOAD = """
import json, sys, traceback, warnings
from pathlib import Path

import keras
import numpy as np

import keras_safe
from keras_safe import _keras

root = Path(sys.argv[1])
backend = keras.backend.backend()
x = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4)
y = np.stack([x.sum(axis=1), x[:, 0] * x[:, 1]], axis=1)
public_adam = type(keras.optimizers.Adam())
results = {}


def load(path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if path.is_dir():
            model = keras_safe.load_latest(path, **kwargs)
        else:
            model = keras_safe.load(path, **kwargs)
    noted = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if w.category.__module__.startswith("keras_safe")
    ]
    return model, noted


def check(saver, name):
    folder = root / saver
    path = folder / "checkpoints" if name == "checkpoint" else folder / f"{name}.keras"
    expected = np.load(folder / "expected.npz")
    model, noted = load(path, allow_imports=("backend_layers",))
    prediction = keras.ops.convert_to_numpy(model(x, training=False))
    saved_prediction = expected[f"{name}/prediction"]
    optimizer = []
    for i, variable in enumerate(model.optimizer.variables):
        saved = expected[f"{name}/optimizer/{i}"]
        loaded = keras.ops.convert_to_numpy(variable)
        optimizer.append({
            "saved_dtype": str(saved.dtype),
            "dtype": str(loaded.dtype),
            "bits_equal": saved.dtype == loaded.dtype and saved.tobytes() == loaded.tobytes(),
            "values_equal": bool(np.array_equal(saved, loaded)),
        })
    steps = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    uncompiled = verified = None
    if name == "plain":  # the torch file names torch's Adam: not read without compile
        uncompiled, _ = load(path, compile=False, allow_imports=("backend_layers",))
    if name == "functional":
        verified = keras_safe.verify(path, allow_imports=("backend_layers",))
    return {
        "ok": True,
        "warnings": noted,
        "prediction_max_diff": float(np.max(np.abs(prediction - saved_prediction))),
        "prediction_equal": bool(np.array_equal(prediction, saved_prediction)),
        "saved_optimizer_variables": sum(1 for k in expected if k.startswith(f"{name}/optimizer/")),
        "optimizer": optimizer,
        "optimizer_class": f"{type(model.optimizer).__module__}.{type(model.optimizer).__name__}",
        "own_optimizer_class": type(model.optimizer) is public_adam,
        "steps_loaded": steps,
        "steps_after_fit": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        "uncompiled": None if uncompiled is None else not hasattr(uncompiled, "optimizer"),
        "verify_ok": verified is None or verified.ok,
        "verify_problems": [] if verified is None else list(verified.problems),
    }


for saver in json.loads(sys.argv[2]):
    for name in json.loads(sys.argv[3]):
        try:
            results[f"{saver}/{name}"] = check(saver, name)
        except Exception as exc:
            results[f"{saver}/{name}"] = {
                "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-3000:],
            }
hostile = root / "hostile-steps.keras"
if hostile.exists():
    try:
        keras_safe.load(hostile)
        results["hostile"] = {"ok": True}
    except Exception as exc:
        results["hostile"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
print("RESULTS " + json.dumps(results))
"""


def required() -> set[str]:
    return {name.strip() for name in os.environ.get(REQUIRE_ENV, "").split(",") if name.strip()}


def available(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


def need(*backends: str) -> None:
    """Skip (or, for a required backend, fail) unless every backend is installed."""
    for backend in backends:
        if available(backend):
            continue
        reason = f"the {backend} backend is not installed (pip install {backend})"
        if backend in required():
            pytest.fail(f"{reason}, and {REQUIRE_ENV} requires it")
        pytest.skip(reason)


def test_required_backends_are_known_names() -> None:
    unknown = required() - set(BACKENDS)
    assert not unknown, f"{REQUIRE_ENV} names {sorted(unknown)}; known: {', '.join(BACKENDS)}"


def _save_and_load(root: Path) -> dict[str, dict[str, Any]]:
    """The six fresh processes: what each saver printed, what each loader found."""
    (root / "code").mkdir()
    write_module(root / "code", "backend_layers", LAYERS)
    files = root / "files"
    saved: dict[str, Any] = {}
    for backend in filter(available, BACKENDS):
        proc = run_python(SAVE, str(files), path=[root / "code"], env={"KERAS_BACKEND": backend})
        saved[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
    if "tensorflow" in saved:
        # TensorFlow's step count (int64) set beyond int32: must not load where it is int32.
        source = read_members(files / "tensorflow" / "sequential.keras")

        def steps(handle: Any) -> None:
            del handle["optimizer/vars/0"]
            handle["optimizer"]["vars"].create_dataset("0", data=np.int64(2**40))

        write_archive(files / "hostile-steps.keras", with_weights(source, steps))
    loaded: dict[str, Any] = {}
    for backend in filter(available, BACKENDS):
        proc = run_python(
            LOAD,
            str(files),
            json.dumps(sorted(saved)),
            json.dumps(FILES),
            path=[root / "code"],
            env={"KERAS_BACKEND": backend},
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS "))
        loaded[backend] = json.loads(line[len("RESULTS ") :])
    return {"saved": saved, "loaded": loaded}


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The processes' findings, computed once per test run even with several workers.

    Under pytest-xdist every worker running a test of this module would run
    the six processes again: the first one does, the others wait for its
    result (the pattern pytest-xdist documents for once-per-run fixtures).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        result = _save_and_load(tmp_path_factory.mktemp("backends"))
    else:
        shared = tmp_path_factory.getbasetemp().parent / "backends"
        shared.mkdir(exist_ok=True)
        with (shared / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            done = shared / "found.json"
            if not done.exists():  # (a worker whose run failed left none)
                run = Path(tempfile.mkdtemp(dir=shared))
                done.write_text(json.dumps(_save_and_load(run)))
            result = json.loads(done.read_text())
    if os.environ.get(REPORT_ENV):
        Path(os.environ[REPORT_ENV]).write_text(json.dumps(result, indent=1))
    return result


@pytest.fixture(scope="module")
def saved(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return found["saved"]


@pytest.fixture(scope="module")
def loaded(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return found["loaded"]


@pytest.mark.parametrize("loader", BACKENDS)
@pytest.mark.parametrize("saver", BACKENDS)
def test_files_move_between_backends(
    saver: str, loader: str, loaded: dict[str, dict[str, Any]]
) -> None:
    need(saver, loader)
    for name in FILES:
        found = loaded[loader][f"{saver}/{name}"]
        what = f"{name} saved under {saver}, loaded under {loader}"
        assert found["ok"], f"{what}: {found['error']}\n{found['trace']}"
        assert found["warnings"] == [], f"{what}: {found['warnings']}"
        if saver == loader:
            assert found["prediction_equal"], f"{what}: {found['prediction_max_diff']}"
        else:
            # Each backend's kernels round differently in the last bits.
            assert found["prediction_max_diff"] < 1e-5, what
        assert found["own_optimizer_class"], f"{what}: {found['optimizer_class']}"
        assert len(found["optimizer"]) == found["saved_optimizer_variables"] > 2, what
        for i, variable in enumerate(found["optimizer"]):
            assert variable["values_equal"], f"{what}: optimizer variable {i} {variable}"
            if variable["dtype"] == variable["saved_dtype"]:
                assert variable["bits_equal"], f"{what}: optimizer variable {i} {variable}"
        assert found["steps_loaded"] == 1, what
        assert found["steps_after_fit"] == 2, what
        if name == "plain":
            assert found["uncompiled"], f"{what}: compile=False left an optimizer"
        assert found["verify_ok"], f"{what}: {found['verify_problems']}"


def test_step_counts_that_do_not_fit_are_refused(loaded: dict[str, dict[str, Any]]) -> None:
    need("tensorflow")
    narrower = [b for b in ("jax", "torch") if available(b)]
    if not narrower:
        need("jax")
    for backend in narrower:
        found = loaded[backend]["hostile"]
        assert not found["ok"], backend
        assert found["error"].startswith("UnsafeModelError"), found
        assert "'optimizer/vars/0' holds int64 values from 1099511627776" in found["error"]
        assert "do not fit the int32 variable" in found["error"]


def test_torch_twins_are_the_table(saved: dict[str, dict[str, Any]]) -> None:
    """The optimizers torch replaces by its own classes are exactly the table's."""
    need("torch")
    expected = {f"{module}.{name}": public for (module, name), public in _twin_items()}
    assert saved["torch"]["twins"] == expected
    assert saved["torch"]["optimizer"] == "keras.src.backend.torch.optimizers.torch_adam"
    for other in ("tensorflow", "jax"):
        if other in saved:
            assert saved[other]["twins"] == {}


def test_files_name_the_public_optimizer(saved: dict[str, dict[str, Any]]) -> None:
    """keras_safe writes Adam as keras.optimizers.Adam under every backend; Keras does not."""
    for backend, found in saved.items():
        assert found["written"]["functional"] == ["keras.optimizers", "Adam", None], backend
    need("torch")
    # What the plain-Keras file of the 3x3 test holds, so the test means something.
    torch_adam = "keras.src.backend.torch.optimizers.torch_adam"
    assert saved["torch"]["written"]["plain"] == [torch_adam, "Adam", "Adam"]


def _twin_items() -> list[tuple[tuple[str, str], str]]:
    return sorted(_keras.BACKEND_OPTIMIZER_TWINS.items())
