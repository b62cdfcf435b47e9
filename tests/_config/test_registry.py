"""@keras_safe.register and keras_safe.registry (API.md §2)."""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
from typing import Any

import keras
import pytest

import keras_safe
from keras_safe._config.registry import distribution_of, kind_of

PACKAGE = "test_registry"


def keras_knows(key: str, obj: Any) -> bool:
    """Whether Keras' own registry maps key -> obj and obj -> key."""
    return (
        keras.saving.get_registered_object(key) is obj
        and keras.saving.get_custom_objects().get(key) is obj
        and keras.saving.get_registered_name(obj) == key
    )


def keras_forgot(key: str, obj: Any) -> bool:
    return (
        key not in keras.saving.get_custom_objects()
        and keras.saving.get_registered_object(key) is None
        and keras.saving.get_registered_name(obj) == obj.__name__
    )


# -- the decorator -----------------------------------------------------------------


def test_bare_decorator_uses_the_custom_package(scope: keras_safe.Registry) -> None:
    @keras_safe.register
    class Bare(keras_safe.SerializableLayer):
        pass

    assert keras_safe.registry.key_of(Bare) == "Custom>Bare"
    assert keras_safe.registry.get("Custom>Bare") is Bare
    assert keras_knows("Custom>Bare", Bare)


def test_decorator_with_package_and_name(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE, name="Renamed")
    class Original(keras_safe.SerializableLayer):
        pass

    @keras_safe.register(package=PACKAGE)
    def my_activation(x: Any) -> Any:
        return x

    assert keras_safe.registry.key_of(Original) == f"{PACKAGE}>Renamed"
    assert f"{PACKAGE}>Original" not in keras_safe.registry
    assert keras_knows(f"{PACKAGE}>Renamed", Original)
    assert keras_safe.registry.get(f"{PACKAGE}>my_activation") is my_activation
    assert keras_knows(f"{PACKAGE}>my_activation", my_activation)


def test_register_returns_the_object_unchanged(scope: keras_safe.Registry) -> None:
    class Unchanged(keras_safe.Serializable):
        def __init__(self, a: int = 1) -> None:
            self.a = a

    def function(x: Any) -> Any:
        return x

    before = dict(vars(Unchanged))
    assert keras_safe.register(package=PACKAGE)(Unchanged) is Unchanged
    assert keras_safe.register(function) is function
    assert dict(vars(Unchanged)) == before
    assert function.__name__ == "function" and function(3) == 3


def test_register_with_a_string_is_a_misuse(scope: keras_safe.Registry) -> None:
    count = len(keras_safe.registry)
    with pytest.raises(keras_safe.RegistrationError, match=r"register\(package='pkg'\)"):
        keras_safe.register("pkg")  # type: ignore[call-overload]
    assert len(keras_safe.registry) == count


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"package": ""}, "non-empty package"),
        ({"package": "a>b"}, "without '>'"),
        ({"name": "x>y"}, "non-empty name"),
        ({"aliases": "old>Name"}, r"aliases=\('old>Name',\)"),
        ({"aliases": ("no_separator",)}, "not a key of the form"),
    ],
)
def test_register_refuses_bad_keys(
    scope: keras_safe.Registry, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(keras_safe.RegistrationError, match=match):
        keras_safe.register(**kwargs)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (3, "takes a class or a function, got int"),
        (object, "has no get_config"),
        (lambda x: x, "lambda without a name"),
    ],
)
def test_register_refuses_what_cannot_be_saved(
    scope: keras_safe.Registry, obj: Any, match: str
) -> None:
    with pytest.raises(keras_safe.RegistrationError, match=match):
        keras_safe.register(package=PACKAGE)(obj)


def test_a_named_lambda_can_be_registered(scope: keras_safe.Registry) -> None:
    double = keras_safe.register(package=PACKAGE, name="double")(lambda x: 2 * x)
    assert keras_safe.registry.get(f"{PACKAGE}>double") is double


def test_registration_error_is_a_value_error() -> None:
    assert issubclass(keras_safe.RegistrationError, keras_safe.KerasSafeError)
    assert issubclass(keras_safe.RegistrationError, ValueError)


# -- one key, one definition ----------------------------------------------------

MODULE_SOURCE = """
import enum

import keras_safe


@keras_safe.register(package="reloadable", aliases=("reloadable_old>Widget",))
class Widget(keras_safe.SerializableLayer):
    def __init__(self, size=1, **kwargs):
        super().__init__(**kwargs)
        self.size = size


@keras_safe.register(package="reloadable")
def gelu_like(x):
    return x


@keras_safe.register(package="reloadable")
class Mode(enum.Enum):
    A = 1
"""


def test_reloading_the_same_module_replaces_silently(
    scope: keras_safe.Registry, import_module_from: Any
) -> None:
    module = import_module_from("reloadable_mod", MODULE_SOURCE)
    first = (module.Widget, module.gelu_like, module.Mode)
    count = len(keras_safe.registry)
    reloaded = importlib.reload(module)  # re-executes the source: new objects, same names
    second = (reloaded.Widget, reloaded.gelu_like, reloaded.Mode)
    assert all(a is not b for a, b in zip(first, second, strict=True))
    assert len(keras_safe.registry) == count
    for key, obj in zip(
        ("reloadable>Widget", "reloadable>gelu_like", "reloadable>Mode"), second, strict=True
    ):
        assert keras_safe.registry.get(key) is obj
        assert keras_safe.registry.key_of(obj) == key
        assert keras_knows(key, obj)
    assert keras_safe.registry.key_of(first[0]) is None
    assert keras_safe.registry.get("reloadable_old>Widget") is reloaded.Widget


def test_same_key_for_another_definition_raises(
    scope: keras_safe.Registry, import_module_from: Any
) -> None:
    import_module_from("first_definition", MODULE_SOURCE)
    with pytest.raises(keras_safe.RegistrationError) as info:
        import_module_from("second_definition", MODULE_SOURCE)
    message = str(info.value)
    assert "second_definition.Widget" in message and "first_definition.Widget" in message
    assert "'reloadable>Widget'" in message
    assert "name=" in message  # the fix


def test_same_key_in_one_module_for_two_classes_raises(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE, name="Taken")
    class First(keras_safe.Serializable):
        pass

    with pytest.raises(keras_safe.RegistrationError, match=r"\.Second as .*names .*\.First"):

        @keras_safe.register(package=PACKAGE, name="Taken")
        class Second(keras_safe.Serializable):
            pass

    assert keras_safe.registry.get(f"{PACKAGE}>Taken") is First
    assert keras_knows(f"{PACKAGE}>Taken", First)


def test_an_alias_cannot_take_another_definitions_key(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Owner(keras_safe.Serializable):
        pass

    with pytest.raises(keras_safe.RegistrationError, match="already names"):

        @keras_safe.register(package=PACKAGE, aliases=(f"{PACKAGE}>Owner",))
        class Squatter(keras_safe.Serializable):
            pass


def test_one_object_cannot_take_two_keys(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Once(keras_safe.Serializable):
        pass

    with pytest.raises(keras_safe.RegistrationError, match=r"aliases=\('test_registry>Once',\)"):
        keras_safe.register(package="elsewhere")(Once)
    keras_safe.register(package=PACKAGE)(Once)  # the same key again is fine


def test_collision_with_a_keras_registration() -> None:
    key = f"{PACKAGE}>Legacy"
    try:
        with keras_safe.registry.scope():

            @keras.saving.register_keras_serializable(package=PACKAGE, name="Legacy")
            class KerasOnly(keras.layers.Layer):
                pass

            with pytest.raises(keras_safe.RegistrationError) as info:

                @keras_safe.register(package=PACKAGE, name="Legacy")
                class Newcomer(keras_safe.SerializableLayer):
                    pass

            message = str(info.value)
            assert "Newcomer" in message and "KerasOnly" in message
            assert "register_keras_serializable" in message
            assert keras.saving.get_registered_object(key) is KerasOnly
            # The class Keras knows may be registered with keras_safe under its key.
            keras_safe.register(package=PACKAGE, name="Legacy")(KerasOnly)
            assert keras_safe.registry.get(key) is KerasOnly
        # The scope restores what Keras had before: the Keras-only registration.
        assert key not in keras_safe.registry
        assert keras_knows(key, KerasOnly)
    finally:
        keras.saving.get_custom_objects().pop(key, None)


def test_registered_with_keras_only_still_round_trips(scope: keras_safe.Registry) -> None:
    # registered_key falls back to Keras' registry for values.
    from keras_safe._config.codec import codec, registered_key

    @keras.saving.register_keras_serializable(package=PACKAGE)
    def keras_only_fn(x: Any) -> Any:
        return x

    try:
        assert registered_key(keras_only_fn) == f"{PACKAGE}>keras_only_fn"
        assert codec.decode(codec.encode(keras_only_fn)) is keras_only_fn
    finally:
        keras.saving.get_custom_objects().pop(f"{PACKAGE}>keras_only_fn")


# -- lookups ---------------------------------------------------------------------


def test_aliases_resolve_through_get(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package="new_pkg", aliases=("old_pkg>OldName", "older>Name"))
    class NewName(keras_safe.SerializableLayer):
        pass

    registry = keras_safe.registry
    for key in ("new_pkg>NewName", "old_pkg>OldName", "older>Name"):
        assert registry.get(key) is NewName
        assert key in registry
        assert registry.canonical_key(key) == "new_pkg>NewName"
        assert keras.saving.get_registered_object(key) is NewName
    assert keras.saving.get_registered_name(NewName) == "new_pkg>NewName"
    assert list(registry).count("old_pkg>OldName") == 0  # iteration lists keys only
    entry = registry.entry("old_pkg>OldName")
    assert entry is not None and entry.aliases == ("old_pkg>OldName", "older>Name")
    objects = registry.custom_objects()
    assert objects["old_pkg>OldName"] is NewName and objects["new_pkg>NewName"] is NewName


def test_container_protocol_and_get_default(scope: keras_safe.Registry) -> None:
    registry = keras_safe.registry
    before = len(registry)

    @keras_safe.register(package=PACKAGE)
    class Listed(keras_safe.Serializable):
        pass

    assert len(registry) == before + 1
    assert f"{PACKAGE}>Listed" in list(registry)
    assert f"{PACKAGE}>Listed" in registry
    assert 3 not in registry  # type: ignore[operator]
    assert registry.get("nobody>Nothing") is None
    assert registry.get("nobody>Nothing", "fallback") == "fallback"
    assert registry.entry("nobody>Nothing") is None
    assert "objects" in repr(registry)


def test_entries_describe_each_object(scope: keras_safe.Registry, import_module_from: Any) -> None:
    module = import_module_from("described_mod", MODULE_SOURCE)
    entries = {e.key: e for e in keras_safe.registry.entries()}
    widget = entries["reloadable>Widget"]
    assert widget.obj is module.Widget
    assert (widget.kind, widget.module, widget.qualname) == ("layer", "described_mod", "Widget")
    assert widget.definition == "described_mod.Widget"
    assert widget.aliases == ("reloadable_old>Widget",)
    # A module in a temporary directory belongs to no installed distribution.
    assert (widget.distribution, widget.version) == (None, None)
    assert entries["reloadable>gelu_like"].kind == "function"
    assert entries["reloadable>Mode"].kind == "enum"


def test_entries_name_the_distribution_of_installed_code(scope: keras_safe.Registry) -> None:
    assert distribution_of("keras") == ("keras", keras.__version__)
    assert distribution_of("keras.src.layers") == ("keras", keras.__version__)
    assert distribution_of("__main__") == (None, None)
    assert distribution_of("no_such_module_anywhere") == (None, None)
    # An object defined in an installed distribution (here: Keras itself).
    keras_safe.register(package=PACKAGE, name="installed_relu")(keras.activations.relu)
    entry = keras_safe.registry.entry(f"{PACKAGE}>installed_relu")
    assert entry is not None
    assert (entry.distribution, entry.version) == ("keras", importlib.metadata.version("keras"))


def test_custom_objects_is_a_dict_for_keras(scope: keras_safe.Registry) -> None:
    @keras_safe.register(package=PACKAGE)
    class Wanted(keras_safe.SerializableLayer):
        pass

    objects = keras_safe.registry.custom_objects()
    assert objects[f"{PACKAGE}>Wanted"] is Wanted
    objects.clear()  # a copy: the registry is untouched
    assert keras_safe.registry.get(f"{PACKAGE}>Wanted") is Wanted
    config = keras.saving.serialize_keras_object(Wanted(name="w"))
    with keras.saving.custom_object_scope(keras_safe.registry.custom_objects()):
        assert type(keras.saving.deserialize_keras_object(config)) is Wanted


# -- kinds -----------------------------------------------------------------------


def test_kinds(scope: keras_safe.Registry) -> None:
    class Schedule(keras_safe.Serializable, keras.optimizers.schedules.LearningRateSchedule):
        pass

    class Color(enum.Enum):
        RED = 1

    def fn(x: Any) -> Any:
        return x

    classes: dict[str, Any] = {
        "layer": type("K1", (keras_safe.SerializableLayer,), {}),
        "model": type("K2", (keras_safe.SerializableModel,), {}),
        "loss": type("K3", (keras_safe.Serializable, keras.losses.Loss), {}),
        "metric": type("K4", (keras_safe.Serializable, keras.metrics.Metric), {}),
        "optimizer": type("K5", (keras_safe.Serializable, keras.optimizers.SGD), {}),
        "schedule": Schedule,
        "initializer": type("K6", (keras_safe.Serializable, keras.initializers.Initializer), {}),
        "regularizer": type("K7", (keras_safe.Serializable, keras.regularizers.Regularizer), {}),
        "constraint": type("K8", (keras_safe.Serializable, keras.constraints.Constraint), {}),
        "enum": Color,
        "function": fn,
        "class": type("K9", (keras_safe.Serializable,), {}),
    }
    for kind, obj in classes.items():
        assert kind_of(obj) == kind
        keras_safe.register(package=PACKAGE, name=f"kind_{kind}")(obj)
        entry = keras_safe.registry.entry(f"{PACKAGE}>kind_{kind}")
        assert entry is not None and entry.kind == kind
    assert kind_of(keras.Sequential) == "model"


# -- scope -----------------------------------------------------------------------


def test_scope_undoes_registrations_here_and_in_keras() -> None:
    before = set(keras_safe.registry)
    keras_before = dict(keras.saving.get_custom_objects())
    with keras_safe.registry.scope() as registry:
        assert registry is keras_safe.registry

        @keras_safe.register(package=PACKAGE, aliases=("scoped_old>Thing",))
        class Scoped(keras_safe.SerializableLayer):
            pass

        class Choice(enum.Enum):
            A = 1

        keras_safe.register(package=PACKAGE)(Choice)
        assert keras_knows(f"{PACKAGE}>Scoped", Scoped)
        assert keras_knows(f"{PACKAGE}>Choice", Choice)
    assert set(keras_safe.registry) == before
    assert keras_safe.registry.key_of(Scoped) is None
    assert "scoped_old>Thing" not in keras_safe.registry
    assert keras_forgot(f"{PACKAGE}>Scoped", Scoped)
    assert keras_forgot(f"{PACKAGE}>Choice", Choice)
    assert "scoped_old>Thing" not in keras.saving.get_custom_objects()
    assert dict(keras.saving.get_custom_objects()) == keras_before


def test_scope_undoes_even_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), keras_safe.registry.scope():

        @keras_safe.register(package=PACKAGE)
        class Doomed(keras_safe.Serializable):
            pass

        raise RuntimeError("boom")
    assert f"{PACKAGE}>Doomed" not in keras_safe.registry
    assert keras_forgot(f"{PACKAGE}>Doomed", Doomed)


def test_nested_scopes() -> None:
    registry = keras_safe.registry
    with registry.scope():

        @keras_safe.register(package=PACKAGE)
        class Outer1(keras_safe.Serializable):
            pass

        with registry.scope():

            @keras_safe.register(package=PACKAGE)
            class Inner(keras_safe.Serializable):
                pass

            assert f"{PACKAGE}>Inner" in registry and f"{PACKAGE}>Outer1" in registry
        assert f"{PACKAGE}>Inner" not in registry
        assert keras_forgot(f"{PACKAGE}>Inner", Inner)
        assert registry.get(f"{PACKAGE}>Outer1") is Outer1
        assert keras_knows(f"{PACKAGE}>Outer1", Outer1)

        @keras_safe.register(package=PACKAGE)
        class Outer2(keras_safe.Serializable):
            pass

        with registry.scope():  # an empty scope changes nothing
            pass
        assert registry.get(f"{PACKAGE}>Outer2") is Outer2
    for name, cls in (("Outer1", Outer1), ("Outer2", Outer2), ("Inner", Inner)):
        assert f"{PACKAGE}>{name}" not in registry, name
        assert registry.key_of(cls) is None, name
        assert keras_forgot(f"{PACKAGE}>{name}", cls), name


def test_nested_scope_registering_first_then_outer_registering_after_it() -> None:
    # The inner scope's registration is the first one the outer scope sees;
    # what the outer scope registers after the inner one closed must go too.
    registry = keras_safe.registry
    before = set(registry)
    with registry.scope():
        with registry.scope():

            @keras_safe.register(package=PACKAGE)
            class First(keras_safe.Serializable):
                pass

        assert f"{PACKAGE}>First" not in registry

        @keras_safe.register(package=PACKAGE)
        class Later(keras_safe.Serializable):
            pass

        with registry.scope():

            @keras_safe.register(package=PACKAGE)
            class Third(keras_safe.Serializable):
                pass

        assert registry.get(f"{PACKAGE}>Later") is Later
        assert keras_knows(f"{PACKAGE}>Later", Later)
    assert set(registry) == before
    for cls in (First, Later, Third):
        assert registry.key_of(cls) is None
        assert keras_forgot(f"{PACKAGE}>{cls.__name__}", cls)


def test_scope_restores_a_registration_it_replaced(
    import_module_from: Any,
) -> None:
    with keras_safe.registry.scope():
        module = import_module_from("replaced_mod", MODULE_SOURCE)
        original = module.Widget
        with keras_safe.registry.scope():
            importlib.reload(module)
            assert keras_safe.registry.get("reloadable>Widget") is module.Widget
        # Leaving the inner scope brings back the registration it replaced.
        assert keras_safe.registry.get("reloadable>Widget") is original
        assert keras_safe.registry.get("reloadable_old>Widget") is original
        assert keras_knows("reloadable>Widget", original)
    assert "reloadable>Widget" not in keras_safe.registry
    assert keras_forgot("reloadable>Widget", original)
