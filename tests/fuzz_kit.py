"""Mutated model files for fuzzing ``keras_safe.load``.

:func:`make_seeds` saves a few real models (keras_safe, plain Keras, legacy
``.h5``); :func:`mutate` turns one into a hostile variant from a random
generator: flipped, cut, inserted or duplicated bytes; a config.json whose
values, class names, modules and shared ids were scrambled (with the
manifest's digests recomputed, so the edit reaches the allowlist and Keras);
damaged weights; rebuilt zips with compressed, extra, duplicated or
reordered members. :func:`run_case` loads one variant and classifies the
outcome: loading may succeed or raise a keras_safe error; anything else is
a failure.
"""

from __future__ import annotations

import copy
import json
import random
import traceback
from pathlib import Path
from typing import Any

import keras
import numpy as np
from hostile_kit import (
    Members,
    read_members,
    replace_member,
    resign_manifest,
    small_model,
    with_config,
    write_archive,
)

import keras_safe

__all__ = ["Seeds", "make_seeds", "mutate", "run_case"]

Seeds = dict[str, Any]

_NAMES = [
    "Dense",
    "TFSMLayer",
    "Lambda",
    "StringLookup",
    "Functional",
    "Sequential",
    "function",
    "__lambda__",
    "__typespec__",
    "__numpy__",
    "__keras_tensor__",
    "GlorotUniform",
    "Adam",
    "serialization_lib",
    "deserialize",
    "get_file",
    "set_floatx",
    "system",
    "fuzz>Block",
]
_MODULES = [
    "keras.layers",
    "keras.config",
    "keras.utils",
    "keras.src.models.functional",
    "keras.activations",
    "builtins",
    "os",
    "__main__",
    "keras",
    "fuzz_layers",
    None,
]
_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    10**12,
    1e308,
    -0.0,
    "",
    "..",
    "a/b",
    "float16",
    "relu",
    [],
    {},
    [None],
    {"class_name": "Dense"},
    [[[[[]]]]],
    "x" * 300,
]


@keras_safe.register(package="fuzz")
class Block(keras_safe.SerializableLayer):
    """A custom layer with a nested layer and a tuple argument."""

    def __init__(self, units: int = 3, window: tuple[int, int] = (1, 2), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.window = window
        self.inner = keras.layers.Dense(units)

    def call(self, x: Any) -> Any:
        return self.inner(x)


def make_seeds(directory: Path) -> Seeds:
    """Save the models every mutation starts from."""
    model = small_model()
    inputs = keras.Input((4,))
    custom = keras.Model(inputs, Block(3, name="block")(inputs))
    custom.compile(optimizer="sgd", loss="mse")
    custom.fit(np.ones((2, 4), "float32"), np.ones((2, 3), "float32"), verbose=0)
    paths = {
        "safe": directory / "seed-safe.keras",
        "custom": directory / "seed-custom.keras",
        "plain": directory / "seed-plain.keras",
        "h5": directory / "seed-legacy.h5",
    }
    keras_safe.save(model, paths["safe"])
    keras_safe.save(custom, paths["custom"])
    model.save(paths["plain"])
    model.save(paths["h5"])
    seeds: Seeds = {name: read_members(path) for name, path in paths.items() if name != "h5"}
    seeds["h5"] = paths["h5"].read_bytes()
    return seeds


# -- mutations -------------------------------------------------------------------------


def _bytes_mutation(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.choice(("flip", "cut", "insert", "duplicate", "zero"))
        at = rng.randrange(max(len(out), 1))
        if op == "flip" and out:
            out[at] ^= 1 << rng.randrange(8)
        elif op == "cut":
            end = at + rng.randint(1, 4096) if rng.random() < 0.7 else len(out)
            del out[at:end]
        elif op == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 64))
        elif op == "duplicate":
            out[at:at] = out[at : at + rng.randint(1, 512)]
        elif op == "zero":
            out[at : at + 8] = b"\0" * len(out[at : at + 8])
    return bytes(out)


def _nodes(tree: Any) -> list[tuple[Any, Any]]:
    """(container, key) for every value in a JSON tree."""
    found: list[tuple[Any, Any]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            found.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return found


def _scramble_json(tree: Any, rng: random.Random) -> None:
    nodes = _nodes(tree)
    for _ in range(rng.randint(1, 6)):
        if not nodes:
            return
        container, key = rng.choice(nodes)
        op = rng.choice(("value", "name", "module", "delete", "copy", "shared", "int"))
        if op == "value":
            container[key] = copy.deepcopy(rng.choice(_VALUES))
        elif op == "name" and isinstance(container, dict):
            container["class_name"] = rng.choice(_NAMES)
        elif op == "module" and isinstance(container, dict):
            container["module"] = rng.choice(_MODULES)
        elif op == "delete" and isinstance(container, dict):
            container.pop(key, None)
        elif op == "copy":
            source, source_key = rng.choice(nodes)
            container[key] = copy.deepcopy(source[source_key])
        elif op == "shared" and isinstance(container, dict):
            container["shared_object_id"] = rng.choice([1, 2, "1", [1]])
        elif op == "int" and isinstance(container[key], int):
            container[key] = rng.choice([0, -3, 10**6, 10**9, 2**63])
        nodes = _nodes(tree)


_DTYPES = ("float32", "<f8", "U100000", "S0", "V8", "O", "(64,64)f4", "(2,)i4,f4", "str", "int4")


def _functional(config: Any) -> dict[str, Any] | None:
    inner = config.get("config") if isinstance(config, dict) else None
    return inner if isinstance(inner, dict) and isinstance(inner.get("layers"), list) else None


def _structure_mutation(config: dict[str, Any], rng: random.Random) -> None:
    """Mutations of a graph's shape, not its bytes: the resource model's territory."""
    inner = _functional(config)
    if inner is None or not inner["layers"]:
        return
    layers = inner["layers"]
    op = rng.choice(("order", "nest", "unconnected", "dtype", "vocabulary", "repeat_nodes"))
    if op == "order":
        if rng.random() < 0.5:
            layers.reverse()
        else:
            rng.shuffle(layers)
    elif op == "nest":
        # The model becomes a layer of a new one that calls it 1-3 times, nested 1-6 deep.
        for _ in range(rng.randint(1, 6)):
            name = f"nest{rng.randrange(1000)}"
            inputs = copy.deepcopy(inner["input_layers"])
            model = copy.deepcopy(config)
            model["name"] = model["config"]["name"]
            first = inputs[0] if isinstance(inputs[0], list) else inputs
            tensor = {
                "class_name": "__keras_tensor__",
                "config": {"shape": [None, 4], "dtype": "float32", "keras_history": first},
            }
            model["inbound_nodes"] = [
                {"args": [tensor], "kwargs": {}} for _ in range(rng.randint(1, 3))
            ]
            outer_inputs = [x for x in layers if x.get("class_name") == "InputLayer"]
            config["config"] = {
                "name": name,
                "trainable": True,
                "layers": [*copy.deepcopy(outer_inputs), model],
                "input_layers": inputs,
                "output_layers": [model["name"], 0, 0],
            }
            inner, layers = config["config"], config["config"]["layers"]
    elif op == "unconnected":
        extra = copy.deepcopy(rng.choice(layers))
        extra["name"] = f"dangling{rng.randrange(1000)}"
        if isinstance(extra.get("config"), dict):
            extra["config"]["name"] = extra["name"]
        constant = {"class_name": "__numpy__", "config": {"value": [[1.0] * 4], "dtype": "float32"}}
        extra["inbound_nodes"] = [{"args": [constant], "kwargs": {}}]
        layers.append(extra)
    elif op == "dtype":
        target = rng.choice(layers)
        for node in target.get("inbound_nodes") or []:
            if isinstance(node, dict) and isinstance(node.get("kwargs"), dict):
                value = rng.choice([[1, 2], ["a", "b" * rng.choice([1, 10_000])], 0])
                node["kwargs"]["extra"] = {
                    "class_name": "__numpy__",
                    "config": {"value": value, "dtype": rng.choice(_DTYPES)},
                }
    elif op == "vocabulary":
        target = rng.choice(layers)
        target["class_name"] = "StringLookup"
        target["module"] = "keras.layers"
        if isinstance(target.get("config"), dict):
            tokens = rng.choice([1, 1000, 100_000])
            longest = rng.choice([1, 100, 20_000])
            target["config"]["vocabulary"] = [str(i) for i in range(tokens)] + ["x" * longest]
            target["config"]["num_oov_indices"] = rng.choice([1, 1000, 999_999])
            target["config"]["oov_token"] = "o" * rng.choice([1, 5000])
    elif op == "repeat_nodes":
        target = rng.choice(layers)
        nodes = target.get("inbound_nodes")
        if isinstance(nodes, list) and nodes:
            target["inbound_nodes"] = nodes * rng.choice([2, 100, 10_000])


def _zip_mutation(members: Members, rng: random.Random) -> tuple[Members, dict[str, Any]]:
    members = list(members)
    op = rng.choice(("deflate", "extra", "duplicate", "reorder", "drop"))
    options: dict[str, Any] = {}
    if op == "deflate":
        options["deflate"] = rng.sample([n for n, _ in members], rng.randint(1, len(members)))
    elif op == "extra":
        members.append((rng.choice(["assets/a.txt", "x.py", "../e", "assets/"]), b"data"))
    elif op == "duplicate":
        members.append(rng.choice(members))
    elif op == "reorder":
        rng.shuffle(members)
    elif op == "drop":
        members.pop(rng.randrange(len(members)))
    return members, options


def mutate(seeds: Seeds, rng: random.Random, directory: Path) -> Path:
    """One hostile variant of a seed, written under ``directory``."""
    kind = rng.choice(
        ("bytes", "config", "config", "structure", "weights", "metadata", "zip", "h5")
    )
    seed = rng.choice(["safe", "custom", "plain"])
    members: Members = seeds[seed]
    path = directory / f"case-{kind}.keras"
    if kind == "h5":
        path = path.with_suffix(".h5")
        path.write_bytes(_bytes_mutation(seeds["h5"], rng))
        return path
    if kind == "config":
        members = with_config(members, lambda config: _scramble_json(config, rng))
    elif kind == "structure":
        members = with_config(members, lambda config: _structure_mutation(config, rng))
    elif kind == "weights":
        weights = _bytes_mutation(dict(members)["model.weights.h5"], rng)
        members = resign_manifest(replace_member(members, "model.weights.h5", weights))
    elif kind == "metadata":
        metadata = json.loads(dict(members)["metadata.json"])
        _scramble_json(metadata, rng)
        members = replace_member(members, "metadata.json", json.dumps(metadata).encode())
    options: dict[str, Any] = {}
    if kind == "zip":
        members, options = _zip_mutation(members, rng)
    write_archive(path, members, **options)
    if kind == "bytes":
        path.write_bytes(_bytes_mutation(path.read_bytes(), rng))
    return path


def run_case(path: Path) -> str:
    """Load ``path``: ``"loaded"``, ``"refused <Error>"``, or ``"FAILED ..."``."""
    try:
        keras_safe.load(path)
    except keras_safe.KerasSafeError as error:
        return f"refused {type(error).__name__}"
    except BaseException as error:  # the point of fuzzing: nothing else may escape
        if isinstance(error, KeyboardInterrupt):
            raise
        return f"FAILED {type(error).__name__}: {error}\n{traceback.format_exc()}"
    return "loaded"
