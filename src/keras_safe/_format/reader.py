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
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from keras_safe import _keras
from keras_safe._format.limits import ArchiveLimits
from keras_safe._format.ziplayout import (
    LocalHeader,
    check_layout,
    read_end_record,
    read_local_header,
)
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
ASSETS_DIR = "assets/"

_CHUNK = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_MODEL_MEMBERS = frozenset({CONFIG, METADATA, WEIGHTS})
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


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

    Everything here is decided from the zip's directories, before any member
    is read: the member count (from the end record, before ``zipfile`` parses
    the directory), names (only ``config.json``, ``metadata.json``,
    ``model.weights.h5`` and ``assets/...``; no absolute paths, ``..``,
    backslashes or duplicates), sizes and compression against ``limits``, and
    the byte layout (see :mod:`keras_safe._format.ziplayout`).

    Raises :class:`~keras_safe.IntegrityError` for files that are not zip
    archives or are truncated, and :class:`~keras_safe.UnsafeModelError` for
    members, sizes or layouts no model file has.
    """

    def __init__(self, path: Path, limits: ArchiveLimits | None = None) -> None:
        self.path = path
        self.limits = limits or ArchiveLimits()
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self._fd = self._file.fileno()
            self.file_size = os.fstat(self._fd).st_size
            if os.pread(self._fd, 4, 0) != _ZIP_MAGIC:
                raise IntegrityError(
                    f"{path} is not a .keras archive: it does not start with a zip header "
                    "(a .keras file is a zip). It may be truncated, another format, or have "
                    "bytes prepended."
                )
            end = read_end_record(self._fd, self.file_size, path)
            if end.entries > self.limits.max_members:
                raise UnsafeModelError(
                    f"{path} declares {end.entries} members; a model archive has a handful "
                    f"(limit {self.limits.max_members}, see ArchiveLimits.max_members)."
                )
            try:
                self._zip = zipfile.ZipFile(self._file)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
                raise IntegrityError(
                    f"{path} is not a readable zip archive ({exc}); the file is truncated or "
                    "corrupted. Re-download or re-save it."
                ) from exc
            self.members = self._check_members(infos)
            self._headers = {
                info.filename: read_local_header(self._fd, info, self.file_size, path)
                for info in infos
            }
            start_dir = _keras.zip_central_directory_offset(self._zip)
            check_layout(self._fd, infos, self._headers, start_dir, path)
        except BaseException:
            self._file.close()
            raise

    def _check_members(self, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        limits, path = self.limits, self.path
        if len(infos) > limits.max_members:
            raise UnsafeModelError(
                f"{path} has {len(infos)} members; a model archive has a handful "
                f"(limit {limits.max_members}, see ArchiveLimits.max_members)."
            )
        members: dict[str, zipfile.ZipInfo] = {}
        folded: set[str] = set()
        inflated = 0
        for info in infos:
            name = info.filename
            _check_member_name(path, info.orig_filename)  # zipfile cuts names at a NUL
            key = unicodedata.normalize("NFC", name).casefold()
            if name in members or key in folded:
                raise UnsafeModelError(
                    f"{path} holds member {name!r} twice; readers disagree on which copy "
                    "counts (Keras reads the last one), so the file is refused."
                )
            folded.add(key)
            if info.flag_bits & 0x1:
                raise UnsafeModelError(f"Member {name!r} of {path} is encrypted.")
            if info.compress_type not in _METHODS:
                raise UnsafeModelError(
                    f"Member {name!r} of {path} uses zip compression method "
                    f"{info.compress_type}; model archives are stored or deflated."
                )
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise UnsafeModelError(
                        f"Member {name!r} of {path} is stored uncompressed but declares "
                        f"{info.file_size} bytes for {info.compress_size} stored bytes."
                    )
            else:
                inflated += info.file_size
                _check_ratio(path, info, limits)
            members[name] = info
        budget = limits.inflated_budget(self.file_size)
        if inflated > budget:
            raise UnsafeModelError(
                f"The compressed members of {path} ({self.file_size} bytes) declare "
                f"{inflated} bytes once decompressed (limit {budget}: "
                f"ArchiveLimits.max_compression_ratio x the file size, at most "
                "ArchiveLimits.max_inflated_bytes). Refusing a likely decompression bomb."
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

    def size(self, name: str) -> int:
        """The uncompressed size of member ``name`` (checked against the limits)."""
        return int(self._info(name).file_size)

    def read(self, name: str, max_bytes: int | None = None) -> bytes:
        """The bytes of a (small) member, refusing more than ``max_bytes``.

        The default limit is ``ArchiveLimits.max_json_bytes``: this is how
        JSON members are read.
        """
        info = self._info(name)
        limit = self.limits.max_json_bytes if max_bytes is None else max_bytes
        if info.file_size > limit:
            raise UnsafeModelError(
                f"Member {name!r} of {self.path} is {info.file_size} bytes; the limit for it "
                f"is {limit} (ArchiveLimits.max_json_bytes for JSON members)."
            )
        try:
            with self._zip.open(info) as handle:
                data = handle.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise IntegrityError(f"Member {name!r} of {self.path} is damaged: {exc}") from exc
        if len(data) > limit:
            raise UnsafeModelError(f"Member {name!r} of {self.path} is larger than declared.")
        return data

    def read_all(self, name: str) -> bytes:
        """The bytes of any member (its size was checked when the archive was opened)."""
        return self.read(name, max(self.size(name), 1))

    def window(self, name: str) -> io.RawIOBase:
        """A seekable file over a member, without copying it into memory.

        Compressed members (not written by Keras or keras_safe, which store)
        are decompressed into memory; their size was bounded when the archive
        was opened.
        """
        info = self._info(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return io.BytesIO(self.read_all(name))  # type: ignore[return-value]
        return MemberWindow(self._fd, self._data_offset(info), info.file_size, name)

    def sha256(self, name: str, progress: Callable[[int], None] | None = None) -> str:
        """SHA-256 of a member's bytes, read straight from the file."""
        info = self._info(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return hashlib.sha256(self.read_all(name)).hexdigest()
        sha = hashlib.sha256()
        try:
            for chunk in read_range(self._fd, self._data_offset(info), info.file_size):
                sha.update(chunk)
                if progress is not None:
                    progress(len(chunk))
        except EOFError as exc:
            raise IntegrityError(f"Member {name!r} of {self.path} is truncated: {exc}") from None
        return sha.hexdigest()

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self.members[name]
        except KeyError:
            raise IntegrityError(
                f"{self.path} has no member {name!r} (it has {', '.join(self.members)})."
            ) from None

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        header: LocalHeader = self._headers[info.filename]
        return header.data_offset


def _check_ratio(path: Path, info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    if info.file_size > limits.max_inflated_bytes or (
        info.file_size > _CHUNK
        and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1)
    ):
        raise UnsafeModelError(
            f"Member {info.filename!r} of {path} expands from {info.compress_size} to "
            f"{info.file_size} bytes (limits: ArchiveLimits.max_compression_ratio "
            f"{limits.max_compression_ratio:g}, max_inflated_bytes {limits.max_inflated_bytes}):"
            " a decompression bomb."
        )


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
        or ".." in parts
        or (len(name) > 1 and name[1] == ":")
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    ):
        raise UnsafeModelError(
            f"{path} holds a member named {name!r}; member names must be relative paths "
            "without '..', backslashes, control characters or drive letters."
        )
    if name in _MODEL_MEMBERS:
        return
    if name.startswith(ASSETS_DIR) and all(part not in ("", ".") for part in parts[1:-1]):
        return
    raise UnsafeModelError(
        f"{path} holds an unexpected member {name!r}. A .keras archive holds config.json, "
        "metadata.json, model.weights.h5 and assets/...; anything else is refused (a second "
        "copy of a model file under another name, or data for another reader)."
    )
