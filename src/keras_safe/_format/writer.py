"""Atomic archive writing: temporary file, digests while writing, fsync, replace.

The archive is written to a temporary file in the target's directory (so
``os.replace`` is atomic), each member's SHA-256 computed as it is written
and overlapped with zip's own CRC and the write (the weights member is
written in place by h5py and digested in one read: see ``inplace``),
flushed to stable storage on another thread while the caller verifies the
file, and only then moved over the target (the replaced file's blocks are
freed on another thread). Until then the target's bytes are untouched (its
cached pages are released up front: see ``_release_cached_pages``); on
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
from pathlib import Path
from typing import IO, Any

from keras_safe import _keras
from keras_safe._format.inplace import InPlaceMember, Sync
from keras_safe.errors import IntegrityError, _FileExistsError

__all__ = ["AtomicArchiveWriter", "clean_stale_temporaries"]

_CHUNK = 1 << 20
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


class _DigestingZipFile(zipfile.ZipFile):
    """A ZipFile that records SHA-256 and size of every member it writes."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.digests: dict[str, tuple[str, int]] = {}
        # Members whose digest was computed by reading them back from the file
        # (written in place): their recorded digest is that of the bytes written.
        self.read_back: set[str] = set()

    def _claim(self, name: str) -> None:
        if name in self.digests:
            raise IntegrityError(f"Archive member {name!r} was written twice.")

    def open_in_place(self, name: str) -> InPlaceMember:
        """Start member ``name`` as a seekable file; call its ``finish()`` when done."""
        self._claim(name)
        self.read_back.add(name)
        return InPlaceMember(self, name, self.digests)

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
        if overwrite:
            _release_cached_pages(target)
        prefix = f".{target.name}.keras-safe-{_host_tag()}-{os.getpid()}-"
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
        self.temp_path = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self.zipfile = _DigestingZipFile(self._file)
        self._closed = False
        self._sync: Sync | None = None

    @property
    def digests(self) -> dict[str, tuple[str, int]]:
        """``{member: (sha256, size)}`` of everything written so far."""
        return self.zipfile.digests

    @property
    def read_back(self) -> frozenset[str]:
        """The members whose digest was computed from the bytes in the file (written in place)."""
        return frozenset(self.zipfile.read_back)

    def finish(self) -> None:
        """Close the zip and start flushing it to stable storage.

        The fsync runs on another thread (the disk works while ``save``
        verifies the file); :meth:`commit` waits for it.
        """
        self.zipfile.close()
        self._file.flush()
        self._sync = Sync(self._file.fileno())
        self._closed = True

    def commit(self) -> None:
        """Atomically move the finished archive to the target path."""
        if not self._closed:
            self.finish()
        self._close_file(check=True)
        _apply_mode(self.temp_path, self.target)
        if self.overwrite:
            replaced = _hold(self.target)
            os.replace(self.temp_path, self.target)
            if replaced is not None:
                _release_later(replaced)
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
                _keras.zip_abandon(self.zipfile)  # no central directory on close
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


def _release_cached_pages(path: Path) -> None:
    """Ask the kernel to drop the page cache of the file being replaced (not the file).

    Plain Keras overwrites its target in place, so the new bytes reuse the
    memory of the old file's pages at once. An atomic save writes a new file
    while the old one still exists: without this, a save of a 300 MB model
    would hold both in the page cache, and the new file's pages would come
    from memory that has been free a while, which some virtual machines have
    returned to their host and must fault back in (measured: up to 0.4 s of
    system time at 300 MB, varying from save to save). The old file's clean
    pages are freed here, just before the new ones are needed; its bytes on
    disk are untouched and still readable. Where ``posix_fadvise`` does not
    exist (Windows, macOS), nothing is done.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    # Non-blocking, so that a FIFO at the path cannot hang the save; not
    # through a symbolic link, whose target file stays where it is.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # no file yet, not readable, or a link: nothing to release
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass  # advice only
    finally:
        os.close(fd)


def _hold(path: Path) -> int | None:
    """A descriptor of the file at ``path`` (None if there is none), to release it later.

    Not on Windows, where a file open without delete sharing cannot be replaced.
    Non-blocking: a FIFO at the path (which the save replaces) has no writer.
    """
    if os.name == "nt":
        return None
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


def _release_later(fd: int) -> None:
    """Close ``fd`` on another thread.

    When the replaced file's last name is gone, the file system frees its
    blocks as its last descriptor closes: for a file of hundreds of MB, tens
    of milliseconds that the caller need not wait for (the new file is in
    place and durable already). A process that exits first closes it anyway.
    """
    threading.Thread(target=os.close, args=(fd,), daemon=True, name="keras-safe-release").start()


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
