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
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest
from conftest import run_python
from hostile_kit import (
    Members,
    config_of,
    deflate_bomb,
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
    path = archive(tmp_path, [*safe_members, ("assets/Vocab.txt", b"a"), ("assets/vocab.txt", b"b")])
    refused(path, UnsafeModelError, "twice", marker)


@pytest.mark.parametrize("name", ["model.weights.npz", "payload.py", "config.json.bak", "Config.json"])
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
