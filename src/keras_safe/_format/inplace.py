"""An archive member written with random access, straight into the archive file.

h5py needs a seekable file to build the weights file. Keras gives it an
``io.BytesIO`` and copies that into the zip afterwards: a second full copy
of the weights in memory, and every byte written twice. keras_safe hands
h5py the member's place in the archive file instead (:class:`InPlaceMember`),
then digests the member in one read and closes it as zipfile would.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from keras_safe import _keras
from keras_safe._format.reader import MemberWindow, read_range
from keras_safe.errors import IntegrityError

__all__ = ["InPlaceMember", "Sync"]

_DIGEST_CHUNK = 4 << 20
_WRITEBACK_EVERY = 32 << 20


class InPlaceMember(MemberWindow):
    """A member of the archive as a seekable, writable file (``os.pwrite`` at its offset).

    CRC-32 and SHA-256 can only be computed once h5py has finished (it
    rewrites its superblock and metadata last), so :meth:`finish` reads the
    member back once, both digests on two cores while the disk writes it,
    and then writes the local header as zipfile itself would.
    """

    def __init__(
        self, archive: zipfile.ZipFile, name: str, digests: dict[str, tuple[str, int]]
    ) -> None:
        self._archive, self._digests = archive, digests
        info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
        info.compress_type = zipfile.ZIP_STORED
        # zipfile writes the local header (size unknown yet, so zip64) and
        # locks the archive against other writes until the handle closes.
        self._handle = archive.open(info, "w", force_zip64=True)
        fp = _keras.zip_file_of(archive)
        fp.flush()
        super().__init__(fp.fileno(), fp.tell(), 0, name)
        self._written_back = 0  # bytes of the member whose writeback was started

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self._start + self._pos + done)
        self._pos += done
        self._size = max(self._size, self._pos)
        if _start_writeback is not None and self._size - self._written_back >= _WRITEBACK_EVERY:
            # Let the disk work while Keras converts the next variables: at the
            # fsync the file then has little left to write (h5py rewrites its
            # metadata at the end; those few pages are flushed then).
            _start_writeback(self._fd, self._start + self._written_back, self._start + self._size)
            self._written_back = self._size
        return done

    def truncate(self, size: int | None = None) -> int:
        self._size = self._pos if size is None else size
        os.ftruncate(self._fd, self._start + self._size)  # nothing follows the member yet
        return self._size

    def finish(self) -> None:
        """Digest the member and close it in the archive, as zipfile would."""
        # The disk writes the member while it is read back and hashed (the
        # final fsync of the archive then finds little left to do).
        sync = Sync(self._fd, data_only=True)
        try:
            sha, crc = _digest_range(self._fd, self._start, self._size)
        finally:
            sync.wait(check=False)  # the archive's own fsync reports failures
        # zipfile's write handle counts what went through its write(); these
        # bytes went around it, so give it the count and CRC before it closes
        # (checked below).
        _keras.zip_written_around(self._handle, self._size, crc)
        _keras.zip_file_of(self._archive).seek(self._start + self._size)
        self._handle.close()
        info = self._archive.getinfo(self.name)
        if (info.CRC, info.file_size, info.compress_size) != (crc, self._size, self._size):
            raise IntegrityError(f"Archive member {self.name!r} was not recorded as written.")
        self._digests[self.name] = (sha, self._size)


def _writeback_starter() -> Callable[[int, int, int], None] | None:
    """Linux's ``sync_file_range(SYNC_FILE_RANGE_WRITE)``, or None elsewhere.

    It starts writing a range of a file's dirty pages to disk and returns at
    once (Python's ``os`` module does not offer it). Unlike a background
    ``fdatasync`` it commits no journal, so writers are not held up.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def start(fd: int, begin: int, end: int) -> None:
        function(fd, begin, end - begin, 2)  # SYNC_FILE_RANGE_WRITE; the fsync reports errors

    return start


_start_writeback = _writeback_starter()


class Sync(threading.Thread):
    """``fsync`` (or ``fdatasync``) of a file descriptor, started at once on another thread."""

    def __init__(self, fd: int, *, data_only: bool = False) -> None:
        super().__init__(daemon=True, name="keras-safe-fsync")
        self._fd = fd
        self._call = getattr(os, "fdatasync", os.fsync) if data_only else os.fsync
        self._error: OSError | None = None
        self.start()

    def run(self) -> None:
        try:
            self._call(self._fd)
        except OSError as exc:  # raised by wait() in the saving thread
            self._error = exc

    def wait(self, *, check: bool) -> None:
        self.join()
        if check and self._error is not None:
            raise self._error


def _digest_range(fd: int, start: int, size: int) -> tuple[str, int]:
    """SHA-256 and CRC-32 of a range of a file, in one read.

    Each chunk is read once; the SHA-256 runs on another core while this
    thread computes the CRC (both release the GIL on large buffers).
    """
    sha = hashlib.sha256()
    crc = 0
    with ThreadPoolExecutor(1, thread_name_prefix="keras-safe-sha256") as pool:
        for chunk in read_range(fd, start, size, _DIGEST_CHUNK):
            hashing = pool.submit(sha.update, chunk)
            crc = zlib.crc32(chunk, crc)
            hashing.result()  # the next read reuses the buffer
    return sha.hexdigest(), crc
