"""The hostile files of the test suite: each built once, each with what refusing it means.

Every entry of :data:`CORPUS` is a :class:`Hostile`: how to build the file
(from a small real model, the way an attacker who read the code would edit
it), the keras_safe error it must raise, a pattern its message must match
(naming the member, layer or reference), the stage of the checks that
refuses it (``tests/entry_points.py``: which entry points must), and the
keyword arguments of ``load`` it is opened with.

Every payload is harmless: the only effect a successful attack could have is
creating the bench's marker file, and every test checks it was not created.
The victim's process has registered a function (:data:`VICTIM`, see
:func:`register_victim`) that creates the marker too: files that try to
make Keras call it stand for files aimed at what a real process registered.
Where a name carries a CVE, the file reproduces what that advisory's proof
of concept did; "open in Keras 3.15.1" marks attacks Keras itself still
accepts with ``safe_mode=True``.

Used by tests/_guard/test_hostile.py (every entry point, in-process and on
the command line) and benchmarks/bench_load_guards.py.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
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

VICTIM = "victim>payload"


def register_victim(marker: Path) -> Callable[[], None]:
    """Register :data:`VICTIM` with Keras, as a victim's own code would; return the undo."""
    import keras

    def payload(*args: Any, **kwargs: Any) -> Any:
        marker.write_text("the victim's registered function ran")
        return args[0] if args else None

    keras.saving.register_keras_serializable("victim", "payload")(payload)
    return lambda: keras.saving.get_custom_objects().pop(VICTIM, None) and None


@dataclass
class Bench:
    """What the builders start from: saved files, the marker, a folder for modules."""

    root: Path

    @cached_property
    def marker(self) -> Path:
        return self.root / "marker"

    @cached_property
    def modules(self) -> Path:
        """Payload modules live here; it is on sys.path while the files are opened."""
        folder = self.root / "modules"
        folder.mkdir(exist_ok=True)
        return folder

    @cached_property
    def saved(self) -> dict[str, Path]:
        """The same small model saved by keras_safe, by plain Keras, and as legacy .h5."""
        folder = self.root / "saved"
        folder.mkdir(exist_ok=True)
        model = small_model()
        files = {
            "safe": folder / "safe.keras",
            "plain": folder / "plain.keras",
            "h5": folder / "legacy.h5",
        }
        keras_safe.save(model, files["safe"])
        model.save(files["plain"])
        model.save(files["h5"])
        return files

    @cached_property
    def signed(self) -> Path:
        path = self.root / "saved" / "signed.keras"
        keras_safe.save(small_model(), path, signing_key=b"team key")
        return path

    @property
    def safe_members(self) -> Members:
        return read_members(self.saved["safe"])

    @property
    def good(self) -> Path:
        """A sound archive: the other side of diff."""
        return self.saved["safe"]


Kwargs = Callable[[Bench], dict[str, Any]]


@dataclass(frozen=True)
class Hostile:
    """One hostile file and what refusing it means.

    ``build(bench, folder)`` writes the file into ``folder`` (its own) and
    returns its path. ``error`` is the class name of the keras_safe error,
    ``match`` a regular expression its message matches (whitespace
    normalized), ``stage`` where in the checks it is refused
    (``entry_points.STAGES``), ``kwargs`` load's keyword arguments for it.
    """

    name: str
    build: Callable[[Bench, Path], Path]
    error: str
    match: str
    stage: str
    kwargs: Kwargs = field(default=lambda bench: {})


CORPUS: list[Hostile] = []


def hostile(
    name: str, error: str, match: str, stage: str, kwargs: Kwargs | None = None
) -> Callable[[Callable[[Bench, Path], Path]], Callable[[Bench, Path], Path]]:
    """Add the decorated builder to :data:`CORPUS`."""

    def add(build: Callable[[Bench, Path], Path]) -> Callable[[Bench, Path], Path]:
        CORPUS.append(Hostile(name, build, error, match, stage, kwargs or (lambda bench: {})))
        return build

    return add


def add(name: str, build: Callable[[Bench, Path], Path], *args: Any, **kwargs: Any) -> None:
    hostile(name, *args, **kwargs)(build)


def archive(folder: Path, members: Members, name: str = "hostile.keras", **kw: Any) -> Path:
    return write_archive(folder / name, members, **kw)


def edited(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Bench, Path], Path]:
    """A builder: the keras_safe archive with its config edited (manifest re-signed)."""
    return lambda bench, folder: archive(folder, with_config(bench.safe_members, edit))


# -- the archive: names, members, layout, sizes --------------------------------------------

_ESCAPING = ("/etc/config.json", "../config.json", "assets/../../escape", "assets\\..\\x")
for _i, _name in enumerate([*_ESCAPING, "C:/x", "assets/x\x01y"]):
    # Open in Keras 3.15.1: '..' in a member name is only warned about.
    add(
        f"member_name_escapes_{_i}",
        lambda bench, folder, name=_name: archive(folder, [*bench.safe_members, (name, b"x")]),
        "UnsafeModelError",
        "member named",
        "archive",
    )


@hostile("second_config_member", "UnsafeModelError", "'config.json' twice", "archive")
def _second_config(bench: Bench, folder: Path) -> Path:
    # Open in Keras 3.15.1: duplicate names resolve to the last copy, so a
    # second config.json carries what a look at the first would miss.
    members = bench.safe_members
    hostile = with_config(
        members, lambda c: layer(c, "hidden").update(class_name="TFSMLayer"), resign=False
    )
    return archive(folder, [*members, ("config.json", dict(hostile)["config.json"])])


@hostile("member_differing_in_case", "UnsafeModelError", "vocab.txt' twice", "archive")
def _case_twice(bench: Bench, folder: Path) -> Path:
    extra = [("assets/Vocab.txt", b"a"), ("assets/vocab.txt", b"b")]
    return archive(folder, [*bench.safe_members, *extra])


for _name in ["model.weights.npz", "payload.py", "config.json.bak", "Config.json"]:
    add(
        f"unexpected_member_{_name}",
        lambda bench, folder, name=_name: archive(folder, [*bench.safe_members, (name, b"{}")]),
        "UnsafeModelError",
        f"unexpected member '{_name}'",
        "archive",
    )


def _many_members(count: int) -> Callable[[Bench, Path], Path]:
    many = [(f"assets/{i}.txt", b"") for i in range(count)]
    return lambda bench, folder: archive(folder, [*bench.safe_members, *many])


add(
    "member_count", _many_members(1_001), "UnsafeModelError", "1004 members.*max_members", "archive"
)
add(
    "member_count_configured",
    _many_members(10),
    "UnsafeModelError",
    "declares 13 members.*limit 5",
    "archive",
    kwargs=lambda bench: {"limits": keras_safe.ArchiveLimits(max_members=5)},
)
add(
    "junk_before_the_zip",
    lambda bench, folder: archive(folder, bench.safe_members, prefix=b"#!/bin/sh\necho hello\n"),
    "IntegrityError",
    "does not start with a zip header",
    "archive",
)
add(
    "junk_header_before_the_zip",
    lambda bench, folder: archive(folder, bench.safe_members, prefix=b"PK\x03\x04" + b"\0" * 60),
    "UnsafeModelError",
    "before the first member",
    "archive",
)
add(
    "junk_after_the_zip",
    lambda bench, folder: archive(folder, bench.safe_members, suffix=b"hidden data"),
    "UnsafeModelError",
    "after the end of its zip archive",
    "archive",
)


@hostile("bytes_hidden_between_members", "UnsafeModelError", "unaccounted bytes", "archive")
def _hidden_bytes(bench: Bench, folder: Path) -> Path:
    path = archive(folder, bench.safe_members)
    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        second = sorted(zf.infolist(), key=lambda i: i.header_offset)[1]
    path.write_bytes(_insert_and_fix_offsets(data, second.header_offset, b"hidden"))
    return path


def _insert_and_fix_offsets(data: bytes, at: int, gap: bytes) -> bytes:
    out = bytearray(data[:at] + gap + data[at:])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        start = zf.start_dir
    position = start + len(gap)
    while out[position : position + 4] == b"PK\x01\x02":
        offset = struct.unpack_from("<L", out, position + 42)[0]
        if offset >= at:
            struct.pack_into("<L", out, position + 42, offset + len(gap))
        n, e, c = struct.unpack_from("<HHH", out, position + 28)
        position += 46 + n + e + c
    eocd = out.rindex(b"PK\x05\x06")  # the end record: the central directory's offset
    struct.pack_into("<L", out, eocd + 16, start + len(gap))
    return bytes(out)


@hostile(
    "decompression_bomb", "UnsafeModelError", "model.weights.h5.*decompression bomb", "archive"
)
def _decompression_bomb(bench: Bench, folder: Path) -> Path:
    bomb = replace_member(bench.safe_members, "model.weights.h5", b"\0" * (64 << 20))
    return archive(folder, bomb, deflate=["model.weights.h5"])


@hostile(
    "compressed_members_expand",
    "UnsafeModelError",
    "declare 2\\d+ bytes once decompressed",
    "archive",
)
def _expanding_assets(bench: Bench, folder: Path) -> Path:
    # Each member is small enough to skip the ratio check, but a file of a
    # few hundred KB must not inflate to hundreds of MB.
    assets = [(f"assets/{i}.bin", b"\0" * (1 << 20)) for i in range(200)]
    return archive(folder, [*bench.safe_members, *assets], deflate=[n for n, _ in assets])


@hostile("member_declaring_more_than_it_holds", "UnsafeModelError", "config.json", "archive")
def _declared_size(bench: Bench, folder: Path) -> Path:
    return zip_with_declared_size(folder / "lies.keras", bench.safe_members, "config.json", 3 << 30)


for _cut in ("half", "end", "start"):

    def _truncated(bench: Bench, folder: Path, cut: str = _cut) -> Path:
        data = bench.saved["safe"].read_bytes()
        at = {"half": len(data) // 2, "end": len(data) - 10, "start": 100}[cut]
        path = folder / "cut.keras"
        path.write_bytes(data[:at])
        return path

    add(
        f"truncated_{_cut}",
        _truncated,
        "IntegrityError",
        "not a readable zip archive|truncated",
        "archive",
    )


@hostile("not_a_zip", "IntegrityError", "not a .keras archive", "archive")
def _not_a_zip(bench: Bench, folder: Path) -> Path:
    # Keras 3.15.1 reports a non-zip .keras file as "File not found".
    path = folder / "model.keras"
    path.write_text("this is not a model")
    return path


@hostile("local_header_contradicts_directory", "UnsafeModelError", "local header", "archive")
def _local_header(bench: Bench, folder: Path) -> Path:
    path = archive(folder, bench.safe_members)
    data = bytearray(path.read_bytes())
    at = data.index(b"config.json")  # the first occurrence is the local header's name
    data[at : at + len(b"config.json")] = b"config.jsoN"
    path.write_bytes(bytes(data))
    return path


# -- JSON members --------------------------------------------------------------------------


def _config_bytes(make: Callable[[bytes], bytes]) -> Callable[[Bench, Path], Path]:
    def build(bench: Bench, folder: Path) -> Path:
        members = bench.safe_members
        config = make(dict(members)["config.json"])
        return archive(folder, resign_manifest(replace_member(members, "config.json", config)))

    return build


# Open in Keras 3.15.1: a config.json padded just under Keras' own limits is
# read as declared. keras_safe's limit for JSON is absolute and small.
add(
    "config_padded",
    _config_bytes(lambda config: config + b" " * (200 << 20)),
    "UnsafeModelError",
    "config.json.*max_json_bytes",
    "archive",
)
add(
    "config_deeply_nested",
    _config_bytes(
        lambda _: (
            b'{"class_name": "Functional", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        )
    ),
    "UnsafeModelError",
    "config.json.*nested 100001 levels",
    "archive",
)
add(
    "config_millions_of_values",
    _config_bytes(lambda _: b"[" + b"0," * 3_000_000 + b"0]"),
    "UnsafeModelError",
    "config.json.*values",
    "archive",
)

for _member in ["config.json", "metadata.json"]:
    for _j, _value in enumerate([b"[1, 2]", b'"model"', b"null", b"{not json"]):

        def _not_an_object(
            bench: Bench, folder: Path, member: str = _member, value: bytes = _value
        ) -> Path:
            members = replace_member(bench.safe_members, member, value)
            if member == "config.json":
                members = resign_manifest(members)
            return archive(folder, members)

        add(
            f"json_not_an_object_{_member}_{_j}",
            _not_an_object,
            "IntegrityError",
            _member,
            "archive",
        )


# -- the allowlist: code, foreign functions, Keras symbols that are not model parts --------


def _out_as(config: dict[str, Any], replacement: dict[str, Any]) -> None:
    """Replace the "out" layer of the small model's config by ``replacement``."""
    items = layers_of(config)
    items[next(i for i, item in enumerate(items) if item["config"]["name"] == "out")] = replacement


def _from_hidden(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": [keras_tensor_arg("hidden", [None, 3]), *args], "kwargs": kwargs}


def lambda_file(members: Members, folder: Path, marker: Path) -> Path:
    """The small model whose "out" layer is a Lambda holding bytecode that creates ``marker``."""
    code = {"class_name": "__lambda__", "config": lambda_bytecode(marker)}
    hostile = with_config(members, lambda c: _out_as(c, lambda_layer("out", code, _from_hidden())))
    return archive(folder, hostile, name="lambda.keras")


add(
    "lambda_bytecode_cve_2024_3660",
    lambda bench, folder: lambda_file(bench.safe_members, folder, bench.marker),
    "UnsafeModelError",
    "out: keras.layers.Lambda layers run code",
    "config",
)


def _activation(module: str, name: str) -> Callable[[Bench, Path], Path]:
    def edit(config: dict[str, Any]) -> None:
        layer(config, "hidden")["config"]["activation"] = function_ref(module, name)

    return edited(edit)


def _with_payload_module(module: str) -> Callable[[Bench, Path], Path]:
    def build(bench: Bench, folder: Path) -> Path:
        payload_module(bench.modules, module.replace("__main__", "main_"), bench.marker)
        if module != "__main__":
            payload_module(bench.modules, module, bench.marker)
        return _activation(module, "pwn")(bench, folder)

    return build


add(
    "arbitrary_module_function_cve_2025_1550",
    _with_payload_module("hostile_payload"),
    "MissingObjectsError",
    "pwn.*hostile_payload",
    "resolve",
)

for _module, _fn in [
    ("os", "system"),
    ("subprocess", "run"),
    ("builtins", "exec"),
    ("tensorflow.io", "write_file"),
    ("numpy", "save"),
]:
    add(
        f"foreign_function_{_module}.{_fn}",
        _activation(_module, _fn),
        "UnsafeModelError",
        f"hidden.activation: the config refers to {_module}.{_fn}",
        "config",
    )

for _module in ["hostile_payload_evil", "hostile_payload.__main__", "__main__"]:
    add(
        f"allow_imports_outside_the_prefix_{_module}",
        _with_payload_module(_module),
        "MissingObjectsError",
        "pwn",
        "resolve",
        kwargs=lambda bench: {"allow_imports": ("hostile_payload",)},
    )


@hostile(
    "safe_mode_switch_then_lambda_cve_2025_9906",
    "UnsafeModelError",
    "keras.config.enable_unsafe_deserialization.*Lambda",
    "config",
)
def _safe_mode_switch(bench: Bench, folder: Path) -> Path:
    # The config first calls keras.config.enable_unsafe_deserialization through
    # a Lambda fed from node arguments, then loads Lambda bytecode.
    switch = lambda_layer(
        "switch", function_ref("keras.config", "enable_unsafe_deserialization"), _from_hidden()
    )
    code = {"class_name": "__lambda__", "config": lambda_bytecode(bench.marker)}

    def edit(config: dict[str, Any]) -> None:
        layers_of(config).insert(2, switch)
        _out_as(config, lambda_layer("out", code, _from_hidden()))

    return archive(folder, with_config(bench.safe_members, edit))


@hostile(
    "get_file_through_lambda_cve_2025_8747_and_12060",
    "UnsafeModelError",
    "out.function: the config refers to keras.utils.get_file",
    "config",
)
def _get_file(bench: Bench, folder: Path) -> Path:
    getter = lambda_layer(
        "out",
        function_ref("keras.utils", "get_file"),
        _from_hidden(),
        arguments={
            "origin": f"file://{folder}/archive.tar",
            "extract": True,
            "cache_dir": str(folder),
        },
    )
    return archive(folder, with_config(bench.safe_members, lambda c: _out_as(c, getter)))


def _node_get_file(config: dict[str, Any]) -> None:
    # Functional rebuilds deserialize inbound_nodes[].args/kwargs: a reference
    # there is as live as a layer.
    node = layer(config, "out")["inbound_nodes"][0]
    node["kwargs"]["training"] = {
        "module": "keras.utils",
        "class_name": "get_file",
        "config": {"origin": "http://example.invalid/x"},
        "registered_name": None,
    }


add(
    "object_in_node_arguments",
    edited(_node_get_file),
    "UnsafeModelError",
    "out.inbound_nodes\\[0\\].kwargs.training: the config refers to keras.utils.get_file",
    "config",
)


def set_floatx_through_lambda(config: dict[str, Any]) -> None:
    """As in the published proof of concept: Lambda(keras.config.set_floatx) on node kwargs."""
    setter = lambda_layer(
        "out",
        function_ref("keras.config", "set_floatx"),
        {"args": [], "kwargs": {"inputs": "float16"}},
    )
    _out_as(config, setter)
    config["config"]["output_layers"] = [["hidden", 0, 0]]


# Open in Keras 3.15.1 with safe_mode=True: a Lambda may name an exported
# Keras function, which the functional rebuild calls with constants from the
# node arguments (here: keras.config.set_floatx("float16")).
add(
    "keras_config_setter_through_node_arguments",
    edited(set_floatx_through_lambda),
    "UnsafeModelError",
    "keras.config.set_floatx",
    "config",
)
add(
    "keras_config_setter_as_activation",
    _activation("keras.config", "disable_traceback_filtering"),
    "UnsafeModelError",
    "hidden.activation: the config refers to keras.config.disable_traceback_filtering",
    "config",
)

for _module, _fn in [
    ("keras.activations", "deserialize"),
    ("keras.activations", "get"),
    ("keras.losses", "get"),
    ("builtins", "get"),
    ("builtins", "serialize"),
    ("keras.ops", "relu"),
]:
    add(
        f"not_a_model_part_{_module}.{_fn}",
        _activation(_module, _fn),
        "UnsafeModelError",
        f"hidden.activation: .*{_fn}, which is not",
        "config",
    )

for _class in ["TFSMLayer", "TorchModuleWrapper", "JaxLayer", "Lambda"]:

    def _file_layer(bench: Bench, folder: Path, class_name: str = _class) -> Path:
        # Open in Keras 3.15.1 (TFSMLayer): loads a SavedModel from a path the file chooses.
        def edit(config: dict[str, Any]) -> None:
            hidden = layer(config, "hidden")
            hidden["class_name"] = class_name
            hidden["config"]["filepath"] = str(folder / "saved_model")

        return archive(folder, with_config(bench.safe_members, edit))

    add(
        f"layer_loading_files_or_code_cve_2026_1462_{_class}",
        _file_layer,
        "UnsafeModelError",
        f"hidden: keras.layers.{_class} layers run code or load files",
        "config",
    )


@hostile(
    "vocabulary_path_cve_2025_12058",
    "UnsafeModelError",
    "hidden: StringLookup.vocabulary=.*secret.txt",
    "config",
)
def _vocabulary_path(bench: Bench, folder: Path) -> Path:
    secret = folder / "secret.txt"
    secret.write_text("token-a\ntoken-b\n")

    def edit(config: dict[str, Any]) -> None:
        hidden = layer(config, "hidden")
        hidden["class_name"] = "StringLookup"
        hidden["config"] = {"name": "hidden", "vocabulary": str(secret)}

    return archive(folder, with_config(bench.safe_members, edit))


def _oov_bomb(config: dict[str, Any]) -> None:
    # Not a variable: IndexLookup builds a Python list of num_oov_indices tokens.
    hidden = layer(config, "hidden")
    hidden["class_name"] = "IntegerLookup"
    hidden["config"] = {"name": "hidden", "vocabulary": [1, 2], "num_oov_indices": 10**10}


add(
    "lookup_layer_memory_bomb",
    edited(_oov_bomb),
    "UnsafeModelError",
    "hidden: IntegerLookup.num_oov_indices=10000000000.*memory bomb",
    "config",
)


def _typespec(config: dict[str, Any]) -> None:
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


add(
    "typespec_and_legacy_tf_objects",
    edited(_typespec),
    "UnsafeModelError",
    "kwargs.spec: the config holds a serialized __typespec__.*TypeSpec",
    "config",
)


# -- references that say one thing while Keras does another ----------------------------


def _shared_ids(config: dict[str, Any]) -> None:
    # Open in Keras 3.15.1: shared_object_id binds to whichever object Keras
    # deserializes first, whatever class the later config names.
    layer(config, "hidden")["shared_object_id"] = 7
    layer(config, "out")["config"]["kernel_initializer"]["shared_object_id"] = 7


add(
    "shared_object_id_smuggles_a_class",
    edited(_shared_ids),
    "UnsafeModelError",
    "shared_object_id 7 names keras.initializers.GlorotUniform here but keras.layers.Dense",
    "config",
)


def _shared_ids_compile(config: dict[str, Any]) -> None:
    # compile_config is deserialized after config, so a loss sharing a
    # layer's id would be the layer.
    layer(config, "hidden")["shared_object_id"] = 11
    config["compile_config"]["loss"] = {
        "module": "keras.losses",
        "class_name": "MeanSquaredError",
        "config": {"name": "mse"},
        "registered_name": None,
        "shared_object_id": 11,
    }


add(
    "shared_object_id_across_compile_config",
    edited(_shared_ids_compile),
    "UnsafeModelError",
    "shared_object_id 11",
    "config",
)
add(
    "shared_object_id_not_an_integer",
    edited(lambda c: layer(c, "hidden").update(shared_object_id=[1])),
    "UnsafeModelError",
    "hidden: shared_object_id \\[1\\] is not an integer",
    "config",
)


def _tagged_layer(config: dict[str, Any]) -> None:
    # Keras reads any dict with class_name and config as an object, whatever
    # other keys (here keras_safe's own tag) it carries.
    hidden = layer(config, "hidden")
    hidden["__keras_safe__"] = "dict"
    hidden["class_name"] = "TFSMLayer"


add(
    "tagged_dict_hides_a_layer",
    edited(_tagged_layer),
    "UnsafeModelError",
    "hidden: keras.layers.TFSMLayer",
    "config",
)


def _null_registered(config: dict[str, Any]) -> None:
    # With registered_name null Keras skips custom objects and uses its
    # built-in: a custom object of the same short name must not vouch for it.
    layer(config, "hidden").update(class_name="TFSMLayer", registered_name=None)


def _dense_as_tfsm(bench: Bench) -> dict[str, Any]:
    import keras

    return {"custom_objects": {"TFSMLayer": keras.layers.Dense}}


add(
    "null_registered_name_resolved_as_keras_does",
    edited(_null_registered),
    "UnsafeModelError",
    "hidden: keras.layers.TFSMLayer",
    "config",
    kwargs=_dense_as_tfsm,
)


def _legacy_string(config: dict[str, Any]) -> None:
    # Keras' legacy loader (layer configs without "module") replaces any
    # string value naming a function of keras.src.layers by that function.
    hidden = layer(config, "hidden")
    del hidden["module"]
    hidden["config"]["activation"] = "deserialize"


add(
    "legacy_string_replaced_by_a_keras_function",
    edited(_legacy_string),
    "UnsafeModelError",
    "hidden.activation: the string 'deserialize'",
    "config",
)


def _legacy_class(config: dict[str, Any]) -> None:
    hidden = layer(config, "hidden")
    del hidden["module"]
    hidden["class_name"] = "serialization_lib"


add(
    "legacy_class_name_not_a_model_part",
    edited(_legacy_class),
    "UnsafeModelError",
    "hidden: the config refers to .*serialization_lib",
    "config",
)


def _huge_dtype(config: dict[str, Any]) -> None:
    node = layer(config, "out")["inbound_nodes"][0]
    node["kwargs"]["mask"] = {
        "class_name": "__numpy__",
        "config": {"value": [1], "dtype": "V2000000000"},
    }


add(
    "numpy_constant_huge_dtype",
    edited(_huge_dtype),
    "UnsafeModelError",
    "kwargs.mask: a __numpy__ value of dtype 'V2000000000'",
    "config",
)

for _j, _layer_name in enumerate(["..", ".", "a/b", "x\\y"]):
    add(
        f"layer_name_is_a_path_{_j}",
        edited(lambda c, name=_layer_name: layer(c, "hidden")["config"].update(name=name)),
        "UnsafeModelError",
        f"the name {_layer_name!r} of a Dense is not a plain name".replace("\\", "\\\\"),
        "config",
    )


def _malformed(config: dict[str, Any]) -> None:
    layer(config, "hidden")["registered_name"] = {"not": "a string"}
    layer(config, "out")["class_name"] = 42


add(
    "malformed_references",
    edited(_malformed),
    "UnsafeModelError",
    "cannot interpret \\(\\{'not': 'a string'\\}\\).*cannot interpret \\(42\\)",
    "config",
)
add(
    "variable_memory_bomb",
    edited(lambda c: layer(c, "hidden")["config"].update(units=10**9)),
    "UnsafeModelError",
    "allocate more than its weights file could fill.*hidden/kernel",
    "build",
)


# -- strings Keras would replace by a registered object -----------------------------------

# Keras 3 writes a registered object as {"class_name": ..., "registered_name":
# ...}; a bare string equal to its key would be looked up by Keras in places
# (initializers.get, a wrapper's layer, a compile config, legacy configs).
for _arg in ["activation", "kernel_initializer", "bias_regularizer", "kernel_constraint", "dtype"]:
    add(
        f"string_naming_a_registered_function_{_arg}",
        edited(lambda c, arg=_arg: layer(c, "hidden")["config"].update({arg: VICTIM})),
        "UnsafeModelError",
        f"hidden.{_arg}: the string '{VICTIM}' is the key of a registered object",
        "config",
    )


def _wrapper_of_a_string(config: dict[str, Any]) -> None:
    hidden = layer(config, "hidden")
    hidden.update(class_name="TimeDistributed", config={"name": "hidden", "layer": VICTIM})


add(
    "string_naming_a_registered_function_as_a_wrapped_layer",
    edited(_wrapper_of_a_string),
    "UnsafeModelError",
    f"hidden.layer: the string '{VICTIM}' is the key of a registered object",
    "config",
)
add(
    "string_naming_a_registered_function_in_a_list",
    edited(lambda c: layer(c, "hidden")["config"].update(extra=["a", [VICTIM]])),
    "UnsafeModelError",
    f"hidden.extra\\[1\\]\\[0\\]: the string '{VICTIM}'",
    "config",
)


def _long_chain(bench: Bench, folder: Path) -> Path:
    import resource_kit

    return resource_kit.long_chain(folder)


add(
    "rebuild_past_max_build_seconds",
    _long_chain,
    "UnsafeModelError",
    "ArchiveLimits.max_build_seconds \\(0.5 s\\); stopped before "
    "(calling|constructing) Activation 'a\\d+'",
    "build",
    kwargs=lambda bench: {"limits": keras_safe.ArchiveLimits(max_build_seconds=0.5)},
)


# -- the weights file ------------------------------------------------------------------------

KERNEL = "layers/dense/vars/0"  # the "hidden" layer's kernel, shape (4, 3)


def _replace(handle: Any, path: str, **dataset: Any) -> None:
    group, name = path.rsplit("/", 1)
    del handle[path]
    handle[group].create_dataset(name, **dataset)


def weights_edited(edit: Callable[[Any], Any]) -> Callable[[Bench, Path], Path]:
    """A builder: the keras_safe archive with its weights file edited (manifest re-signed)."""
    return lambda bench, folder: archive(folder, with_weights(bench.safe_members, edit))


# Open in Keras 3.15.1 below 4 GiB: a dataset declaring more data than the
# file holds (chunked, never written: HDF5 makes up fill values).
add(
    "h5_dataset_declaring_a_huge_size",
    weights_edited(
        lambda h: _replace(
            h, KERNEL, shape=(40_000, 20_000), dtype="f4", chunks=(1000, 1000), fillvalue=1.0
        )
    ),
    "UnsafeModelError",
    "model.weights.h5.*declare 32000\\d+ bytes but the file holds",
    "weights",
)
add(
    "h5_dataset_larger_than_any_variable",
    weights_edited(lambda h: _replace(h, KERNEL, data=np.ones((512, 512), "float32"))),
    "UnsafeModelError",
    f"dataset '{KERNEL}' has shape \\(512, 512\\).*larger than any variable",
    "build",
)
add(
    "h5_dataset_unlike_every_variable",
    weights_edited(lambda h: _replace(h, KERNEL, data=np.ones((3, 4), "float64"))),
    "UnsafeModelError",
    f"'{KERNEL}'.*shape \\(3, 4\\) and dtype float64, unlike any variable",
    "build",
)

for _kind in ["soft", "external"]:

    def _link(bench: Bench, folder: Path, kind: str = _kind) -> Path:
        other = folder / "other.h5"
        with h5py.File(other, "w") as handle:
            handle["data"] = np.zeros((4, 3), "float32")

        def edit(handle: Any) -> None:
            del handle[KERNEL]
            handle[KERNEL] = (
                h5py.SoftLink("/layers/dense_1/vars/0")
                if kind == "soft"
                else h5py.ExternalLink(str(other), "/data")
            )

        return archive(folder, with_weights(bench.safe_members, edit))

    add(
        f"h5_{_kind}_link",
        _link,
        "UnsafeModelError",
        f"'{KERNEL}' is an HDF5 {_kind.capitalize()}Link",
        "weights",
    )


@hostile("h5_external_storage", "UnsafeModelError", f"'{KERNEL}'.*external storage", "weights")
def _external_storage(bench: Bench, folder: Path) -> Path:
    raw = folder / "raw.bin"
    raw.write_bytes(b"\0" * 48)
    return archive(
        folder,
        with_weights(
            bench.safe_members,
            lambda h: _replace(h, KERNEL, shape=(4, 3), dtype="f4", external=[(str(raw), 0, 48)]),
        ),
    )


@hostile("h5_virtual_dataset", "UnsafeModelError", f"'{KERNEL}'.*virtual", "weights")
def _virtual(bench: Bench, folder: Path) -> Path:
    other = folder / "source.h5"
    with h5py.File(other, "w") as handle:
        handle["data"] = np.zeros((4, 3), "float32")

    def edit(handle: Any) -> None:
        layout = h5py.VirtualLayout(shape=(4, 3), dtype="f4")
        layout[:] = h5py.VirtualSource(str(other), "data", shape=(4, 3))
        del handle[KERNEL]
        handle["layers/dense/vars"].create_virtual_dataset("0", layout)

    return archive(folder, with_weights(bench.safe_members, edit))


add(
    "h5_filter_loaded_as_plugin",
    weights_edited(
        lambda h: _replace(
            h,
            KERNEL,
            shape=(4, 3),
            dtype="f4",
            chunks=(4, 3),
            compression=32001,
            allow_unknown_filter=True,
        )
    ),
    "UnsafeModelError",
    f"'{KERNEL}'.*filter 32001.*plugin",
    "weights",
)
add(
    "h5_object_values",
    weights_edited(
        lambda h: _replace(h, KERNEL, data=np.array(["a", "b"], dtype=h5py.string_dtype()))
    ),
    "UnsafeModelError",
    f"'{KERNEL}'.*weights are numbers",
    "weights",
)


def _large_attributes(handle: Any) -> None:
    extra = handle.create_group("extra")  # new objects may hold large attributes
    extra.attrs.create("padding", np.zeros(10_000, "f4"))
    extra.create_group("inner").attrs.create("names", ["x"] * 200_000, dtype=h5py.string_dtype())


add(
    "h5_large_attribute_configured",
    weights_edited(_large_attributes),
    "UnsafeModelError",
    "attribute 'padding' of 'extra' holds 10000 values",
    "weights",
    kwargs=lambda bench: {"limits": keras_safe.ArchiveLimits(max_h5_attribute_bytes=1000)},
)
add(
    "h5_large_attributes",
    weights_edited(_large_attributes),
    "UnsafeModelError",
    "attribute 'names' of 'extra/inner' holds 200000",
    "weights",
)


def _many_groups(handle: Any) -> None:
    group = handle.create_group("many")
    for i in range(60):
        group.create_group(str(i))


add(
    "h5_object_count_configured",
    weights_edited(_many_groups),
    "UnsafeModelError",
    "more than 50 HDF5 objects",
    "weights",
    kwargs=lambda bench: {"limits": keras_safe.ArchiveLimits(max_h5_objects=50)},
)


# -- legacy .h5 model files get the same checks --------------------------------------------


def h5_config_edited(edit: Callable[[dict[str, Any], Bench], Any]) -> Callable[[Bench, Path], Path]:
    """A builder: the legacy .h5 file with its model_config attribute edited."""

    def build(bench: Bench, folder: Path) -> Path:
        target = folder / "legacy.h5"
        target.write_bytes(bench.saved["h5"].read_bytes())
        with h5py.File(target, "r+") as handle:
            config = json.loads(handle.attrs["model_config"])
            edit(config, bench)
            handle.attrs["model_config"] = json.dumps(config)
        return target

    return build


def legacy_lambda(config: dict[str, Any], marker: Path) -> None:
    """Make the legacy config's "out" layer a Lambda whose bytecode creates ``marker``."""
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


add(
    "h5_lambda_bytecode_cve_2025_9905",
    h5_config_edited(lambda config, bench: legacy_lambda(config, bench.marker)),
    "UnsafeModelError",
    "out: keras.Lambda layers run code",
    "config",
)


def _h5_foreign(config: dict[str, Any], bench: Bench) -> None:
    hidden = next(i for i in config["config"]["layers"] if i["config"]["name"] == "hidden")
    hidden["config"]["activation"] = function_ref("os", "system")
    hidden["config"]["kernel_initializer"] = {
        "module": "keras.layers",
        "class_name": "TFSMLayer",
        "config": {},
    }


add(
    "h5_foreign_function_and_file_layer",
    h5_config_edited(_h5_foreign),
    "UnsafeModelError",
    "hidden.activation: the config refers to os.system.*TFSMLayer",
    "config",
)


def _h5_string(config: dict[str, Any], bench: Bench) -> None:
    hidden = next(i for i in config["config"]["layers"] if i["config"]["name"] == "hidden")
    hidden["config"]["units"] = VICTIM  # Keras' legacy loader would pass the function


add(
    "h5_string_naming_a_registered_function",
    h5_config_edited(_h5_string),
    "UnsafeModelError",
    f"hidden.units: the string '{VICTIM}' is the key of a registered object",
    "config",
)


@hostile(
    "h5_shape_bomb",
    "UnsafeModelError",
    "declare 4000000000\\d+ bytes",
    "weights",
    kwargs=lambda bench: {"compile": False},
)
def _h5_shape_bomb(bench: Bench, folder: Path) -> Path:
    path = folder / "bomb.h5"
    path.write_bytes(bench.saved["h5"].read_bytes())
    with h5py.File(path, "r+") as handle:
        handle.create_dataset(
            "model_weights/bomb", shape=(10**6, 10**6), dtype="f4", chunks=(1000, 1000)
        )
    return path


@hostile("h5_config_nested", "UnsafeModelError", "model_config.*nested 5001 levels", "archive")
def _h5_nested(bench: Bench, folder: Path) -> Path:
    path = folder / "deep.h5"
    path.write_bytes(bench.saved["h5"].read_bytes())
    with h5py.File(path, "r+") as handle:
        handle.attrs["model_config"] = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
    return path


# -- digests and signatures: what they catch and what they cannot ------------------------

add(
    "edited_member_digest",
    lambda bench, folder: archive(
        folder,
        with_config(
            bench.safe_members, lambda c: layer(c, "hidden")["config"].update(units=4), resign=False
        ),
    ),
    "IntegrityError",
    "Member 'config.json'.*SHA-256",
    "digest",
)


@hostile(
    "corrupted_weights_digest", "IntegrityError", "Member 'model.weights.h5'.*SHA-256", "digest"
)
def _corrupted_weights(bench: Bench, folder: Path) -> Path:
    members = bench.safe_members
    weights = bytearray(dict(members)["model.weights.h5"])
    weights[-100] ^= 0xFF
    return archive(folder, replace_member(members, "model.weights.h5", bytes(weights)))


add(
    "member_added_after_saving",
    lambda bench, folder: archive(folder, [*bench.safe_members, ("assets/extra.txt", b"x")]),
    "IntegrityError",
    "'assets/extra.txt'.*not in its manifest",
    "digest",
)

# Digests catch corruption, not an attacker who rewrites the manifest too:
# only a pinned digest (or a signature) tells the files apart.
add(
    "edited_and_redigested_against_a_pin",
    edited(lambda c: layer(c, "hidden")["config"].update(units=4)),
    "IntegrityError",
    "not the expected",
    "digest",
    kwargs=lambda bench: {"expected_digest": keras_safe.inspect(bench.saved["safe"]).digest},
)


def _no_manifest(bench: Bench, folder: Path) -> Path:
    members = bench.safe_members
    metadata = json.loads(dict(members)["metadata.json"])
    del metadata["keras_safe"]
    return archive(folder, replace_member(members, "metadata.json", json.dumps(metadata).encode()))


add(
    "manifest_removed_against_a_pin",
    _no_manifest,
    "IntegrityError",
    "no keras_safe manifest",
    "digest",
    kwargs=lambda bench: {"expected_digest": "0" * 64},
)
add(
    "manifest_removed_against_a_key",
    _no_manifest,
    "IntegrityError",
    "not signed",
    "digest",
    kwargs=lambda bench: {"signing_key": b"key"},
)
add(
    "signature_with_another_key",
    lambda bench, folder: bench.signed,
    "IntegrityError",
    "does not match signing_key",
    "digest",
    kwargs=lambda bench: {"signing_key": b"guess"},
)
add(
    "unsigned_file_with_a_key",
    lambda bench, folder: bench.saved["safe"],
    "IntegrityError",
    "is not signed",
    "digest",
    kwargs=lambda bench: {"signing_key": b"team key"},
)


@hostile(
    "edited_after_signing",
    "IntegrityError",
    "does not match signing_key",
    "digest",
    kwargs=lambda bench: {"signing_key": b"team key"},
)
def _edited_after_signing(bench: Bench, folder: Path) -> Path:
    members = read_members(bench.signed)
    # Keep the old signature, redo every digest: the signature covers them.
    hostile = with_config(members, lambda c: layer(c, "hidden")["config"].update(units=4))
    metadata = json.loads(dict(hostile)["metadata.json"])
    old = json.loads(dict(members)["metadata.json"])["keras_safe"]["signature"]
    metadata["keras_safe"]["signature"] = old
    return archive(folder, replace_member(hostile, "metadata.json", json.dumps(metadata).encode()))


# -- nothing in a file switches the checks off -----------------------------------------------


@hostile(
    "file_content_switches_checks_off",
    "UnsafeModelError",
    "out: .*Lambda layers run code",
    "config",
)
def _switch_off(bench: Bench, folder: Path) -> Path:
    def edit(config: dict[str, Any]) -> None:
        config["safe_mode"] = False
        config["config"]["safe_mode"] = False
        code = {"class_name": "__lambda__", "config": lambda_bytecode(bench.marker)}
        _out_as(config, lambda_layer("out", code, _from_hidden(), safe_mode=False))

    members = with_config(bench.safe_members, edit)
    metadata = json.loads(dict(members)["metadata.json"])
    metadata.update(safe_mode=False, allow_imports=["os"], custom_objects={"Lambda": "builtins"})
    metadata["keras_safe"]["allow_imports"] = ["os"]
    return archive(folder, replace_member(members, "metadata.json", json.dumps(metadata).encode()))


def build_corpus(bench: Bench, cases: list[Hostile] | None = None) -> dict[str, Path]:
    """Build every case's file (each in a folder of its own); paths by case name."""
    files = {}
    for case in cases if cases is not None else CORPUS:
        folder = bench.root / "cases" / case.name
        folder.mkdir(parents=True, exist_ok=True)
        files[case.name] = case.build(bench, folder)
    return files


def _check_unique() -> None:
    names = [case.name for case in CORPUS]
    duplicates = {name for name in names if names.count(name) > 1}
    assert not duplicates, duplicates


_check_unique()
