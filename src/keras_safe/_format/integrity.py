"""Checking an archive against its manifest: pins, signature, member list, digests.

A file's manifest lists every member with its SHA-256 and size and a digest
over all of them; here those are compared with the bytes actually present.
Digests catch corruption and, with ``expected_digest``, pin a file;
authenticity needs a key (``verify_key``), because whoever edits a file can
rewrite its manifest too.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_safe._format.limits import ArchiveLimits
from keras_safe._format.manifest import Manifest, content_digest
from keras_safe._format.reader import METADATA, ArchiveReader
from keras_safe._guard.json_bounds import parse_json_object
from keras_safe.errors import IntegrityError, _UsageError

if TYPE_CHECKING:
    from keras_safe._ops.options import LoadOptions

__all__ = [
    "Hasher",
    "check_digest",
    "check_member_list",
    "check_pins",
    "parse_json",
    "read_manifest",
]


def parse_json(
    data: bytes, member: str, path: Path, limits: ArchiveLimits | None = None
) -> dict[str, Any]:
    """Parse a JSON member that must hold an object, refusing pathological input.

    Size, nesting depth and value count are checked before parsing (see
    :mod:`keras_safe._guard.json_bounds`).
    """
    return parse_json_object(data, f"{member} in {path}", limits or ArchiveLimits())


def read_manifest(reader: ArchiveReader) -> Manifest | None:
    """The archive's manifest, or None for a file without one."""
    if not reader.has(METADATA):
        return None
    metadata = parse_json(reader.read(METADATA), METADATA, reader.path, reader.limits)
    if "keras_safe" not in metadata:
        return None
    try:
        return Manifest.from_json(metadata["keras_safe"])
    except IntegrityError as exc:
        raise IntegrityError(f"The manifest in {reader.path} is damaged: {exc}") from None


def check_pins(manifest: Manifest | None, options: LoadOptions, path: Path) -> None:
    if options.expected_digest is not None:
        if manifest is None or manifest.digest is None:
            raise IntegrityError(
                f"{path} has no keras_safe manifest, so it has no digest to compare with "
                "expected_digest. Re-save it with keras_safe.save (or keras_safe.upgrade)."
            )
        if manifest.digest != options.expected_digest:
            raise IntegrityError(
                f"{path} has content digest {manifest.digest}, not the expected "
                f"{options.expected_digest}: it is a different file. Refusing to load it."
            )
    if options.verify_key is not None:
        if manifest is None or manifest.signature is None:
            raise IntegrityError(
                f"{path} is not signed, and verify_key requires a signature. Save it with "
                "keras_safe.save(..., signing_key=key)."
            )
        try:
            matches = manifest.signature_matches(options.verify_key)
        except TypeError as exc:
            raise _UsageError(str(exc)) from None
        if not matches:
            raise IntegrityError(
                f"The signature of {path} does not match verify_key: the file was changed "
                "after signing, or signed with another key. Refusing to load it."
            )


def check_member_list(manifest: Manifest, reader: ArchiveReader) -> None:
    present = {name for name in reader.members if name != METADATA}
    listed = set(manifest.members)
    for name in sorted(present - listed):
        raise IntegrityError(
            f"Member {name!r} of {reader.path} is not in its manifest: it was added after "
            "saving. Refusing to load the file."
        )
    for name in sorted(listed - present):
        raise IntegrityError(
            f"Member {name!r} listed in the manifest of {reader.path} is missing: the file "
            "is truncated or was edited."
        )
    for name in sorted(listed):
        if reader.members[name].file_size != manifest.members[name].size:
            raise IntegrityError(
                f"Member {name!r} of {reader.path} is {reader.members[name].file_size} bytes; "
                f"the manifest says {manifest.members[name].size}. The file is damaged."
            )
    if content_digest(manifest.members) != manifest.digest:
        raise IntegrityError(
            f"The manifest of {reader.path} does not match its own member digests: it was "
            "edited. Refusing to load the file."
        )


def check_digest(reader: ArchiveReader, manifest: Manifest, name: str, actual: str) -> None:
    expected = manifest.members[name].sha256
    if actual != expected:
        raise IntegrityError(
            f"Member {name!r} of {reader.path} has SHA-256 {actual}, but the manifest "
            f"records {expected}: the file is corrupted or was tampered with. Re-download or "
            "re-save it."
        )


class Hasher(threading.Thread):
    """Hash members on another core while Keras builds the model."""

    def __init__(self, reader: ArchiveReader, names: list[str]) -> None:
        super().__init__(daemon=True)
        self._reader, self._names = reader, names
        self.digests: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for name in self._names:
                self.digests[name] = self._reader.sha256(name)
        except BaseException as exc:  # re-raised by check() in the loading thread
            self.error = exc

    def check(self, manifest: Manifest) -> None:
        self.join()
        if self.error is not None:
            raise self.error
        for name, digest in self.digests.items():
            check_digest(self._reader, manifest, name, digest)
