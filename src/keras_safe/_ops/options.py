"""The arguments of ``load``, ``inspect`` and ``verify``: their types, validated before any read.

Importing this module does not import Keras: the command line offers
:data:`ON_MISMATCH` in its help.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from typing_extensions import TypedDict

from keras_safe._format.limits import ArchiveLimits, resolve_limits
from keras_safe.errors import _UsageError

__all__ = [
    "ON_MISMATCH",
    "LoadKwargs",
    "LoadOptions",
    "OnMismatch",
    "OnOptimizerMismatch",
    "SaveKwargs",
    "as_path",
    "existing_path",
    "renamed_keywords",
    "sniff",
]

OnMismatch = Literal["warn", "error", "ignore"]
ON_MISMATCH: tuple[str, ...] = get_args(OnMismatch)
"""What ``on_mismatch`` may say about changes since saving: report, fail, or accept."""

OnOptimizerMismatch = Literal["error", "warn"]
ON_OPTIMIZER_MISMATCH: tuple[str, ...] = get_args(OnOptimizerMismatch)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class LoadKwargs(TypedDict, total=False):
    """The keyword arguments of :func:`keras_safe.load`.

    :func:`keras_safe.verify`, :func:`keras_safe.upgrade` and
    :func:`keras_safe.load_latest` take them too (``**load_kwargs``), so a
    type checker and an editor know each name and type there as well.
    """

    custom_objects: Mapping[str, Any] | None
    compile: bool
    allow_imports: tuple[str, ...] | list[str] | str
    on_mismatch: OnMismatch
    expected_digest: str | None
    signing_key: bytes | None
    limits: ArchiveLimits | None
    on_optimizer_mismatch: OnOptimizerMismatch
    verify_key: bytes | None
    """Deprecated: the former name of ``signing_key``, same meaning."""


class SaveKwargs(TypedDict, total=False):
    """The keyword arguments of :func:`keras_safe.save` that ``SafeCheckpoint`` passes on."""

    sample_input: Any
    signing_key: bytes | None
    include_optimizer: bool | None


@dataclass(frozen=True)
class LoadOptions:
    """The validated keyword arguments of :func:`load`."""

    custom_objects: Mapping[str, Any]
    compile: bool
    allow_imports: tuple[str, ...]
    on_mismatch: str
    expected_digest: str | None
    signing_key: bytes | None
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    on_optimizer_mismatch: str = "error"

    @classmethod
    def make(
        cls,
        custom_objects: Mapping[str, Any] | None = None,
        compile: bool = True,
        allow_imports: Any = (),
        on_mismatch: str = "warn",
        expected_digest: str | None = None,
        signing_key: bytes | None = None,
        limits: ArchiveLimits | None = None,
        on_optimizer_mismatch: str = "error",
    ) -> LoadOptions:
        if on_optimizer_mismatch not in ON_OPTIMIZER_MISMATCH:
            raise _UsageError(
                f"on_optimizer_mismatch must be 'error' or 'warn', got {on_optimizer_mismatch!r}."
            )
        if on_mismatch not in ON_MISMATCH:
            raise _UsageError(
                f"on_mismatch must be one of {', '.join(map(repr, ON_MISMATCH))}, "
                f"got {on_mismatch!r}."
            )
        objects = dict(custom_objects or {})
        if not all(isinstance(key, str) for key in objects):
            raise _UsageError("custom_objects keys must be strings (class names or keys).")
        digest = None
        if expected_digest is not None:
            digest = str(expected_digest).lower().removeprefix("sha256:")
            if not _HEX64.match(digest):
                raise _UsageError(
                    f"expected_digest must be 64 hex digits (a SHA-256), got {expected_digest!r}."
                )
        from keras_safe._guard.allowlist import normalize_prefixes  # imports Keras

        try:
            prefixes = normalize_prefixes(allow_imports)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        return cls(
            objects,
            bool(compile),
            prefixes,
            on_mismatch,
            digest,
            signing_key,
            resolve_limits(limits),
            on_optimizer_mismatch,
        )


_F = TypeVar("_F", bound=Callable[..., Any])


def renamed_keywords(function: str, **renamed: str) -> Callable[[_F], _F]:
    """Accept each deprecated keyword (``old="new"``) as its new name, for one release.

    Passing the old name warns (a :class:`DeprecationWarning` pointing at
    the caller's line) and behaves exactly as the new one; passing both is a
    usage error. ``function`` is the name the messages show (``"save"``).
    The wrapped function never sees the old names.
    """

    def decorate(func: _F) -> _F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renamed.items():
                if old in kwargs:
                    rename_keyword(kwargs, function, old, new)
            return func(*args, **kwargs)

        return cast(_F, wrapper)

    return decorate


def rename_keyword(
    kwargs: dict[str, Any], function: str, old: str, new: str, stacklevel: int = 3
) -> None:
    """Move ``kwargs[old]`` to ``kwargs[new]`` with a deprecation warning (see above).

    ``stacklevel`` counts from this function: 3 is the caller of its caller.
    """
    if new in kwargs:
        raise _UsageError(
            f"{function}() got both {new}= and {old}=; {old}= is the deprecated name of "
            f"{new}= (same meaning). Pass only {new}=."
        )
    warnings.warn(
        f"{function}({old}=...) is deprecated; use {function}({new}=...) — same meaning.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    value = kwargs.pop(old)
    if value is not None:  # None is each of these arguments' default
        kwargs[new] = value


def as_path(value: Any, argument: str = "filepath") -> Path:
    """``value`` as a Path; anything else is a usage error naming the argument."""
    try:
        return Path(os.fspath(value))
    except TypeError:
        raise _UsageError(
            f"{argument} must be a str or os.PathLike, got {type(value).__name__}."
        ) from None


def existing_path(filepath: Any) -> Path:
    """``filepath`` as a Path to an existing regular file."""
    path = as_path(filepath)
    if not path.exists():
        raise _UsageError(f"No such file: {path}")
    if not path.is_file():
        raise _UsageError(f"{path} is not a file (a .keras model is a single zip file).")
    return path


def sniff(path: Path) -> str:
    """``"zip"`` or ``"hdf5"`` by the file's first bytes, whatever its name."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    return "zip"  # ArchiveReader explains anything that is not a zip either
