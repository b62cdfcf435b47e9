"""Walking a config's references and resolving them against the allowlist."""

from __future__ import annotations

import sys

import keras
import pytest

import keras_safe
from keras_safe._guard.allowlist import Resolver, iter_references, normalize_prefixes


def model_config() -> dict:
    inputs = keras.Input((3,), name="x")
    outputs = keras.layers.Dense(2, activation="relu", kernel_initializer="he_normal", name="d")(
        inputs
    )
    model = keras.Model(inputs, outputs, name="net")
    model.compile(optimizer="adam", loss=keras.losses.Huber(), metrics=["mae"])
    return keras.saving.serialize_keras_object(model)


def test_references_cover_layers_arguments_and_compile_config() -> None:
    refs = list(iter_references(model_config()))
    names = {(r.kind, r.name) for r in refs}
    assert ("class", "Functional") in names and ("class", "Dense") in names
    assert ("class", "HeNormal") in names and ("class", "DTypePolicy") in names
    assert ("class", "Adam") in names and ("class", "Huber") in names
    where = {r.name: r.where for r in refs}
    assert where["Dense"] == "net > d" and where["HeNormal"] == "net > d.kernel_initializer"


def test_builtins_resolve_to_keras_and_registry_objects_to_the_registry(scope) -> None:
    @keras_safe.register(package="pol")
    def gain(x):
        return 2 * x

    config = keras.saving.serialize_keras_object(keras.layers.Dense(1, activation=gain))
    resolver = Resolver()
    found = {r.reference.name: r for r in map(resolver.resolve, iter_references(config)) if r}
    assert found["Dense"].source == "keras" and found["Dense"].obj is keras.layers.Dense
    assert found["pol>gain"].source == "registry" and found["pol>gain"].obj is gain


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("keras.config", "enable_unsafe_deserialization"),
        ("keras.utils", "get_file"),
        ("keras.models", "load_model"),
    ],
)
def test_keras_symbols_that_are_not_model_parts_are_refused(module, name) -> None:
    config = {"module": module, "class_name": "function", "config": name, "registered_name": None}
    dense = {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"name": "d", "activation": config},
    }
    (ref,) = [r for r in iter_references(dense) if r.kind == "function"]
    with pytest.raises(keras_safe.UnsafeModelError, match=f"{module}.{name}"):
        Resolver().resolve(ref)


def test_lambda_layers_and_serialized_code_are_refused() -> None:
    layer = keras.layers.Lambda(keras.activations.relu)
    refs = list(iter_references(keras.saving.serialize_keras_object(layer)))
    with pytest.raises(keras_safe.UnsafeModelError, match="Lambda"):
        Resolver().resolve(refs[0])
    code = {"class_name": "__lambda__", "config": {"value": "..."}}
    (ref,) = iter_references({"a": code})
    with pytest.raises(keras_safe.UnsafeModelError, match="Python code"):
        Resolver().resolve(ref)


def test_unknown_custom_references_are_missing_not_imported() -> None:
    ref = next(
        iter_references(
            {
                "module": "my_project.layers",
                "class_name": "Block",
                "config": {},
                "registered_name": "my_project>Block",
            }
        )
    )
    assert Resolver().resolve(ref) is None
    assert Resolver(allow_imports=("other",)).resolve(ref) is None
    assert "my_project.layers" not in sys.modules


def test_standard_library_functions_are_refused_not_missing() -> None:
    ref = next(
        iter_references(
            {"module": "os", "class_name": "system", "config": {}, "registered_name": "x>system"}
        )
    )
    with pytest.raises(keras_safe.UnsafeModelError, match=r"os\.system"):
        Resolver().resolve(ref)


def test_allow_imports_prefixes_are_package_names() -> None:
    assert normalize_prefixes("my_project") == ("my_project",)
    assert normalize_prefixes(["a", "b.c"]) == ("a", "b.c")
    resolver = Resolver(allow_imports=("my_project",))
    assert resolver._may_import("my_project.layers") and resolver._may_import("my_project")
    assert not resolver._may_import("my_project_evil")
    assert not resolver._may_import("__main__")
    for bad in ("__main__", "a b", "../x", ""):
        with pytest.raises(ValueError):
            normalize_prefixes([bad])


def test_keras_ops_are_model_parts_but_loops_taking_functions_are_refused() -> None:
    add = {"module": "keras.src.ops.numpy", "class_name": "Add", "config": {"name": "add"}}
    (ref,) = iter_references(add)
    found = Resolver().resolve(ref)
    assert found is not None and found.source == "keras" and found.obj.__name__ == "Add"
    loop = {"module": "keras.src.ops.core", "class_name": "WhileLoop", "config": {"name": "w"}}
    (ref,) = iter_references(loop)
    with pytest.raises(keras_safe.UnsafeModelError, match="takes Python functions"):
        Resolver().resolve(ref)
