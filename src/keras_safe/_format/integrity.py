"""Checking an archive against its manifest: pins, signature, member list, digests.

A file's manifest lists every member with its SHA-256 and size and a digest
over all of them; here those are compared with the bytes actually present.
Digests catch corruption and, with ``expected_digest``, pin a file;
authenticity needs a key (``signing_key``), because whoever edits a file can
rewrite its manifest too.

Every member is hashed once, straight from the file (:func:`check_digests`,
on another core while Keras builds the model: :class:`Hasher`); the command
line draws a progress bar over that same pass (:func:`hashing_progress`).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_safe._format.limits import ArchiveLimits
from keras_safe._format.manifest import Manifest, content_digest
from keras_safe._format.reader import METADATA, ArchiveReader
from keras_safe._guard.json_bounds import parse_json_object
from keras_safe.errors import IntegrityError, _see_docs, _UsageError

if TYPE_CHECKING:
    from keras_safe._ops.options import LoadOptions

__all__ = [
    "Hasher",
    "Progress",
    "check_digest",
    "check_digests",
    "check_member_list",
    "check_pins",
    "hashing_progress",
    "parse_json",
    "read_manifest",
    "recorded_members",
]

Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(title, total_bytes)`` starts a phase and returns ``advance(n_bytes)``."""

_HASHING_PROGRESS: contextvars.ContextVar[tuple[Path, Progress] | None] = contextvars.ContextVar(
    "keras_safe_hashing_progress", default=None
)


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
                f"{options.expected_digest}: it is a different file. Refusing to load it.\n"
                + _see_docs("IntegrityError")
            )
    if options.signing_key is not None:
        if manifest is None or manifest.signature is None:
            raise IntegrityError(
                f"{path} is not signed, and signing_key requires a signature. Save it with "
                f"keras_safe.save(..., signing_key=key).\n{_see_docs('IntegrityError')}"
            )
        try:
            matches = manifest.signature_matches(options.signing_key)
        except TypeError as exc:
            raise _UsageError(str(exc)) from None
        if not matches:
            raise IntegrityError(
                f"The signature of {path} does not match signing_key: the file was changed "
                "after signing, or signed with another key. Refusing to load it.\n"
                + _see_docs("IntegrityError")
            )


def recorded_members(reader: ArchiveReader) -> list[str]:
    """The members a manifest records (digest and size): all but metadata.json, which holds it."""
    return [name for name in reader.members if name != METADATA]


def check_member_list(manifest: Manifest, reader: ArchiveReader) -> None:
    present = set(recorded_members(reader))
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
            f"edited. Refusing to load the file.\n{_see_docs('IntegrityError')}"
        )


def check_digest(reader: ArchiveReader, manifest: Manifest, name: str, actual: str) -> None:
    expected = manifest.members[name].sha256
    if actual != expected:
        raise IntegrityError(
            f"Member {name!r} of {reader.path} has SHA-256 {actual}, but the manifest "
            f"records {expected}: the file is corrupted or was tampered with. Re-download or "
            f"re-save it.\n{_see_docs('IntegrityError')}"
        )


def check_digests(
    reader: ArchiveReader,
    manifest: Manifest | None,
    names: Iterable[str],
    advance: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """Hash members straight from the file; with a manifest, each must match its record.

    Returns ``{name: sha256}``; raises :class:`~keras_safe.IntegrityError` at
    the first member whose digest differs from the manifest's. ``advance``
    is told the bytes as they are read.
    """
    digests: dict[str, str] = {}
    for name in names:
        digest = reader.sha256(name, advance)
        if manifest is not None:
            check_digest(reader, manifest, name, digest)
        digests[name] = digest
    return digests


@contextmanager
def hashing_progress(path: Path, progress: Progress) -> Iterator[None]:
    """Report the bytes :class:`Hasher` reads from ``path`` to ``progress``, in this context.

    The command line's ``verify`` and ``upgrade`` call the library, which
    checks every digest once; the progress bar follows that pass.
    """
    token = _HASHING_PROGRESS.set((path, progress))
    try:
        yield
    finally:
        _HASHING_PROGRESS.reset(token)


class Hasher(threading.Thread):
    """Check members' digests on another core while Keras builds the model."""

    def __init__(self, reader: ArchiveReader, manifest: Manifest, names: list[str]) -> None:
        super().__init__(daemon=True)
        self._reader, self._manifest, self._names = reader, manifest, names
        self._advance: Callable[[int], None] | None = None
        reporting = _HASHING_PROGRESS.get()  # read here, in the loading thread
        if reporting is not None and reporting[0] == reader.path:
            total = sum(reader.size(name) for name in names)
            self._advance = reporting[1]("checking digests", total)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            check_digests(self._reader, self._manifest, self._names, self._advance)
        except BaseException as exc:  # re-raised by check() in the loading thread
            self.error = exc

    def check(self) -> None:
        """Wait for the digests; raise what checking them raised."""
        self.join()
        if self.error is not None:
            raise self.error
