"""Files that make Keras allocate or compute too much, built the way a reader of the source would.

Each builder writes one hostile file from a small real model and returns
its path. :data:`CASES` names them with what is expected of them: ``static``
cases are refused from the config or the file's structure alone, so every
entry point refuses them (inspect and diff included); the others are
refused by the load-time budgets, and the entry points that never build the
model (inspect, diff) must merely stay within the bounds.

Used by tests/_guard/test_resources.py and tools/fuzz_load.py.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
from hostile_kit import (
    Members,
    read_members,
    replace_member,
    resign_manifest,
    with_config,
    write_archive,
)


def tensor(name: str, shape: list[Any], node: int = 0, dtype: str = "float32") -> dict[str, Any]:
    """A serialized KerasTensor: output ``node`` of layer ``name``."""
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": dtype, "keras_history": [name, node, 0]},
    }


def numpy_value(value: Any, dtype: str) -> dict[str, Any]:
    return {"class_name": "__numpy__", "config": {"value": value, "dtype": dtype}}


def input_layer(name: str, shape: list[Any], dtype: str = "float32") -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": shape, "dtype": dtype, "name": name},
        "registered_name": None,
        "name": name,
        "inbound_nodes": [],
    }


def simple_layer(
    class_name: str, name: str, nodes: list[Any], module: str = "keras.layers", **config: Any
) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": class_name,
        "config": {"name": name, **config},
        "registered_name": None,
        "name": name,
        "inbound_nodes": nodes,
    }


def functional(
    name: str, layers: list[dict[str, Any]], inputs: list[str], outputs: list[list[Any]]
) -> dict[str, Any]:
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": name,
            "trainable": True,
            "layers": layers,
            "input_layers": [[n, 0, 0] for n in inputs],
            "output_layers": outputs,
        },
        "registered_name": "Functional",
    }


def call(*tensors: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return {"args": list(tensors), "kwargs": kwargs}


# -- the base files ------------------------------------------------------------------


def base_archive(directory: Path) -> Members:
    """A keras_safe archive of Input(4) -> Dense(2), with its manifest."""
    import keras_safe

    path = directory / "base.keras"
    if not path.exists():
        inputs = keras.Input((4,), name="x")
        outputs = keras.layers.Dense(2, name="out")(inputs)
        keras_safe.save(keras.Model(inputs, outputs, name="small"), path)
    return read_members(path)


def _edit(directory: Path, name: str, edit: Callable[[dict[str, Any]], Any]) -> Path:
    return write_archive(directory / name, with_config(base_archive(directory), edit))


def _replace_config(directory: Path, name: str, config: dict[str, Any]) -> Path:
    def edit(old: dict[str, Any]) -> None:
        old.clear()
        old.update(config)

    return _edit(directory, name, edit)


# -- memory ---------------------------------------------------------------------------


def normalization_broadcast(directory: Path) -> Path:
    """Normalization(mean=0, variance=1) over a 20000x20000 input: 3.2 GB in build()."""
    layers = [
        input_layer("x", [None, 20000, 20000]),
        simple_layer(
            "Normalization",
            "norm",
            [call(tensor("x", [None, 20000, 20000]))],
            axis=[1, 2],
            mean=0.0,
            variance=1.0,
            invert=False,
        ),
    ]
    return _replace_config(
        directory, "normalization.keras", functional("small", layers, ["x"], [["norm", 0, 0]])
    )


def _dangling(directory: Path, name: str, extra: dict[str, Any]) -> Path:
    def edit(config: dict[str, Any]) -> None:
        config["config"]["layers"].append(extra)

    return _edit(directory, name, edit)


def unconnected_broadcast(directory: Path) -> Path:
    """An unconnected BroadcastTo called on a constant: 3.6 GB eagerly while rebuilding."""
    node = {"args": [numpy_value(1.0, "float32")], "kwargs": {}}
    op = simple_layer(
        "BroadcastTo", "bomb", [node], module="keras.src.ops.numpy", shape=[30000, 30000]
    )
    op["registered_name"] = "BroadcastTo"
    return _dangling(directory, "broadcast.keras", op)


def unconnected_repeat(directory: Path) -> Path:
    """An unconnected RepeatVector(200_000_000) called on a constant [[1.0]]: 800 MB and up."""
    node = {"args": [numpy_value([[1.0]], "float32")], "kwargs": {}}
    return _dangling(
        directory, "repeat.keras", simple_layer("RepeatVector", "rep", [node], n=200_000_000)
    )


def _lookup(directory: Path, name: str, **config: Any) -> Path:
    layers = [
        input_layer("s", [None, 1], "string"),
        simple_layer(
            "StringLookup",
            "look",
            [call(tensor("s", [None, 1], dtype="string"))],
            **{"num_oov_indices": 1, "oov_token": "[UNK]", "mask_token": None, **config},
        ),
    ]
    return _replace_config(directory, name, functional("small", layers, ["s"], [["look", 0, 0]]))


def long_token_vocabulary(directory: Path) -> Path:
    """200_000 one-letter tokens and one of 5_000 letters: numpy pads to 4 GB."""
    vocabulary = [f"{i}" for i in range(200_000)] + ["x" * 5_000]
    return _lookup(directory, "long_token.keras", vocabulary=vocabulary)


def long_oov_token(directory: Path) -> Path:
    """900_000 out-of-vocabulary indices with a 2_000-letter OOV token: 7 GB."""
    return _lookup(
        directory, "long_oov.keras", vocabulary=["a"], num_oov_indices=900_000, oov_token="o" * 2000
    )


def tf_idf_padding(directory: Path) -> Path:
    """TF-IDF weights padded to max_tokens=500_000_000 by numpy: 8 GB, and no Keras variable."""
    return _lookup(
        directory,
        "tf_idf.keras",
        vocabulary=["a", "b"],
        idf_weights=[1.0, 1.0],
        output_mode="tf_idf",
        pad_to_max_tokens=True,
        max_tokens=500_000_000,
    )


def asset_vocabulary(directory: Path) -> Path:
    """A StringLookup whose vocabulary asset holds 300_000 short tokens and one long one."""
    path = _lookup(directory, "asset_vocab.keras", vocabulary=None)
    members = read_members(path)
    text = "\n".join([str(i) for i in range(300_000)] + ["y" * 3_000]).encode()
    members.append(("assets/layers/string_lookup/vocabulary.txt", text))
    return write_archive(path, resign_manifest(members))


def _node_constant(directory: Path, name: str, value: dict[str, Any]) -> Path:
    def edit(config: dict[str, Any]) -> None:
        out = next(x for x in config["config"]["layers"] if x["name"] == "out")
        out["inbound_nodes"][0]["kwargs"]["bomb"] = value

    return _edit(directory, name, edit)


def numpy_long_strings(directory: Path) -> Path:
    """A numpy constant of 300_000 strings, one of 2_000 letters: 2.4 GB once padded."""
    value = ["a"] * 300_000 + ["z" * 2_000]
    return _node_constant(directory, "numpy_strings.keras", numpy_value(value, "str"))


def numpy_subarray(directory: Path) -> Path:
    """A numpy constant whose dtype is a (256, 1024, 1024) sub-array: 1 GiB per element."""
    return _node_constant(directory, "numpy_subarray.keras", numpy_value([0], "(256,1024,1024)f4"))


def legacy_repeated_weight_names(directory: Path) -> Path:
    """A legacy .h5 whose weight_names names one 1 MB kernel 400_000 times."""
    path = directory / "repeated.h5"
    inputs = keras.Input((512,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(512, name="out")(inputs))
    model.save(path)
    with h5py.File(path, "r+", libver="latest") as handle:
        weights = handle["model_weights"]
        old = weights["out"]
        names = [n.encode() if isinstance(n, str) else bytes(n) for n in old.attrs["weight_names"]]
        weights.copy(old, "copy")
        del weights["out"]
        group = weights.create_group("out")
        for key in old_keys(weights["copy"]):
            weights["copy"].copy(key, group)
        del weights["copy"]
        group.attrs.create("weight_names", np.array([names[0]] * 400_000, dtype="S"))
    return path


def old_keys(group: Any) -> list[str]:
    return list(group.keys())


def zip_central_directory_flood(directory: Path) -> Path:
    """An archive whose end record declares 3 members, its central directory 300_003."""
    members = base_archive(directory)
    body = bytearray()
    central = bytearray()
    for name, data in members:
        raw = name.encode()
        crc = zlib.crc32(data)
        offset = len(body)
        body += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(data), len(data), len(raw), 0
        )
        body += raw + data
        central += (
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                0,
                0,
                0,
                crc,
                len(data),
                len(data),
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )
    first = central[: 46 + len(members[0][0])]
    central += first * 300_000
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(body), 0
    )
    path = directory / "flood.keras"
    path.write_bytes(bytes(body + central + end))
    return path


# -- time -----------------------------------------------------------------------------


def deepest_first(directory: Path, count: int = 4_000) -> Path:
    """A chain of ``count`` layers listed output first: Keras' rebuild loop is quadratic.

    4,000 layers (16 million loop steps) stay under max_layer_calls, so the
    loop bound is what refuses them; the review's 14,400 exceed both.
    """
    layers, last = _activation_chain(count)
    layers.reverse()
    return _replace_config(
        directory, "deepest_first.keras", functional("small", layers, ["x"], [[last, 0, 0]])
    )


def long_chain(directory: Path, count: int = 4_000) -> Path:
    """A chain of ``count`` layers in the order Keras saves them: within every count.

    Rebuilding it takes seconds (a few milliseconds per layer call), so only
    the wall clock (``max_build_seconds``) can stop it sooner.
    """
    layers, last = _activation_chain(count)
    return _replace_config(
        directory, "long_chain.keras", functional("small", layers, ["x"], [[last, 0, 0]])
    )


def _activation_chain(count: int) -> tuple[list[dict[str, Any]], str]:
    """Input ``x`` and ``count`` linear activations, each calling the one before; last name."""
    layers = [input_layer("x", [None, 4])]
    previous = "x"
    for i in range(count):
        name = f"a{i}"
        layers.append(
            simple_layer(
                "Activation", name, [call(tensor(previous, [None, 4]))], activation="linear"
            )
        )
        previous = name
    return layers, previous


def nested_twice(directory: Path, depth: int = 22) -> Path:
    """``depth`` nested models, each calling the one below twice: 2**depth symbolic calls."""
    model = functional(
        "m0",
        [
            input_layer("i0", [None, None]),
            simple_layer("Activation", "a0", [call(tensor("i0", [None, None]))], activation="relu"),
        ],
        ["i0"],
        [["a0", 0, 0]],
    )
    for k in range(1, depth + 1):
        inner = dict(model)
        inner["name"] = f"m{k - 1}"
        inner["inbound_nodes"] = [
            call(tensor(f"i{k}", [None, None])),
            call(tensor(f"r{k}", [None, None])),
        ]
        layers = [
            input_layer(f"i{k}", [None, None]),
            simple_layer(
                "Reshape", f"r{k}", [call(tensor(f"i{k}", [None, None]))], target_shape=[-1, 1]
            ),
            inner,
            simple_layer(
                "Add",
                f"s{k}",
                [
                    call(
                        [tensor(f"m{k - 1}", [None, None], 0), tensor(f"m{k - 1}", [None, None], 1)]
                    )
                ],
            ),
        ]
        model = functional(f"m{k}", layers, [f"i{k}"], [[f"s{k}", 0, 0]])
    model["config"]["name"] = "small"
    return _replace_config(directory, "nested.keras", model)


def orthogonal_filler(directory: Path) -> Path:
    """Orthogonal 8192x8192 kernel (a minute of QR); the weights member a deflated filler.

    64 MiB that deflate 30 times (under max_compression_ratio): a variable
    budget taken from the declared size would let the 256 MiB kernel through.
    """

    def edit(config: dict[str, Any]) -> None:
        x = next(item for item in config["config"]["layers"] if item["name"] == "x")
        x["config"]["batch_shape"] = [None, 8192]
        out = next(item for item in config["config"]["layers"] if item["name"] == "out")
        out["config"]["units"] = 8192
        out["config"]["kernel_initializer"] = {
            "module": "keras.initializers",
            "class_name": "Orthogonal",
            "config": {"gain": 1.0, "seed": None},
            "registered_name": None,
        }
        out["build_config"] = {"input_shape": [None, 8192]}

    rng = np.random.default_rng(0)
    filler = b"".join(rng.bytes(30 << 10) + bytes((1 << 20) - (30 << 10)) for _ in range(64))
    members = with_config(base_archive(directory), edit)
    members = replace_member(members, "model.weights.h5", filler)
    return write_archive(
        directory / "orthogonal.keras", resign_manifest(members), deflate=["model.weights.h5"]
    )


# -- calls and files ------------------------------------------------------------------


def cond_gadget(directory: Path) -> Path:
    """A Cond node whose true_fn/false_fn are strings equal to a registered key."""

    def edit(config: dict[str, Any]) -> None:
        cond = simple_layer(
            "Cond",
            "cond",
            [
                {
                    "args": [True],
                    "kwargs": {"true_fn": "victim>payload", "false_fn": "victim>payload"},
                }
            ],
            module="keras.src.ops.core",
        )
        cond["registered_name"] = "Cond"
        config["config"]["layers"].append(cond)

    return _edit(directory, "cond.keras", edit)


def node_string_gadget(directory: Path) -> Path:
    """A connected Dense node with a kwarg string equal to a registered key."""

    def edit(config: dict[str, Any]) -> None:
        out = next(x for x in config["config"]["layers"] if x["name"] == "out")
        out["inbound_nodes"][0]["kwargs"]["training"] = "victim>payload"

    return _edit(directory, "node_string.keras", edit)


def external_kernel(directory: Path, outside: Path) -> Path:
    """A self-consistent archive whose kernel is stored in ``outside`` (HDF5 external storage)."""
    members = base_archive(directory)
    weights = directory / "external.weights.h5"
    weights.write_bytes(dict(members)["model.weights.h5"])
    with h5py.File(weights, "r+") as handle:
        found: list[str] = []
        handle.visititems(
            lambda n, o: (
                found.append(n) if isinstance(o, h5py.Dataset) and o.shape == (4, 2) else None
            )
        )
        name = found[0]
        del handle[name]
        outside.write_bytes(np.arange(8, dtype="float32").tobytes())
        handle.create_dataset(name, shape=(4, 2), dtype="float32", external=[(str(outside), 0, 32)])
    members = replace_member(members, "model.weights.h5", weights.read_bytes())
    return write_archive(directory / "external.keras", resign_manifest(members))


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]
    static: bool
    """Refused from the file alone: every entry point refuses it."""
    match: str


CASES = [
    Case(
        "normalization_broadcast",
        normalization_broadcast,
        False,
        "besides variables than ArchiveLimits.max_build_bytes allows .layer 'norm' .Normalization",
    ),
    Case("unconnected_broadcast", unconnected_broadcast, True, "not connected to any output"),
    Case("unconnected_repeat", unconnected_repeat, True, "not connected to any output"),
    Case("long_token_vocabulary", long_token_vocabulary, True, "max_build_bytes"),
    Case("long_oov_token", long_oov_token, True, "max_build_bytes"),
    Case("asset_vocabulary", asset_vocabulary, False, "vocabulary numpy would pad"),
    Case(
        "tf_idf_padding",
        tf_idf_padding,
        True,
        "look: StringLookup\\(output_mode='tf_idf', pad_to_max_tokens=True, "
        "max_tokens=500000000\\).*ArchiveLimits.max_build_bytes",
    ),
    Case("numpy_long_strings", numpy_long_strings, True, "max_build_bytes"),
    Case("numpy_subarray", numpy_subarray, True, "sub-array"),
    Case("legacy_repeated_weight_names", legacy_repeated_weight_names, True, "same object more"),
    Case("zip_central_directory_flood", zip_central_directory_flood, True, "central directory"),
    Case("deepest_first", deepest_first, True, "max_rebuild_steps"),
    Case("nested_twice", nested_twice, True, "max_layer_calls"),
    Case(
        "orthogonal_filler",
        orthogonal_filler,
        False,
        # load: the variable budget; verify and upgrade inspect first: not HDF5.
        "weights could fill|file signature not found",
    ),
    Case("cond_gadget", cond_gadget, True, "Cond"),
    Case("node_string_gadget", node_string_gadget, True, "registered object"),
]


def build_all(directory: Path) -> dict[str, Path]:
    """Every case's file (plus ``external_kernel``), by case name."""
    files = {case.name: case.build(directory) for case in CASES}
    files["external_kernel"] = external_kernel(directory, directory / "outside.bin")
    return files


def dump(files: dict[str, Path]) -> str:
    return json.dumps({k: str(v) for k, v in files.items()})


__all__ = ["CASES", "Case", "build_all", "zipfile"]
