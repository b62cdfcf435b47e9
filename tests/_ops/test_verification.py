"""save(roundtrip=True): the deferred rebuild confirms good files, and never hides a bad one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import keras_safe
from keras_safe import _keras
from keras_safe._ops import rebuild as verification


def _trained(model: keras.Model, width: int = 8) -> keras.Model:
    x = np.random.default_rng(0).standard_normal((4, width)).astype("float32")
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.fit(x, model(x), verbose=0)
    return model


def _functional() -> keras.Model:
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(0.3)(x)
    return _trained(keras.Model(inputs, keras.layers.Dense(2)(x)))


def _deferred_rebuild(model: keras.Model, path: Path, sample_input: Any = None) -> Any:
    keras_safe.save(model, path, roundtrip=False)
    config = _keras.serialize_model(model)
    scope = verification._ComparingScope(model if sample_input is None else None)
    with _keras.deferred_variables(scope):
        rebuilt = verification._rebuild(path)
        problems = verification._differences(model, config, rebuilt, sample_input, scope)
    return scope, problems


def test_the_deferred_rebuild_confirms_a_trained_model_without_keeping_values(
    tmp_path: Path,
) -> None:
    model = _functional()
    scope, problems = _deferred_rebuild(model, tmp_path / "m.keras")
    assert problems == []
    compared = len(model.weights) + len(model.optimizer.variables)
    assert len(scope.compared) == compared  # each checked as it was loaded ...
    assert scope.state_mapping == {}  # ... and none of the values kept


def test_the_deferred_rebuild_runs_the_model_on_sample_input(tmp_path: Path) -> None:
    model = _functional()
    x = np.ones((2, 8), "float32")
    scope, problems = _deferred_rebuild(model, tmp_path / "m.keras", x)
    assert problems == []
    assert len(scope.state_mapping) == len(model.weights) + len(model.optimizer.variables)


def test_verify_leaves_no_variables_for_keras_to_initialize(tmp_path: Path) -> None:
    from keras.src.backend.common import global_state

    keras_safe.save(_functional(), tmp_path / "m.keras", roundtrip=True)
    assert not global_state.get_global_attribute("uninitialized_variables")


@pytest.mark.parametrize("sample", [False, True])
def test_verify_passes_for_subclassed_models(
    tmp_path: Path, scope: keras_safe.Registry, sample: bool
) -> None:
    @keras_safe.register(package="verify_tests")
    class Net(keras_safe.SerializableModel):
        def __init__(self, units: int = 4, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.hidden = keras.layers.Dense(units)
            self.out = keras.layers.Dense(1)

        def call(self, x: Any) -> Any:
            return self.out(self.hidden(x))

    x = np.ones((2, 8), "float32")
    net = Net(3)
    net(x)
    keras_safe.save(_trained(net), tmp_path / "net.keras", sample_input=x if sample else None)


def _string_model() -> keras.Model:
    pytest.importorskip("tensorflow", reason="StringLookup needs TensorFlow on every backend")
    lookup = keras.layers.StringLookup(name="words")
    lookup.adapt(np.array(["a", "b", "c", "b"]))
    inputs = keras.Input((1,), dtype="string", name="text")
    return keras.Model(inputs, keras.layers.Embedding(10, 2)(lookup(inputs)))


def test_verify_passes_for_a_model_with_string_input(tmp_path: Path) -> None:
    keras_safe.save(_string_model(), tmp_path / "words.keras")
    assert keras_safe.load(tmp_path / "words.keras").layers[1].get_vocabulary()[1] == "b"


@pytest.mark.tensorflow_only(reason="only TensorFlow has string tensors to run the model on")
def test_verify_compares_outputs_of_a_model_with_string_input(tmp_path: Path) -> None:
    keras_safe.save(_string_model(), tmp_path / "words.keras", sample_input=np.array([["b"]]))


def test_string_sample_input_outside_tensorflow_is_refused_clearly(tmp_path: Path) -> None:
    if keras.backend.backend() == "tensorflow":
        pytest.skip("TensorFlow runs string models: compared above")
    target = tmp_path / "words.keras"
    with pytest.raises(keras_safe.KerasSafeError, match=r"(?s)sample_input.*string input") as info:
        keras_safe.save(_string_model(), target, sample_input=np.array([["b"]]))
    message = str(info.value)
    assert f"on the {keras.backend.backend()} backend" in message
    assert "input 'text', read by layer 'words' (StringLookup)" in message
    assert "Fix: save without sample_input" in message
    assert isinstance(info.value, ValueError) and not target.exists()


def test_sample_input_the_model_refuses_is_a_usage_error(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="four_wide")
    with pytest.raises(keras_safe.KerasSafeError, match="fails on sample_input") as info:
        keras_safe.save(model, tmp_path / "m.keras", sample_input=np.ones((2, 7), "float32"))
    assert "'four_wide'" in str(info.value) and "Fix: pass a sample_input" in str(info.value)
    assert not (tmp_path / "m.keras").exists()


# -- which rebuild ran -----------------------------------------------------------------


def test_a_normal_model_takes_the_deferred_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = _functional()
    with caplog.at_level(logging.DEBUG, logger="keras_safe"):
        keras_safe.save(model, tmp_path / "m.keras")
    assert verification.last_verification() == ("deferred", None)
    records = [r for r in caplog.records if r.name == "keras_safe"]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert "the deferred rebuild confirmed the file" in records[0].getMessage()
    assert str(tmp_path / "m.keras") in records[0].getMessage()
    with caplog.at_level(logging.DEBUG, logger="keras_safe"):
        keras_safe.save(model, tmp_path / "s.keras", sample_input=np.ones((2, 8), "float32"))
    assert verification.last_verification() == ("deferred", None)


def test_the_ordinary_rebuild_says_why_it_ran(
    tmp_path: Path, scope: keras_safe.Registry, caplog: pytest.LogCaptureFixture
) -> None:
    layer_class = keras_safe.register(_broken_loader("adds"), package="verify_tests")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, layer_class(name="broken")(inputs))
    with (
        caplog.at_level(logging.DEBUG, logger="keras_safe"),
        pytest.raises(keras_safe.VerificationError),
    ):
        keras_safe.save(model, tmp_path / "m.keras")
    path, reason = verification.last_verification() or ("", "")
    assert path == "ordinary"
    assert reason is not None and reason.startswith("the deferred rebuild could not confirm it")
    assert any(f"ordinary rebuild, because {reason}" in r.getMessage() for r in caplog.records)


class _Dense(keras.layers.Layer):
    def __init__(self, units: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape: Any) -> None:
        self.a = self.add_weight(shape=(input_shape[-1], self.units), name="a")
        self.b = self.add_weight(shape=(input_shape[-1], self.units), name="b")

    def call(self, x: Any) -> Any:
        return x @ self.a + x @ self.b

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}


def _broken_loader(kind: str) -> type:
    """A registered layer whose weights do not come back as they were saved."""

    def load_own_variables(self: Any, store: Any) -> None:
        if kind == "skips":
            return
        if kind == "shifts":
            self.a.assign(store["0"] + 1.0)
            self.b.assign(store["1"])
        if kind == "swaps":  # reads both, then assigns them crosswise
            first, second = store["0"], store["1"]
            self.a.assign(second)
            self.b.assign(first)
        if kind == "adds":  # depends on the values the variables had before loading
            self.a.assign(self.a + store["0"])
            self.b.assign(store["1"])

    return type(f"Broken{kind.title()}", (_Dense,), {"load_own_variables": load_own_variables})


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "skips",
            r"does not load back.*weights in the file were not loaded into any variable: "
            r"layers/broken_skips/vars/0",
        ),
        ("shifts", "weight broken/a: .* values differ after reloading"),
        ("swaps", "weight broken/a: .* values differ after reloading"),
        ("adds", "weight broken/a: .* values differ after reloading"),
    ],
)
def test_verify_refuses_weights_that_do_not_come_back(
    tmp_path: Path, scope: keras_safe.Registry, kind: str, expected: str
) -> None:
    layer_class = keras_safe.register(_broken_loader(kind), package="verify_tests")
    inputs = keras.Input((4,))
    model = _trained(keras.Model(inputs, layer_class(name="broken")(inputs)), width=4)
    target = tmp_path / "m.keras"
    target.write_bytes(b"previous")
    with pytest.raises(keras_safe.VerificationError, match=f"(?s){expected}") as info:
        keras_safe.save(model, target)
    assert target.read_bytes() == b"previous"
    message = str(info.value)
    assert str(target) in message
    assert ".tmp" not in message and "keras-safe-" not in message  # no temporary file
    assert "fresh process" not in message  # it is rebuilt in this one, as a new one would


def test_verify_reports_a_layer_that_does_not_load(
    tmp_path: Path, scope: keras_safe.Registry
) -> None:
    @keras_safe.register(package="verify_tests")
    class Refuses(_Dense):
        def load_own_variables(self, store: Any) -> None:
            raise RuntimeError("cannot load this")

    inputs = keras.Input((4,))
    model = keras.Model(inputs, Refuses(name="refuses")(inputs))
    expected = r"(?s)does not load back.*cannot load this"
    with pytest.raises(keras_safe.VerificationError, match=expected):
        keras_safe.save(model, tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()


def test_compared_weights_are_read_into_one_reused_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = keras.Input((64,))
    x = inputs
    for _ in range(5):
        x = keras.layers.Dense(64)(x)
    model = _trained(keras.Model(inputs, x), width=64)
    buffers: list[int] = []
    read = _keras.RecordingH5Store._read_as_tensor

    def recording(store: Any, *args: Any) -> Any:
        tensor = read(store, *args)
        buffers.append(store._scratch.ctypes.data)
        return tensor

    monkeypatch.setattr(_keras.RecordingH5Store, "_read_as_tensor", recording)
    _, problems = _deferred_rebuild(model, tmp_path / "m.keras")
    assert problems == []
    assert len(buffers) == len(model.weights) + len(model.optimizer.variables)
    assert len(set(buffers)) <= 2  # the largest dataset may need a bigger one


# -- output specs borrowed from the live model ------------------------------------------


def _lent_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from keras_safe._keras import deferred

    counts: list[int] = []
    lend = deferred._SpecLender.lend

    def counting(lender: Any, layer: Any, args: Any, kwargs: Any) -> Any:
        spec = lend(lender, layer, args, kwargs)
        counts.append(spec is not deferred._MISSING)
        return spec

    monkeypatch.setattr(deferred._SpecLender, "lend", counting)
    return counts


def test_the_rebuild_borrows_output_specs_of_matching_live_layers(
    tmp_path: Path, scope: keras_safe.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keras.src.layers.layer import Layer

    @keras_safe.register(package="verify_tests")
    class Block(keras_safe.SerializableLayer):
        def __init__(self, units: int = 8, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def build(self, shape: Any) -> None:
            self.w = self.add_weight(shape=(shape[-1], self.units), name="w")

        def call(self, x: Any) -> Any:
            return keras.ops.tanh(x @ self.w)

    inputs = keras.Input((8,))
    x = inputs
    for i in range(3):
        x = Block(8, name=f"block_{i}")(x)
    model = _trained(keras.Model(inputs, keras.layers.Dense(2)(x)))
    counts = _lent_count(monkeypatch)
    traced = Layer.compute_output_spec
    keras_safe.save(model, tmp_path / "m.keras")
    assert sum(counts) == 3  # each custom block; Dense computes its shape without tracing
    assert Layer.compute_output_spec is traced  # Keras' own again after the rebuild
    restored = keras_safe.load(tmp_path / "m.keras")
    x = np.ones((1, 8), "float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x))
    )


def test_a_layer_with_state_set_after_construction_is_traced_and_refused(
    tmp_path: Path, scope: keras_safe.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    @keras_safe.register(package="verify_tests")
    class Scaled(keras_safe.SerializableLayer):
        def call(self, x: Any) -> Any:
            return x * self.factor  # set from outside: not in the config

    layer = Scaled(name="scaled")
    layer.factor = 2.0
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    counts = _lent_count(monkeypatch)
    target = tmp_path / "m.keras"
    with pytest.raises(keras_safe.VerificationError, match=r"(?s)does not load back.*factor"):
        keras_safe.save(model, target)
    assert counts and not any(counts)  # not borrowed: traced, and the trace fails
    assert not target.exists()


def test_a_layer_whose_state_differs_from_its_config_is_not_borrowed(
    tmp_path: Path, scope: keras_safe.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    @keras_safe.register(package="verify_tests")
    class Repeat(keras_safe.SerializableLayer):
        def __init__(self, times: int = 1, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.times = times

        def call(self, x: Any) -> Any:
            return keras.ops.concatenate([x] * self.times, axis=-1)

    layer = Repeat(1, name="repeat")
    layer.times = 2  # the config still says 1 (a SerializableLayer records its arguments)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(layer(inputs)))
    counts = _lent_count(monkeypatch)
    with pytest.raises(keras_safe.VerificationError):
        keras_safe.save(model, tmp_path / "m.keras")
    assert counts and not any(counts)
