"""docs/manifest.schema.json describes the manifest keras_safe really writes."""

from __future__ import annotations

import copy
import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import keras
import numpy as np
import pytest
from conftest import ROOT

import keras_safe
from keras_safe._format import manifest as manifest_module
from keras_safe.errors import IntegrityError

SCHEMA = json.loads((ROOT / "docs" / "manifest.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def stored_manifest(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("metadata.json"))["keras_safe"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Manifests of real files: a trained model with a custom layer, signed; a plain one."""
    folder = tmp_path_factory.mktemp("schema")
    with keras_safe.registry.scope():

        @keras_safe.register(package="schema_test")
        class Scale(keras_safe.SerializableLayer):
            config_version = 2

            def __init__(self, factor: float = 2.0, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.factor = factor

            def call(self, x: Any) -> Any:
                return x * self.factor

        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(1)(Scale()(inputs)))
        model.compile(optimizer="adam", loss="mse")
        model.fit(np.ones((4, 3)), np.ones((4, 1)), verbose=0)
        keras_safe.save(model, folder / "custom.keras", signing_key=b"key")
        custom = stored_manifest(folder / "custom.keras")
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    keras_safe.save(plain, folder / "plain.keras")
    return {"custom": custom, "plain": stored_manifest(folder / "plain.keras")}


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("name", ["custom", "plain"])
def test_a_saved_manifest_matches_the_schema(saved: dict[str, dict[str, Any]], name: str) -> None:
    errors = [error.message for error in VALIDATOR.iter_errors(saved[name])]
    assert not errors, errors


def test_the_custom_manifest_exercises_every_part(saved: dict[str, dict[str, Any]]) -> None:
    manifest = saved["custom"]
    assert set(manifest) == set(SCHEMA["properties"])  # signature included
    assert manifest["objects"][0]["key"] == "schema_test>Scale"
    assert manifest["objects"][0]["config_version"] == 2
    assert manifest["model"]["optimizer_params"]


def _properties(definition: str) -> set[str]:
    return set(SCHEMA["$defs"][definition]["properties"])


def test_the_schema_follows_manifest_py() -> None:
    fields = {f.name for f in dataclasses.fields(manifest_module.ObjectRecord)}
    assert _properties("object") == fields == set(SCHEMA["$defs"]["object"]["required"])
    fields = {f.name for f in dataclasses.fields(manifest_module.MemberRecord)}
    assert _properties("member") == fields
    fields = {f.name for f in dataclasses.fields(manifest_module.ModelSummary)}
    assert set(SCHEMA["properties"]["model"]["properties"]) == fields
    assert SCHEMA["properties"]["format"]["const"] == manifest_module.FORMAT_VERSION
    environment = SCHEMA["properties"]["environment"]
    assert set(environment["required"]) == set(manifest_module.environment())


def _mutated(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(manifest)
    *parents, last = path.split("/")
    target = changed
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[last] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("format", 2),
        ("members/config.json/sha256", "F" * 64),
        ("members/config.json/size", -1),
        ("objects", {}),
        ("signature/algorithm", "md5"),
        ("model/layers", True),
    ],
)
def test_what_the_reader_refuses_the_schema_refuses(
    saved: dict[str, dict[str, Any]], path: str, value: Any
) -> None:
    broken = _mutated(saved["custom"], path, value)
    assert not VALIDATOR.is_valid(broken)
    with pytest.raises(IntegrityError):
        manifest_module.Manifest.from_json(broken)
