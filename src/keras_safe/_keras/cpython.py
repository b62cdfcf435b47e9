"""The undocumented parts of CPython's ``zipfile`` and ``importlib.metadata`` keras_safe relies on.

Like Keras' private API in the rest of this package, each use is wrapped
here with the reason, so a Python release that changes one breaks this
module (covered by the archive tests) instead of the whole library:

- the file an open archive reads and writes (``ZipFile.fp``): the weights
  member is written in place, straight into it;
- the byte count and CRC a member's write handle keeps (``_ZipWriteFile``),
  for bytes written to the file around the handle;
- an archive abandoned without its central directory (``fp = None``);
- where the central directory starts (``ZipFile.start_dir``);
- the top-level names ``importlib.metadata.packages_distributions`` infers
  from a distribution's files when it has no ``top_level.txt``
  (``_top_level_inferred``; the rule differs between Python releases).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
import zipfile
from typing import IO, Any

__all__ = [
    "inferred_top_level_names",
    "zip_abandon",
    "zip_central_directory_offset",
    "zip_file_of",
    "zip_written_around",
]


def zip_file_of(archive: zipfile.ZipFile) -> IO[bytes]:
    """The file ``archive`` reads and writes (``ZipFile.fp``)."""
    fp = archive.fp
    if fp is None:
        raise ValueError("the zip archive is closed")
    return fp


def zip_written_around(handle: IO[bytes], size: int, crc: int) -> None:
    """Tell a member's write handle that ``size`` bytes with CRC-32 ``crc`` were written.

    ``ZipFile.open(name, "w")`` returns a handle that counts what goes
    through its ``write()`` (``_file_size``, ``_compress_size``, ``_crc``;
    the same fields in CPython 3.10 to 3.13) and records the counts in the
    archive when it closes. Bytes written straight into the archive's file
    at the member's place went around it; call this before closing it.
    """
    writer: Any = handle
    writer._file_size = writer._compress_size = size
    writer._crc = crc


def zip_abandon(archive: zipfile.ZipFile) -> None:
    """Make ``archive.close()`` write nothing more (no central directory).

    ``ZipFile.close`` returns at once when ``fp`` is None; the caller closes
    and removes the file itself.
    """
    archive.fp = None


def zip_central_directory_offset(archive: zipfile.ZipFile) -> int:
    """Where the central directory of an archive opened for reading starts (``start_dir``)."""
    return int(archive.start_dir)


def inferred_top_level_names(dist: importlib.metadata.Distribution) -> set[str]:
    """The top-level names ``packages_distributions`` reads from ``dist``'s files.

    Only for a distribution without ``top_level.txt``. Python 3.10 reads no
    files (no names); 3.11 reads the ``.py`` files; later releases read
    every file. The running Python's own rule is used, so the answer is the
    one its ``packages_distributions`` gives; a release without the private
    helper gets the latest rule.
    """
    if sys.version_info < (3, 11):
        return set()
    infer = getattr(importlib.metadata, "_top_level_inferred", None)
    if infer is not None:
        return {name for name in infer(dist) if isinstance(name, str)}
    names: set[str] = set()
    for file in dist.files or ():
        name = file.parts[0] if len(file.parts) > 1 else inspect.getmodulename(str(file))
        name = name or str(file)
        if "." not in name:
            names.add(name)
    return names
