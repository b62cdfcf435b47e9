"""The byte layout of a zip archive, checked so every reader sees the same file.

Zip readers disagree on archives with bytes before the first member, gaps
between members, trailing data, duplicate names or local headers that
contradict the central directory: Python's ``zipfile`` (and so Keras) skips
what others read, or reads what a scanner skipped. A model archive written
by Keras or keras_safe has none of that: its members follow each other from
offset 0, the central directory follows the last member, and the end record
closes the file. Anything else is refused before a member is read, so what
keras_safe checks is exactly what Keras loads.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from keras_safe.errors import IntegrityError, UnsafeModelError

__all__ = [
    "EndRecord",
    "LocalHeader",
    "check_layout",
    "count_central_entries",
    "read_end_record",
    "read_local_header",
]

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIG = b"PK\x03\x04"
_MAX_COMMENT = 0xFFFF
_DESCRIPTOR_SIZES = (12, 16, 20, 24)  # crc + sizes, with/without signature, zip64 or not
_USE_DESCRIPTOR = 0x08
_FFFF32 = 0xFFFFFFFF


@dataclass(frozen=True)
class EndRecord:
    """What the end-of-central-directory record declares."""

    entries: int
    cd_size: int
    cd_offset: int
    cd_end: int = -1
    """Where ``zipfile`` takes the central directory to end (it reads the
    ``cd_size`` bytes before it, whatever ``cd_offset`` says)."""


@dataclass(frozen=True)
class LocalHeader:
    """The fields of a member's local header that must agree with the central directory."""

    data_offset: int
    name: bytes
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int


def read_end_record(fd: int, file_size: int, path: Path) -> EndRecord:
    """The end record, read before ``zipfile`` parses the central directory.

    ``zipfile`` builds an object per central-directory entry before anyone can
    count them, so the declared count is checked first (a 100 MB file can
    declare two million entries).

    Raises:
        IntegrityError: no end record, or data after it.
    """
    tail_size = min(file_size, _EOCD.size + _MAX_COMMENT)
    tail = os.pread(fd, tail_size, file_size - tail_size)
    at = tail.rfind(_EOCD_SIG)
    if at < 0 or at + _EOCD.size > len(tail):
        raise IntegrityError(
            f"{path} is not a readable zip archive: it has no end-of-archive record, so it is "
            "truncated or not a .keras file. Re-download or re-save it."
        )
    fields = _EOCD.unpack_from(tail, at)
    comment_length = fields[-1]
    eocd_pos = file_size - tail_size + at
    if eocd_pos + _EOCD.size + comment_length != file_size:
        raise UnsafeModelError(
            f"{path} has {file_size - eocd_pos - _EOCD.size - comment_length} bytes after the "
            "end of its zip archive; zip readers disagree about such files, so it is refused."
        )
    entries, cd_size, cd_offset = fields[4], fields[5], fields[6]
    cd_end = eocd_pos
    # zipfile takes the zip64 records whenever their locator precedes the end
    # record, whatever the classic fields say: ``zipfile`` writes them for an
    # offset over 2 GB, with the true offset still in the classic field.
    has_locator = (
        eocd_pos >= _ZIP64_LOCATOR.size
        and os.pread(fd, len(_ZIP64_LOCATOR_SIG), eocd_pos - _ZIP64_LOCATOR.size)
        == _ZIP64_LOCATOR_SIG
    )
    if has_locator or _FFFF32 in (cd_size, cd_offset) or entries == 0xFFFF:
        entries, cd_size, cd_offset = _zip64_end(fd, eocd_pos, path)
        cd_end = eocd_pos - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    return EndRecord(entries, cd_size, cd_offset, cd_end)


_CENTRAL = struct.Struct("<4s6H3L5H2L")
_CENTRAL_SIG = b"PK\x01\x02"


def count_central_entries(fd: int, end: EndRecord, limit: int, path: Path) -> int:
    """Count the central directory's entries, stopping past ``limit``.

    ``zipfile`` parses entries until it has consumed the directory's declared
    size, whatever count the end record declares: a file can declare 4
    members and hold a million. Each entry's header is read on its own, so
    counting costs at most ``limit + 1`` small reads.

    Raises:
        UnsafeModelError: more than ``limit`` entries, or a count that
            disagrees with the end record.
    """
    stop = end.cd_end if end.cd_end >= 0 else end.cd_offset + end.cd_size
    at, count = stop - end.cd_size, 0
    while at < stop:
        header = os.pread(fd, _CENTRAL.size, at)
        if len(header) < _CENTRAL.size or not header.startswith(_CENTRAL_SIG):
            break  # zipfile reports the damage
        count += 1
        if count > limit:
            raise UnsafeModelError(
                f"{path}'s central directory holds more than {limit} entries "
                f"(ArchiveLimits.max_members); refusing it before reading them."
            )
        fields = _CENTRAL.unpack(header)
        at += _CENTRAL.size + fields[10] + fields[11] + fields[12]
    if count != end.entries:
        raise UnsafeModelError(
            f"{path}'s end record declares {end.entries} members but its central directory "
            f"holds {count}; zip readers disagree about such files, so it is refused."
        )
    return count


def _zip64_end(fd: int, eocd_pos: int, path: Path) -> tuple[int, int, int]:
    locator = os.pread(fd, _ZIP64_LOCATOR.size, eocd_pos - _ZIP64_LOCATOR.size)
    if len(locator) != _ZIP64_LOCATOR.size or not locator.startswith(_ZIP64_LOCATOR_SIG):
        raise IntegrityError(f"{path}: the zip64 end-of-archive locator is missing or damaged.")
    # zipfile reads the record right before the locator (no extensible data),
    # wherever the locator says it is: both must be the same place.
    record_at = eocd_pos - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    record = os.pread(fd, _ZIP64_EOCD.size, record_at) if record_at >= 0 else b""
    if len(record) != _ZIP64_EOCD.size or not record.startswith(_ZIP64_EOCD_SIG):
        raise IntegrityError(f"{path}: the zip64 end-of-archive record is missing or damaged.")
    if _ZIP64_LOCATOR.unpack(locator)[2] != record_at:
        raise UnsafeModelError(
            f"{path}'s zip64 end-of-archive locator points elsewhere than the record before "
            "it; zip readers disagree about such files, so it is refused."
        )
    # signature, record size, versions (2), disk numbers (2), entries on this
    # disk, entries in all, directory size, directory offset
    fields = _ZIP64_EOCD.unpack(record)
    return int(fields[7]), int(fields[8]), int(fields[9])


def read_local_header(fd: int, info: zipfile.ZipInfo, file_size: int, path: Path) -> LocalHeader:
    """A member's local header, checked against its central-directory entry."""
    raw = os.pread(fd, _LOCAL.size, info.header_offset)
    if len(raw) != _LOCAL.size:
        raise IntegrityError(f"{path} is truncated inside member {info.filename!r}.")
    sig, _, _, flags, method, _, _, crc, csize, usize, name_length, extra_length = _LOCAL.unpack(
        raw
    )
    if sig != _LOCAL_SIG:
        raise IntegrityError(f"{path}: the local header of member {info.filename!r} is damaged.")
    name = os.pread(fd, name_length, info.header_offset + _LOCAL.size)
    header = LocalHeader(
        data_offset=info.header_offset + _LOCAL.size + name_length + extra_length,
        name=name,
        flags=flags,
        method=method,
        crc=crc,
        compress_size=csize,
        file_size=usize,
    )
    _check_agreement(header, info, path)
    if header.data_offset + info.compress_size > file_size:
        raise IntegrityError(
            f"{path} is truncated: member {info.filename!r} runs past the end of the file."
        )
    return header


def _check_agreement(header: LocalHeader, info: zipfile.ZipInfo, path: Path) -> None:
    central_name = info.orig_filename
    if header.name.decode("utf-8", "replace") != central_name and header.name != (
        central_name.encode("cp437", "replace")
    ):
        raise UnsafeModelError(
            f"{path}: member {info.filename!r} is named {header.name!r} in its local header; "
            "the two directories of the zip disagree, so readers would see different files."
        )
    disagree = header.method != info.compress_type
    if not header.flags & _USE_DESCRIPTOR:
        disagree |= header.crc != info.CRC
        disagree |= header.compress_size not in (info.compress_size, _FFFF32)
        disagree |= header.file_size not in (info.file_size, _FFFF32)
    if disagree:
        raise UnsafeModelError(
            f"{path}: the local header of member {info.filename!r} contradicts the central "
            "directory (method, CRC or sizes); readers would see different contents."
        )


def check_layout(
    fd: int,
    infos: list[zipfile.ZipInfo],
    headers: dict[str, LocalHeader],
    start_dir: int,
    path: Path,
) -> None:
    """Members from offset 0, back to back, then the central directory: nothing hidden.

    Raises:
        UnsafeModelError: bytes before the first member (junk prepended),
            between members, or members that overlap.
    """
    position = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset != position:
            where = "before the first member" if position == 0 else f"before {info.filename!r}"
            gap = info.header_offset - position
            raise UnsafeModelError(
                f"{path} has {abs(gap)} unaccounted bytes {where} (junk prepended, hidden "
                "data or overlapping members); zip readers disagree about such files, so it "
                "is refused."
            )
        header = headers[info.filename]
        position = header.data_offset + info.compress_size
        if header.flags & _USE_DESCRIPTOR:
            position += _descriptor_size(fd, position, path, info)
    if position != start_dir:
        raise UnsafeModelError(
            f"{path} has {start_dir - position} unaccounted bytes between its last member and "
            "its central directory; zip readers disagree about such files, so it is refused."
        )


def _descriptor_size(fd: int, at: int, path: Path, info: zipfile.ZipInfo) -> int:
    # A data descriptor's length depends on an optional signature and on
    # zip64; the next thing in the file (a local header or the central
    # directory) tells which one was written.
    probe = os.pread(fd, max(_DESCRIPTOR_SIZES) + 4, at)
    for size in _DESCRIPTOR_SIZES:
        if probe[size : size + 4] in (_LOCAL_SIG, b"PK\x01\x02"):
            return size
    raise UnsafeModelError(f"{path}: the data descriptor of member {info.filename!r} is damaged.")
