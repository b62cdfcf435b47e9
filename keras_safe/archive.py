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
import struct
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keras_safe.errors import IntegrityError, UnsafeModelError

__all__ = [
    "ASSETS_DIR",
    "CONFIG",
    "METADATA",
    "WEIGHTS",
    "ArchiveLimits",
    "ArchiveReader",
    "MemberWindow",
    "read_range",
]

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
WEIGHTS_NPZ = "model.weights.npz"
ASSETS_DIR = "assets/"

_CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_ZIP_MAGIC = b"PK\x03\x04"


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
        # Straight into the caller's buffer (h5py passes the array being
        # loaded): no intermediate bytes object per read.
        got = _pread_into(self._fd, view[:want], self._start + self._pos)
        self._pos += got
        return got

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
            return hashlib.sha256(self.read(name, self.limits.max_member_bytes)).hexdigest()
        sha = hashlib.sha256()
        try:
            for chunk in read_range(self._fd, self._data_offset(info), info.file_size):
                sha.update(chunk)
                if progress is not None:
                    progress(len(chunk))
        except EOFError as exc:
            raise IntegrityError(
                f"Member {name!r} of {self.path} is truncated: {exc}"
            ) from None
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
        return int(offset)


def read_range(fd: int, start: int, size: int, chunk: int = _CHUNK) -> Iterator[memoryview]:
    """The bytes ``[start, start + size)`` of a file, in chunks read with ``pread``.

    Each chunk is a view of one reused buffer, valid until the next one is
    read: hashing a multi-gigabyte member allocates no memory per chunk (fresh
    allocations would page-fault on every chunk). Raises ``EOFError`` if the
    file ends early.
    """
    buffer = memoryview(bytearray(min(size, chunk) or 1))
    end = start + size
    while start < end:
        want = buffer[: min(len(buffer), end - start)]
        got = _pread_into(fd, want, start)
        if got <= 0:
            raise EOFError(f"{end - start} of {size} bytes are missing")
        yield want[:got]
        start += got


def _pread_into(fd: int, buffer: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    data = os.pread(fd, len(buffer), offset)  # platforms without preadv (macOS < 11)
    buffer[: len(data)] = data
    return len(data)


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
