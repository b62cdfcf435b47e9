"""Every supported argument value type round-trips through get_config/from_config.

Each case builds an object with the value, takes ``get_config()``, sends it
through ``json.dumps``/``json.loads`` (what a ``.keras`` file does) and
rebuilds it with ``from_config``. The rebuilt object's config must be
*strictly* equal (values and types, recursively) and its attribute must hold
a value of the right Python type.
"""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import keras
import ml_dtypes
import numpy as np
import pytest
from conftest import assert_strict_equal, round_trip
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_safe
from keras_safe._config.codec import TAG, codec

PACKAGE = "test_codec"


@pytest.fixture
def Holder(scope: keras_safe.Registry) -> type:
    """A plain registered Serializable class: its attribute is exactly the argument."""

    @keras_safe.register(package=PACKAGE)
    class Holder(keras_safe.Serializable):
        def __init__(self, value: Any = None) -> None:
            self.value = value

    return Holder


@pytest.fixture
def LayerHolder(scope: keras_safe.Registry) -> type:
    """A registered SerializableLayer taking one argument of any supported type."""

    @keras_safe.register(package=PACKAGE)
    class LayerHolder(keras_safe.SerializableLayer):
        def __init__(self, value: Any = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.value = value

        def call(self, x: Any) -> Any:
            # Applies the layers it holds, so that holders can sit in a model.
            layers = self.value if isinstance(self.value, list) else [self.value]
            for layer in layers:
                if isinstance(layer, keras.layers.Layer):
                    x = layer(x)
            return x

    return LayerHolder


def check_value(Holder: type, LayerHolder: type, value: Any) -> dict[str, Any]:
    """Round-trip ``value`` through a plain class and a layer; return the plain config."""
    rebuilt, config = round_trip(Holder(value=value))
    assert_strict_equal(rebuilt.value, value)
    layer, _ = round_trip(LayerHolder(value=value, name="holder"))
    assert layer.name == "holder"
    return config


# -- scalars ------------------------------------------------------------------

SCALARS = [
    pytest.param(None, id="None"),
    pytest.param(True, id="True"),
    pytest.param(False, id="False"),
    pytest.param(0, id="int-0"),
    pytest.param(-7, id="int-negative"),
    pytest.param(2**70, id="int-big"),
    pytest.param(1.0, id="float-integral"),
    pytest.param(0.1, id="float"),
    pytest.param(-0.0, id="float-negative-zero"),
    pytest.param(1e308, id="float-huge"),
    pytest.param(5e-324, id="float-subnormal"),
    pytest.param(float("nan"), id="float-nan"),
    pytest.param(float("inf"), id="float-inf"),
    pytest.param(float("-inf"), id="float-minus-inf"),
    pytest.param("", id="str-empty"),
    pytest.param("relu", id="str"),
    pytest.param('ünï\u00a0cødé \U0001f600 \x00 \\ "', id="str-unicode"),
]


@pytest.mark.parametrize("value", SCALARS)
def test_scalar_round_trips_with_type(Holder: type, LayerHolder: type, value: Any) -> None:
    config = check_value(Holder, LayerHolder, value)
    if not (isinstance(value, float) and math.isnan(value)):
        assert config["value"] == value  # stored as itself: the config stays readable


def test_int_float_bool_stay_distinct(Holder: type) -> None:
    rebuilt, config = round_trip(Holder(value=[1, 1.0, True, 0, 0.0, False]))
    assert [type(v) for v in rebuilt.value] == [int, float, bool, int, float, bool]
    assert json.dumps(config["value"]) == "[1, 1.0, true, 0, 0.0, false]"


def test_readable_config_names_arguments(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Attention(keras_safe.SerializableLayer):
        def __init__(self, units: int, activation: str = "softmax", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

    config = Attention(64, name="att").get_config()
    text = json.dumps(config)
    assert '"units": 64' in text
    assert '"activation": "softmax"' in text  # default applied
    assert config["name"] == "att"
    rebuilt, _ = round_trip(Attention(64))
    assert rebuilt.units == 64


# -- containers ---------------------------------------------------------------

CONTAINERS = [
    pytest.param([], id="list-empty"),
    pytest.param([1, "a", None, 2.5], id="list"),
    pytest.param([[1, [2, [3]]]], id="list-nested"),
    pytest.param((), id="tuple-empty"),
    pytest.param((3,), id="tuple-single"),
    pytest.param((3, 3), id="tuple"),
    pytest.param(((1, 2), (3, (4, 5))), id="tuple-nested"),
    pytest.param(({"k": [(1, 2.0), ("a",)]},), id="tuple-in-list-in-dict-in-tuple"),
    pytest.param([(1,), [(2,)]], id="tuples-in-lists"),
    pytest.param({}, id="dict-empty"),
    pytest.param({"a": 1, "b": [1, 2], "c": {"d": (1,)}}, id="dict-str-keys"),
    pytest.param({1: "a", 2: "b"}, id="dict-int-keys"),
    pytest.param({1.5: "x", -2.0: "y"}, id="dict-float-keys"),
    pytest.param({True: "t", None: "n"}, id="dict-bool-none-keys"),
    pytest.param({(1, 2): "pair", ("a", (3,)): "nested"}, id="dict-tuple-keys"),
    pytest.param({"a": 1, 2: "b"}, id="dict-mixed-keys"),
    pytest.param({"class_name": "Dense", "config": {}}, id="dict-reserved-class_name"),
    pytest.param({TAG: "tuple", "items": [1, 2]}, id="dict-mimics-tag"),
    pytest.param(
        [{"x": {"class_name": "function", "config": "relu", "module": "keras"}}],
        id="dict-reserved-nested",
    ),
]


@pytest.mark.parametrize("value", CONTAINERS)
def test_container_round_trips_with_type(Holder: type, LayerHolder: type, value: Any) -> None:
    check_value(Holder, LayerHolder, value)


def test_tuple_config_is_readable(Holder: type) -> None:
    config = Holder(value=(3, 3)).get_config()
    assert config == {"value": {TAG: "tuple", "items": [3, 3]}, "config_version": 1}


def test_str_key_dict_is_stored_as_itself(Holder: type) -> None:
    config = Holder(value={"a": 1, "b": "x"}).get_config()
    assert config == {"value": {"a": 1, "b": "x"}, "config_version": 1}


def test_dict_with_reserved_key_is_not_taken_for_an_object(Holder: type) -> None:
    # A user dict with "class_name" must not be decoded as a Keras object.
    value = {"class_name": "Dense", "config": {"units": 3}, "module": "keras.layers"}
    rebuilt, config = round_trip(Holder(value=value))
    assert type(rebuilt.value) is dict
    assert config["value"][TAG] == "dict"
    assert_strict_equal(rebuilt.value, value)


def test_layer_attribute_lists_and_dicts_hold_plain_values(LayerHolder: type) -> None:
    # Keras wraps list/dict attributes (TrackedList ...); passing one on to
    # another constructor must still work and still mean the plain type.
    first = LayerHolder(value=[1, {"a": (2,)}])
    second = LayerHolder(value=first.value)
    assert type(first.value) is not list  # Keras' wrapper
    rebuilt, config = round_trip(second)
    assert_strict_equal(config["value"], [1, {"a": {TAG: "tuple", "items": [2]}}])
    assert list(rebuilt.value) == [1, {"a": (2,)}]


# -- numpy --------------------------------------------------------------------

NUMERIC_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]


def extreme_array(dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.array([[True, False], [False, True]])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([info.min, 0, 1, info.max], dtype=dtype)
    info = np.finfo(dtype)
    values = [info.min, -0.0, info.tiny, info.smallest_subnormal, info.max, np.nan, np.inf]
    return np.array([*values, 0.1, -np.inf], dtype=dtype).reshape(3, 3)


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES)
def test_numpy_array_keeps_dtype_and_values(Holder: type, LayerHolder: type, dtype: str) -> None:
    value = extreme_array(dtype)
    config = check_value(Holder, LayerHolder, value)
    assert config["value"]["dtype"] == dtype
    assert config["value"]["shape"] == list(value.shape)


def test_numpy_bfloat16_array(Holder: type, LayerHolder: type) -> None:
    value = np.array([1.5, -2.0, np.inf, 3.140625], dtype=ml_dtypes.bfloat16)
    config = check_value(Holder, LayerHolder, value)
    assert config["value"]["dtype"] == "bfloat16"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(np.array(["ab", "", "ünï"]), id="1d"),
        pytest.param(np.array([["a", "bcd"], ["e", "f"]]), id="2d"),
        pytest.param(np.array("zero-d"), id="0d"),
        pytest.param(np.array(["x" * 65536, ""]), id="longest-items"),
        pytest.param(np.str_("y" * 65536), id="longest-scalar"),
    ],
)
def test_numpy_unicode_array(Holder: type, LayerHolder: type, value: Any) -> None:
    check_value(Holder, LayerHolder, value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(np.array(3.5, dtype=np.float32), id="0d-float32"),
        pytest.param(np.array(-3, dtype=np.int8), id="0d-int8"),
        pytest.param(np.array(True), id="0d-bool"),
        pytest.param(np.zeros((0,), dtype=np.float32), id="empty"),
        pytest.param(np.zeros((0, 3), dtype=np.int16), id="empty-leading-zero"),
        pytest.param(np.zeros((3, 0), dtype=np.int16), id="empty-trailing-zero"),
        pytest.param(np.zeros((2, 0, 4), dtype=np.float64), id="empty-middle-zero"),
        pytest.param(np.arange(24, dtype=np.int32).reshape(2, 3, 4), id="3d"),
        pytest.param(np.asfortranarray(np.arange(6.0).reshape(2, 3)), id="fortran-order"),
        pytest.param(np.arange(10.0)[::3], id="non-contiguous"),
    ],
)
def test_numpy_array_shapes(Holder: type, LayerHolder: type, value: np.ndarray) -> None:
    check_value(Holder, LayerHolder, value)


@pytest.mark.parametrize("dtype", [*NUMERIC_DTYPES, "bfloat16"])
def test_numpy_scalar_keeps_dtype(Holder: type, LayerHolder: type, dtype: str) -> None:
    if dtype == "bfloat16":
        values = np.array([1.5, -2.0, np.inf, np.nan], dtype=ml_dtypes.bfloat16)
    else:
        values = extreme_array(dtype).ravel()
    scalars = [value[()] for value in values]  # numpy scalars: min, max, NaN, inf ...
    assert all(type(s) is values.dtype.type for s in scalars)
    config = check_value(Holder, LayerHolder, scalars)
    assert {item[TAG] for item in config["value"]} == {"numpy_scalar"}
    assert {item["dtype"] for item in config["value"]} == {dtype}


def test_numpy_str_scalar(Holder: type, LayerHolder: type) -> None:
    check_value(Holder, LayerHolder, np.str_("abc"))


@pytest.mark.parametrize(
    "value",
    [
        *(pytest.param(np.dtype(name), id=f"np.dtype-{name}") for name in NUMERIC_DTYPES),
        pytest.param(np.dtype(ml_dtypes.bfloat16), id="np.dtype-bfloat16"),
        pytest.param(np.dtype("<U7"), id="np.dtype-unicode"),
        pytest.param(np.float32, id="type-np.float32"),
        pytest.param(np.int8, id="type-np.int8"),
        pytest.param(np.bool_, id="type-np.bool_"),
        pytest.param(np.uint64, id="type-np.uint64"),
        pytest.param(ml_dtypes.bfloat16, id="type-bfloat16"),
        pytest.param(int, id="type-int"),
        pytest.param(float, id="type-float"),
        pytest.param(bool, id="type-bool"),
        pytest.param(str, id="type-str"),
    ],
)
def test_dtype_values(Holder: type, LayerHolder: type, value: Any) -> None:
    rebuilt, _ = round_trip(Holder(value=value))
    assert type(rebuilt.value) is type(value)
    assert rebuilt.value == value
    if isinstance(value, type):
        assert rebuilt.value is value
    round_trip(LayerHolder(value=value))


@pytest.mark.parametrize("name", ["float32", "int64", "bfloat16", "bool", "string", "uint8"])
def test_tf_dtype(Holder: type, LayerHolder: type, name: str) -> None:
    tf = pytest.importorskip("tensorflow")  # an argument value under any backend
    value = tf.dtypes.as_dtype(name)
    rebuilt, config = round_trip(Holder(value=value))
    assert rebuilt.value is value  # tf.DType objects are interned
    assert config["value"] == {TAG: "tf_dtype", "dtype": name}
    round_trip(LayerHolder(value=value))


@pytest.mark.parametrize("name", ["mixed_float16", "float64", "bfloat16"])
def test_dtype_policy(Holder: type, LayerHolder: type, name: str) -> None:
    rebuilt, _ = round_trip(Holder(value=keras.DTypePolicy(name)))
    assert type(rebuilt.value) is keras.DTypePolicy
    assert rebuilt.value.name == name
    assert rebuilt.value.compute_dtype == keras.DTypePolicy(name).compute_dtype
    assert rebuilt.value.variable_dtype == keras.DTypePolicy(name).variable_dtype
    round_trip(LayerHolder(value=keras.DTypePolicy(name)))


def test_bytes(Holder: type, LayerHolder: type) -> None:
    for value in (b"", bytes(range(256))):
        config = check_value(Holder, LayerHolder, value)
        assert config["value"][TAG] == "bytes"


# -- Keras objects as arguments -----------------------------------------------


def same_keras_object(rebuilt: Any, original: Any) -> None:
    assert type(rebuilt) is type(original)
    assert rebuilt is not original
    serialize = keras.saving.serialize_keras_object
    assert_strict_equal(
        json.loads(json.dumps(serialize(rebuilt))), json.loads(json.dumps(serialize(original)))
    )


KERAS_OBJECTS = [
    pytest.param(lambda: keras.initializers.GlorotUniform(seed=3), id="initializer"),
    pytest.param(lambda: keras.initializers.Constant(0.25), id="initializer-constant"),
    pytest.param(lambda: keras.initializers.Orthogonal(gain=2.0), id="initializer-orthogonal"),
    pytest.param(lambda: keras.regularizers.L2(0.01), id="regularizer"),
    pytest.param(lambda: keras.regularizers.L1L2(l1=0.1, l2=0.2), id="regularizer-l1l2"),
    pytest.param(lambda: keras.constraints.MaxNorm(2.0, axis=1), id="constraint"),
    pytest.param(lambda: keras.constraints.NonNeg(), id="constraint-nonneg"),
    pytest.param(lambda: keras.losses.MeanSquaredError(), id="loss"),
    pytest.param(lambda: keras.losses.BinaryCrossentropy(from_logits=True), id="loss-bce"),
    pytest.param(lambda: keras.metrics.AUC(num_thresholds=50), id="metric"),
    pytest.param(lambda: keras.metrics.MeanAbsoluteError(name="mae"), id="metric-mae"),
    pytest.param(lambda: keras.optimizers.Adam(learning_rate=0.002), id="optimizer"),
    pytest.param(
        lambda: keras.optimizers.SGD(
            learning_rate=keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5),
            momentum=0.9,
        ),
        id="optimizer-with-schedule",
    ),
    pytest.param(
        lambda: keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5, staircase=True),
        id="schedule",
    ),
    pytest.param(lambda: keras.optimizers.schedules.CosineDecay(0.1, 1000), id="schedule-cosine"),
]


@pytest.mark.parametrize("make", KERAS_OBJECTS)
def test_keras_object_argument(Holder: type, LayerHolder: type, make: Any) -> None:
    value = make()
    rebuilt, config = round_trip(Holder(value=value))
    same_keras_object(rebuilt.value, value)
    assert config["value"]["module"].startswith("keras")
    layer, _ = round_trip(LayerHolder(value=make()))
    assert type(layer.value) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(keras.activations.relu, id="relu"),
        pytest.param(keras.activations.gelu, id="gelu"),
        pytest.param(keras.activations.softmax, id="softmax"),
        pytest.param(keras.losses.mean_squared_error, id="loss-function"),
        pytest.param(keras.metrics.binary_accuracy, id="metric-function"),
    ],
)
def test_builtin_function_argument(Holder: type, LayerHolder: type, value: Any) -> None:
    rebuilt, config = round_trip(Holder(value=value))
    assert rebuilt.value is value
    assert config["value"]["class_name"] == "function"
    layer, _ = round_trip(LayerHolder(value=value))
    assert layer.value is value


def test_activation_string_and_registered_function(
    Holder: type, LayerHolder: type, scope: keras_safe.Registry
) -> None:
    @keras_safe.register(package=PACKAGE)
    def scaled_tanh(x: Any) -> Any:
        return 2.0 * keras.ops.tanh(x)

    rebuilt, config = round_trip(Holder(value=scaled_tanh))
    assert rebuilt.value is scaled_tanh
    assert config["value"]["registered_name"] == f"{PACKAGE}>scaled_tanh"
    rebuilt, config = round_trip(Holder(value="relu"))
    assert config["value"] == "relu"

    @keras_safe.register(package=PACKAGE)
    class Activated(keras_safe.SerializableLayer):
        def __init__(self, activation: Any = "linear", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.activation = keras.activations.get(activation)

        def call(self, x: Any) -> Any:
            return self.activation(x)

    x = np.linspace(-2, 2, 8, dtype="float32").reshape(2, 4)
    for activation in ("relu", keras.activations.relu, scaled_tanh):
        layer = Activated(activation)
        rebuilt, _ = round_trip(layer)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(rebuilt(x)), keras.ops.convert_to_numpy(layer(x))
        )


def test_single_layer_argument(LayerHolder: type) -> None:
    dense = keras.layers.Dense(4, activation="relu", name="inner", kernel_regularizer="l2")
    holder = LayerHolder(value=dense)
    x = np.ones((2, 3), dtype="float32")
    dense(x)  # built: its config carries the build config
    rebuilt, config = round_trip(holder)
    assert config["value"]["class_name"] == "Dense"
    inner = rebuilt.value
    assert isinstance(inner, keras.layers.Dense) and inner is not dense
    assert inner.name == "inner" and inner.built
    inner.set_weights(dense.get_weights())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(inner(x)), keras.ops.convert_to_numpy(dense(x))
    )


def test_sequential_argument(LayerHolder: type) -> None:
    seq = keras.Sequential(
        [keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)], name="seq"
    )
    x = np.ones((2, 3), dtype="float32")
    seq(x)
    seq.trainable = False  # Sequential.from_config drops this flag; it must survive
    rebuilt, _ = round_trip(LayerHolder(value=seq))
    inner = rebuilt.value
    assert isinstance(inner, keras.Sequential) and inner.built
    assert not inner.trainable
    assert [type(layer) for layer in inner.layers] == [keras.layers.Dense] * 2
    inner.set_weights(seq.get_weights())
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(inner(x)), keras.ops.convert_to_numpy(seq(x))
    )


def test_list_tuple_and_dict_of_layers(LayerHolder: type) -> None:
    value = {
        "list": [keras.layers.Dense(2), keras.layers.ReLU()],
        "tuple": (keras.layers.Dropout(0.5), keras.layers.Flatten()),
        "dict": {"a": keras.layers.Dense(3, name="a"), "b": keras.layers.LayerNormalization()},
    }
    rebuilt, _ = round_trip(LayerHolder(value=value))
    got = rebuilt.value
    assert [type(x) for x in got["list"]] == [keras.layers.Dense, keras.layers.ReLU]
    assert type(got["tuple"]) is tuple
    assert [type(x) for x in got["tuple"]] == [keras.layers.Dropout, keras.layers.Flatten]
    assert got["tuple"][0].rate == 0.5
    assert type(got["dict"]["a"]) is keras.layers.Dense and got["dict"]["a"].name == "a"
    assert type(got["dict"]["b"]) is keras.layers.LayerNormalization


def test_custom_layers_nested_three_deep(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Leaf(keras_safe.SerializableLayer):
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(units)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    @keras_safe.register(package=PACKAGE)
    class Middle(keras_safe.SerializableLayer):
        def __init__(self, leaf: Any, scale: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.leaf = leaf
            self.scale = scale

        def call(self, x: Any) -> Any:
            return self.leaf(x) * self.scale

    @keras_safe.register(package=PACKAGE)
    class Outer(keras_safe.SerializableLayer):
        def __init__(self, middles: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.middles = list(middles)

        def call(self, x: Any) -> Any:
            for middle in self.middles:
                x = middle(x)
            return x

    outer = Outer((Middle(Leaf(4), scale=0.5), Middle(Leaf(3, name="leaf_b"))), name="outer")
    x = np.random.default_rng(0).normal(size=(2, 5)).astype("float32")
    expected = keras.ops.convert_to_numpy(outer(x))
    rebuilt, config = round_trip(outer)
    assert config["middles"][TAG] == "tuple"
    inner = config["middles"]["items"][0]
    assert inner["registered_name"] == f"{PACKAGE}>Middle"
    assert inner["config"]["leaf"]["registered_name"] == f"{PACKAGE}>Leaf"
    middles = rebuilt.middles
    assert [type(m) for m in middles] == [Middle, Middle]
    assert [type(m.leaf) for m in middles] == [Leaf, Leaf]
    assert middles[0].scale == 0.5 and middles[1].leaf.name == "leaf_b"
    assert all(m.built and m.leaf.built and m.leaf.dense.built for m in middles)
    rebuilt.set_weights(outer.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(x)), expected)


@pytest.mark.parametrize("placement", ["two-layers", "one-argument-twice", "also-in-the-graph"])
def test_layer_shared_between_arguments_stays_shared(
    LayerHolder: type, tmp_path: Any, placement: str
) -> None:
    # Tied weights: one layer object passed to several layers loads as one.
    shared = keras.layers.Dense(3, name="shared")
    inputs = keras.Input((3,))
    if placement == "two-layers":
        outputs = LayerHolder(shared, name="a")(LayerHolder(shared, name="b")(inputs))
    elif placement == "one-argument-twice":
        outputs = LayerHolder([shared, shared], name="a")(inputs)
    else:
        outputs = LayerHolder(shared, name="a")(shared(inputs))
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "tied.keras")
    loaded = keras.models.load_model(tmp_path / "tied.keras")
    assert len(loaded.weights) == len(model.weights) == 2
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), expected)
    assert json.dumps(loaded.get_config()) == json.dumps(model.get_config())


# -- registered classes, instances and enums -----------------------------------


def test_registered_serializable_instance(Holder: type, LayerHolder: type) -> None:
    @keras_safe.register(package=PACKAGE)
    class Point(keras_safe.Serializable):
        def __init__(self, x: float, coords: tuple[int, ...] = (), label: str = "") -> None:
            self.x, self.coords, self.label = x, coords, label

    value = Point(1.5, coords=(1, 2), label="p")
    rebuilt, config = round_trip(Holder(value=value))
    assert config["value"]["registered_name"] == f"{PACKAGE}>Point"
    assert config["value"]["config"] == {
        "x": 1.5,
        "coords": {TAG: "tuple", "items": [1, 2]},
        "label": "p",
        "config_version": 1,
    }
    got = rebuilt.value
    assert type(got) is Point and got is not value
    assert (got.x, got.coords, got.label) == (1.5, (1, 2), "p")
    assert type(got.coords) is tuple
    nested, _ = round_trip(LayerHolder(value={"points": [Point(0.0), Point(2.0, (3,))]}))
    assert [p.coords for p in nested.value["points"]] == [(), (3,)]


def test_registered_classes_as_values(Holder: type, LayerHolder: type) -> None:
    @keras_safe.register(package=PACKAGE)
    class Block(keras_safe.SerializableLayer):
        pass

    @keras.saving.register_keras_serializable(package=PACKAGE)
    class KerasRegistered(keras.layers.Layer):
        pass

    try:
        for value in (Block, Holder, keras.layers.Dense, keras.losses.Huber, KerasRegistered):
            rebuilt, config = round_trip(Holder(value=value))
            assert rebuilt.value is value
            assert config["value"][TAG] == "class"
            round_trip(LayerHolder(value=[value]))
    finally:  # registered with Keras only: undo by hand
        keras.saving.get_custom_objects().pop(f"{PACKAGE}>KerasRegistered")


class _Color(enum.Enum):
    RED = "red"
    GREEN = (0, 255, 0)


class _Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@pytest.mark.parametrize("kind", ["Enum", "IntEnum", "StrEnum"])
def test_registered_enum_members(
    Holder: type, LayerHolder: type, scope: keras_safe.Registry, kind: str
) -> None:
    if kind == "StrEnum":
        if not hasattr(enum, "StrEnum"):
            pytest.skip("enum.StrEnum needs Python 3.11")

        class Mode(enum.StrEnum):
            SUM = "sum"
            MEAN = "mean"

        cls: type[enum.Enum] = Mode
    else:
        cls = {"Enum": _Color, "IntEnum": _Level}[kind]
    keras_safe.register(package=PACKAGE)(cls)
    members = list(cls)
    value = {"first": members[0], "all": tuple(members), members[-1]: "as key"}
    rebuilt, config = round_trip(Holder(value=value))
    assert rebuilt.value["first"] is members[0]  # the member itself, not its value
    assert all(a is b for a, b in zip(rebuilt.value["all"], members, strict=True))
    assert rebuilt.value[members[-1]] == "as key"
    assert config["value"][TAG] == "dict"
    single = Holder(value=members[0]).get_config()["value"]
    assert single == {
        TAG: "enum",
        "module": cls.__module__,
        "registered_name": f"{PACKAGE}>{cls.__name__}",
        "member": members[0].name,
    }
    round_trip(LayerHolder(value=members[1]))
    assert Holder.from_config({"value": single}).value is members[0]
    # The enum class itself is a value too.
    assert round_trip(Holder(value=cls))[0].value is cls


# -- property-based: nested plain values ----------------------------------------

_keys = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["class_name", TAG, "module", "config", "items", "registered_name"]),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
_keys_or_tuples = st.one_of(_keys, st.tuples(_keys, _keys))
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
        st.dictionaries(_keys_or_tuples, children, max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=120, deadline=None)
@given(value=_values)
def test_property_nested_plain_values_round_trip(value: Any) -> None:
    with keras_safe.registry.scope():

        @keras_safe.register(package=PACKAGE)
        class Holder(keras_safe.Serializable):
            def __init__(self, value: Any = None, *rest: Any, **named: Any) -> None:
                self.value, self.rest, self.named = value, rest, named

        obj = Holder(value, value, [value], key=value)
        rebuilt, _ = round_trip(obj)
        assert_strict_equal(rebuilt.value, value)
        assert_strict_equal(rebuilt.rest, (value, [value]))
        assert_strict_equal(rebuilt.named, {"key": value})


_array_dtypes = st.sampled_from(
    [np.dtype(name) for name in NUMERIC_DTYPES] + [np.dtype(ml_dtypes.bfloat16)]
)


@settings(max_examples=80, deadline=None)
@given(
    value=st.one_of(
        hnp.arrays(
            dtype=st.sampled_from([np.dtype(name) for name in NUMERIC_DTYPES]),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
        ),
        hnp.arrays(
            dtype=hnp.unicode_string_dtypes(endianness="=", max_len=4),
            shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
        ),
    )
)
def test_property_numpy_arrays_round_trip(value: np.ndarray) -> None:
    data = json.loads(json.dumps(codec.encode(value)))
    assert_strict_equal(codec.decode(data), value)


# -- the codec on its own: tampered or foreign config values -------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({TAG: "no_such_tag"}, id="unknown-tag"),
        pytest.param({TAG: 3}, id="tag-not-str"),
        pytest.param({TAG: "tuple", "items": "ab"}, id="tuple-items-not-list"),
        pytest.param({TAG: "dict", "items": [[1]]}, id="dict-pair-too-short"),
        pytest.param({TAG: "dict", "items": [[[1, 2], 3]]}, id="dict-unhashable-key"),
        pytest.param({TAG: "ndarray", "dtype": "object", "shape": [1], "value": [1]}, id="dtype"),
        pytest.param({TAG: "ndarray", "dtype": "int8", "shape": [3], "value": [1]}, id="shape"),
        pytest.param({TAG: "ndarray", "dtype": "int8", "shape": [1], "value": [999]}, id="range"),
        pytest.param(
            {TAG: "ndarray", "dtype": "float64", "shape": [1 << 20], "value": []}, id="huge"
        ),
        pytest.param({TAG: "numpy_scalar", "dtype": "int8", "value": [1]}, id="scalar-list"),
        pytest.param({TAG: "bytes", "base64": "***"}, id="bytes-base64"),
        pytest.param({TAG: "builtin_type", "name": "eval"}, id="builtin-type"),
        pytest.param({TAG: "class", "module": "os", "class_name": "system"}, id="class"),
        pytest.param({TAG: "tf_dtype", "dtype": "no_such_dtype"}, id="tf-dtype"),
        pytest.param(b"raw", id="not-json"),
    ],
)
def test_decode_refuses_values_keras_safe_never_writes(data: Any) -> None:
    with pytest.raises(keras_safe.UnsafeModelError, match="never writes"):
        codec.decode({"outer": [data]})


def test_decode_names_missing_registered_objects(scope: keras_safe.Registry) -> None:
    for tag in ("class", "enum"):
        data = {TAG: tag, "module": "gone", "registered_name": "gone>Thing", "member": "A"}
        with pytest.raises(keras_safe.CompatibilityError, match=r"gone>Thing.*not registered"):
            codec.decode({"arg": data})


def test_decode_names_a_removed_enum_member(scope: keras_safe.Registry) -> None:
    keras_safe.register(package=PACKAGE)(_Level)
    data = codec.encode(_Level.HIGH)
    data["member"] = "MEDIUM"
    with pytest.raises(keras_safe.CompatibilityError, match=r"no member 'MEDIUM'.*LOW, HIGH"):
        codec.decode(data)
