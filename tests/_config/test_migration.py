"""Config versions, upgrade_config and drift messages, in process (see test_evolution.py
for the same story across fresh processes and edited modules)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import keras_safe
from keras_safe._ops.compare import weight_differences


def make_gate(
    version: int = 1, upgrade: Any = None, arg: str = "units", kwargs: bool = True
) -> Any:
    """A registered layer class ``test>Gate`` taking ``arg`` (and **kwargs when asked)."""
    namespace: dict[str, Any] = {}
    star = ", **kwargs" if kwargs else ""
    exec(  # one class body for every variant: the argument name changes between versions
        f"def __init__(self, {arg}{star}):\n"
        f"    super(type(self), self).__init__({'**kwargs' if kwargs else ''})\n"
        f"    self.{arg} = {arg}\n",
        namespace,
    )
    body: dict[str, Any] = {"__init__": namespace["__init__"], "config_version": version}
    body["__module__"] = __name__
    if upgrade is not None:
        body["upgrade_config"] = classmethod(upgrade)
    cls = type("Gate", (keras_safe.SerializableLayer,), body)
    return keras_safe.register(package="test")(cls)


def test_every_config_records_its_version(scope: keras_safe.Registry) -> None:
    assert make_gate()(4).get_config()["config_version"] == 1

    @keras_safe.register(package="test")
    class Versioned(keras_safe.SerializableLayer):
        config_version = 3

        def __init__(self, inner: Any = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.inner = inner

    config = Versioned(inner=Versioned()).get_config()
    assert config["config_version"] == 3
    assert config["inner"]["config"]["config_version"] == 3  # nested objects too


def test_config_without_the_key_is_version_1(scope: keras_safe.Registry) -> None:
    calls: list[int] = []

    def upgrade(cls: Any, config: dict[str, Any], from_version: int) -> dict[str, Any]:
        calls.append(from_version)
        config["units"] = config.pop("num_units")
        return config

    gate = make_gate(version=2, upgrade=upgrade)
    assert gate.from_config({"num_units": 5, "name": "g"}).units == 5
    assert calls == [1]


def test_upgrade_config_runs_once_and_only_for_older_configs(scope: keras_safe.Registry) -> None:
    calls: list[int] = []

    def upgrade(cls: Any, config: dict[str, Any], from_version: int) -> dict[str, Any]:
        calls.append(from_version)
        if from_version < 2:
            config["units"] = config.pop("num_units")
        if from_version < 3:
            config.setdefault("units", 1)
        return config

    gate = make_gate(version=3, upgrade=upgrade)
    saved = {"num_units": 5, "name": "g", "config_version": 1}
    assert gate.from_config(saved).units == 5
    assert saved == {"num_units": 5, "name": "g", "config_version": 1}  # caller's dict untouched
    assert gate.from_config({"name": "g", "config_version": 2}).units == 1
    assert gate.from_config({"units": 7, "name": "g", "config_version": 3}).units == 7
    assert calls == [1, 2]


def test_newer_config_than_the_code_is_refused(scope: keras_safe.Registry) -> None:
    gate = make_gate(version=3)
    with pytest.raises(keras_safe.CompatibilityError) as info:
        gate.from_config({"units": 5, "config_version": 4})
    assert "saved with Gate config v4, this code understands up to v3: upgrade" in str(info.value)
    assert "test>Gate" in str(info.value)


def test_renamed_argument_without_migration_names_both_and_the_fixes(
    scope: keras_safe.Registry,
) -> None:
    gate = make_gate()
    with pytest.raises(keras_safe.CompatibilityError) as info:
        gate.from_config({"num_units": 5, "name": "g", "config_version": 1})
    message = str(info.value)
    assert "The saved config of Gate (saved at config v1, this code is at v1)" in message
    assert "does not fit Gate.__init__(units, **kwargs)" in message
    assert "saved argument `num_units` is not accepted by Gate.__init__ any more" in message
    assert "required argument `units` of Gate.__init__ is not in the saved config" in message
    assert "1. bump Gate.config_version to 2" in message
    assert 'config["units"] = config.pop("num_units")' in message
    assert "2. or, " in message and "aliases=('test>Gate',)" in message


def test_migration_that_leaves_arguments_unfit_says_so(scope: keras_safe.Registry) -> None:
    gate = make_gate(version=2, upgrade=lambda cls, config, v: config)
    with pytest.raises(keras_safe.CompatibilityError) as info:
        gate.from_config({"num_units": 5, "config_version": 1})
    message = str(info.value)
    assert "saved at config v1, this code is at v2" in message
    assert "Gate.upgrade_config(config, from_version=1) ran but left these arguments" in message


def test_removed_argument_is_named_also_when_init_takes_kwargs(
    scope: keras_safe.Registry,
) -> None:
    gate = make_gate()  # **kwargs would pass `dropout` on to keras.layers.Layer
    with pytest.raises(keras_safe.CompatibilityError) as info:
        gate.from_config({"units": 5, "dropout": 0.1, "config_version": 1})
    assert "saved argument `dropout` is not accepted by Gate.__init__ any more" in str(info.value)
    strict = make_gate(kwargs=False)  # without **kwargs, the same
    with pytest.raises(keras_safe.CompatibilityError, match="saved argument `dropout`"):
        strict.from_config({"units": 5, "dropout": 0.1})


def test_new_argument_with_default_loads_and_without_one_is_named(
    scope: keras_safe.Registry,
) -> None:
    @keras_safe.register(package="test")
    class Dense2(keras_safe.SerializableLayer):
        def __init__(self, units: int, scale: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units, self.scale = units, scale

    assert Dense2.from_config({"units": 2, "config_version": 1}).scale == 1.0
    gate = make_gate(arg="scale")
    with pytest.raises(keras_safe.CompatibilityError, match="required argument `scale`"):
        gate.from_config({"name": "g"})


def test_upgrade_config_failures_name_the_class_and_version(scope: keras_safe.Registry) -> None:
    def fails(cls: Any, config: dict[str, Any], from_version: int) -> dict[str, Any]:
        config["units"] = config.pop("num_units")
        return config

    gate = make_gate(version=2, upgrade=fails)
    with pytest.raises(keras_safe.CompatibilityError) as info:
        gate.from_config({"units": 5})
    message = str(info.value)
    assert "Gate.upgrade_config(config, from_version=1) failed" in message
    assert "KeyError" in message and "'num_units'" in message
    assert isinstance(info.value.__cause__, KeyError)

    forgets_return = make_gate(version=2, upgrade=lambda cls, config, v: None)
    with pytest.raises(keras_safe.CompatibilityError, match=r"returned NoneType.*return config"):
        forgets_return.from_config({"units": 5})

    with pytest.raises(keras_safe.CompatibilityError, match="config_version 'x'"):
        make_gate().from_config({"units": 5, "config_version": "x"})


@pytest.mark.parametrize("version", [0, -1, "2", 2.0, True])
def test_bad_config_version_is_refused_when_the_class_is_defined(version: Any) -> None:
    with pytest.raises(keras_safe.SerializationError, match="config_version must be a positive"):

        class Bad(keras_safe.SerializableLayer):
            config_version = version


def test_upgrade_config_must_be_a_classmethod() -> None:
    with pytest.raises(keras_safe.SerializationError, match="must be a classmethod"):

        class Bad(keras_safe.SerializableLayer):
            config_version = 2

            def upgrade_config(self, config: Any, from_version: int) -> Any:
                return config


def test_upgrade_config_may_set_python_values(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package="test")
    class Mode(enum.Enum):
        FAST = "fast"

    @keras_safe.register(package="test")
    class Pool(keras_safe.SerializableLayer):
        config_version = 2

        def __init__(self, window: Any, mode: Any, inner: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.window, self.mode, self.inner = window, mode, inner

        @classmethod
        def upgrade_config(cls, config: dict[str, Any], from_version: int) -> dict[str, Any]:
            config["window"] = tuple(config.pop("size"))
            config["mode"] = Mode.FAST
            config["inner"] = keras.layers.Dense(2)
            return config

    pool = Pool.from_config({"size": [2, 2], "config_version": 1})
    assert pool.window == (2, 2) and pool.mode is Mode.FAST
    assert isinstance(pool.inner, keras.layers.Dense)


def test_removed_enum_member_is_named_and_can_be_migrated(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package="test")
    class Mode(enum.Enum):
        FAST = "fast"
        SLOW = "slow"

    @keras_safe.register(package="test")
    class Pool(keras_safe.SerializableLayer):
        def __init__(self, mode: Any = Mode.FAST, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.mode = mode

    saved = Pool(mode=Mode.SLOW).get_config()

    with keras_safe.registry.scope():

        @keras_safe.register(package="test")
        class Mode(enum.Enum):  # type: ignore[no-redef]
            FAST = "fast"

        @keras_safe.register(package="test")
        class Pool(keras_safe.SerializableLayer):  # type: ignore[no-redef]
            config_version = 2

            def __init__(self, mode: Any = Mode.FAST, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.mode = mode

            @classmethod
            def upgrade_config(cls, config: dict[str, Any], from_version: int) -> dict[str, Any]:
                if config["mode"]["member"] == "SLOW":
                    config["mode"] = Mode.FAST
                return config

        assert Pool.from_config(saved).mode is Mode.FAST
        Pool.config_version = 1  # the same class without the migration
        with pytest.raises(keras_safe.CompatibilityError) as info:
            Pool.from_config(saved)
    message = str(info.value)
    assert "test>Mode.SLOW" in message and "has no member 'SLOW' any more" in message
    assert "keep the old name as an alias in the enum (SLOW = " in message
    assert "Pool.config_version and, in " in message
    assert 'Pool.upgrade_config, replace config["mode"]' in message


def test_hand_written_from_config_gets_migrated_config_once(scope: keras_safe.Registry) -> None:
    calls: list[int] = []

    @keras_safe.register(package="test")
    class Manual(keras_safe.SerializableLayer):
        config_version = 2

        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "units": self.units}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            assert "config_version" not in config
            return super().from_config(config)

        @classmethod
        def upgrade_config(cls, config: dict[str, Any], from_version: int) -> dict[str, Any]:
            calls.append(from_version)
            config["units"] = config.pop("n")
            return config

    assert Manual(3).get_config()["config_version"] == 2
    assert Manual.from_config({"n": 4, "name": "m"}).units == 4
    assert calls == [1]
    assert Manual.from_config(Manual(5).get_config()).units == 5
    assert calls == [1]

    @keras_safe.register(package="test")
    class OwnConfig(keras_safe.Serializable, keras.constraints.Constraint):
        config_version = 2

        def __init__(self, limit: float) -> None:
            self.limit = limit

        def get_config(self) -> dict[str, Any]:  # does not call super(): still versioned
            return {"limit": self.limit}

    assert OwnConfig(1.0).get_config() == {"limit": 1.0, "config_version": 2}


def test_keras_deserialization_runs_migrations(scope: keras_safe.Registry) -> None:
    def upgrade(cls: Any, config: dict[str, Any], from_version: int) -> dict[str, Any]:
        config["units"] = config.pop("num_units")
        return config

    gate = make_gate(version=2, upgrade=upgrade)
    serialized = keras.saving.serialize_keras_object(gate(3))
    serialized["config"] = {"num_units": 6, "name": "g"}  # as written before v2
    rebuilt = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(rebuilt, gate) and rebuilt.units == 6


def test_upgrade_keeps_optimizer_state_and_checks_the_target_first(tmp_path: Path) -> None:
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((8, 3)).astype("float32")
    model.fit(x, x[:, :2], epochs=2, verbose=0)
    keras_safe.save(model, tmp_path / "m.keras")

    manifest = keras_safe.upgrade(tmp_path / "m.keras", tmp_path / "up.keras")
    upgraded = keras_safe.load(tmp_path / "up.keras", expected_digest=manifest.digest)
    assert not weight_differences(model.optimizer.variables, upgraded.optimizer.variables)
    assert int(upgraded.optimizer.iterations) == 2

    with pytest.raises(keras_safe.KerasSafeError, match=r"up\.keras"):
        keras_safe.upgrade(tmp_path / "missing.keras", tmp_path / "up.h5")
