"""keras_safe.diff: versions, custom objects, config per layer, weights."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_safe
from keras_safe._ops import diff as diffing
from keras_safe._ops import diff_weights as _diff_weights
from keras_safe.errors import _UsageError

X = np.random.default_rng(0).random((16, 5)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def _model(units: int = 4, extra: bool = False) -> keras.Model:
    inputs = keras.Input((5,))
    x = keras.layers.Dense(units, name="hidden")(inputs)
    if extra:
        x = keras.layers.Dense(units, name="extra")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x), name="scorer")
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0)
    return model


def _rewrite_member(path: Path, member: str, data: bytes) -> None:
    """Replace one member of a zip (keeping the others byte for byte)."""
    with zipfile.ZipFile(path) as source:
        items = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info, payload in items:
            target.writestr(info, data if info.filename == member else payload)


def test_same_content_digest_short_circuits(tmp_path: Path) -> None:
    model = _model()
    keras_safe.save(model, tmp_path / "a.keras")
    shutil.copy(tmp_path / "a.keras", tmp_path / "b.keras")
    report = keras_safe.diff(tmp_path / "a.keras", tmp_path / "b.keras")
    assert report.identical and report.same
    assert report.weights == () and report.config == ()
    assert "identical: same content digest" in str(report)


def test_retrained_model_lists_every_changed_weight_by_layer(tmp_path: Path) -> None:
    model = _model()
    keras_safe.save(model, tmp_path / "before.keras")
    model.fit(X, Y, epochs=1, verbose=0)
    keras_safe.save(model, tmp_path / "after.keras")

    report = keras_safe.diff(tmp_path / "before.keras", tmp_path / "after.keras")
    assert not report.identical and not report.same
    assert report.config == () and report.objects == () and report.versions == ()
    layer_changes = {c.owner: c for c in report.weights if not c.path.startswith("optimizer/")}
    assert set(layer_changes) == {"hidden", "head"}
    kernel = next(c for c in report.weights if c.path == "layers/hidden/vars/0")
    expected = np.count_nonzero(
        keras_safe.load(tmp_path / "before.keras").get_layer("hidden").kernel.numpy()
        != model.get_layer("hidden").kernel.numpy()
    )
    assert (kernel.change, kernel.changed, kernel.size, kernel.a) == (
        "values",
        expected,
        20,
        "float32[5, 4]",
    )
    assert kernel.max_abs is not None and kernel.max_abs > 0
    assert any(c.path.startswith("optimizer/") for c in report.weights)
    text = str(report)
    assert "layers/hidden/vars/0 float32[5, 4]: " in text
    assert "optimizer variable(s) differ" in text


def test_architecture_change_pairs_layers_by_name(tmp_path: Path) -> None:
    keras_safe.save(_model(4), tmp_path / "a.keras")
    keras_safe.save(_model(4, extra=True), tmp_path / "b.keras")
    report = keras_safe.diff(tmp_path / "a.keras", tmp_path / "b.keras")
    assert "scorer (Functional) > extra (Dense): only in b" in report.config
    # layers after the inserted one are compared with their namesakes, not shifted
    assert not any("head (Dense).units" in line for line in report.config)
    assert any(line.startswith("layers: a ") for line in report.model)
    added = [c for c in report.weights if c.change == "added"]
    assert {c.path for c in added} >= {"layers/extra/vars/0", "layers/extra/vars/1"}
    head = [c for c in report.weights if c.path.startswith("layers/head/")]
    assert head and {c.change for c in head} == {"values"}  # compared with its namesake


def test_custom_objects_and_config_arguments(tmp_path: Path, scope: keras_safe.Registry) -> None:
    @keras_safe.register(package="diff_test")
    class Gain(keras_safe.SerializableLayer):
        def __init__(self, factor: float = 2.0, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x: object) -> object:
            return x * self.factor  # type: ignore[operator]

    def build(factor: float | None) -> keras.Model:
        inputs = keras.Input((5,), name="features")
        x = inputs if factor is None else Gain(factor, name="gain")(inputs)
        return keras.Model(inputs, keras.layers.Dense(1, name="head")(x), name="scorer")

    keras_safe.save(build(None), tmp_path / "plain.keras")
    keras_safe.save(build(2.0), tmp_path / "two.keras")
    keras_safe.save(build(3.0), tmp_path / "three.keras")

    added = keras_safe.diff(tmp_path / "plain.keras", tmp_path / "two.keras")
    assert any(line.startswith("diff_test>Gain: only in b (module ") for line in added.objects)
    assert "scorer (Functional) > gain (Gain): only in b" in added.config

    changed = keras_safe.diff(tmp_path / "two.keras", tmp_path / "three.keras")
    assert changed.objects == ()
    assert changed.config == ("scorer (Functional) > gain (Gain).factor: a 2.0, b 3.0",)


def test_weights_compared_in_slices_count_every_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = keras.Input((64,))
    model = keras.Model(inputs, keras.layers.Dense(32, name="wide")(inputs))
    keras_safe.save(model, tmp_path / "a.keras")
    kernel = model.get_layer("wide").kernel
    values = kernel.numpy()
    values[::3, 0] += 1.0  # 22 of 2048 values, spread over every slice
    values[5, 7] = np.nan
    kernel.assign(values)
    keras_safe.save(model, tmp_path / "b.keras")

    monkeypatch.setattr(_diff_weights, "_CHUNK_BYTES", 512)  # 4 rows of 32 floats per slice
    report = keras_safe.diff(tmp_path / "a.keras", tmp_path / "b.keras")
    (change,) = report.weights
    assert change.changed == 23 and change.size == 64 * 32
    assert change.max_abs == pytest.approx(1.0)


def test_nan_equals_nan_and_sign_of_zero_counts() -> None:
    a = np.array([np.nan, 0.0, 1.0], dtype="float32")
    b = np.array([np.nan, -0.0, 1.0], dtype="float32")
    assert _diff_weights.bits_differ(a, b).tolist() == [False, True, False]


def test_plain_keras_file_is_compared_and_noted(tmp_path: Path) -> None:
    model = _model()
    keras_safe.save(model, tmp_path / "safe.keras")
    model.save(tmp_path / "plain.keras")
    report = keras_safe.diff(tmp_path / "safe.keras", tmp_path / "plain.keras")
    assert "written by: a keras_safe, b keras" in report.versions
    assert report.weights == ()  # same weights, written by another writer
    assert any("b has no keras_safe manifest" in note for note in report.notes)
    assert report.same


def test_a_damaged_file_is_refused_not_compared(tmp_path: Path) -> None:
    model = _model()
    keras_safe.save(model, tmp_path / "a.keras")
    keras_safe.save(model, tmp_path / "b.keras")
    # b's manifest claims a's content: the digests must be checked, not trusted
    with zipfile.ZipFile(tmp_path / "a.keras") as archive:
        metadata = json.loads(archive.read("metadata.json"))
    metadata["keras_safe"]["saved_at"] = "later"
    weights = bytearray(zipfile.ZipFile(tmp_path / "b.keras").read("model.weights.h5"))
    weights[len(weights) // 2] ^= 0xFF
    _rewrite_member(tmp_path / "b.keras", "model.weights.h5", bytes(weights))
    _rewrite_member(tmp_path / "b.keras", "metadata.json", json.dumps(metadata).encode())
    with pytest.raises(keras_safe.IntegrityError, match=r"'model\.weights\.h5'.*SHA-256"):
        keras_safe.diff(tmp_path / "a.keras", tmp_path / "b.keras")


def test_legacy_h5_and_missing_files_are_usage_errors(tmp_path: Path) -> None:
    model = _model()
    keras_safe.save(model, tmp_path / "a.keras")
    model.save(tmp_path / "old.h5")
    with pytest.raises(_UsageError, match=r"keras-safe upgrade .*old\.h5"):
        keras_safe.diff(tmp_path / "old.h5", tmp_path / "a.keras")
    with pytest.raises(_UsageError, match="No such file"):
        keras_safe.diff(tmp_path / "a.keras", tmp_path / "missing.keras")


def test_progress_is_reported_in_bytes(tmp_path: Path) -> None:
    model = _model()
    keras_safe.save(model, tmp_path / "a.keras")
    model.fit(X, Y, epochs=1, verbose=0)
    keras_safe.save(model, tmp_path / "b.keras")
    phases: dict[str, list[int]] = {}

    def progress(title: str, total: int) -> object:
        seen = phases.setdefault(title, [total, 0])
        return lambda n: seen.__setitem__(1, seen[1] + n)

    diffing.compare_files(tmp_path / "a.keras", tmp_path / "b.keras", progress)  # type: ignore[arg-type]
    assert set(phases) == {"checking digests", "comparing weights"}
    for total, seen in phases.values():
        assert seen == total > 0
