"""The ``.keras`` zip archive: atomic writing with digests, guarded reading.

Writing goes to a temporary file in the target's directory (so the final
``os.replace`` is atomic), is fsynced, and only then replaces the target;
nothing is left behind on failure. Every member's SHA-256 is computed while
it is written, overlapped with zip's own CRC and the write.

Reading opens the file once and works on that descriptor: members are
checked against the limits in :class:`ArchiveLimits` before anything reads
them, hashed straight from the file, and handed to h5py as windows over the
same descriptor (no extraction, no copy of the weights in memory). A file
replaced while it is being read is therefore read consistently: the
descriptor keeps the old inode.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import stat
import struct
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from keras_safe.errors import IntegrityError, UnsafeModelError, _FileExistsError

__all__ = [
    "ASSETS_DIR",
    "CONFIG",
    "METADATA",
    "WEIGHTS",
    "ArchiveLimits",
    "ArchiveReader",
    "AtomicArchiveWriter",
    "MemberWindow",
]

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
WEIGHTS_NPZ = "model.weights.npz"
ASSETS_DIR = "assets/"

_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_ZIP_MAGIC = b"PK\x03\x04"
_TEMP_RE = re.compile(r"^\.(?P<base>.+)\.keras-safe-(?P<host>[^.]+)-(?P<pid>\d+)-[0-9a-z_]+\.tmp$")
_STALE_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive may contain before any member is read.

    The defaults fit any model Keras can reasonably save and refuse archives
    built to exhaust memory or disk.
    """

    max_members: int = 10_000
    max_json_bytes: int = 64 << 20
    max_member_bytes: int = 256 << 30
    max_total_bytes: int = 512 << 30
    max_compression_ratio: float = 100.0


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

    def _claim(self, name: str) -> None:
        if name in self.digests:
            raise IntegrityError(f"Archive member {name!r} was written twice.")

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

    @property
    def digests(self) -> dict[str, tuple[str, int]]:
        """``{member: (sha256, size)}`` of everything written so far."""
        return self.zipfile.digests

    def finish(self) -> None:
        """Close the zip and flush it to stable storage."""
        self.zipfile.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._closed = True

    def commit(self) -> None:
        """Atomically move the finished archive to the target path."""
        if not self._closed:
            self.finish()
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
                self._file.close()
                self._closed = True
        finally:
            self.temp_path.unlink(missing_ok=True)


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


class MemberWindow(io.RawIOBase):
    """A read-only, seekable file over one stored member of an open archive.

    Reads use ``os.pread`` on the archive's descriptor, so windows are
    independent of each other and of the reader's file position.
    """

    def __init__(self, fd: int, start: int, size: int, name: str) -> None:
        super().__init__()
        self._fd, self._start, self._size, self._pos = fd, start, size, 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        data = os.pread(self._fd, want, self._start + self._pos)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def size(self) -> int:
        return self._size


class ArchiveReader:
    """Guarded, read-only access to a ``.keras`` archive.

    Raises :class:`~keras_safe.IntegrityError` for files that are not zip
    archives or are truncated, and :class:`~keras_safe.UnsafeModelError` for
    member names or sizes no model file has.
    """

    def __init__(self, path: Path, limits: ArchiveLimits | None = None) -> None:
        self.path = path
        self.limits = limits or ArchiveLimits()
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self._fd = self._file.fileno()
            self.file_size = os.fstat(self._fd).st_size
            if self._file.read(4) != _ZIP_MAGIC:
                raise IntegrityError(
                    f"{path} is not a .keras archive: it does not start with a zip header "
                    "(a .keras file is a zip). It may be truncated, another format, or have "
                    "bytes prepended."
                )
            self._file.seek(0)
            try:
                self._zip = zipfile.ZipFile(self._file)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
                raise IntegrityError(
                    f"{path} is not a readable zip archive ({exc}); the file is truncated or "
                    "corrupted. Re-download or re-save it."
                ) from exc
            self.members = self._check_members(infos)
            self._offsets: dict[str, int] = {}
        except BaseException:
            self._file.close()
            raise

    def _check_members(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        limits = self.limits
        if len(infos) > limits.max_members:
            raise UnsafeModelError(
                f"{self.path} has {len(infos)} members; a model archive has a handful "
                f"(limit {limits.max_members})."
            )
        members: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = info.filename
            _check_member_name(self.path, name)
            if name in members:
                raise UnsafeModelError(
                    f"{self.path} holds member {name!r} twice; readers disagree on which copy "
                    "counts, so the file is refused."
                )
            if info.file_size > limits.max_member_bytes:
                raise UnsafeModelError(
                    f"Member {name!r} of {self.path} declares {info.file_size} bytes "
                    f"(limit {limits.max_member_bytes})."
                )
            if (
                info.compress_type != zipfile.ZIP_STORED
                and info.file_size > _CHUNK
                and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1)
            ):
                raise UnsafeModelError(
                    f"Member {name!r} of {self.path} expands {info.file_size} / "
                    f"{info.compress_size} times (limit {limits.max_compression_ratio:g}): "
                    "a decompression bomb."
                )
            if info.flag_bits & 0x1:
                raise UnsafeModelError(f"Member {name!r} of {self.path} is encrypted.")
            total += info.file_size
            members[name] = info
        if total > limits.max_total_bytes:
            raise UnsafeModelError(
                f"{self.path} declares {total} bytes in all (limit {limits.max_total_bytes})."
            )
        return members

    # -- access ---------------------------------------------------------------

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive and its file."""
        self._zip.close()
        self._file.close()

    def has(self, name: str) -> bool:
        """Whether the archive holds member ``name``."""
        return name in self.members

    def read(self, name: str, max_bytes: int | None = None) -> bytes:
        """The bytes of a (small) member, refusing more than ``max_bytes``."""
        info = self._info(name)
        limit = self.limits.max_json_bytes if max_bytes is None else max_bytes
        if info.file_size > limit:
            raise UnsafeModelError(
                f"Member {name!r} of {self.path} is {info.file_size} bytes; the limit for it "
                f"is {limit}."
            )
        try:
            with self._zip.open(info) as handle:
                data = handle.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise IntegrityError(f"Member {name!r} of {self.path} is damaged: {exc}") from exc
        if len(data) > limit:
            raise UnsafeModelError(f"Member {name!r} of {self.path} is larger than declared.")
        return data

    def window(self, name: str) -> io.RawIOBase:
        """A seekable file over a member, without copying it into memory.

        Compressed members (not written by Keras or keras_safe, which store)
        are decompressed into memory after the ratio check.
        """
        info = self._info(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return io.BytesIO(self.read(name, self.limits.max_member_bytes))  # type: ignore[return-value]
        return MemberWindow(self._fd, self._data_offset(info), info.file_size, name)

    def sha256(self, name: str, progress: Callable[[int], None] | None = None) -> str:
        """SHA-256 of a member's bytes, read straight from the file."""
        info = self._info(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return _sha256_of(self.read(name, self.limits.max_member_bytes))
        start, remaining = self._data_offset(info), info.file_size
        sha = hashlib.sha256()
        while remaining:
            chunk = os.pread(self._fd, min(remaining, 8 * _CHUNK), start)
            if not chunk:
                raise IntegrityError(
                    f"Member {name!r} of {self.path} is truncated: {remaining} of "
                    f"{info.file_size} bytes are missing."
                )
            sha.update(chunk)
            start += len(chunk)
            remaining -= len(chunk)
            if progress is not None:
                progress(len(chunk))
        return sha.hexdigest()

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self.members[name]
        except KeyError:
            raise IntegrityError(
                f"{self.path} has no member {name!r} (it has {', '.join(self.members)})."
            ) from None

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        if info.filename in self._offsets:
            return self._offsets[info.filename]
        header = os.pread(self._fd, _LOCAL_HEADER.size, info.header_offset)
        if len(header) != _LOCAL_HEADER.size:
            raise IntegrityError(f"{self.path} is truncated inside member {info.filename!r}.")
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != _ZIP_MAGIC:
            raise IntegrityError(
                f"{self.path}: the local header of member {info.filename!r} is damaged."
            )
        name_length, extra_length = fields[-2], fields[-1]
        local_name = os.pread(self._fd, name_length, info.header_offset + _LOCAL_HEADER.size)
        if local_name.decode("utf-8", "replace") != info.filename and local_name != (
            info.orig_filename.encode("cp437", "replace")
        ):
            raise UnsafeModelError(
                f"{self.path}: member {info.filename!r} is named {local_name!r} in its local "
                "header; the two directories of the zip disagree."
            )
        offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if offset + info.file_size > self.file_size:
            raise IntegrityError(
                f"{self.path} is truncated: member {info.filename!r} runs past the end of the file."
            )
        self._offsets[info.filename] = offset
        return offset


def _check_member_name(path: Path, name: str) -> None:
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or ".." in parts
        or (len(name) > 1 and name[1] == ":")
    ):
        raise UnsafeModelError(
            f"{path} holds a member named {name!r}; member names must be relative paths "
            "without '..', backslashes or drive letters."
        )
