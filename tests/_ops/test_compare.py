"""Config and weight comparisons, as the sentences users read; bitwise equality of every dtype."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_safe._ops.compare import (
    _bits_equal,
    config_differences,
    strictly_equal,
    weight_differences,
)


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


@pytest.mark.parametrize(
    "array",
    [
        np.arange(3, dtype="int8"),  # 3 bytes: compared as uint8
        np.arange(3, dtype="float16"),  # 6 bytes: as uint16
        np.arange(3, dtype="float32").reshape(3, 1),  # 12 bytes: as uint32
        np.arange(12, dtype="float32").reshape(2, 3, 2),  # 48 bytes: as uint64
        np.array(7, dtype="int64"),  # a scalar
    ],
)
def test_equal_arrays_of_any_size_compare_equal(array: np.ndarray) -> None:
    assert _bits_equal(array, array.copy())
    changed = array.copy()
    changed.reshape(-1)[-1] += 1
    assert not _bits_equal(array, changed)


def test_bits_not_values_are_compared() -> None:
    assert not _bits_equal(np.array([0.0]), np.array([-0.0]))  # equal values, other bits
    nan = np.array([np.nan])
    assert _bits_equal(nan, nan.copy())  # NaN != NaN as values, same bits
    other_nan = nan.view("uint64").copy()
    other_nan += 1
    assert not _bits_equal(nan, other_nan.view("float64"))
    assert not _bits_equal(np.zeros(4, "float32"), np.zeros(4, "int32"))
    assert not _bits_equal(np.zeros((2, 2)), np.zeros(4))


def test_not_contiguous_arrays_compare_by_value_layout() -> None:
    a = np.arange(16.0).reshape(4, 4)
    assert _bits_equal(a.T, np.ascontiguousarray(a.T))


def test_weight_differences_name_the_variable_and_what_differs() -> None:
    saved = [keras.Variable(np.ones((2, 3)), name="kernel")]
    same = [keras.Variable(np.ones((2, 3)), name="kernel")]
    assert weight_differences(saved, same) == []
    other = [keras.Variable(np.array([[1.0, 1, 1], [1, 1, 2]]), name="kernel")]
    assert weight_differences(saved, other) == [
        "weight kernel: 1 of 6 values differ after reloading (loaded into kernel)"
    ]
    assert weight_differences(saved, same, value_of=lambda v: None) == [
        "weight kernel: kernel was not loaded from the file"
    ]
    loaded = np.array(saved[0].numpy())
    assert weight_differences(saved, same, value_of=lambda v: loaded) == []
