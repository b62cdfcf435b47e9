"""AtomicArchiveWriter: members written in place, digests, fsync, commit and abort."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from conftest import run_python

import keras_safe
from keras_safe._format.reader import ArchiveReader
from keras_safe._format.writer import AtomicArchiveWriter


def _leftovers(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


def _write_h5_in_place(writer: AtomicArchiveWriter, arrays: dict[str, np.ndarray]) -> None:
    member = writer.zipfile.open_in_place("model.weights.h5")
    with h5py.File(member, "w") as h5:
        for name, array in arrays.items():
            h5[name] = array
    member.finish()


def test_in_place_member_is_a_valid_stored_zip_member(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    arrays = {f"w{i}": np.random.default_rng(i).standard_normal((300, 70)) for i in range(5)}
    writer = AtomicArchiveWriter(target)
    writer.zipfile.writestr("config.json", "{}")
    _write_h5_in_place(writer, arrays)
    writer.zipfile.writestr("metadata.json", '{"after": true}')
    digests = dict(writer.digests)
    writer.finish()
    writer.commit()

    with zipfile.ZipFile(target) as zf:
        assert zf.testzip() is None  # every CRC checks out
        assert zf.namelist() == ["config.json", "model.weights.h5", "metadata.json"]
        data = zf.read("model.weights.h5")
        info = zf.getinfo("model.weights.h5")
        assert info.compress_type == zipfile.ZIP_STORED
        assert zlib.crc32(data) == info.CRC
        assert zf.read("metadata.json") == b'{"after": true}'
    assert digests["model.weights.h5"] == (hashlib.sha256(data).hexdigest(), len(data))
    with ArchiveReader(target) as reader:  # local header and data offset agree
        assert reader.sha256("model.weights.h5") == digests["model.weights.h5"][0]
        with h5py.File(reader.window("model.weights.h5"), "r") as h5:
            for name, array in arrays.items():
                np.testing.assert_array_equal(h5[name][()], array)
    assert _leftovers(tmp_path) == []


def test_members_cannot_be_added_while_one_is_written_in_place(tmp_path: Path) -> None:
    writer = AtomicArchiveWriter(tmp_path / "model.keras")
    member = writer.zipfile.open_in_place("model.weights.h5")
    member.write(b"partial")
    with pytest.raises(ValueError, match="open writing handle"):
        writer.zipfile.writestr("other.json", "{}")
    writer.abort()
    assert not (tmp_path / "model.keras").exists()
    assert _leftovers(tmp_path) == []


def test_abort_after_finish_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_bytes(b"old contents")
    writer = AtomicArchiveWriter(target)
    _write_h5_in_place(writer, {"w": np.arange(10.0)})
    writer.finish()  # the fsync is in flight; abort waits for it and cleans up
    writer.abort()
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_truncate_shrinks_the_member(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    writer = AtomicArchiveWriter(target)
    member = writer.zipfile.open_in_place("blob.bin")
    member.write(b"x" * 1000)
    member.seek(0)
    member.write(b"abc")
    member.truncate(3)
    member.finish()
    writer.finish()
    writer.commit()
    with zipfile.ZipFile(target) as zf:
        assert zf.read("blob.bin") == b"abc"
        assert zf.testzip() is None
    assert target.stat().st_size < 1000


def test_read_range_reads_every_byte_in_reused_chunks(tmp_path: Path) -> None:
    from keras_safe._format.reader import read_range

    data = os.urandom(10_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [bytes(chunk) for chunk in read_range(fd, 100, 9_000, chunk=4096)]
        assert b"".join(chunks) == data[100:9_100]
        assert [len(c) for c in chunks] == [4096, 4096, 808]
        with pytest.raises(EOFError, match="1000 of 2000 bytes are missing"):
            list(read_range(fd, 9_000, 2_000))
    finally:
        os.close(fd)


@pytest.mark.slow
def test_a_saved_model_loads_with_plain_keras_in_a_fresh_process(tmp_path: Path) -> None:
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(16)(inputs)))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).standard_normal((4, 8)).astype("float32")
    model.fit(x, model(x), verbose=0)
    keras_safe.save(model, tmp_path / "m.keras", roundtrip=False)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(model(x)))
    run_python(
        """
        import sys, numpy as np, keras
        folder = sys.argv[1]
        model = keras.models.load_model(folder + "/m.keras")
        assert model.optimizer.iterations.numpy() == 1
        out = keras.ops.convert_to_numpy(model(np.load(folder + "/x.npy")))
        np.testing.assert_array_equal(out, np.load(folder + "/y.npy"))
        """,
        str(tmp_path),
    )


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open descriptors on Linux")
def test_commit_releases_the_replaced_file(tmp_path: Path) -> None:
    # The replaced file's blocks are freed as its last descriptor closes, on
    # another thread: the new file is in place at once, nothing stays open.
    target = tmp_path / "model.keras"
    target.write_bytes(b"old" * 1000)
    before = len(os.listdir("/proc/self/fd"))
    writer = AtomicArchiveWriter(target)
    writer.zipfile.writestr("config.json", "{}")
    writer.finish()
    writer.commit()
    with zipfile.ZipFile(target) as zf:
        assert zf.namelist() == ["config.json"]
    for thread in threading.enumerate():
        if thread.name == "keras-safe-release":
            thread.join(5)
    assert len(os.listdir("/proc/self/fd")) == before
    assert _leftovers(tmp_path) == []


def _resident_pages(path: Path) -> int:
    """How many of the file's pages are in the page cache (``mincore``, Linux)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    vector = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
    with open(path, "rb") as handle:
        # Mapping a file reads nothing: only mincore looks at the pages.
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, handle.fileno(), 0)
        assert address not in (None, ctypes.c_void_p(-1).value)
        try:
            assert libc.mincore(address, size, vector) == 0, ctypes.get_errno()
        finally:
            libc.munmap(address, size)
    return sum(v & 1 for v in vector)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore and fadvise: Linux")
def test_the_replaced_files_cached_pages_are_released_before_writing(tmp_path: Path) -> None:
    # The new file's pages reuse the memory of the old file's (as an in-place
    # overwrite would), and the two are never cached together. The old bytes
    # stay on disk, readable, until the commit; an abort keeps them.
    target = tmp_path / "model.keras"
    old = os.urandom(4 << 20)
    with open(target, "wb") as handle:
        handle.write(old)
        handle.flush()
        os.fsync(handle.fileno())  # clean pages: the kernel may drop them
    assert target.read_bytes() == old
    assert _resident_pages(target) > 0
    writer = AtomicArchiveWriter(target)
    assert _resident_pages(target) == 0
    assert target.read_bytes() == old
    writer.zipfile.writestr("config.json", "{}")
    writer.abort()
    assert target.read_bytes() == old
    # Without overwrite, the target is left alone entirely.
    assert _resident_pages(target) > 0
    AtomicArchiveWriter(target, overwrite=False).abort()
    assert _resident_pages(target) > 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_named_pipe_at_the_target_is_replaced_without_waiting_for_a_writer(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model.keras"
    os.mkfifo(target)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    outcome: list[object] = []

    def save() -> None:
        try:
            outcome.append(keras_safe.save(model, target))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    thread = threading.Thread(target=save, daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():  # opened the pipe for reading and waits for a writer: free it
        os.close(os.open(target, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail("keras_safe.save waited for a writer on the named pipe it replaces")
    assert len(outcome) == 1 and isinstance(outcome[0], keras_safe.Manifest), outcome
    assert target.is_file()
    loaded = keras_safe.load(target)
    for a, b in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
