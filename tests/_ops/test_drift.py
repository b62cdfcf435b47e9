"""Drift between the saved environment and this one."""

from __future__ import annotations

import warnings

import pytest

import keras_safe
from keras_safe._format.manifest import Manifest, ModelSummary, describe_object
from keras_safe._ops.drift import backend_note, find_drift, report_drift


def Sample(x):
    return x


def manifest_for(**environment: str) -> Manifest:
    record = describe_object("t>Sample", Sample, "function", (None, None))
    return Manifest(1, environment, None, ModelSummary(), (record,), {}, None)


def test_same_environment_and_code_has_no_drift() -> None:
    now = {"keras": "3.15.1", "backend": "tensorflow", "tensorflow": "2.21.0"}
    assert find_drift(manifest_for(**now), now, {"t>Sample": Sample}) == []


def test_environment_and_object_changes_are_listed() -> None:
    then = {"keras": "3.8.0", "backend": "jax", "tensorflow": "2.18.0"}
    now = {"keras": "3.15.1", "backend": "tensorflow", "tensorflow": "2.21.0"}

    def Sample(x, y=0):
        return x

    lines = find_drift(manifest_for(**then), now, {"t>Sample": Sample})
    assert "Keras 3.8.0 when saved, 3.15.1 now" in lines
    assert "TensorFlow 2.18.0 when saved, 2.21.0 now" in lines
    assert not any("jax" in line for line in lines)  # another backend is not drift
    assert any(line.startswith("t>Sample: was ") for line in lines)
    assert "t>Sample: signature was (x), now (x, y=0)" in lines


def test_report_warns_raises_or_stays_quiet() -> None:
    with pytest.warns(keras_safe.CompatibilityWarning, match="- a change"):
        report_drift(["a change"], "warn", "file.keras")
    with pytest.raises(keras_safe.CompatibilityError, match=r"file\.keras was saved"):
        report_drift(["a change"], "error", "file.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_drift(["a change"], "ignore", "file.keras")
        report_drift([], "error", "file.keras")


def test_another_backend_is_information_not_drift() -> None:
    then = {"keras": "3.15.1", "backend": "torch", "tensorflow": None}
    now = {"keras": "3.15.1", "backend": "jax", "tensorflow": None}
    manifest = manifest_for(**then)
    assert find_drift(manifest, now, {"t>Sample": Sample}) == []
    note = backend_note(manifest, now)
    assert note == (
        "saved under the torch backend, loaded under jax: files move between backends, "
        "weights and optimizer state included"
    )
    assert backend_note(manifest, then) is None
    assert backend_note(manifest_for(keras="3.15.1"), now) is None  # not recorded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report_drift([], "error", "file.keras", note)  # alone: nothing to report
    with pytest.warns(keras_safe.CompatibilityWarning) as caught:
        report_drift(["Keras 3.8.0 when saved, 3.15.1 now"], "warn", "file.keras", note)
    assert f"  (for information, not a problem: {note})" in str(caught[0].message)
