"""Config and weight comparisons, as the sentences users read."""

from __future__ import annotations

import keras
import numpy as np

from keras_safe.compare import config_differences, strictly_equal, weight_differences


def layer(name: str, **config: object) -> dict:
    return {"module": "m", "class_name": "Block", "config": {"name": name, **config}}


def test_config_differences_name_layer_argument_and_both_values() -> None:
    saved = {"class_name": "Functional", "config": {"name": "net", "layers": [layer("a", units=4)]}}
    rebuilt = {
        "class_name": "Functional",
        "config": {"name": "net", "layers": [layer("a", units=8)]},
    }
    assert config_differences(saved, rebuilt) == [
        "net (Functional) > a (Block).units: saved 4, rebuilt 8"
    ]


def test_types_matter_but_tuples_are_lists_in_json() -> None:
    assert config_differences({"x": 1}, {"x": 1.0}) == [".x: saved 1 (int), rebuilt 1.0 (float)"]
    assert config_differences({"x": True}, {"x": 1})
    assert config_differences({"x": (1, 2)}, {"x": [1, 2]}) == []
    assert config_differences({"x": float("nan")}, {"x": float("nan")}) == []
    assert strictly_equal({"a": [1, {"b": "c"}]}, {"a": [1, {"b": "c"}]})
    assert not strictly_equal({"a": [1]}, {"a": [1, 2]})


def test_missing_and_extra_keys_and_shared_object_ids() -> None:
    assert config_differences({"a": 1}, {}) == [".a: saved 1, missing after rebuilding"]
    assert config_differences({}, {"b": 2}) == [".b: not saved, rebuilt has 2"]
    assert config_differences({"shared_object_id": 1}, {"shared_object_id": 2}) == []


def test_weight_differences_are_bitwise_and_named() -> None:
    a = [keras.Variable(np.array([1.0, np.nan, -0.0], "float32"), name="w")]
    same = [keras.Variable(np.array([1.0, np.nan, -0.0], "float32"), name="w")]
    positive_zero = [keras.Variable(np.array([1.0, np.nan, 0.0], "float32"), name="w")]
    assert weight_differences(a, same) == []
    (problem,) = weight_differences(a, positive_zero)
    assert "weight w" in problem and "values differ" in problem
    shape = [keras.Variable(np.zeros((2,), "float32"), name="w")]
    assert "float32[3]" in weight_differences(a, shape)[0]
    assert "has 1 weights, the rebuilt one has 0" in weight_differences(a, [])[0]
