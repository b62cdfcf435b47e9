"""keras_safe.save: the manifest, preflight refusals, atomic writes and verification."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import run_python
from helpers import LOAD_AND_COMPARE, project, sample, save_io, trained

import keras_safe


def members(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def metadata(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("metadata.json"))


# -- the manifest ----------------------------------------------------------------------


def test_manifest_records_versions_objects_members_and_digest(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        manifest = keras_safe.save(model, tmp_path / "m.keras")

    assert manifest.format_version == 1
    env = manifest.environment
    assert env["keras"] == keras.__version__ and env["backend"] == keras.backend.backend()
    assert env["keras_safe"] == keras_safe.__version__ and env["python"] and env["tensorflow"]
    keys = {record.key: record for record in manifest.objects}
    # Found through the layers, a nested argument (activation), the compile
    # config (loss) and the optimizer's schedule.
    assert set(keys) == {"proj>Block", "proj>Scale", "proj>swish2", "proj>HalfMSE", "proj>Halving"}
    block = keys["proj>Block"]
    assert block.kind == "layer" and block.module == module.__name__
    assert block.qualname == "Block" and block.signature.startswith("(self, units, activation=")
    assert len(block.source_sha256) == 64 and block.config_version == 1
    assert keys["proj>swish2"].kind == "function" and keys["proj>HalfMSE"].kind == "loss"
    assert keys["proj>Halving"].kind == "schedule"
    assert set(manifest.members) == {"config.json", "model.weights.h5"}
    assert len(manifest.digest) == 64
    assert manifest.model.layers == 6 and manifest.model.optimizer_params > 0
    assert manifest.model.params == model.count_params()


def test_archive_is_a_plain_keras_archive_with_the_manifest_in_metadata(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        manifest = keras_safe.save(trained(module), tmp_path / "m.keras")
        module.build().save(tmp_path / "plain.keras")
    assert sorted(members(tmp_path / "m.keras")) == sorted(members(tmp_path / "plain.keras"))
    data = metadata(tmp_path / "m.keras")
    assert data["keras_version"] == keras.__version__ and "date_saved" in data
    assert keras_safe.Manifest.from_json(data["keras_safe"]) == manifest
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())


def test_plain_keras_loads_the_file_without_new_warnings(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        keras_safe.save(model, tmp_path / "m.keras")
        model.save(tmp_path / "plain.keras")
        inputs, expected = save_io(tmp_path, model)
    code = """
        import sys, warnings
        import numpy as np
        import keras
        import importlib
        module = importlib.import_module(sys.argv[4])
        counts = []
        for path in (sys.argv[1], sys.argv[5]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = keras.models.load_model(path)
            counts.append(sorted(str(w.message)[:60] for w in caught))
        model = keras.models.load_model(sys.argv[1])
        out = keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False))
        np.testing.assert_array_equal(out, np.load(sys.argv[3]))
        assert counts[0] == counts[1], counts
        print("OK", counts[0])
    """
    proc = run_python(
        code,
        str(tmp_path / "m.keras"),
        inputs,
        expected,
        module.__name__,
        str(tmp_path / "plain.keras"),
        path=[tmp_path],
    )
    assert "OK" in proc.stdout


def test_manifest_digest_is_stable_for_the_same_content(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        first = keras_safe.save(model, tmp_path / "a.keras")
        second = keras_safe.save(model, tmp_path / "b.keras")
    assert first.members["config.json"] == second.members["config.json"]
    assert first.digest == keras_safe._format.manifest.content_digest(first.members)


# -- refusals before writing -----------------------------------------------------------


def test_refuses_every_problem_at_once_and_writes_nothing(tmp_path: Path, scope) -> None:
    class Forgotten(keras.layers.Layer):  # a plain Layer subclass never registered
        def call(self, x):
            return x

    def unregistered_activation(x):
        return x

    inputs = keras.Input((4,))
    x = Forgotten(name="forgotten")(inputs)
    x = keras.layers.Dense(3, activation=unregistered_activation, name="dense")(x)
    x = keras.layers.Lambda(lambda t: t * 2, name="doubler")(x)
    model = keras.Model(inputs, x)
    target = tmp_path / "m.keras"
    with pytest.raises(keras_safe.SerializationError) as caught:
        keras_safe.save(model, target)
    message = str(caught.value)
    assert "nothing was written" in message
    assert "forgotten: class" in message and "Forgotten is not registered" in message
    assert "@keras_safe.register" in message
    assert "unregistered_activation" in message and "dense" in message
    assert "doubler" in message and "Lambda" in message
    assert not target.exists() and os.listdir(tmp_path) == []


def test_refuses_a_layer_whose_config_cannot_be_produced(tmp_path: Path) -> None:
    class NoConfig(keras.layers.Layer):  # auto-config fails: a non-plain argument
        def __init__(self, table, **kwargs):
            super().__init__(**kwargs)
            self.table = table

        def call(self, x):
            return x

    inputs = keras.Input((2,))
    model = keras.Model(inputs, NoConfig(object(), name="noconfig")(inputs))
    with pytest.raises(keras_safe.SerializationError) as caught:
        keras_safe.save(model, tmp_path / "m.keras")
    message = str(caught.value)
    assert "noconfig (NoConfig)" in message and "SerializableLayer" in message
    assert "get_config" in message


def test_refuses_a_config_that_does_not_round_trip(tmp_path: Path, scope) -> None:
    @keras_safe.register(package="rt")
    class Doubling(keras.layers.Layer):
        def __init__(self, units=1, **kwargs):
            super().__init__(**kwargs)
            self.units = units * 2  # the classic bug: get_config writes a derived value

        def get_config(self):
            return {**super().get_config(), "units": self.units}

        def call(self, x):
            return x

    inputs = keras.Input((2,))
    model = keras.Model(inputs, Doubling(3, name="doubling")(inputs))
    with pytest.raises(keras_safe.SerializationError) as caught:
        keras_safe.save(model, tmp_path / "m.keras")
    message = str(caught.value)
    assert (
        "> doubling.units: saved 6, rebuilt 12 (Doubling's config does not round-trip)" in message
    )


def test_path_without_keras_extension_explains_the_fix(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(keras_safe.KerasSafeError) as caught:
        keras_safe.save(model, tmp_path / "basic_model")
    assert isinstance(caught.value, ValueError)
    assert "'.keras'" in str(caught.value) and "basic_model.keras" in str(caught.value)
    with pytest.raises(keras_safe.KerasSafeError, match="does not exist"):
        keras_safe.save(model, tmp_path / "missing" / "m.keras")
    with pytest.raises(keras_safe.KerasSafeError, match=r"expects a keras\.Model"):
        keras_safe.save(keras.layers.Dense(1), tmp_path / "m.keras")


def test_overwrite_false_refuses_and_keeps_the_old_file(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    target = tmp_path / "m.keras"
    keras_safe.save(model, target)
    before = target.read_bytes()
    with pytest.raises(FileExistsError) as caught:
        keras_safe.save(model, target, overwrite=False)
    assert isinstance(caught.value, keras_safe.KerasSafeError)
    assert "overwrite=True" in str(caught.value)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.keras"]
    keras_safe.save(model, tmp_path / "new.keras", overwrite=False)  # a new path is fine


def test_overwrite_replaces_atomically_and_keeps_permissions(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    target = tmp_path / "m.keras"
    keras_safe.save(model, target)
    os.chmod(target, 0o640)
    keras_safe.save(model, target)
    assert (target.stat().st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["m.keras"]


# -- verification -------------------------------------------------------------------------


def test_verification_failure_names_the_weight_and_keeps_the_old_file(
    tmp_path: Path, scope
) -> None:
    @keras_safe.register(package="vf")
    class Drifting(keras_safe.SerializableLayer):
        """Loads its weights slightly wrong: the kind of bug roundtrip=True exists for."""

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

        def load_own_variables(self, store):
            self.w.assign(np.asarray(store["0"]) + 1.0)

        def call(self, x):
            return x * self.w

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Drifting(name="drifting")(inputs))
    target = tmp_path / "m.keras"
    target.write_bytes(b"previous contents")
    with pytest.raises(keras_safe.VerificationError) as caught:
        keras_safe.save(model, target)
    message = str(caught.value)
    assert "drifting/w" in message and "3 of 3 values differ" in message
    assert "not written" in message
    assert target.read_bytes() == b"previous contents"
    assert os.listdir(tmp_path) == ["m.keras"]
    keras_safe.save(model, tmp_path / "unverified.keras", roundtrip=False)  # the escape hatch


def test_preflight_catches_configs_that_change_on_every_construction(tmp_path: Path, scope) -> None:
    counter = {"n": 0}

    @keras_safe.register(package="vf")
    class Counting(keras.layers.Layer):
        def __init__(self, **kwargs):
            kwargs.pop("serial", None)
            super().__init__(**kwargs)
            counter["n"] += 1
            self.serial = counter["n"]  # differs in every process and every rebuild

        def get_config(self):
            return {**super().get_config(), "serial": self.serial}

        def call(self, x):
            return x

    inputs = keras.Input((2,))
    model = keras.Model(inputs, Counting(name="counting")(inputs))
    with pytest.raises(keras_safe.SerializationError) as caught:
        keras_safe.save(model, tmp_path / "m.keras")
    assert "> counting.serial: saved 1, rebuilt 2" in str(caught.value)


def test_verification_compares_configs_after_the_full_rebuild(tmp_path: Path, scope) -> None:
    @keras_safe.register(package="vf")
    class Accumulating(keras.layers.Layer):
        """build() changes what get_config reports: invisible until rebuilt and built."""

        def __init__(self, seen=0, **kwargs):
            super().__init__(**kwargs)
            self.seen = seen

        def build(self, shape):
            self.seen += shape[-1]

        def get_config(self):
            return {**super().get_config(), "seen": self.seen}

        def call(self, x):
            return x

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Accumulating(name="accumulating")(inputs))
    with pytest.raises(keras_safe.VerificationError) as caught:
        keras_safe.save(model, tmp_path / "m.keras")
    message = str(caught.value)
    assert "accumulating (Accumulating).seen: saved 4, rebuilt 8" in message
    assert not (tmp_path / "m.keras").exists()


def test_verification_compares_outputs_on_sample_input(tmp_path: Path, scope) -> None:
    @keras_safe.register(package="vf")
    class Tweakable(keras_safe.SerializableLayer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.scale = 1.0  # state that is not in the config

        def call(self, x):
            return x * self.scale

    inputs = keras.Input((2,))
    layer = Tweakable(name="tweakable")
    model = keras.Model(inputs, layer(inputs))
    layer.scale = 3.0
    keras_safe.save(model, tmp_path / "ok.keras")  # config and weights agree
    with pytest.raises(keras_safe.VerificationError, match="output 0 on sample_input differs"):
        keras_safe.save(model, tmp_path / "m.keras", sample_input=np.ones((1, 2), "float32"))
    assert not (tmp_path / "m.keras").exists()


def test_verification_covers_optimizer_and_non_trainable_state(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        keras_safe.save(model, tmp_path / "m.keras", sample_input=sample())
        restored = keras_safe.load(tmp_path / "m.keras")
    moving = [v for v in model.non_trainable_weights if "moving" in v.path]
    assert moving and all(
        np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(model.non_trainable_weights, restored.non_trainable_weights, strict=True)
    )
    assert int(restored.optimizer.iterations.numpy()) == 1
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- fresh processes ------------------------------------------------------------------------


def test_fresh_process_loads_without_custom_objects_after_import(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        keras_safe.save(model, tmp_path / "m.keras", sample_input=sample())
        inputs, expected = save_io(tmp_path, model)
    code = f"import {module.__name__}\n" + LOAD_AND_COMPARE.format(kwargs="")
    proc = run_python(code, str(tmp_path / "m.keras"), inputs, expected, path=[tmp_path])
    assert "LOADED Functional 1" in proc.stdout


def test_subclassed_model_with_sublayers_made_in_build(tmp_path: Path, scope) -> None:
    source = """
    import keras
    import keras_safe

    @keras_safe.register(package="{package}")
    class Lazy(keras_safe.SerializableModel):
        def __init__(self, hidden=5, **kwargs):
            super().__init__(**kwargs)
            self.hidden = hidden

        def build(self, shape):
            self.first = keras.layers.Dense(self.hidden, activation="relu")
            self.norm = keras.layers.BatchNormalization()
            self.out = keras.layers.Dense(1)
            for layer, size in ((self.first, shape[-1]), (self.norm, self.hidden),
                                (self.out, self.hidden)):
                layer.build((None, size))

        def call(self, x, training=False):
            return self.out(self.norm(self.first(x), training=training))
    """
    with project(tmp_path, source) as module:
        model = module.Lazy(hidden=7)
        model.compile("adam", "mse")
        x = sample()
        model.fit(x, np.ones((8, 1)), verbose=0)
        keras_safe.save(model, tmp_path / "m.keras", sample_input=x)
        inputs, expected = save_io(tmp_path, model)
    code = LOAD_AND_COMPARE.format(kwargs=f"allow_imports=({module.__name__!r},)")
    proc = run_python(code, str(tmp_path / "m.keras"), inputs, expected, path=[tmp_path])
    assert "LOADED Lazy 1" in proc.stdout


def test_signing_key_adds_an_hmac_checked_on_load(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    manifest = keras_safe.save(model, tmp_path / "m.keras", signing_key=b"secret")
    assert manifest.signature and manifest.signature_matches(b"secret")
    assert keras_safe.inspect(tmp_path / "m.keras").signature == manifest.signature
    keras_safe.load(tmp_path / "m.keras", signing_key=b"secret")
    with pytest.raises(keras_safe.IntegrityError, match="does not match signing_key"):
        keras_safe.load(tmp_path / "m.keras", signing_key=b"other")
    keras_safe.save(model, tmp_path / "unsigned.keras")
    with pytest.raises(keras_safe.IntegrityError, match="not signed"):
        keras_safe.load(tmp_path / "unsigned.keras", signing_key=b"secret")


def test_compiled_model_that_never_trained_round_trips(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        model = module.build()  # compiled, no training step yet
        keras_safe.save(model, tmp_path / "m.keras", sample_input=sample())
        restored = keras_safe.load(tmp_path / "m.keras")
    assert int(restored.optimizer.iterations.numpy()) == 0
    assert len(restored.optimizer.variables) == len(model.optimizer.variables)


def test_functional_model_with_keras_ops_round_trips(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    outputs = keras.ops.relu(hidden + inputs * 2.0)  # Add, Multiply and Relu nodes
    model = keras.Model(inputs, keras.ops.mean(outputs, axis=-1, keepdims=True))
    x = sample(width=4)
    keras_safe.save(model, tmp_path / "ops.keras", sample_input=x)
    loaded = keras_safe.load(tmp_path / "ops.keras")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )
