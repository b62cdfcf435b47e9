"""keras_safe.load in fresh processes: imports, missing objects, drift, weights, formats."""

from __future__ import annotations

import json
import textwrap
import warnings
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import run_python, write_module
from helpers import PROJECT

import keras_safe

SAVE_CHILD = """
import importlib, json, sys
import keras
import numpy as np
import keras_safe
spec = json.loads(sys.argv[1])
module = importlib.import_module(spec["module"])
model = module.build()
x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
model.fit(x, np.ones((8, 1), "float32"), batch_size=8, verbose=0)
if spec.get("plain"):
    model.save(spec["path"])
else:
    keras_safe.save(model, spec["path"], sample_input=x)
np.save(spec["inputs"], x)
np.save(spec["expected"], keras.ops.convert_to_numpy(model(x, training=False)))
"""

LOAD_CHILD = """
import importlib, json, sys, warnings
import keras
import numpy as np
import keras_safe
spec = json.loads(sys.argv[1])
for name in spec.get("imports", []):
    importlib.import_module(name)
result = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        model = keras_safe.load(spec["path"], **spec.get("kwargs", {}))
        out = keras.ops.convert_to_numpy(model(np.load(spec["inputs"]), training=False))
        result = {"ok": True, "equal": bool(np.array_equal(out, np.load(spec["expected"])))}
    except Exception as exc:
        result = {
            "ok": False,
            "type": type(exc).__name__,
            "bases": [c.__name__ for c in type(exc).__mro__],
            "message": str(exc),
            "missing": list(getattr(exc, "missing", ())),
        }
result["warnings"] = [
    str(w.message) for w in caught if issubclass(w.category, keras_safe.CompatibilityWarning)
]
result["imported"] = sorted(m for m in sys.modules if m.split(".")[0] == spec.get("watch"))
print("RESULT " + json.dumps(result))
"""


def write_project(root: Path, name: str, source: str = PROJECT, package: str = "proj") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_module(root, f"{name}.layers", textwrap.dedent(source).format(package=package))
    return root


def save_fresh(tmp_path: Path, code_dir: Path, module: str, plain: bool = False) -> dict[str, str]:
    files = {
        "path": str(tmp_path / ("plain.keras" if plain else "model.keras")),
        "inputs": str(tmp_path / "x.npy"),
        "expected": str(tmp_path / "y.npy"),
    }
    run_python(SAVE_CHILD, json.dumps({**files, "module": module, "plain": plain}), path=[code_dir])
    return files


def load_fresh(files: dict[str, str], code_dir: Path | None = None, **spec: Any) -> dict[str, Any]:
    proc = run_python(
        LOAD_CHILD, json.dumps({**files, **spec}), path=[code_dir] if code_dir else []
    )
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """A model saved in a fresh process from package ``loadpkg`` (v1 of the code)."""
    tmp = tmp_path_factory.mktemp("saved")
    code = write_project(tmp / "v1", "loadpkg")
    return save_fresh(tmp, code, "loadpkg.layers"), code


# -- finding the custom objects ----------------------------------------------------------


def test_loads_after_importing_the_module_without_custom_objects(saved) -> None:
    files, code = saved
    result = load_fresh(files, code, imports=["loadpkg.layers"])
    assert result == {"ok": True, "equal": True, "warnings": [], "imported": []}


def test_allow_imports_imports_the_package_named_by_the_file(saved) -> None:
    files, code = saved
    result = load_fresh(files, code, kwargs={"allow_imports": ["loadpkg"]}, watch="loadpkg")
    assert result["ok"] and result["equal"]
    assert result["imported"] == ["loadpkg", "loadpkg.layers"]


def test_allow_imports_matches_whole_package_names_only(saved) -> None:
    files, code = saved
    result = load_fresh(files, code, kwargs={"allow_imports": ["load"]}, watch="loadpkg")
    assert not result["ok"] and result["type"] == "MissingObjectsError"
    assert result["imported"] == []  # "load" never allows "loadpkg"


def test_missing_objects_are_listed_all_at_once_with_origin_and_fix(saved) -> None:
    files, code = saved
    result = load_fresh(files, code, watch="loadpkg")
    assert not result["ok"] and result["type"] == "MissingObjectsError"
    assert "ValueError" in result["bases"] and "KerasSafeError" in result["bases"]
    assert result["imported"] == []
    assert sorted(result["missing"]) == sorted(
        ["proj>Block", "proj>Scale", "proj>swish2", "proj>HalfMSE", "proj>Halving"]
    )
    message = result["message"]
    assert "needs 5 custom object(s)" in message
    assert "proj>Block (class, module loadpkg.layers; used as layer 'block' (in net))" in message
    assert "proj>swish2 (function, module loadpkg.layers" in message
    assert "import loadpkg.layers" in message
    assert "allow_imports=('loadpkg',)" in message
    assert "custom_objects=" in message


def test_custom_objects_by_short_name_or_registered_key(saved) -> None:
    files, code = saved
    code_dir = str(code)
    program = f"""
    import json, sys
    sys.path.insert(0, {code_dir!r})
    import keras
    import numpy as np
    import keras_safe
    with keras_safe.registry.scope():   # the classes exist, but are not registered
        import loadpkg.layers as m
    assert "proj>Block" not in keras_safe.registry
    files = json.loads(sys.argv[1])
    model = keras_safe.load(files["path"], custom_objects={{
        "Block": m.Block, "proj>Scale": m.Scale, "proj>swish2": m.swish2,
        "HalfMSE": m.HalfMSE, "proj>Halving": m.Halving}})
    out = keras.ops.convert_to_numpy(model(np.load(files["inputs"]), training=False))
    np.testing.assert_array_equal(out, np.load(files["expected"]))
    print("OK")
    """
    assert "OK" in run_python(program, json.dumps(files)).stdout


# -- drift and compatibility -------------------------------------------------------------------


def edited(source: str, old: str, new: str) -> str:
    assert old in source, old
    return source.replace(old, new)


SCALE_INIT = "def __init__(self, factor=2.0, **kwargs):"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            (SCALE_INIT, "def __init__(self, factor=2.0, offset=0.0, **kwargs):"),
            "proj>Scale: signature was (self, factor=2.0, **kwargs), now (self, factor=2.0, "
            "offset=0.0, **kwargs)",
        ),
        (
            ("return x * self.w * self.factor", "return self.factor * (x * self.w)"),
            "proj>Scale: source code changed since the file was saved",
        ),
    ],
    ids=["signature", "source"],
)
def test_drift_is_a_warning_an_error_or_ignored(tmp_path: Path, saved, edit, expected) -> None:
    files, _ = saved
    code = write_project(tmp_path / "v2", "loadpkg", edited(PROJECT, *edit))
    warned = load_fresh(files, code, imports=["loadpkg.layers"])
    assert warned["ok"], warned
    assert len(warned["warnings"]) == 1 and expected in warned["warnings"][0]
    assert "on_mismatch='error'" in warned["warnings"][0]
    refused = load_fresh(files, code, imports=["loadpkg.layers"], kwargs={"on_mismatch": "error"})
    assert refused["type"] == "CompatibilityError" and expected in refused["message"]
    quiet = load_fresh(files, code, imports=["loadpkg.layers"], kwargs={"on_mismatch": "ignore"})
    assert quiet["ok"] and quiet["warnings"] == []


def test_drift_reports_a_class_that_moved_to_another_module(tmp_path: Path, saved) -> None:
    files, _ = saved
    code = write_project(tmp_path / "v2", "loadpkg")
    layers = code / "loadpkg" / "layers.py"
    text = layers.read_text()
    start = text.index('@keras_safe.register(package="proj")\nclass Scale')
    end = text.index('@keras_safe.register(package="proj")\nclass Block')
    (code / "loadpkg" / "scaling.py").write_text(
        "import keras\nimport keras_safe\n\n" + text[start:end]
    )
    layers.write_text(text[:start] + "from loadpkg.scaling import Scale\n\n\n" + text[end:])
    result = load_fresh(files, code, imports=["loadpkg.layers"])
    assert result["ok"] and result["equal"]
    assert (
        "proj>Scale: was loadpkg.layers.Scale, now loadpkg.scaling.Scale" in result["warnings"][0]
    )


def test_drift_reports_a_new_distribution_version(tmp_path: Path) -> None:
    def install(root: Path, version: str) -> Path:
        code = write_project(root, "distpkg")
        info = code / f"distpkg-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: distpkg\nVersion: {version}\n"
        )
        (info / "top_level.txt").write_text("distpkg\n")
        return code

    files = save_fresh(tmp_path, install(tmp_path / "v1", "1.0.0"), "distpkg.layers")
    manifest = keras_safe.inspect(files["path"])
    assert {(o.distribution, o.version) for o in manifest.objects} == {("distpkg", "1.0.0")}
    result = load_fresh(files, install(tmp_path / "v2", "2.0.0"), imports=["distpkg.layers"])
    assert result["ok"] and len(result["warnings"]) == 1
    assert "distribution distpkg 1.0.0 when saved, 2.0.0 now" in result["warnings"][0]
    missing = load_fresh(files, tmp_path / "nowhere")
    assert "pip install distpkg==1.0.0" in missing["message"]
    assert "distribution distpkg 1.0.0" in missing["message"]


def test_drift_reports_another_keras_version(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "m.keras"
    keras_safe.save(model, path)
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(contents["metadata.json"])
    meta["keras_safe"]["environment"]["keras"] = "3.0.0"
    contents["metadata.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    with pytest.warns(keras_safe.CompatibilityWarning, match=r"Keras 3\.0\.0 when saved"):
        keras_safe.load(path)
    with pytest.raises(keras_safe.CompatibilityError, match=r"Keras 3\.0\.0 when saved"):
        keras_safe.load(path, on_mismatch="error")


def test_a_file_of_another_backend_loads_without_a_warning(tmp_path: Path) -> None:
    from keras_safe._cli.text import verify_text

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "m.keras"
    keras_safe.save(model, path)
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(contents["metadata.json"])
    meta["keras_safe"]["environment"]["backend"] = other
    contents["metadata.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    assert keras_safe.inspect(path).backend == other
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_safe.load(path, on_mismatch="error")
        report = keras_safe.verify(path, on_mismatch="error")
    assert report.ok and report.warnings == ()
    assert f"  note: saved under the {other} backend, loaded under" in verify_text(report)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            (SCALE_INIT, "def __init__(self, gain=2.0, **kwargs):"),
            "saved argument `factor` is not accepted by Scale.__init__",
        ),
        (
            (SCALE_INIT, "def __init__(self, factor=2.0, *, bias, **kwargs):"),
            "required argument `bias` of Scale.__init__ is not in the saved config",
        ),
    ],
    ids=["argument-removed", "argument-required"],
)
def test_saved_config_that_no_longer_fits_init(tmp_path: Path, saved, edit, expected) -> None:
    files, _ = saved
    source = edited(PROJECT, *edit).replace("self.factor = factor", "self.factor = 2.0")
    code = write_project(tmp_path / "v2", "loadpkg", source)
    result = load_fresh(files, code, imports=["loadpkg.layers"], kwargs={"on_mismatch": "ignore"})
    assert not result["ok"] and result["type"] == "CompatibilityError", result
    assert expected in result["message"]
    assert "config_version" in result["message"] and "upgrade_config" in result["message"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            (
                'self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")',
                'self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")\n'
                '        self.v = self.add_weight(shape=(1,), initializer="ones", name="v")',
            ),
            "expected 2 variables",
        ),
        (
            (
                'self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")',
                "self.w = keras.ops.ones((shape[-1],))",
            ),
            "weight layers/scale/vars/0 in the file was not loaded into any variable",
        ),
    ],
    ids=["extra-variable", "fewer-variables"],
)
def test_never_returns_a_model_with_weights_not_loaded(tmp_path, saved, edit, expected) -> None:
    files, _ = saved
    code = write_project(tmp_path / "v2", "loadpkg", edited(PROJECT, *edit))
    result = load_fresh(files, code, imports=["loadpkg.layers"], kwargs={"on_mismatch": "ignore"})
    assert not result["ok"] and result["type"] == "CompatibilityError", result
    assert "Not every weight" in result["message"] and expected in result["message"]


# -- pins, integrity, other formats ---------------------------------------------------------


def test_expected_digest_pins_the_file(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    manifest = keras_safe.save(model, tmp_path / "m.keras")
    keras_safe.load(tmp_path / "m.keras", expected_digest=manifest.digest)
    keras_safe.load(tmp_path / "m.keras", expected_digest="sha256:" + manifest.digest.upper())
    other = keras_safe.save(model, tmp_path / "other.keras")
    with pytest.raises(keras_safe.IntegrityError, match="not the expected"):
        keras_safe.load(tmp_path / "m.keras", expected_digest=other.digest[::-1])
    with pytest.raises(keras_safe.KerasSafeError, match="64 hex digits"):
        keras_safe.load(tmp_path / "m.keras", expected_digest="abc")


def test_flipped_byte_in_the_weights_is_an_integrity_error(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "m.keras"
    keras_safe.save(model, path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data = bytearray(path.read_bytes())
    data[offset + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(keras_safe.IntegrityError) as caught:
        keras_safe.load(path)
    assert "'model.weights.h5'" in str(caught.value) and "tampered" in str(caught.value)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(keras_safe.IntegrityError, match=r"truncated|not a readable zip"):
        keras_safe.load(path)


def test_plain_keras_file_loads_through_the_allowlist(tmp_path: Path) -> None:
    code = write_project(tmp_path / "code", "plainpkg")
    files = save_fresh(tmp_path, code, "plainpkg.layers", plain=True)
    result = load_fresh(files, code, imports=["plainpkg.layers"])
    assert result["ok"] and result["equal"] and result["warnings"] == []
    missing = load_fresh(files, code)
    assert missing["type"] == "MissingObjectsError"
    assert "proj>Block (class, module plainpkg.layers" in missing["message"]
    manifest = keras_safe.inspect(files["path"])
    assert manifest.written_by == "keras" and manifest.digest is None
    assert {o.key for o in manifest.objects} >= {"proj>Block", "proj>Scale", "proj>swish2"}
    with pytest.raises(keras_safe.IntegrityError, match="no keras_safe manifest"):
        keras_safe.load(files["path"], expected_digest="0" * 64)


def test_legacy_h5_file_loads_through_the_allowlist(tmp_path: Path) -> None:
    code = write_project(tmp_path / "code", "h5pkg")
    program = """
    import sys
    import keras
    import numpy as np
    import h5pkg.layers as m
    model = m.build()
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    model.save(sys.argv[1])
    np.save(sys.argv[2], x)
    np.save(sys.argv[3], keras.ops.convert_to_numpy(model(x, training=False)))
    """
    files = {
        "path": str(tmp_path / "m.h5"),
        "inputs": str(tmp_path / "x.npy"),
        "expected": str(tmp_path / "y.npy"),
    }
    run_python(program, files["path"], files["inputs"], files["expected"], path=[code])
    result = load_fresh(files, code, kwargs={"allow_imports": ["h5pkg"], "compile": False})
    assert result["ok"] and result["equal"], result
    missing = load_fresh(files, code, kwargs={"compile": False})
    assert missing["type"] == "MissingObjectsError" and "proj>Block" in missing["message"]
    manifest = keras_safe.inspect(files["path"])
    assert manifest.written_by == "keras" and {"proj>Block", "proj>Scale"} <= {
        o.key for o in manifest.objects
    }


def test_inspect_reads_the_manifest_without_building_or_reading_weights(saved, tmp_path) -> None:
    files, _ = saved
    # No custom code available at all, and the weights are garbage: inspect still works.
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(files["path"]) as source, zipfile.ZipFile(broken, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            target.writestr(name, b"\x00" * len(data) if name == "model.weights.h5" else data)
    program = """
    import sys
    import keras_safe
    manifest = keras_safe.inspect(sys.argv[1])
    print(sorted(o.key for o in manifest.objects), manifest.model.layers, "keras" in sys.modules)
    """
    out = run_python(program, str(broken)).stdout
    assert "'proj>Block'" in out and "'proj>swish2'" in out


def test_verify_reports_instead_of_raising(saved, tmp_path) -> None:
    files, code = saved
    program = """
    import json, sys
    import keras_safe
    path, code = sys.argv[1:3]
    bad = keras_safe.verify(path)
    sys.path.insert(0, code)
    good = keras_safe.verify(path, allow_imports=("loadpkg",))
    print(json.dumps([bad.ok, bad.problems[0], type(bad.error).__name__, good.ok, bool(good)]))
    """
    out = run_python(program, files["path"], str(code)).stdout.strip().splitlines()[-1]
    bad_ok, problem, error, good_ok, truth = json.loads(out)
    assert (bad_ok, error, good_ok, truth) == (False, "MissingObjectsError", True, True)
    assert "needs 5 custom object(s)" in problem


def test_usage_errors_are_keras_safe_errors(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    keras_safe.save(model, tmp_path / "m.keras")
    cases = [
        ({"on_mismatch": "loud"}, "on_mismatch must be one of"),
        ({"allow_imports": ["__main__"]}, "package names"),
        ({"allow_imports": ["not a module"]}, "package names"),
        ({"custom_objects": {1: object}}, "keys must be strings"),
    ]
    for kwargs, message in cases:
        with pytest.raises(keras_safe.KerasSafeError, match=message) as caught:
            keras_safe.load(tmp_path / "m.keras", **kwargs)
        assert isinstance(caught.value, ValueError)
    with pytest.raises(keras_safe.KerasSafeError, match="No such file"):
        keras_safe.load(tmp_path / "missing.keras")
    with pytest.raises(keras_safe.KerasSafeError, match="not a file"):
        keras_safe.load(tmp_path)
    (tmp_path / "text.keras").write_text("hello")
    with pytest.raises(keras_safe.IntegrityError, match=r"not a \.keras archive"):
        keras_safe.load(tmp_path / "text.keras")


def test_loaded_model_is_compiled_and_continues_training(saved) -> None:
    files, code = saved
    program = """
    import json, sys
    import numpy as np
    import keras_safe
    import loadpkg.layers
    files = json.loads(sys.argv[1])
    model = keras_safe.load(files["path"])
    assert type(model.loss).__name__ == "HalfMSE", model.loss
    before = int(model.optimizer.iterations.numpy())
    x = np.load(files["inputs"])
    model.fit(x, np.ones((len(x), 1)), batch_size=len(x), verbose=0)
    uncompiled = keras_safe.load(files["path"], compile=False)
    after = int(model.optimizer.iterations.numpy())
    print("STEPS", before, after, getattr(uncompiled, "optimizer", None))
    """
    out = run_python(program, json.dumps(files), path=[code]).stdout
    assert "STEPS 1 2 None" in out


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_compile_false_resolves_nothing_of_the_compile_config(tmp_path: Path, suffix) -> None:
    """A model loaded without compiling never reads its loss: it need not be available."""
    path = tmp_path / f"m{suffix}"
    with keras_safe.registry.scope():

        @keras_safe.register(package="gone")
        def half_mse(y_true: Any, y_pred: Any) -> Any:
            return keras.ops.mean(keras.ops.square(y_true - y_pred)) / 2

        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss=half_mse)
        model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
        if suffix == ".keras":
            keras_safe.save(model, path)
        else:
            model.save(path)
    with pytest.raises(keras_safe.MissingObjectsError) as caught:
        keras_safe.load(path)
    assert "gone>half_mse (function" in str(caught.value)
    assert "the loss passed to compile()" in str(caught.value)
    loaded = keras_safe.load(path, compile=False)
    assert getattr(loaded, "optimizer", None) is None
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_short_names_in_custom_objects_reach_keras(tmp_path: Path) -> None:
    # Keras itself only looks custom objects up by registered key; keras_safe maps
    # short names to the key it approved, so Keras uses the same object.
    with keras_safe.registry.scope():

        @keras_safe.register(package="short")
        class Twice(keras_safe.SerializableLayer):
            def call(self, x):
                return 2 * x

        inputs = keras.Input((2,))
        keras_safe.save(keras.Model(inputs, Twice(name="twice")(inputs)), tmp_path / "m.keras")
    assert "short>Twice" not in keras_safe.registry
    model = keras_safe.load(tmp_path / "m.keras", custom_objects={"Twice": Twice})
    assert isinstance(model.get_layer("twice"), Twice)
    out = keras.ops.convert_to_numpy(model(np.ones((1, 2))))
    np.testing.assert_array_equal(out, 2 * np.ones((1, 2)))


def test_a_plain_keras_file_saved_compiled_but_never_trained_loads_as_it_is(
    tmp_path: Path,
) -> None:
    # model.save after compile(): Keras writes the unbuilt optimizer's step
    # count (0) and learning rate; the loaded model's optimizer is built for
    # its variables. Nothing is lost, so nothing is refused or warned about.
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.25), loss="mse")
    model.save(tmp_path / "plain.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", keras_safe.TrainingStateWarning)
        loaded = keras_safe.load(tmp_path / "plain.keras")
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 0
    assert float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate)) == 0.25
    x = np.ones((2, 4), "float32")
    loaded.fit(x, np.zeros((2, 3), "float32"), verbose=0)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 1
