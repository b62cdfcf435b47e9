"""A corpus of hostile model files, built here, each refused with a keras_safe error.

Every payload is harmless: the only effect a successful attack could have is
creating ``marker`` in the test's temporary directory, and every test checks
it was not created. Where a test names a CVE, the file reproduces what that
advisory's proof of concept did; "open in Keras 3.15.1" marks attacks Keras
itself still accepts with ``safe_mode=True``.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest
from conftest import run_python
from hostile_kit import (
    Members,
    function_ref,
    keras_tensor_arg,
    lambda_bytecode,
    lambda_layer,
    layer,
    layers_of,
    payload_module,
    read_members,
    replace_member,
    resign_manifest,
    small_model,
    with_config,
    with_weights,
    write_archive,
    zip_with_declared_size,
)

import keras_safe
from keras_safe import (
    ArchiveLimits,
    IntegrityError,
    KerasSafeError,
    MissingObjectsError,
    UnsafeModelError,
)

# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same small model saved by keras_safe, by plain Keras, and as legacy .h5."""
    root = tmp_path_factory.mktemp("saved")
    model = small_model()
    files = {
        "safe": root / "safe.keras",
        "plain": root / "plain.keras",
        "h5": root / "legacy.h5",
    }
    keras_safe.save(model, files["safe"])
    model.save(files["plain"])
    model.save(files["h5"])
    return files


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "marker"


@pytest.fixture
def safe_members(saved: dict[str, Path]) -> Members:
    return read_members(saved["safe"])


def refused(path: Path, error: type[KerasSafeError], match: str, marker: Path, **kwargs: Any):
    """Load ``path``: it must raise ``error`` matching ``match``, and run nothing."""
    with pytest.raises(error, match=match) as caught:
        keras_safe.load(path, **kwargs)
    assert not marker.exists(), "the payload ran"
    report = keras_safe.verify(path, **kwargs)
    assert not report.ok and isinstance(report.error, error)
    assert not marker.exists(), "the payload ran"
    return caught.value


def archive(tmp_path: Path, members: Members, name: str = "hostile.keras", **kw: Any) -> Path:
    return write_archive(tmp_path / name, members, **kw)


# -- the archive: names, members, layout, sizes --------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "/etc/config.json",
        "../config.json",
        "assets/../../escape",
        "assets\\..\\x",
        "C:/x",
        "assets/x\x01y",
    ],
)
def test_member_names_that_escape_are_refused(tmp_path, safe_members, marker, name):
    # Open in Keras 3.15.1: '..' in a member name is only warned about.
    path = archive(tmp_path, [*safe_members, (name, b"x")])
    refused(path, UnsafeModelError, "member named", marker)


def test_second_config_member_is_refused(tmp_path, safe_members, marker):
    # Open in Keras 3.15.1: duplicate names resolve to the last copy, so a
    # second config.json carries what a look at the first would miss.
    hostile = with_config(
        safe_members, lambda c: layer(c, "hidden").update(class_name="TFSMLayer"), resign=False
    )
    second = dict(hostile)["config.json"]
    path = archive(tmp_path, [*safe_members, ("config.json", second)])
    refused(path, UnsafeModelError, "'config.json' twice", marker)


def test_member_differing_only_in_case_is_refused(tmp_path, safe_members, marker):
    path = archive(
        tmp_path, [*safe_members, ("assets/Vocab.txt", b"a"), ("assets/vocab.txt", b"b")]
    )
    refused(path, UnsafeModelError, "twice", marker)


@pytest.mark.parametrize(
    "name", ["model.weights.npz", "payload.py", "config.json.bak", "Config.json"]
)
def test_unexpected_members_are_refused(tmp_path, safe_members, marker, name):
    path = archive(tmp_path, [*safe_members, (name, b"{}")])
    refused(path, UnsafeModelError, f"unexpected member '{name}'", marker)


def test_member_count_is_bounded_and_configurable(tmp_path, safe_members, marker):
    many = [(f"assets/{i}.txt", b"") for i in range(1_001)]
    path = archive(tmp_path, [*safe_members, *many])
    refused(path, UnsafeModelError, "declares 1004 members.*max_members", marker)
    small = archive(tmp_path, [*safe_members, *many[:10]], name="ten.keras")
    refused(small, UnsafeModelError, "limit 5", marker, limits=ArchiveLimits(max_members=5))


@pytest.mark.parametrize(
    ("junk", "error", "match"),
    [
        (b"#!/bin/sh\necho hello\n", IntegrityError, "does not start with a zip header"),
        (b"PK\x03\x04" + b"\0" * 60, UnsafeModelError, "before the first member"),
    ],
)
def test_junk_before_the_zip_is_refused(tmp_path, safe_members, marker, junk, error, match):
    # Open in Keras 3.15.1: bytes prepended to the zip are accepted.
    path = archive(tmp_path, safe_members, prefix=junk)
    refused(path, error, match, marker)


def test_junk_after_the_zip_is_refused(tmp_path, safe_members, marker):
    path = archive(tmp_path, safe_members, suffix=b"hidden data for another reader")
    refused(path, UnsafeModelError, "after the end of its zip archive", marker)


def test_bytes_hidden_between_members_are_refused(tmp_path, safe_members, marker):
    path = archive(tmp_path, safe_members)
    data = bytearray(path.read_bytes())
    with __import__("zipfile").ZipFile(path) as zf:
        second = sorted(zf.infolist(), key=lambda i: i.header_offset)[1]
    # Shift everything from the second member on, and fix the offsets that point past it.
    gap = b"hidden"
    patched = _insert_and_fix_offsets(bytes(data), second.header_offset, gap)
    path.write_bytes(patched)
    refused(path, UnsafeModelError, "unaccounted bytes before 'config.json'|unaccounted", marker)


def _insert_and_fix_offsets(data: bytes, at: int, gap: bytes) -> bytes:
    import struct
    import zipfile

    out = bytearray(data[:at] + gap + data[at:])
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        start = zf.start_dir
    position = start + len(gap)
    while out[position : position + 4] == b"PK\x01\x02":
        offset = struct.unpack_from("<L", out, position + 42)[0]
        if offset >= at:
            struct.pack_into("<L", out, position + 42, offset + len(gap))
        n, e, c = struct.unpack_from("<HHH", out, position + 28)
        position += 46 + n + e + c
    # end record: central directory offset
    eocd = out.rindex(b"PK\x05\x06")
    struct.pack_into("<L", out, eocd + 16, start + len(gap))
    return bytes(out)


def test_decompression_bomb_is_refused_before_inflating(tmp_path, safe_members, marker):
    bomb = replace_member(safe_members, "model.weights.h5", b"\0" * (64 << 20))
    path = archive(tmp_path, bomb, deflate=["model.weights.h5"])
    assert path.stat().st_size < 1 << 20
    refused(path, UnsafeModelError, "model.weights.h5.*decompression bomb", marker)


def test_compressed_members_expand_only_relative_to_the_file(tmp_path, safe_members, marker):
    # Each member is small enough to skip the ratio check, but a file of a
    # few hundred KB must not inflate to hundreds of MB.
    assets = [(f"assets/{i}.bin", b"\0" * (1 << 20)) for i in range(200)]
    path = archive(tmp_path, [*safe_members, *assets], deflate=[n for n, _ in assets])
    assert path.stat().st_size < 1 << 20
    refused(path, UnsafeModelError, "declare 2\\d+ bytes once decompressed", marker)


def test_member_declaring_more_than_it_holds_is_refused(tmp_path, safe_members, marker):
    path = zip_with_declared_size(tmp_path / "lies.keras", safe_members, "config.json", 3 << 30)
    refused(path, UnsafeModelError, "config.json", marker)


def test_truncated_archive_is_refused(tmp_path, saved, marker):
    data = saved["safe"].read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        path = tmp_path / f"cut{cut}.keras"
        path.write_bytes(data[:cut])
        refused(path, IntegrityError, "not a readable zip archive|truncated", marker)


def test_file_that_is_not_a_zip_gets_a_clear_error(tmp_path, marker):
    # Keras 3.15.1 reports a non-zip .keras file as "File not found".
    path = tmp_path / "model.keras"
    path.write_text("this is not a model")
    refused(path, IntegrityError, "not a .keras archive", marker)


def test_local_header_contradicting_the_directory_is_refused(tmp_path, safe_members, marker):
    path = archive(tmp_path, safe_members)
    data = bytearray(path.read_bytes())
    at = data.index(b"config.json")  # the first occurrence is the local header's name
    data[at : at + len(b"config.json")] = b"config.jsoN"
    path.write_bytes(bytes(data))
    refused(path, UnsafeModelError, "local header", marker)


# -- JSON members --------------------------------------------------------------------------


def test_config_padded_under_keras_limits_is_refused(tmp_path, safe_members, marker):
    # Open in Keras 3.15.1: a config.json padded just under Keras' own limits
    # is read as declared. keras_safe's limit for JSON is absolute and small.
    padded = dict(safe_members)["config.json"] + b" " * (200 << 20)
    path = archive(tmp_path, resign_manifest(replace_member(safe_members, "config.json", padded)))
    refused(path, UnsafeModelError, "config.json.*max_json_bytes", marker)


def test_deeply_nested_config_is_refused_without_recursion(tmp_path, safe_members, marker):
    deep = b'{"class_name": "Functional", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    path = archive(tmp_path, resign_manifest(replace_member(safe_members, "config.json", deep)))
    refused(path, UnsafeModelError, "config.json.*nested 100001 levels", marker)


def test_config_with_millions_of_values_is_refused(tmp_path, safe_members, marker):
    many = b"[" + b"0," * 3_000_000 + b"0]"
    path = archive(tmp_path, resign_manifest(replace_member(safe_members, "config.json", many)))
    refused(path, UnsafeModelError, "config.json.*values", marker)


@pytest.mark.parametrize("member", ["config.json", "metadata.json"])
@pytest.mark.parametrize("value", [b"[1, 2]", b'"model"', b"null", b"{not json"])
def test_json_members_must_hold_objects(tmp_path, safe_members, marker, member, value):
    members = replace_member(safe_members, member, value)
    if member == "config.json":
        members = resign_manifest(members)
    path = archive(tmp_path, members)
    refused(path, IntegrityError, f"{member}", marker)


# -- the allowlist: code, foreign functions, Keras symbols that are not model parts --------


def _out_as(config: dict[str, Any], replacement: dict[str, Any]) -> None:
    """Replace the "out" layer of the small model's config by ``replacement``."""
    items = layers_of(config)
    items[next(i for i, item in enumerate(items) if item["config"]["name"] == "out")] = replacement


def _from_hidden(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": [keras_tensor_arg("hidden", [None, 3]), *args], "kwargs": kwargs}


def lambda_file(tmp_path: Path, members: Members, marker: Path, name: str = "l.keras") -> Path:
    code = {"class_name": "__lambda__", "config": lambda_bytecode(marker)}
    hostile = with_config(members, lambda c: _out_as(c, lambda_layer("out", code, _from_hidden())))
    return archive(tmp_path, hostile, name=name)


def test_lambda_bytecode_cve_2024_3660(tmp_path, safe_members, marker):
    path = lambda_file(tmp_path, safe_members, marker)
    error = refused(path, UnsafeModelError, "keras.layers.Lambda layers run code", marker)
    assert "out" in str(error)


def test_lambda_bytecode_payload_is_live(tmp_path, safe_members):
    # Control: the same file runs its payload when Keras is told to trust it,
    # so the refusal above is what stops it.
    live = tmp_path / "live-marker"
    path = lambda_file(tmp_path, safe_members, live)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "out" weights no longer fit
        keras.saving.load_model(path, safe_mode=False)
    assert live.exists()


def test_arbitrary_module_function_cve_2025_1550(tmp_path, safe_members, marker, monkeypatch):
    payload_module(tmp_path, "hostile_payload", marker)
    monkeypatch.syspath_prepend(str(tmp_path))
    hostile = with_config(
        safe_members,
        lambda c: layer(c, "hidden")["config"].update(
            activation=function_ref("hostile_payload", "pwn")
        ),
    )
    path = archive(tmp_path, hostile)
    error = refused(path, MissingObjectsError, "pwn.*hostile_payload", marker)
    assert error.missing == ("pwn",)
    assert "hostile_payload" not in sys.modules


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("subprocess", "run"),
        ("builtins", "exec"),
        ("tensorflow.io", "write_file"),
        ("numpy", "save"),
    ],
)
def test_standard_library_and_framework_functions_are_unsafe(
    tmp_path, safe_members, marker, module, name
):
    hostile = with_config(
        safe_members,
        lambda c: layer(c, "hidden")["config"].update(activation=function_ref(module, name)),
    )
    refused(archive(tmp_path, hostile), UnsafeModelError, f"{module}.{name}", marker)


@pytest.mark.parametrize("module", ["hostile_payload_evil", "hostile_payload.__main__", "__main__"])
def test_allow_imports_never_imports_outside_the_prefix(
    tmp_path, safe_members, marker, monkeypatch, module
):
    payload_module(tmp_path, module.replace("__main__", "main_"), marker)
    if module != "__main__":
        payload_module(tmp_path, module, marker)
    monkeypatch.syspath_prepend(str(tmp_path))
    hostile = with_config(
        safe_members,
        lambda c: layer(c, "hidden")["config"].update(activation=function_ref(module, "pwn")),
    )
    refused(
        archive(tmp_path, hostile),
        MissingObjectsError,
        "pwn",
        marker,
        allow_imports=("hostile_payload",),
    )


def test_safe_mode_switch_then_lambda_cve_2025_9906(tmp_path, safe_members, marker):
    # The config first calls keras.config.enable_unsafe_deserialization through
    # a Lambda fed from node arguments, then loads Lambda bytecode.
    switch = lambda_layer(
        "switch", function_ref("keras.config", "enable_unsafe_deserialization"), _from_hidden()
    )
    code = {"class_name": "__lambda__", "config": lambda_bytecode(marker)}

    def edit(config: dict[str, Any]) -> None:
        layers_of(config).insert(2, switch)
        _out_as(config, lambda_layer("out", code, _from_hidden()))

    path = archive(tmp_path, with_config(safe_members, edit))
    error = refused(path, UnsafeModelError, "keras.config.enable_unsafe_deserialization", marker)
    assert "Lambda" in str(error)
    from keras.src.saving import serialization_lib

    assert serialization_lib.in_safe_mode() is not False


def test_get_file_through_lambda_cve_2025_8747_and_12060(tmp_path, safe_members, marker):
    getter = lambda_layer(
        "out",
        function_ref("keras.utils", "get_file"),
        _from_hidden(),
        arguments={
            "origin": f"file://{tmp_path}/archive.tar",
            "extract": True,
            "cache_dir": str(tmp_path),
        },
    )
    hostile = with_config(safe_members, lambda c: _out_as(c, getter))
    refused(archive(tmp_path, hostile), UnsafeModelError, "keras.utils.get_file", marker)


def test_object_in_functional_node_arguments_is_checked(tmp_path, safe_members, marker):
    # Functional rebuilds deserialize inbound_nodes[].args/kwargs: a reference
    # there is as live as a layer.
    def edit(config: dict[str, Any]) -> None:
        node = layer(config, "out")["inbound_nodes"][0]
        node["kwargs"]["training"] = {
            "module": "keras.utils",
            "class_name": "get_file",
            "config": {"origin": "http://example.invalid/x"},
            "registered_name": None,
        }

    error = refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "keras.utils.get_file",
        marker,
    )
    assert "out.inbound_nodes[0].kwargs.training" in str(error)


def _set_floatx_through_lambda(config: dict[str, Any]) -> None:
    # As in the published proof of concept: Lambda.call(inputs) runs
    # function(inputs), and `inputs` comes from the node's kwargs.
    setter = lambda_layer(
        "out",
        function_ref("keras.config", "set_floatx"),
        {"args": [], "kwargs": {"inputs": "float16"}},
    )
    _out_as(config, setter)
    config["config"]["output_layers"] = [["hidden", 0, 0]]


def test_keras_config_setter_through_node_arguments(tmp_path, safe_members, marker):
    # Open in Keras 3.15.1 with safe_mode=True: a Lambda may name an exported
    # Keras function, which the functional rebuild calls with constants from
    # the node arguments (here: keras.config.set_floatx("float16")).
    path = archive(tmp_path, with_config(safe_members, _set_floatx_through_lambda))
    refused(path, UnsafeModelError, "keras.config.set_floatx", marker)
    assert keras.config.floatx() == "float32"


@pytest.mark.slow
def test_keras_config_setter_runs_in_plain_keras(tmp_path, safe_members):
    # Control, in a fresh process: plain Keras runs the setter above.
    path = archive(tmp_path, with_config(safe_members, _set_floatx_through_lambda))
    result = run_python(
        """
        import sys, keras
        try:
            keras.saving.load_model(sys.argv[1])
        except Exception:
            pass
        print(keras.config.floatx())
        """,
        str(path),
    )
    assert result.stdout.strip().endswith("float16")


def test_keras_config_setter_as_activation(tmp_path, safe_members, marker):
    hostile = with_config(
        safe_members,
        lambda c: layer(c, "hidden")["config"].update(
            activation=function_ref("keras.config", "disable_traceback_filtering")
        ),
    )
    refused(
        archive(tmp_path, hostile),
        UnsafeModelError,
        "keras.config.disable_traceback_filtering",
        marker,
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("keras.activations", "deserialize"),
        ("keras.activations", "get"),
        ("keras.losses", "get"),
        ("builtins", "get"),
        ("builtins", "serialize"),
        ("keras.ops", "relu"),
    ],
)
def test_functions_that_are_not_model_parts(tmp_path, safe_members, marker, module, name):
    hostile = with_config(
        safe_members,
        lambda c: layer(c, "hidden")["config"].update(activation=function_ref(module, name)),
    )
    refused(archive(tmp_path, hostile), UnsafeModelError, f"{name}, which is not", marker)


@pytest.mark.parametrize("class_name", ["TFSMLayer", "TorchModuleWrapper", "JaxLayer", "Lambda"])
def test_layers_that_load_files_or_code_cve_2026_1462(tmp_path, safe_members, marker, class_name):
    # Open in Keras 3.15.1 (TFSMLayer): loads a SavedModel from a path the file chooses.
    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        hidden["class_name"] = class_name
        hidden["config"]["filepath"] = str(tmp_path / "saved_model")

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        f"keras.layers.{class_name} layers run code or load files",
        marker,
    )


def test_vocabulary_path_cve_2025_12058(tmp_path, safe_members, marker):
    secret = tmp_path / "secret.txt"
    secret.write_text("token-a\ntoken-b\n")

    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        hidden["class_name"] = "StringLookup"
        hidden["config"] = {"name": "hidden", "vocabulary": str(secret)}

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "StringLookup.vocabulary=.*secret.txt",
        marker,
    )


def test_lookup_layer_memory_bomb(tmp_path, safe_members, marker):
    # Not a variable: IndexLookup builds a Python list of num_oov_indices tokens.
    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        hidden["class_name"] = "IntegerLookup"
        hidden["config"] = {"name": "hidden", "vocabulary": [1, 2], "num_oov_indices": 10**10}

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "IntegerLookup.num_oov_indices=10000000000.*memory bomb",
        marker,
    )


def test_typespec_and_legacy_tf_objects_are_refused(tmp_path, safe_members, marker):
    def edit(config: dict[str, Any]) -> None:
        node = layer(config, "out")["inbound_nodes"][0]
        node["kwargs"]["spec"] = {
            "class_name": "__typespec__",
            "spec_name": "TensorSpec",
            "module": "tensorflow",
            "registered_name": None,
            "config": [[None], "float32"],
        }
        node["kwargs"]["legacy"] = {
            "class_name": "TypeSpec",
            "type_spec": "tf.TensorSpec",
            "serialized": [],
        }

    error = refused(
        archive(tmp_path, with_config(safe_members, edit)), UnsafeModelError, "__typespec__", marker
    )
    assert "TypeSpec" in str(error)


# -- references that say one thing while Keras does another ----------------------------


def test_shared_object_id_cannot_smuggle_another_class(tmp_path, safe_members, marker):
    # Open in Keras 3.15.1: shared_object_id binds to whichever object Keras
    # deserializes first, whatever class the later config names.
    def edit(config: dict[str, Any]) -> None:
        layer(config, "hidden")["shared_object_id"] = 7
        layer(config, "out")["config"]["kernel_initializer"]["shared_object_id"] = 7

    error = refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "shared_object_id 7 names keras.initializers.GlorotUniform here",
        marker,
    )
    assert "keras.layers.Dense" in str(error)


def test_shared_object_id_across_compile_config(tmp_path, safe_members, marker):
    # compile_config is deserialized after config, so a loss sharing a
    # layer's id would be the layer.
    def edit(config: dict[str, Any]) -> None:
        layer(config, "hidden")["shared_object_id"] = 11
        config["compile_config"]["loss"] = {
            "module": "keras.losses",
            "class_name": "MeanSquaredError",
            "config": {"name": "mse"},
            "registered_name": None,
            "shared_object_id": 11,
        }

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "shared_object_id 11",
        marker,
    )


def test_shared_object_id_must_be_an_integer(tmp_path, safe_members, marker):
    hostile = with_config(safe_members, lambda c: layer(c, "hidden").update(shared_object_id=[1]))
    refused(archive(tmp_path, hostile), UnsafeModelError, "not an integer", marker)


def test_tagged_dict_cannot_hide_a_layer(tmp_path, safe_members, marker):
    # Keras reads any dict with class_name and config as an object, whatever
    # other keys (here keras_safe's own tag) it carries.
    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        hidden["__keras_safe__"] = "dict"
        hidden["class_name"] = "TFSMLayer"

    refused(
        archive(tmp_path, with_config(safe_members, edit)), UnsafeModelError, "TFSMLayer", marker
    )


def test_null_registered_name_is_resolved_as_keras_does(tmp_path, safe_members, marker):
    # With registered_name null Keras skips custom objects and uses its
    # built-in: a custom object of the same short name must not vouch for it.
    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        hidden.update(class_name="TFSMLayer", registered_name=None)

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "TFSMLayer",
        marker,
        custom_objects={"TFSMLayer": keras.layers.Dense},
    )


def test_legacy_string_replaced_by_a_keras_function(tmp_path, safe_members, marker):
    # Keras' legacy loader (layer configs without "module") replaces any
    # string value naming a function of keras.src.layers by that function.
    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        del hidden["module"]
        hidden["config"]["activation"] = "deserialize"

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "hidden.activation: the string 'deserialize'",
        marker,
    )


def test_legacy_class_names_must_be_model_parts(tmp_path, safe_members, marker):
    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        del hidden["module"]
        hidden["class_name"] = "serialization_lib"

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "serialization_lib",
        marker,
    )


def test_numpy_constant_with_a_huge_dtype(tmp_path, safe_members, marker):
    def edit(config: dict[str, Any]) -> None:
        node = layer(config, "out")["inbound_nodes"][0]
        node["kwargs"]["mask"] = {
            "class_name": "__numpy__",
            "config": {"value": [1], "dtype": "V2000000000"},
        }

    refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "__numpy__ value of dtype 'V2000000000'",
        marker,
    )


@pytest.mark.parametrize("name", ["..", ".", "a/b", "x\\y"])
def test_layer_names_that_are_paths(tmp_path, safe_members, marker, name):
    hostile = with_config(safe_members, lambda c: layer(c, "hidden")["config"].update(name=name))
    refused(archive(tmp_path, hostile), UnsafeModelError, "is not a plain name", marker)


def test_malformed_references(tmp_path, safe_members, marker):
    def edit(config: dict[str, Any]) -> None:
        layer(config, "hidden")["registered_name"] = {"not": "a string"}
        layer(config, "out")["class_name"] = 42

    error = refused(
        archive(tmp_path, with_config(safe_members, edit)),
        UnsafeModelError,
        "cannot interpret",
        marker,
    )
    assert "42" in str(error)


def test_variable_memory_bomb_is_refused_before_allocating(tmp_path, safe_members, marker):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hostile = with_config(safe_members, lambda c: layer(c, "hidden")["config"].update(units=10**9))
    refused(
        archive(tmp_path, hostile),
        UnsafeModelError,
        "allocate more than its weights file could fill.*hidden/kernel",
        marker,
    )
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1 << 20, f"RSS grew by {grown_kib} KiB"


# -- the weights file ------------------------------------------------------------------------

KERNEL = "layers/dense/vars/0"  # the "hidden" layer's kernel, shape (4, 3)


def _replace(handle: Any, path: str, **dataset: Any) -> None:
    group, name = path.rsplit("/", 1)
    del handle[path]
    handle[group].create_dataset(name, **dataset)


def test_h5_dataset_declaring_a_huge_size_is_refused_unread(tmp_path, safe_members, marker):
    # Open in Keras 3.15.1 below 4 GiB: a dataset declaring more data than
    # the file holds (chunked, never written: HDF5 makes up fill values).
    import resource

    hostile = with_weights(
        safe_members,
        lambda h: _replace(
            h, KERNEL, shape=(40_000, 20_000), dtype="f4", chunks=(1000, 1000), fillvalue=1.0
        ),
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refused(
        archive(tmp_path, hostile),
        UnsafeModelError,
        "model.weights.h5.*declare 32000\\d+ bytes but the file holds",
        marker,
    )
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20


def test_h5_dataset_larger_than_any_variable_is_refused_unread(tmp_path, safe_members, marker):
    big = np.ones((512, 512), "float32")  # really stored: the file grows to hold it
    hostile = with_weights(safe_members, lambda h: _replace(h, KERNEL, data=big))
    refused(
        archive(tmp_path, hostile),
        UnsafeModelError,
        f"dataset '{KERNEL}' has shape \\(512, 512\\).*larger than any variable",
        marker,
    )


def test_h5_dataset_unlike_every_variable_is_refused_unread(tmp_path, safe_members, marker):
    odd = np.ones((3, 4), "float64")
    hostile = with_weights(safe_members, lambda h: _replace(h, KERNEL, data=odd))
    refused(
        archive(tmp_path, hostile),
        UnsafeModelError,
        "shape \\(3, 4\\) and dtype float64, unlike any variable",
        marker,
    )


@pytest.mark.parametrize("kind", ["soft", "external"])
def test_h5_links_are_refused(tmp_path, safe_members, marker, kind):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = np.zeros((4, 3), "float32")

    def edit(handle: Any) -> None:
        del handle[KERNEL]
        handle[KERNEL] = (
            h5py.SoftLink("/layers/dense_1/vars/0")
            if kind == "soft"
            else h5py.ExternalLink(str(other), "/data")
        )

    refused(
        archive(tmp_path, with_weights(safe_members, edit)),
        UnsafeModelError,
        f"'{KERNEL}' is an HDF5 {kind.capitalize()}Link",
        marker,
    )


def test_h5_external_storage_is_refused(tmp_path, safe_members, marker):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"\0" * 48)
    hostile = with_weights(
        safe_members,
        lambda h: _replace(h, KERNEL, shape=(4, 3), dtype="f4", external=[(str(raw), 0, 48)]),
    )
    refused(archive(tmp_path, hostile), UnsafeModelError, "external storage", marker)


def test_h5_virtual_dataset_is_refused(tmp_path, safe_members, marker):
    other = tmp_path / "source.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = np.zeros((4, 3), "float32")

    def edit(handle: Any) -> None:
        layout = h5py.VirtualLayout(shape=(4, 3), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(4, 3))
        del handle[KERNEL]
        handle["layers/dense/vars"].create_virtual_dataset("0", layout)

    refused(
        archive(tmp_path, with_weights(safe_members, edit)), UnsafeModelError, "virtual", marker
    )


def test_h5_filter_loaded_as_plugin_is_refused(tmp_path, safe_members, marker):
    hostile = with_weights(
        safe_members,
        lambda h: _replace(
            h,
            KERNEL,
            shape=(4, 3),
            dtype="f4",
            chunks=(4, 3),
            compression=32001,
            allow_unknown_filter=True,
        ),
    )
    refused(archive(tmp_path, hostile), UnsafeModelError, "filter 32001.*plugin", marker)


def test_h5_object_values_are_refused(tmp_path, safe_members, marker):
    hostile = with_weights(
        safe_members,
        lambda h: _replace(h, KERNEL, data=np.array(["a", "b"], dtype=h5py.string_dtype())),
    )
    refused(archive(tmp_path, hostile), UnsafeModelError, "weights are numbers", marker)


def test_h5_large_attributes_are_refused(tmp_path, safe_members, marker):
    def edit(handle: Any) -> None:
        extra = handle.create_group("extra")  # new objects may hold large attributes
        extra.attrs.create("padding", np.zeros(10_000, "f4"))
        extra.create_group("inner").attrs.create(
            "names", ["x"] * 200_000, dtype=h5py.string_dtype()
        )

    path = archive(tmp_path, with_weights(safe_members, edit))
    refused(
        path,
        UnsafeModelError,
        "attribute 'padding' of 'extra' holds 10000 values",
        marker,
        limits=ArchiveLimits(max_h5_attribute_bytes=1000),
    )
    refused(path, UnsafeModelError, "attribute 'names' of 'extra/inner' holds 200000", marker)


def test_h5_object_count_is_bounded(tmp_path, safe_members, marker):
    def edit(handle: Any) -> None:
        group = handle.create_group("many")
        for i in range(60):
            group.create_group(str(i))

    refused(
        archive(tmp_path, with_weights(safe_members, edit)),
        UnsafeModelError,
        "more than 50 HDF5 objects",
        marker,
        limits=ArchiveLimits(max_h5_objects=50),
    )


# -- legacy .h5 model files get the same checks --------------------------------------------


def _edit_h5_config(source: Path, target: Path, edit: Any) -> Path:
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        edit(config)
        handle.attrs["model_config"] = json.dumps(config)
    return target


def _legacy_lambda(config: dict[str, Any], marker: Path) -> None:
    code = lambda_bytecode(marker)
    out = next(item for item in config["config"]["layers"] if item["config"]["name"] == "out")
    out["class_name"] = "Lambda"
    out["config"] = {
        "name": "out",
        "function": [code["code"], None, None],
        "function_type": "lambda",
        "module": "builtins",
        "output_shape": None,
        "arguments": {},
    }


def test_h5_lambda_bytecode_cve_2025_9905(tmp_path, saved, marker):
    path = _edit_h5_config(saved["h5"], tmp_path / "lambda.h5", lambda c: _legacy_lambda(c, marker))
    refused(path, UnsafeModelError, "Lambda layers run code", marker)


def test_h5_lambda_payload_is_live(tmp_path, saved):
    live = tmp_path / "live-marker"
    path = _edit_h5_config(saved["h5"], tmp_path / "lambda.h5", lambda c: _legacy_lambda(c, live))
    with warnings.catch_warnings(), pytest.raises(Exception):  # noqa: B017
        warnings.simplefilter("ignore")
        keras.saving.load_model(path, safe_mode=False)  # runs it, then fails on weights
    assert live.exists()


def test_h5_foreign_function_and_file_layer(tmp_path, saved, marker):
    def edit(config: dict[str, Any]) -> None:
        hidden = next(i for i in config["config"]["layers"] if i["config"]["name"] == "hidden")
        hidden["config"]["activation"] = function_ref("os", "system")
        hidden["config"]["kernel_initializer"] = {
            "module": "keras.layers",
            "class_name": "TFSMLayer",
            "config": {},
        }

    path = _edit_h5_config(saved["h5"], tmp_path / "foreign.h5", edit)
    error = refused(path, UnsafeModelError, "os.system", marker)
    assert "TFSMLayer" in str(error)


def test_h5_shape_bomb_is_refused(tmp_path, saved, marker):
    path = tmp_path / "bomb.h5"
    path.write_bytes(saved["h5"].read_bytes())
    with h5py.File(path, "r+") as handle:
        handle.create_dataset(
            "model_weights/bomb", shape=(10**6, 10**6), dtype="f4", chunks=(1000, 1000)
        )
    refused(path, UnsafeModelError, "declare 4000000000\\d+ bytes", marker, compile=False)


def test_h5_config_attribute_limits(tmp_path, saved, marker):
    path = tmp_path / "deep.h5"
    path.write_bytes(saved["h5"].read_bytes())
    with h5py.File(path, "r+") as handle:
        handle.attrs["model_config"] = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    refused(path, UnsafeModelError, "model_config.*nested 5001 levels", marker)


# -- digests and signatures: what they catch and what they cannot ------------------------


def test_edited_member_is_caught_by_its_digest(tmp_path, safe_members, marker):
    hostile = with_config(
        safe_members, lambda c: layer(c, "hidden")["config"].update(units=4), resign=False
    )
    refused(archive(tmp_path, hostile), IntegrityError, "Member 'config.json'.*SHA-256", marker)


def test_corrupted_weights_are_caught_by_their_digest(tmp_path, safe_members, marker):
    weights = bytearray(dict(safe_members)["model.weights.h5"])
    weights[-100] ^= 0xFF
    path = archive(tmp_path, replace_member(safe_members, "model.weights.h5", bytes(weights)))
    refused(path, IntegrityError, "Member 'model.weights.h5'.*SHA-256", marker)


def test_member_added_after_saving_is_caught(tmp_path, safe_members, marker):
    path = archive(tmp_path, [*safe_members, ("assets/extra.txt", b"x")])
    refused(path, IntegrityError, "'assets/extra.txt'.*not in its manifest", marker)


def test_edited_and_redigested_file_passes_digests_but_not_a_pin(
    tmp_path, saved, safe_members, marker
):
    # Digests catch corruption, not an attacker who rewrites the manifest too:
    # only a pinned digest (or a signature) tells the files apart.
    pinned = keras_safe.inspect(saved["safe"]).digest
    hostile = with_config(safe_members, lambda c: layer(c, "hidden")["config"].update(units=4))
    path = archive(tmp_path, hostile)
    assert keras_safe.inspect(path).digest != pinned
    refused(path, IntegrityError, "not the expected", marker, expected_digest=pinned)
    assert keras_safe.load(saved["safe"], expected_digest=pinned) is not None


def test_manifest_removed_cannot_satisfy_a_pin_or_a_key(tmp_path, safe_members, marker):
    metadata = json.loads(dict(safe_members)["metadata.json"])
    del metadata["keras_safe"]
    path = archive(
        tmp_path, replace_member(safe_members, "metadata.json", json.dumps(metadata).encode())
    )
    refused(path, IntegrityError, "no keras_safe manifest", marker, expected_digest="0" * 64)
    refused(path, IntegrityError, "not signed", marker, signing_key=b"key")


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signed") / "signed.keras"
    keras_safe.save(small_model(), path, signing_key=b"team key")
    return path


def test_signature_verifies_with_the_key(signed):
    assert keras_safe.load(signed, signing_key=b"team key") is not None
    assert keras_safe.verify(signed, signing_key=b"team key").ok


def test_signature_with_another_key_is_refused(signed, marker):
    refused(signed, IntegrityError, "does not match signing_key", marker, signing_key=b"guess")


def test_unsigned_file_is_refused_when_a_key_is_given(saved, marker):
    refused(saved["safe"], IntegrityError, "is not signed", marker, signing_key=b"team key")


def test_file_edited_after_signing_is_refused(tmp_path, signed, marker):
    members = read_members(signed)
    # Keep the old signature, redo every digest: the signature covers them.
    hostile = with_config(members, lambda c: layer(c, "hidden")["config"].update(units=4))
    metadata = json.loads(dict(hostile)["metadata.json"])
    metadata["keras_safe"]["signature"] = json.loads(dict(members)["metadata.json"])["keras_safe"][
        "signature"
    ]
    hostile = replace_member(hostile, "metadata.json", json.dumps(metadata).encode())
    refused(
        archive(tmp_path, hostile),
        IntegrityError,
        "does not match signing_key",
        marker,
        signing_key=b"team key",
    )


# -- nothing in a file switches the checks off -----------------------------------------------


def test_file_content_cannot_switch_checks_off(tmp_path, safe_members, marker):
    def edit(config: dict[str, Any]) -> None:
        config["safe_mode"] = False
        config["config"]["safe_mode"] = False
        code = {"class_name": "__lambda__", "config": lambda_bytecode(marker)}
        _out_as(config, lambda_layer("out", code, _from_hidden(), safe_mode=False))

    members = with_config(safe_members, edit)
    metadata = json.loads(dict(members)["metadata.json"])
    metadata.update(safe_mode=False, allow_imports=["os"], custom_objects={"Lambda": "builtins"})
    metadata["keras_safe"]["allow_imports"] = ["os"]
    members = replace_member(members, "metadata.json", json.dumps(metadata).encode())
    refused(archive(tmp_path, members), UnsafeModelError, "Lambda layers run code", marker)


@pytest.mark.slow
def test_process_wide_unsafe_mode_does_not_reach_keras_safe(tmp_path, safe_members, marker):
    # Even if the process (or a previous file) turned Keras' safe mode off,
    # keras_safe refuses code and pins safe mode while Keras builds.
    path = lambda_file(tmp_path, safe_members, marker)
    result = run_python(
        """
        import sys, keras, keras_safe
        keras.config.enable_unsafe_deserialization()
        try:
            keras_safe.load(sys.argv[1])
        except keras_safe.UnsafeModelError as error:
            print("refused:", str(error).splitlines()[1])
        """,
        str(path),
    )
    assert "refused:" in result.stdout and "Lambda" in result.stdout
    assert not marker.exists()


# -- and the guards let real models through ----------------------------------------------


def test_real_models_with_many_kinds_of_state_still_load(tmp_path):
    # keras_safe.save re-reads what it wrote through every guard (roundtrip=True),
    # then a plain load does it again.
    tokens = keras.Input((2,), dtype="int64", name="tokens")
    # IntegerLookup runs TensorFlow ops, which JAX cannot trace to train the model.
    with_lookup = keras.backend.backend() != "jax"
    if with_lookup:
        lookup = keras.layers.IntegerLookup(vocabulary=[7, 8, 9], name="lookup")(tokens)
    else:
        lookup = keras.layers.Identity(name="lookup")(tokens)
    embedded = keras.layers.Embedding(5, 4, name="embed")(lookup)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    inner = keras.Sequential(
        [
            keras.layers.Dense(8, dtype="bfloat16"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(1, dtype="float32"),
        ],
        name="head",
    )
    model = keras.Model(tokens, inner(pooled))
    model.compile(
        optimizer=keras.optimizers.AdamW(),
        loss="mse",
        metrics=["mae", keras.metrics.AUC(name="auc")],
    )
    data = np.array([[7, 8], [9, 3]] if with_lookup else [[1, 2], [3, 0]], dtype="int64")
    model.fit(data, np.array([[0.0], [1.0]]), verbose=0)
    path = tmp_path / "rich.keras"
    keras_safe.save(model, path, sample_input=data)
    restored = keras_safe.load(path)
    np.testing.assert_array_equal(restored.predict(data, verbose=0), model.predict(data, verbose=0))
    legacy = tmp_path / "rich.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(legacy)
    assert keras_safe.load(legacy, compile=False) is not None


def test_limits_are_validated_and_scale_with_the_file():
    with pytest.raises(KerasSafeError, match="max_json_bytes must be a positive number"):
        ArchiveLimits(max_json_bytes=0)
    with pytest.raises(KerasSafeError, match=r"limits must be a keras_safe\.ArchiveLimits"):
        keras_safe.load(__file__, limits={"max_members": 3})  # type: ignore[arg-type]
    limits = ArchiveLimits(max_compression_ratio=10, max_inflated_bytes=1 << 30)
    assert limits.inflated_budget(5 << 20) == 50 << 20  # a 5 MB file: 50 MB, not GBs
    assert limits.inflated_budget(1000) == 1 << 20  # never below 1 MiB
    assert limits.inflated_budget(1 << 40) == 1 << 30  # never above the absolute cap
