"""Atomic archive writing: temporary file, digests while writing, fsync, replace.

The archive is written to a temporary file in the target's directory (so
``os.replace`` is atomic), each member's SHA-256 computed as it is written
and overlapped with zip's own CRC and the write, flushed to stable storage,
and only then moved over the target. Until then the target is untouched; on
failure the temporary file is removed, and one left by a killed process is
removed by the next save to the same directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import tempfile
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from keras_safe.archive import MemberWindow, read_range
from keras_safe.errors import IntegrityError, _FileExistsError

__all__ = ["AtomicArchiveWriter", "clean_stale_temporaries"]

_CHUNK = 1 << 20
_DIGEST_CHUNK = 4 << 20
_TEMP_RE = re.compile(r"^\.(?P<base>.+)\.keras-safe-(?P<host>[^.]+)-(?P<pid>\d+)-[0-9a-z_]+\.tmp$")
_STALE_AFTER = 24 * 3600.0


def _sha256_of(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class _HashThread(threading.Thread):
    """SHA-256 of a buffer on another core (hashlib releases the GIL)."""

    def __init__(self, data: bytes | memoryview) -> None:
        super().__init__(daemon=True)
        self._data = data
        self.digest = ""

    def run(self) -> None:
        self.digest = _sha256_of(self._data)


class InPlaceMember(MemberWindow):
    """A stored member being written with random access, straight into the archive.

    h5py needs a seekable file to build the weights file; Keras gives it an
    ``io.BytesIO`` and copies that into the zip afterwards, which holds a
    second full copy of the weights in memory and writes every byte twice.
    This window hands h5py the member's place in the archive file itself
    (``os.pwrite`` at the member's offset), so the bytes reach the page cache
    once, while Keras is still converting the next variables. CRC-32 and
    SHA-256 can only be computed once h5py has finished (it rewrites its
    superblock and metadata last), so :meth:`finish` reads the member back
    once, both digests on two cores, and then writes the local header as
    zipfile itself would.
    """

    def __init__(self, archive: _DigestingZipFile, name: str) -> None:
        self._archive = archive
        info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
        info.compress_type = zipfile.ZIP_STORED
        # zipfile writes the local header (size unknown yet, so zip64) and
        # locks the archive against other writes until the handle closes.
        self._handle = archive.open(info, "w", force_zip64=True)
        fp: Any = archive.fp
        fp.flush()
        super().__init__(fp.fileno(), fp.tell(), 0, name)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self._start + self._pos + done)
        self._pos += done
        self._size = max(self._size, self._pos)
        return done

    def truncate(self, size: int | None = None) -> int:
        self._size = self._pos if size is None else size
        os.ftruncate(self._fd, self._start + self._size)  # nothing follows the member yet
        return self._size

    def finish(self) -> None:
        """Digest the member and close it in the archive, as zipfile would."""
        # The disk writes the member while it is read back and hashed (the
        # final fsync of the archive then finds little left to do).
        sync = _Sync(self._fd, data_only=True)
        try:
            sha, crc = _digest_range(self._fd, self._start, self._size)
        finally:
            sync.wait(check=False)  # the archive's own fsync reports failures
        # zipfile's write handle counts what went through its write(); these
        # bytes went around it, so give it the count and CRC before it closes
        # (same fields in CPython 3.10 to 3.13; checked below).
        handle: Any = self._handle
        handle._file_size = handle._compress_size = self._size
        handle._crc = crc
        fp: Any = self._archive.fp
        fp.seek(self._start + self._size)
        handle.close()
        info = self._archive.getinfo(self.name)
        if (info.CRC, info.file_size, info.compress_size) != (crc, self._size, self._size):
            raise IntegrityError(f"Archive member {self.name!r} was not recorded as written.")
        self._archive.digests[self.name] = (sha, self._size)


class _Sync(threading.Thread):
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


class _DigestingZipFile(zipfile.ZipFile):
    """A ZipFile that records SHA-256 and size of every member it writes."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.digests: dict[str, tuple[str, int]] = {}

    def _claim(self, name: str) -> None:
        if name in self.digests:
            raise IntegrityError(f"Archive member {name!r} was written twice.")

    def open_in_place(self, name: str) -> InPlaceMember:
        """Start member ``name`` as a seekable file; call its ``finish()`` when done."""
        self._claim(name)
        return InPlaceMember(self, name)

    def writestr(  # type: ignore[override]
        self, zinfo_or_arcname: str | zipfile.ZipInfo, data: bytes | str, *args: Any, **kwargs: Any
    ) -> None:
        name = (
            zinfo_or_arcname.filename
            if isinstance(zinfo_or_arcname, zipfile.ZipInfo)
            else (zinfo_or_arcname)
        )
        self._claim(name)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        if len(payload) >= _CHUNK:
            hasher = _HashThread(memoryview(payload))
            hasher.start()
            super().writestr(zinfo_or_arcname, payload, *args, **kwargs)
            hasher.join()
            digest = hasher.digest
        else:
            super().writestr(zinfo_or_arcname, payload, *args, **kwargs)
            digest = _sha256_of(payload)
        self.digests[name] = (digest, len(payload))

    def write(  # type: ignore[override]
        self,
        filename: str | os.PathLike[str],
        arcname: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        name = arcname if arcname is not None else os.fspath(filename)
        if os.path.isdir(filename):
            super().write(filename, arcname, *args, **kwargs)
            return
        self._claim(name)
        sha, size = hashlib.sha256(), 0
        with open(filename, "rb") as source, self.open(name, "w", force_zip64=True) as target:
            while chunk := source.read(_CHUNK):
                sha.update(chunk)
                target.write(chunk)
                size += len(chunk)
        self.digests[name] = (sha.hexdigest(), size)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(directory: Path) -> list[Path]:
    """Remove temporary files left in ``directory`` by saves that were killed.

    Only files of this host whose process is gone (or that are older than a
    day) are touched; a save in progress keeps its file.
    """
    removed: list[Path] = []
    host = _host_tag()
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        match = _TEMP_RE.match(name)
        if match is None or match["host"] != host:
            continue
        candidate = directory / name
        try:
            age = now - candidate.stat().st_mtime
            if not _alive(int(match["pid"])) or age > _STALE_AFTER:
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


def _host_tag() -> str:
    return re.sub(r"[^0-9A-Za-z]", "", socket.gethostname())[:32] or "host"


class AtomicArchiveWriter:
    """Writes an archive next to ``target`` and moves it into place on commit.

    Use :attr:`zipfile` to write members, :meth:`finish` to close and fsync,
    then :meth:`commit` to replace the target (or :meth:`abort`). Until
    ``commit``, the file at ``target`` is untouched; after ``abort`` or a
    crash, no temporary file remains (a killed process's file is removed by
    the next save to the same directory).
    """

    def __init__(self, target: Path, *, overwrite: bool = True) -> None:
        self.target = target
        self.overwrite = overwrite
        directory = target.parent
        clean_stale_temporaries(directory)
        prefix = f".{target.name}.keras-safe-{_host_tag()}-{os.getpid()}-"
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
        self.temp_path = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self.zipfile = _DigestingZipFile(self._file)
        self._closed = False
        self._sync: _Sync | None = None

    @property
    def digests(self) -> dict[str, tuple[str, int]]:
        """``{member: (sha256, size)}`` of everything written so far."""
        return self.zipfile.digests

    def finish(self) -> None:
        """Close the zip and start flushing it to stable storage.

        The fsync runs on another thread (the disk works while ``save``
        verifies the file); :meth:`commit` waits for it.
        """
        self.zipfile.close()
        self._file.flush()
        self._sync = _Sync(self._file.fileno())
        self._closed = True

    def commit(self) -> None:
        """Atomically move the finished archive to the target path."""
        if not self._closed:
            self.finish()
        self._close_file(check=True)
        _apply_mode(self.temp_path, self.target)
        if self.overwrite:
            os.replace(self.temp_path, self.target)
        else:
            try:
                os.link(self.temp_path, self.target)  # fails atomically if it exists
            except FileExistsError:
                raise _FileExistsError(
                    f"{self.target} already exists and overwrite=False; nothing was written. "
                    "Pass overwrite=True to replace it, or choose another path."
                ) from None
            finally:
                self.temp_path.unlink(missing_ok=True)
        _fsync_directory(self.target.parent)

    def abort(self) -> None:
        """Discard the temporary file; the target stays as it was."""
        try:
            if not self._closed:
                self.zipfile.fp = None  # don't write a central directory on close
                self._closed = True
            self._close_file(check=False)
        finally:
            self.temp_path.unlink(missing_ok=True)

    def _close_file(self, *, check: bool) -> None:
        """Wait for the fsync started by :meth:`finish` (if any), then close."""
        try:
            if self._sync is not None:
                sync, self._sync = self._sync, None
                sync.wait(check=check)
        finally:
            self._file.close()


def _apply_mode(temp: Path, target: Path) -> None:
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temp, mode)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
