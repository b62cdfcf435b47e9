"""Serializable, SerializableLayer and SerializableModel: configs derived from __init__."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import assert_strict_equal, round_trip, run_python

import keras_safe
from keras_safe._config.codec import codec

PACKAGE = "test_base"

# -- the Serializable mixin on other Keras objects -----------------------------

MIXIN_MODULE = "ks_mixin_objects"
MIXIN_SOURCE = """
import math

import keras
from keras import ops

import keras_safe


@keras_safe.register(package="ks_mixin")
class FocalLoss(keras_safe.Serializable, keras.losses.Loss):
    def __init__(self, gamma=2.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = gamma

    def call(self, y_true, y_pred):
        return ops.mean(ops.abs(y_true - y_pred) ** self.gamma, axis=-1)


@keras_safe.register(package="ks_mixin")
class MaxError(keras_safe.Serializable, keras.metrics.Metric):
    def __init__(self, factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.worst = self.add_variable(shape=(), initializer="zeros", name="worst")

    def update_state(self, y_true, y_pred, sample_weight=None):
        error = ops.max(ops.abs(y_true - y_pred)) * self.factor
        self.worst.assign(ops.maximum(self.worst, error))

    def result(self):
        return self.worst

    def reset_state(self):
        self.worst.assign(0.0)


@keras_safe.register(package="ks_mixin")
class Filled(keras_safe.Serializable, keras.initializers.Initializer):
    def __init__(self, value=0.5, jitter=(0.0, 0.1)):
        self.value = value
        self.jitter = jitter

    def __call__(self, shape, dtype=None):
        count = math.prod(shape)
        steps = ops.reshape(ops.arange(count, dtype=dtype), shape)
        return self.value + self.jitter[0] + self.jitter[1] * steps


@keras_safe.register(package="ks_mixin")
class ScaledL1(keras_safe.Serializable, keras.regularizers.Regularizer):
    def __init__(self, strength=0.01):
        self.strength = strength

    def __call__(self, x):
        return self.strength * ops.sum(ops.abs(x))


@keras_safe.register(package="ks_mixin")
class Clip(keras_safe.Serializable, keras.constraints.Constraint):
    def __init__(self, limit=1.0):
        self.limit = limit

    def __call__(self, w):
        return ops.clip(w, -self.limit, self.limit)


@keras_safe.register(package="ks_mixin")
class Halving(keras_safe.Serializable, keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, initial, every=10):
        self.initial = initial
        self.every = every

    def __call__(self, step):
        halvings = ops.floor(ops.cast(step, "float32") / self.every)
        return self.initial * ops.power(0.5, halvings)


def build_model():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(
        2,
        kernel_initializer=Filled(0.3, jitter=(0.0, 0.05)),
        kernel_regularizer=ScaledL1(0.1),
        kernel_constraint=Clip(0.5),
        name="dense",
    )(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=Halving(0.2, every=5)),
        loss=FocalLoss(gamma=3.0),
        metrics=[MaxError(factor=2.0)],
    )
    return model
"""


def _exercise(obj: Any) -> Any:
    """Use a mixin object the way Keras does; the result must not change on rebuild."""
    y_true = np.array([[0.0, 1.0], [1.0, 0.5]], dtype="float32")
    y_pred = np.array([[0.5, 0.25], [1.0, -1.0]], dtype="float32")
    if isinstance(obj, keras.losses.Loss):
        return obj(y_true, y_pred)
    if isinstance(obj, keras.metrics.Metric):
        obj.update_state(y_true, y_pred)
        return obj.result()
    if isinstance(obj, keras.initializers.Initializer):
        return obj((2, 3), dtype="float32")
    if isinstance(obj, keras.optimizers.schedules.LearningRateSchedule):
        return [obj(step) for step in (0, 9, 10, 25)]
    return obj(y_pred)  # regularizer, constraint


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    [
        ("FocalLoss", (), {"gamma": 3.0, "name": "focal", "reduction": "sum"}),
        ("MaxError", (2.0,), {"name": "worst", "dtype": "float64"}),
        ("Filled", (0.3,), {"jitter": (1.0, 0.25)}),
        ("ScaledL1", (), {"strength": 0.5}),
        ("Clip", (0.4,), {}),
        ("Halving", (0.2,), {"every": 10}),
    ],
)
def test_mixin_config_round_trip(
    scope: keras_safe.Registry,
    import_module_from: Any,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    module = import_module_from(MIXIN_MODULE, MIXIN_SOURCE)
    cls = getattr(module, name)
    obj = cls(*args, **kwargs)
    rebuilt, config = round_trip(obj)
    for key, value in kwargs.items():
        if key != "dtype":
            assert getattr(rebuilt, key, config.get(key)) == value
    assert keras_safe.registry.key_of(cls) == f"ks_mixin>{name}"
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(_exercise(rebuilt)), keras.ops.convert_to_numpy(_exercise(obj))
    )


@pytest.mark.slow
def test_mixin_objects_in_a_saved_model_load_in_a_fresh_process(
    tmp_path: Path, scope: keras_safe.Registry, import_module_from: Any
) -> None:
    module = import_module_from(MIXIN_MODULE, MIXIN_SOURCE)
    model = module.build_model()
    x = np.random.default_rng(1).normal(size=(8, 3)).astype("float32")
    y = np.random.default_rng(2).normal(size=(8, 2)).astype("float32")
    model.run_eagerly = True  # what is tested is the file, not graph tracing: keep it quick
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    np.savez(
        tmp_path / "data.npz",
        x=x,
        y=y,
        expected=keras.ops.convert_to_numpy(model(x)),
        iterations=keras.ops.convert_to_numpy(model.optimizer.iterations),
    )
    (tmp_path / "config.json").write_text(json.dumps(model.get_config()))
    model.save(tmp_path / "model.keras")

    proc = run_python(
        f"""
        import json, sys
        import keras, numpy as np
        import {MIXIN_MODULE} as m  # the only import: registers the custom objects

        model = keras.models.load_model(sys.argv[1] + "/model.keras")
        data = np.load(sys.argv[1] + "/data.npz")
        output = keras.ops.convert_to_numpy(model(data["x"]))
        np.testing.assert_array_equal(output, data["expected"])
        config = json.loads(json.dumps(model.get_config()))  # Keras' own parts hold tuples
        assert config == json.load(open(sys.argv[1] + "/config.json"))
        assert type(model.loss) is m.FocalLoss and model.loss.gamma == 3.0, model.loss
        model.run_eagerly = True
        model.evaluate(data["x"], data["y"], verbose=0)  # builds the compiled metrics
        metrics = model._compile_metrics.metrics
        assert [type(x) for x in metrics] == [m.MaxError], metrics
        assert metrics[0].factor == 2.0
        schedule = model.optimizer._learning_rate  # Keras keeps the schedule object here
        assert type(schedule) is m.Halving and schedule.every == 5, schedule
        assert int(model.optimizer.iterations) == int(data["iterations"]) == 4
        dense = model.get_layer("dense")
        assert type(dense.kernel_initializer) is m.Filled
        assert dense.kernel_initializer.jitter == (0.0, 0.05)
        assert type(dense.kernel_regularizer) is m.ScaledL1
        assert type(dense.kernel_constraint) is m.Clip
        print("LOADED-OK")
        """,
        str(tmp_path),
        path=[tmp_path],
    )
    assert "LOADED-OK" in proc.stdout


# -- class layout --------------------------------------------------------------

WRONG_ORDER_BASES = [
    keras.losses.Loss,
    keras.metrics.Metric,
    keras.initializers.Initializer,
    keras.regularizers.Regularizer,
    keras.constraints.Constraint,
    keras.optimizers.schedules.LearningRateSchedule,
    keras.layers.Layer,
    keras.Model,
]


@pytest.mark.parametrize("base", WRONG_ORDER_BASES, ids=lambda b: b.__name__)
def test_wrong_base_order_fails_at_class_definition(base: type) -> None:
    with pytest.raises(keras_safe.SerializationError) as info:

        class Wrong(base, keras_safe.Serializable):  # type: ignore[misc,valid-type]
            def __init__(self, factor: float = 1.0, **kwargs: Any) -> None:
                super().__init__(**kwargs)

    message = str(info.value)
    assert "Wrong" in message
    assert "must come before" in message
    assert f"Write: class Wrong(keras_safe.Serializable, {base.__name__})" in message


def test_wrong_base_order_through_an_intermediate_class() -> None:
    class Intermediate(keras.layers.Layer):
        pass

    with pytest.raises(keras_safe.SerializationError, match=r"\(keras_safe.Serializable, Inter"):

        class Wrong(Intermediate, keras_safe.Serializable):  # type: ignore[misc]
            pass


def test_reserved_parameter_name_fails_at_class_definition() -> None:
    with pytest.raises(keras_safe.SerializationError, match=r"'config_version'.*Rename"):

        class Versioned(keras_safe.Serializable):
            def __init__(self, config_version: int = 1) -> None:
                pass


def test_own_get_config_and_from_config_are_kept(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Explicit(keras_safe.SerializableLayer):
        def __init__(self, factor: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.factor = factor

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "factor": self.factor * 10, "written_by": "hand"}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            config = dict(config)
            assert config.pop("written_by") == "hand"
            config["factor"] //= 10
            return cls(**config)

    @keras_safe.register(package=PACKAGE)
    class Child(Explicit):
        pass

    for cls in (Explicit, Child):
        layer = cls(3, name="explicit")
        config = layer.get_config()
        assert config["factor"] == 30 and config["written_by"] == "hand"
        rebuilt = cls.from_config(json.loads(json.dumps(config)))
        assert type(rebuilt) is cls and rebuilt.factor == 3 and rebuilt.name == "explicit"
    # The class took charge of its config, so keras_safe does not check arguments.
    assert Explicit(object()).factor is not None


def test_automatic_subclass_of_an_automatic_class(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Base(keras_safe.SerializableLayer):
        def __init__(self, units: int = 2, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

    @keras_safe.register(package=PACKAGE)
    class Derived(Base):
        def __init__(self, rate: float, units: int = 4, **kwargs: Any) -> None:
            super().__init__(units=units, **kwargs)
            self.rate = rate

    rebuilt, config = round_trip(Derived(0.5))
    assert (config["rate"], config["units"]) == (0.5, 4)
    assert (rebuilt.rate, rebuilt.units) == (0.5, 4)
    assert Derived._keras_safe_plan is not Base._keras_safe_plan


# -- how arguments are captured --------------------------------------------------


def test_positional_only_varargs_keyword_only_and_defaults(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Signature(keras_safe.SerializableLayer):
        def __init__(
            self,
            kernel: Any,
            /,
            size: int = 3,
            *extra: Any,
            gate: str,
            scale: float = 1.5,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self.kernel, self.size, self.extra = kernel, size, extra
            self.gate, self.scale = gate, scale

    cases = [
        ((np.eye(2, dtype="float32"),), {"gate": "sigmoid"}),
        ((7, 5, (1, 2), [3]), {"gate": "tanh", "scale": 0.5, "name": "sig"}),
        ((7,), {"size": 9, "gate": "relu"}),
    ]
    for args, kwargs in cases:
        layer = Signature(*args, **kwargs)
        rebuilt, config = round_trip(layer)
        assert "kernel" in config and "extra" in config
        assert config["scale"] == kwargs.get("scale", 1.5)  # defaults are in the config
        assert config["size"] == (args[1] if len(args) > 1 else kwargs.get("size", 3))
        assert_strict_equal(rebuilt.kernel, layer.kernel)
        assert_strict_equal(rebuilt.extra, layer.extra)
        assert type(rebuilt.extra) is tuple
        assert (rebuilt.size, rebuilt.gate, rebuilt.scale) == (layer.size, layer.gate, layer.scale)
        assert rebuilt.name == layer.name


def test_kwargs_carry_extra_arguments(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Tagged(keras_safe.SerializableLayer):
        def __init__(self, units: int = 1, **kwargs: Any) -> None:
            self.tags = kwargs.pop("tags", ())
            self.note = kwargs.pop("note", None)
            super().__init__(**kwargs)
            self.units = units

    layer = Tagged(4, tags=("a", "b"), note={"k": 1}, name="tagged", trainable=False)
    rebuilt, config = round_trip(layer)
    assert config["tags"] == {"__keras_safe__": "tuple", "items": ["a", "b"]}
    assert config["note"] == {"k": 1}
    assert rebuilt.tags == ("a", "b") and type(rebuilt.tags) is tuple
    assert dict(rebuilt.note) == {"k": 1}
    assert (rebuilt.name, rebuilt.trainable, rebuilt.units) == ("tagged", False, 4)


def test_layer_without_kwargs_keeps_name_trainable_and_dtype(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Fixed(keras_safe.SerializableLayer):
        def __init__(self, units: int = 2) -> None:
            super().__init__()
            self.units = units

        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(shape=(input_shape[-1], self.units))

        def call(self, x: Any) -> Any:
            return keras.ops.matmul(x, self.w)

    Fixed()  # so the next one gets a numbered name
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        layer = Fixed(units=3)
    finally:
        keras.config.set_dtype_policy(previous)
    layer.trainable = False
    assert layer.name != "fixed"
    rebuilt, config = round_trip(layer)
    assert set(config) == {"name", "trainable", "dtype", "units", "config_version"}
    assert rebuilt.name == layer.name
    assert rebuilt.trainable is False
    assert rebuilt.dtype_policy.name == "float64"
    assert rebuilt.units == 3
    # The base values are handed to this object only, not to later ones.
    assert Fixed().dtype_policy.name == previous.name and Fixed().trainable


def test_layer_without_kwargs_building_sublayers_of_its_own_class(
    scope: keras_safe.Registry,
) -> None:
    @keras_safe.register(package=PACKAGE)
    class Tree(keras_safe.SerializableLayer):
        def __init__(self, depth: int = 0) -> None:
            super().__init__()
            self.depth = depth
            self.child = Tree(depth - 1) if depth > 0 else None

    tree = Tree(2)
    tree.trainable = False
    config = tree.get_config()
    rebuilt = Tree.from_config(config)
    assert rebuilt.name == tree.name and rebuilt.trainable is False
    assert rebuilt.child is not None and rebuilt.child.name != tree.name
    assert rebuilt.child.trainable is True


def test_get_config_of_an_object_not_built_by_calling_the_class(
    scope: keras_safe.Registry,
) -> None:
    @keras_safe.register(package=PACKAGE)
    class Needs(keras_safe.Serializable):
        def __init__(self, required: int) -> None:
            self.required = required

    orphan = Needs.__new__(Needs)  # no arguments: nothing could be captured
    with pytest.raises(keras_safe.SerializationError, match=r"not captured.*Needs\(\.\.\.\)"):
        orphan.get_config()


def test_numpy_size_limit_is_a_class_setting(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Small(keras_safe.Serializable):
        numpy_size_limit = 1024

        def __init__(self, table: Any) -> None:
            self.table = table

    @keras_safe.register(package=PACKAGE)
    class Large(keras_safe.Serializable):
        numpy_size_limit = 4 << 20

        def __init__(self, table: Any) -> None:
            self.table = table

    Small(np.zeros(128, dtype="float64"))  # exactly 1 KiB
    with pytest.raises(keras_safe.SerializationError, match="limit"):
        Small(np.zeros(129, dtype="float64"))
    big = np.arange((1 << 17) + 1, dtype="float64")  # just over the default, under this limit
    with pytest.raises(keras_safe.SerializationError, match=r"limit 1\.0 MiB"):
        codec.for_owner("Default").check(big)  # the default limit, for comparison
    config = json.loads(json.dumps(Large(big).get_config()))
    np.testing.assert_array_equal(Large.from_config(config).table, big)
    with pytest.raises(keras_safe.UnsafeModelError, match="over the limit"):
        Small.from_config({"table": config["table"]})  # the limit applies to reading too


# -- the signature is inspected once per class -----------------------------------


def test_signature_inspected_once_per_class(
    scope: keras_safe.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_signature = inspect.signature
    calls: list[Any] = []

    def counting_signature(obj: Any, *args: Any, **kwargs: Any) -> inspect.Signature:
        # Keras' Operation.__new__ inspects __init__ on every call; count ours only.
        if sys._getframe(1).f_globals.get("__name__", "").startswith("keras_safe"):
            calls.append(obj)
        return real_signature(obj, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting_signature)

    @keras_safe.register(package=PACKAGE)
    class Counted(keras_safe.SerializableLayer):
        def __init__(self, units: int, scale: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units, self.scale = units, scale

    @keras_safe.register(package=PACKAGE)
    class Plain(keras_safe.Serializable):
        def __init__(self, a: int, b: tuple[int, ...] = ()) -> None:
            self.a, self.b = a, b

    at_definition = len(calls)
    assert at_definition >= 2  # both plans were made when the classes were defined
    plans = (Counted._keras_safe_plan, Plain._keras_safe_plan)
    layers = [Counted(i, scale=0.5) for i in range(100)]
    plains = [Plain(i, b=(i,)) for i in range(100)]
    for obj in (*layers[:5], *plains[:5]):
        type(obj).from_config(obj.get_config())
    assert len(calls) == at_definition
    assert (Counted._keras_safe_plan, Plain._keras_safe_plan) == plans


# -- from_config refuses configs that no longer fit __init__ ---------------------


def _classes(scope: keras_safe.Registry) -> dict[str, type]:
    @keras_safe.register(package=PACKAGE)
    class WithKwargs(keras_safe.SerializableLayer):
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    @keras_safe.register(package=PACKAGE)
    class WithoutKwargs(keras_safe.SerializableLayer):
        def __init__(self, units: int) -> None:
            super().__init__()

    @keras_safe.register(package=PACKAGE)
    class LossWithKwargs(keras_safe.Serializable, keras.losses.Loss):
        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            return y_pred

    @keras_safe.register(package=PACKAGE)
    class PlainClass(keras_safe.Serializable):
        def __init__(self, units: int) -> None:
            self.units = units

    @keras_safe.register(package=PACKAGE)
    class PositionalOnly(keras_safe.Serializable):
        def __init__(self, units: int, /, *rest: int) -> None:
            self.units = units

    return {
        cls.__name__: cls
        for cls in (WithKwargs, WithoutKwargs, LossWithKwargs, PlainClass, PositionalOnly)
    }


CLASS_NAMES = ["WithKwargs", "WithoutKwargs", "LossWithKwargs", "PlainClass", "PositionalOnly"]


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_from_config_refuses_an_argument_init_no_longer_accepts(
    scope: keras_safe.Registry, name: str
) -> None:
    cls = _classes(scope)[name]
    config = cls(8).get_config()
    config["num_units"] = 8  # saved by an older version of the class
    with pytest.raises(keras_safe.CompatibilityError) as info:
        cls.from_config(json.loads(json.dumps(config)))
    assert isinstance(info.value, ValueError) and not isinstance(info.value, TypeError)
    message = str(info.value)
    assert name in message
    assert "`num_units`" in message
    assert "upgrade_config" in message  # the fix


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_from_config_refuses_a_config_without_a_required_argument(
    scope: keras_safe.Registry, name: str
) -> None:
    cls = _classes(scope)[name]
    config = cls(8).get_config()
    del config["units"]  # the class gained a required argument since the save
    with pytest.raises(keras_safe.CompatibilityError) as info:
        cls.from_config(config)
    assert not isinstance(info.value, TypeError)
    assert name in str(info.value) and "`units`" in str(info.value)
    assert "required" in str(info.value)


def test_from_config_refuses_a_config_that_is_not_a_dict(scope: keras_safe.Registry) -> None:
    cls = _classes(scope)["PlainClass"]
    with pytest.raises(keras_safe.CompatibilityError, match="expects a dict, got list"):
        cls.from_config([1])


def test_from_config_keeps_errors_unrelated_to_the_config(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Picky(keras_safe.SerializableLayer):
        def __init__(self, units: int, **kwargs: Any) -> None:
            if units < 0:
                raise ValueError("units must be >= 0")
            super().__init__(**kwargs)

    config = Picky(1).get_config()
    config["units"] = -1
    with pytest.raises(ValueError, match="units must be >= 0") as info:
        Picky.from_config(config)
    assert not isinstance(info.value, keras_safe.CompatibilityError)


# -- SerializableModel -------------------------------------------------------------

MODEL_MODULE = "ks_model_classes"
MODEL_SOURCE = '''
import keras

import keras_safe


@keras_safe.register(package="ks_models")
class Block(keras_safe.SerializableLayer):
    """Sublayers made in __init__, no build(): built by running call on load."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(units, activation="relu")
        self.norm = keras.layers.LayerNormalization()

    def call(self, x):
        return self.norm(self.hidden(x))


@keras_safe.register(package="ks_models")
class Classifier(keras_safe.SerializableModel):
    def __init__(self, dims=(8, 6), classes=3, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [Block(units) for units in dims]
        self.dropout = keras.layers.Dropout(dropout)
        self.head = keras.layers.Dense(classes)

    def call(self, x, training=False):
        for block in self.blocks:
            x = block(x)
        return self.head(self.dropout(x, training=training))


@keras_safe.register(package="ks_models")
class GraphClassifier(keras_safe.SerializableModel):
    """Functional style: the graph is built in __init__ and passed to super()."""

    def __init__(self, features=5, dims=(6,), classes=3, **kwargs):
        inputs = keras.Input((features,))
        x = inputs
        for units in dims:
            x = Block(units)(x)
        outputs = keras.layers.Dense(classes)(x)
        super().__init__(inputs, outputs, **kwargs)
        self.features = features
'''


def test_serializable_model_config_round_trip(
    scope: keras_safe.Registry, import_module_from: Any
) -> None:
    module = import_module_from(MODEL_MODULE, MODEL_SOURCE)
    model = module.Classifier(dims=(5, 7), classes=2, name="clf")
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    rebuilt, config = round_trip(model)
    assert config["dims"] == {"__keras_safe__": "tuple", "items": [5, 7]}
    assert config["name"] == "clf" and "layers" not in config  # arguments, not a graph
    assert rebuilt.name == "clf"
    rebuilt(x)
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(x)), expected)


def test_functional_style_serializable_model(
    scope: keras_safe.Registry, import_module_from: Any
) -> None:
    module = import_module_from(MODEL_MODULE, MODEL_SOURCE)
    bases = keras_safe.SerializableModel.__bases__
    model = module.GraphClassifier(features=4, dims=(3, 5), classes=2, name="graph")
    assert isinstance(model, keras_safe.SerializableModel)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    rebuilt, config = round_trip(model)
    assert config["dims"] == {"__keras_safe__": "tuple", "items": [3, 5]}
    assert "layers" not in config  # arguments, not the graph
    rebuilt.set_weights(model.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(x)), expected)
    # Keras makes a model Functional by rewriting the bases of every class up
    # to keras.Model; the shared SerializableModel must stay as it was, or
    # every subclassed SerializableModel in the process breaks.
    assert keras_safe.SerializableModel.__bases__ == bases
    subclassed = module.Classifier(dims=(4,), classes=2)
    assert subclassed(x).shape == (3, 2)
    assert not isinstance(subclassed, keras.src.models.functional.Functional)


@pytest.mark.slow
def test_serializable_model_saved_loads_in_a_fresh_process(
    tmp_path: Path, scope: keras_safe.Registry, import_module_from: Any
) -> None:
    module = import_module_from(MODEL_MODULE, MODEL_SOURCE)
    x = np.random.default_rng(3).normal(size=(16, 5)).astype("float32")
    y = np.random.default_rng(4).integers(0, 3, size=(16,))
    counts = []
    for name, model in (
        ("classifier", module.Classifier(dims=(6,), classes=3, dropout=0.25, name="classifier")),
        ("graph", module.GraphClassifier(features=5, dims=(4, 6), name="graph")),
    ):
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
        model.run_eagerly = True  # what is tested is the file, not graph tracing
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        weights = model.get_weights()
        counts.append(len(weights))
        expected = keras.ops.convert_to_numpy(model(x))
        np.savez(tmp_path / f"{name}.npz", *weights, x=x, expected=expected)
        (tmp_path / f"{name}.json").write_text(json.dumps(model.get_config()))
        model.save(tmp_path / f"{name}.keras")

    proc = run_python(
        f"""
        import json, sys
        from pathlib import Path
        import keras, numpy as np
        import {MODEL_MODULE} as m

        folder = Path(sys.argv[1])
        for name, cls, count in (
            ("classifier", m.Classifier, {counts[0]}),
            ("graph", m.GraphClassifier, {counts[1]}),
        ):
            model = keras.models.load_model(folder / f"{{name}}.keras")
            data = np.load(folder / f"{{name}}.npz")
            assert type(model) is cls, type(model)
            config = json.loads(json.dumps(model.get_config()))  # Keras' own parts hold tuples
            assert config == json.loads((folder / f"{{name}}.json").read_text())
            loaded = model.get_weights()
            assert len(loaded) == len(data.files) - 2 == count
            for i, got in enumerate(loaded):
                np.testing.assert_array_equal(got, data[f"arr_{{i}}"])
            output = keras.ops.convert_to_numpy(model(data["x"]))
            np.testing.assert_array_equal(output, data["expected"])
            assert model.optimizer.iterations.numpy() == 2
        assert [type(b) for b in model.layers if isinstance(b, m.Block)] == [m.Block] * 2
        print("LOADED-OK")
        """,
        str(tmp_path),
        path=[tmp_path],
    )
    assert "LOADED-OK" in proc.stdout
