"""save(roundtrip=True) proves a model's file once; later saves of it reuse the proof.

What a rebuild proves (this config, read with these classes, rebuilds these
variables in this order and loads the written values into them) is kept
for the next save of the same model while nothing it depends on changed;
anything that did change makes the next save rebuild again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import run_python
from helpers import LOAD_AND_COMPARE, project, sample, save_io, trained

import keras_safe
from keras_safe._ops.rebuild import last_verification


def _step(model: keras.Model) -> None:
    x = sample()
    model.fit(x, np.ones((len(x), 1), "float32"), batch_size=len(x), verbose=0)


def _path_of_save(model: keras.Model, path: Path, **kwargs: Any) -> str | None:
    keras_safe.save(model, path, **kwargs)
    last = last_verification()
    return None if last is None else last[0]


def test_a_later_save_after_training_reuses_the_proof_and_loads_elsewhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        assert _path_of_save(model, tmp_path / "epoch1.keras") == "deferred"
        _step(model)
        with caplog.at_level(logging.DEBUG, logger="keras_safe"):
            assert _path_of_save(model, tmp_path / "epoch2.keras") == "reused"
        assert any("reused the proof" in r.getMessage() for r in caplog.records)
        inputs, expected = save_io(tmp_path, model)
        code = f"import {module.__name__}\n" + LOAD_AND_COMPARE.format(kwargs="")
    # The reused save holds the values after the second step: a fresh process
    # loads them and predicts what the live model predicts.
    out = run_python(
        code,
        str(tmp_path / "epoch2.keras"),
        inputs,
        expected,
        path=[tmp_path],
    )
    assert "LOADED Functional 2" in out.stdout


def test_the_proof_is_not_reused_for_another_model_or_with_sample_input(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        first, second = trained(module), trained(module)
        assert _path_of_save(first, tmp_path / "a.keras") == "deferred"
        assert _path_of_save(second, tmp_path / "b.keras") == "deferred"
        # outputs depend on the values: compared every time
        assert _path_of_save(first, tmp_path / "c.keras", sample_input=sample()) == "deferred"
        assert _path_of_save(first, tmp_path / "d.keras", sample_input=sample()) == "deferred"


@pytest.mark.parametrize(
    "change",
    [
        "recompile",
        "freeze_layer",
        "new_variables",
        "optimizer_left_out",
        "dtype_policy",
        "class_source_edited",
    ],
)
def test_any_change_but_values_makes_the_next_save_rebuild(tmp_path: Path, change: str) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        assert _path_of_save(model, tmp_path / "a.keras") == "deferred"
        kwargs: dict[str, Any] = {}
        if change == "recompile":
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
            _step(model)
        elif change == "freeze_layer":
            model.get_layer("scale").trainable = False
        elif change == "new_variables":
            model.get_layer("head").enable_lora(2)
        elif change == "optimizer_left_out":
            kwargs["include_optimizer"] = False
        elif change == "dtype_policy":
            keras.config.set_dtype_policy("float64")
        elif change == "class_source_edited":
            # The manifest records each class' source digest: the file now
            # says something else than the proof was made with.
            source = Path(module.__file__)
            source.write_text(source.read_text().replace("factor=2.0", "factor=2.5"))
        try:
            path = _path_of_save(model, tmp_path / "b.keras", **kwargs)
        except keras_safe.VerificationError:
            path = "refused"  # LoRA weights do not load back: refused, as a first save is
        finally:
            keras.config.set_dtype_policy("float32")
        assert path in ("deferred", "ordinary", "refused")
        if change == "new_variables":
            assert path == "refused"


def test_new_assets_make_the_next_save_rebuild(tmp_path: Path) -> None:
    lookup = keras.layers.IntegerLookup(name="lookup")
    lookup.adapt(np.array([1, 2, 3]))
    inputs = keras.Input((1,), dtype="int64")
    model = keras.Model(inputs, lookup(inputs))
    assert _path_of_save(model, tmp_path / "a.keras") == "deferred"
    assert _path_of_save(model, tmp_path / "b.keras") == "reused"
    lookup.adapt(np.array([4, 5, 6, 7]))  # same config, another vocabulary in assets
    assert _path_of_save(model, tmp_path / "c.keras") == "deferred"
    loaded = keras_safe.load(tmp_path / "c.keras")
    assert loaded.get_layer("lookup").get_vocabulary() == lookup.get_vocabulary()


_OWN_STATE = """
import keras
import keras_safe


@keras_safe.register(package="{package}")
class Scaled(keras_safe.SerializableLayer):
    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

    def call(self, x):
        return x * self.w

    def save_own_variables(self, store):
        store["0"] = keras.ops.convert_to_numpy(self.w) * 2

    def load_own_variables(self, store):
        self.w.assign(store["0"][...] / 2)


def build():
    inputs = keras.Input((3,))
    return keras.Model(inputs, Scaled(name="scaled")(inputs))
"""


def test_a_layer_with_its_own_state_code_is_rebuilt_every_time(tmp_path: Path) -> None:
    with project(tmp_path, _OWN_STATE) as module:
        model = module.build()
        assert _path_of_save(model, tmp_path / "a.keras") == "deferred"
        assert _path_of_save(model, tmp_path / "b.keras") == "deferred"


def test_a_refused_save_is_refused_again_not_remembered(tmp_path: Path) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        assert _path_of_save(model, tmp_path / "a.keras") == "deferred"
        model.get_layer("head").enable_lora(2)
        for name in ("b.keras", "c.keras"):
            with pytest.raises(keras_safe.VerificationError, match="LoRA"):
                keras_safe.save(model, tmp_path / name)
            assert last_verification() is not None
            assert last_verification()[0] == "ordinary"  # type: ignore[index]
            assert not (tmp_path / name).exists()


def test_safe_checkpoint_proves_its_first_checkpoint_and_reuses_the_proof(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with project(tmp_path) as module:
        model = trained(module)
        checkpoint = keras_safe.callbacks.SafeCheckpoint(tmp_path / "ckpt" / "e{epoch}.keras")
        assert checkpoint.roundtrip is True  # the default, as keras_safe.save's
        x = sample()
        with caplog.at_level(logging.DEBUG, logger="keras_safe"):
            model.fit(x, np.ones((len(x), 1)), epochs=3, callbacks=[checkpoint], verbose=0)
        said = [r.getMessage() for r in caplog.records if r.name == "keras_safe"]
        assert len(said) == 3
        assert "the deferred rebuild confirmed the file" in said[0]
        assert all("reused the proof" in line for line in said[1:])
        loaded = keras_safe.load(tmp_path / "ckpt" / "e3.keras")
        for a, b in zip(loaded.weights, model.weights, strict=True):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
            )
