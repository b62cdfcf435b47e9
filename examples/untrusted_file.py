"""Loading a model file from an untrusted source: what keras_safe refuses, and why.

Saves a small model, then builds hostile variants of it the way published
Keras advisories did, and loads each one with ``keras_safe.load``. Every
payload is harmless: the only thing it could do is create a marker file in a
temporary folder. Each variant must be refused with the expected keras_safe
error and the marker must not exist; the script exits non-zero otherwise.

Run it::

    python examples/untrusted_file.py
"""

from __future__ import annotations

import base64
import json
import marshal
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

import keras_safe


def save_small_model(path: Path) -> None:
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    keras_safe.save(model, path)


def rewrite(source: Path, target: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """Copy ``source`` with its config edited and its manifest dropped.

    Dropping the manifest is what an attacker does: digests only catch
    edits when there is a manifest (or a pinned digest, or a key) to check.
    """
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    members["metadata.json"] = json.dumps({"keras_version": keras.__version__}).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def layer(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in config["config"]["layers"] if item["config"]["name"] == name)


def function(module: str, name: str) -> dict[str, Any]:
    return {"module": module, "class_name": "function", "config": name, "registered_name": None}


def lambda_calling(fn: dict[str, Any], **node_kwargs: Any) -> Callable[[dict[str, Any]], None]:
    """Replace the "out" layer by a Lambda calling ``fn`` with the node's constants."""

    def edit(config: dict[str, Any]) -> None:
        out = layer(config, "out")
        out.update(class_name="Lambda", config={"name": "out", "function": fn, "arguments": {}})
        out["inbound_nodes"] = [{"args": [], "kwargs": node_kwargs}]

    return edit


def bytecode_writing(marker: Path) -> dict[str, Any]:
    """Keras' serialized form of a lambda whose only effect is to create ``marker``."""
    namespace: dict[str, Any] = {}
    exec(f"def payload(x):\n    open({str(marker)!r}, 'w').write('ran')\n    return x", namespace)
    code = base64.b64encode(marshal.dumps(namespace["payload"].__code__)).decode()
    return {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="untrusted-"))
    marker = folder / "marker"
    original = folder / "model.keras"
    save_small_model(original)

    def set_activation(fn: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
        return lambda config: layer(config, "hidden")["config"].update(activation=fn)

    cases: list[tuple[str, Callable[[dict[str, Any]], None], type[Exception]]] = [
        (
            "Lambda bytecode (CVE-2024-3660)",
            lambda_calling(bytecode_writing(marker), inputs=0.0),
            keras_safe.UnsafeModelError,
        ),
        (
            "keras.config setter fed from node arguments (open in Keras 3.15.1)",
            lambda_calling(function("keras.config", "set_floatx"), inputs="float16"),
            keras_safe.UnsafeModelError,
        ),
        (
            "os.system as an activation (CVE-2025-1550)",
            set_activation(function("os", "system")),
            keras_safe.UnsafeModelError,
        ),
        (
            "TFSMLayer loading a SavedModel from a chosen path (CVE-2026-1462)",
            lambda config: layer(config, "hidden").update(class_name="TFSMLayer"),
            keras_safe.UnsafeModelError,
        ),
        (
            "StringLookup reading a local file (CVE-2025-12058)",
            lambda config: layer(config, "hidden").update(
                class_name="StringLookup", config={"name": "hidden", "vocabulary": "/etc/hostname"}
            ),
            keras_safe.UnsafeModelError,
        ),
        (
            "Dense(units=10**9): a memory bomb",
            lambda config: layer(config, "hidden")["config"].update(units=10**9),
            keras_safe.UnsafeModelError,
        ),
        (
            "a module nobody imported",
            set_activation(function("someone_elses_package", "helper")),
            keras_safe.MissingObjectsError,
        ),
    ]
    unexpected = 0
    for number, (title, edit, expected) in enumerate(cases):
        path = rewrite(original, folder / f"hostile-{number}.keras", edit)
        unexpected += not check(title, path, expected, marker)

    # Attacks on the archive itself, not on the config.
    junk = folder / "junk.keras"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 26 + original.read_bytes())
    unexpected += not check("bytes before the zip", junk, keras_safe.UnsafeModelError, marker)
    twice = folder / "twice.keras"
    with zipfile.ZipFile(original) as source, zipfile.ZipFile(twice, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate: the point here
            target.writestr("config.json", b"{}")
    unexpected += not check("a second config.json", twice, keras_safe.UnsafeModelError, marker)

    print()
    if marker.exists() or keras.config.floatx() != "float32":
        print("A payload ran!")
        return 1
    print(f"{len(cases) + 2 - unexpected} of {len(cases) + 2} hostile files refused as expected.")
    return 1 if unexpected else 0


def check(title: str, path: Path, expected: type[Exception], marker: Path) -> bool:
    try:
        keras_safe.load(path)
    except keras_safe.KerasSafeError as error:
        lines = str(error).splitlines()
        reasons = [line.strip(" -")[:160] for line in (lines[1:4] if len(lines) > 1 else lines)]
        ok = isinstance(error, expected) and not marker.exists()
        print(f"{'refused' if ok else 'UNEXPECTED'}: {title} ({type(error).__name__})")
        for reason in reasons:
            print(f"    {reason}")
        return ok
    print(f"UNEXPECTED: {title} loaded")
    return False


if __name__ == "__main__":
    sys.exit(main())
