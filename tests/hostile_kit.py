"""Building hostile model files for tests, fuzzing and the fault tools.

Every payload here is harmless: the only thing a successful attack could do
is create the marker file it is given (in the test's temporary directory).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import marshal
import struct
import textwrap
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_safe._format.manifest import Manifest, MemberRecord, content_digest

Members = list[tuple[str, bytes]]


# -- a small, real model to start from ---------------------------------------------


def small_model() -> keras.Model:
    """Input(4) -> Dense(3) -> Dense(2), compiled, with optimizer state."""
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="out")(hidden)
    model = keras.Model(inputs, outputs, name="small")
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 4), "float32"), np.zeros((4, 2), "float32"), verbose=0)
    return model


def read_members(path: Path) -> Members:
    """The members of an archive, in order."""
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def write_archive(
    path: Path,
    members: Iterable[tuple[str, bytes]],
    *,
    deflate: Iterable[str] = (),
    prefix: bytes = b"",
    suffix: bytes = b"",
) -> Path:
    """Write ``members`` (duplicates allowed) as a zip, with optional junk around it."""
    deflated = set(deflate)
    raw = path.with_suffix(".tmpzip")
    with warnings.catch_warnings(), zipfile.ZipFile(raw, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate names are the point of some files
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED
            archive.writestr(info, data)
    path.write_bytes(prefix + raw.read_bytes() + suffix)
    raw.unlink()
    return path


def config_of(members: Members) -> dict[str, Any]:
    """The parsed config.json of ``members``."""
    return json.loads(dict(members)["config.json"])  # type: ignore[no-any-return]


def replace_member(members: Members, name: str, data: bytes) -> Members:
    """``members`` with ``name``'s bytes replaced (order kept)."""
    return [(n, data if n == name else d) for n, d in members]


def resign_manifest(members: Members) -> Members:
    """Recompute the manifest's digests after editing: what an attacker would do.

    Without a key or a pinned digest, digests cannot tell an edited file
    from a saved one; the allowlist must.
    """
    data = dict(members)
    metadata = json.loads(data["metadata.json"])
    if "keras_safe" not in metadata:
        return members
    manifest = Manifest.from_json(metadata["keras_safe"])
    records = {
        name: MemberRecord(hashlib.sha256(blob).hexdigest(), len(blob))
        for name, blob in members
        if name != "metadata.json"
    }
    fresh = Manifest(
        format_version=manifest.format_version,
        environment=manifest.environment,
        saved_at=manifest.saved_at,
        model=manifest.model,
        objects=manifest.objects,
        members=records,
        digest=content_digest(records),
    )
    metadata["keras_safe"] = fresh.to_json()
    return replace_member(members, "metadata.json", json.dumps(metadata).encode())


def with_config(
    members: Members, edit: Callable[[dict[str, Any]], Any], *, resign: bool = True
) -> Members:
    """``members`` whose config.json was edited by ``edit(config)`` (in place)."""
    config = copy.deepcopy(config_of(members))
    edit(config)
    edited = replace_member(members, "config.json", json.dumps(config).encode())
    return resign_manifest(edited) if resign else edited


def layers_of(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer list of a Functional config."""
    return config["config"]["layers"]  # type: ignore[no-any-return]


def layer(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The layer config named ``name``."""
    return next(item for item in layers_of(config) if item["config"]["name"] == name)


# -- payloads ---------------------------------------------------------------------------


def marker_function(marker: Path) -> Callable[..., Any]:
    """A function whose only effect is to create ``marker``."""
    namespace: dict[str, Any] = {}
    exec(
        textwrap.dedent(
            f"""
            def payload(x=None, *args, **kwargs):
                open({str(marker)!r}, "w").write("the payload ran")
                return x
            """
        ),
        namespace,
    )
    return namespace["payload"]  # type: ignore[no-any-return]


def lambda_bytecode(marker: Path) -> dict[str, Any]:
    """A serialized function (Keras' __lambda__ form) that creates ``marker``."""
    code = marshal.dumps(marker_function(marker).__code__)
    return {"code": base64.b64encode(code).decode("ascii"), "defaults": None, "closure": None}


def lambda_layer(name: str, function: Any, inbound: dict[str, Any], **config: Any) -> dict:
    """A Lambda layer config calling ``function`` on ``inbound`` node arguments."""
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {
            "name": name,
            "trainable": True,
            "function": function,
            "arguments": {},
            **config,
        },
        "registered_name": None,
        "name": name,
        "inbound_nodes": [inbound],
    }


def keras_tensor_arg(layer_name: str, shape: list[Any]) -> dict[str, Any]:
    """The node argument Keras writes for the output of ``layer_name``."""
    return {
        "class_name": "__keras_tensor__",
        "config": {"shape": shape, "dtype": "float32", "keras_history": [layer_name, 0, 0]},
    }


def function_ref(module: str, name: str, registered: Any = None) -> dict[str, Any]:
    """Keras' serialized form of a function reference."""
    return {
        "module": module,
        "class_name": "function",
        "config": name,
        "registered_name": registered,
    }


def payload_module(directory: Path, name: str, marker: Path) -> Path:
    """A module that creates ``marker`` when imported or when its ``pwn`` runs."""
    source = textwrap.dedent(
        f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        def pwn(*args, **kwargs):
            pathlib.Path({str(marker)!r}).write_text("called")
            return args[0] if args else None
        """
    )
    target = directory.joinpath(*name.split(".")).with_suffix(".py")
    target.parent.mkdir(parents=True, exist_ok=True)
    for parent in target.relative_to(directory).parents:
        if str(parent) != ".":
            (directory / parent / "__init__.py").touch()
    target.write_text(source)
    return target


# -- raw zip surgery --------------------------------------------------------------------


def deflate_bomb(size: int) -> bytes:
    """``size`` zero bytes, deflated (compresses about 1000:1)."""
    return zlib.compress(b"\0" * size, 9)


def zip_with_declared_size(path: Path, members: Members, name: str, declared: int) -> Path:
    """An archive whose deflated member ``name`` claims ``declared`` uncompressed bytes."""
    write_archive(path, members, deflate=[name])
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        position = archive.start_dir
    struct.pack_into("<L", data, info.header_offset + 22, declared)  # local header
    while True:  # its central-directory entry: uncompressed size at +24
        name_length = struct.unpack_from("<H", data, position + 28)[0]
        extra, comment = struct.unpack_from("<HH", data, position + 30)
        if data[position + 46 : position + 46 + name_length] == name.encode():
            struct.pack_into("<L", data, position + 24, declared)
            break
        position += 46 + name_length + extra + comment
    path.write_bytes(bytes(data))
    return path


def with_weights(members: Members, edit: Callable[[Any], Any], *, resign: bool = True) -> Members:
    """``members`` whose model.weights.h5 was edited by ``edit(h5py_file)``.

    The file is reopened with the latest HDF5 format, whose objects may carry
    attributes of any size.
    """
    import io

    import h5py

    buffer = io.BytesIO(dict(members)["model.weights.h5"])
    with h5py.File(buffer, "r+", libver="latest") as handle:
        edit(handle)
    edited = replace_member(members, "model.weights.h5", buffer.getvalue())
    return resign_manifest(edited) if resign else edited
