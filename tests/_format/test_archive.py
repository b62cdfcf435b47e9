"""Reading archives through windows and digests; writing them atomically."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import keras_safe
from keras_safe._format.reader import ArchiveReader
from keras_safe._format.writer import AtomicArchiveWriter, clean_stale_temporaries


def make_archive(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_window_and_digest_read_straight_from_the_file(tmp_path: Path) -> None:
    payload = os.urandom(3 << 20)
    make_archive(tmp_path / "a.keras", {"config.json": b"{}", "model.weights.h5": payload})
    with ArchiveReader(tmp_path / "a.keras") as reader:
        assert reader.sha256("model.weights.h5") == hashlib.sha256(payload).hexdigest()
        window = reader.window("model.weights.h5")
        window.seek(1000)
        assert window.read(10) == payload[1000:1010]
        window.seek(-5, os.SEEK_END)
        assert window.read() == payload[-5:]
        assert reader.read("config.json") == b"{}"


def test_h5py_reads_through_a_window(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "w.h5", "w") as handle:
        handle["vars/0"] = np.arange(12.0).reshape(3, 4)
    make_archive(tmp_path / "a.keras", {"model.weights.h5": (tmp_path / "w.h5").read_bytes()})
    with (
        ArchiveReader(tmp_path / "a.keras") as reader,
        h5py.File(reader.window("model.weights.h5"), "r") as handle,
    ):
        np.testing.assert_array_equal(handle["vars/0"][()], np.arange(12.0).reshape(3, 4))


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"not a zip at all", keras_safe.IntegrityError, "does not start with a zip header"),
        (b"", keras_safe.IntegrityError, "does not start with a zip header"),
        (b"PK\x03\x04" + b"\x00" * 40, keras_safe.IntegrityError, "not a readable zip"),
    ],
)
def test_non_archives_are_refused(tmp_path: Path, content, error, message) -> None:
    (tmp_path / "bad.keras").write_bytes(content)
    with pytest.raises(error, match=message):
        ArchiveReader(tmp_path / "bad.keras")


@pytest.mark.parametrize("name", ["../evil", "/abs/path", "a\\b", "C:drive", "a/../../b"])
def test_member_names_that_escape_are_refused(tmp_path: Path, name: str) -> None:
    make_archive(tmp_path / "bad.keras", {name: b"x"})
    with pytest.raises(keras_safe.UnsafeModelError, match="member named"):
        ArchiveReader(tmp_path / "bad.keras")


def test_atomic_writer_commits_or_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "m.keras"
    target.write_bytes(b"old")
    writer = AtomicArchiveWriter(target)
    writer.zipfile.writestr("config.json", b"{}")
    assert target.read_bytes() == b"old"
    writer.abort()
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.keras"]

    writer = AtomicArchiveWriter(target)
    writer.zipfile.writestr("config.json", b"{}")
    writer.zipfile.writestr("model.weights.h5", os.urandom(2 << 20))
    assert writer.digests["config.json"] == (hashlib.sha256(b"{}").hexdigest(), 2)
    writer.commit()
    assert zipfile.ZipFile(target).namelist() == ["config.json", "model.weights.h5"]
    assert os.listdir(tmp_path) == ["m.keras"]


def test_a_member_written_twice_is_refused(tmp_path: Path) -> None:
    writer = AtomicArchiveWriter(tmp_path / "m.keras")
    writer.zipfile.writestr("config.json", b"{}")
    with pytest.raises(keras_safe.IntegrityError, match="written twice"):
        writer.zipfile.writestr("config.json", b"{}")
    writer.abort()


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    writer = AtomicArchiveWriter(tmp_path / "m.keras")
    live = writer.temp_path
    dead = tmp_path / live.name.replace(f"-{os.getpid()}-", "-999999999-")
    dead.write_bytes(b"left by a killed save")
    unrelated = tmp_path / ".m.keras.tmp"
    unrelated.write_bytes(b"not ours")
    assert clean_stale_temporaries(tmp_path) == [dead]
    assert live.exists() and unrelated.exists()
    writer.abort()
