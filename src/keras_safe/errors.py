"""The keras_safe exception hierarchy.

Every error keras_safe raises derives from :class:`KerasSafeError`, so
``except keras_safe.KerasSafeError`` catches all of them. Errors that describe
bad input also derive from the built-in exception Keras itself would raise in
the same situation (``TypeError`` or ``ValueError``), so code written against
Keras' own errors keeps working.

Every message says what was found, where (class, argument, archive member or
path inside the model), and what to do about it; those explained at length
in the documentation's "Errors and troubleshooting" page end with a link to
the explanation (``See https://.../errors/#IntegrityError``).
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "CompatibilityError",
    "CompatibilityWarning",
    "IntegrityError",
    "KerasSafeError",
    "MissingObjectsError",
    "RegistrationError",
    "SerializationError",
    "TrainingStateWarning",
    "UnsafeModelError",
    "VerificationError",
]


class KerasSafeError(Exception):
    """Base class of every error raised by keras_safe."""


class SerializationError(KerasSafeError, TypeError):
    """A value cannot be saved so that it loads back unchanged.

    Raised when a :class:`~keras_safe.Serializable` object is constructed with
    an argument that cannot round-trip, and by :func:`keras_safe.save` for
    models it knows will not load back (listing every problem at once).
    """


class RegistrationError(KerasSafeError, ValueError):
    """A registration conflicts with an existing one, or cannot be made."""


class VerificationError(KerasSafeError, ValueError):
    """The model rebuilt from the written file differs from the one saved."""


class IntegrityError(KerasSafeError, ValueError):
    """A file's bytes do not match its manifest: corruption or tampering."""


class UnsafeModelError(KerasSafeError, ValueError):
    """A file refers to something that is not allowed to run on load."""


class MissingObjectsError(KerasSafeError, ValueError):
    """A file needs custom objects that are not available in this process.

    ``missing`` holds the key of every object that could not be found.
    """

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


class CompatibilityError(KerasSafeError, ValueError):
    """A saved object no longer fits the code or environment loading it."""


class CompatibilityWarning(UserWarning):
    """The environment or an object's code changed since the file was saved."""


class TrainingStateWarning(UserWarning):
    """Part of a model's training state is not saved, or not restored on load.

    Raised by :func:`keras_safe.save` when it leaves out optimizer state that
    loading could not put back, and by :func:`keras_safe.load` when a file's
    optimizer state or training configuration does not go into the loaded
    model. The message names what was left out and why.
    """


class _UsageError(KerasSafeError, ValueError):
    """An argument of a keras_safe call is invalid (bad path, unknown option)."""


class _FileExistsError(KerasSafeError, FileExistsError):
    """The target exists and ``overwrite=False``."""


class _WriteError(KerasSafeError, OSError):
    """Writing the file failed (disk full, permissions); the old file is unchanged."""


# -- links to the documentation ------------------------------------------------------

_DOCS_URL = "https://keras-safe.github.io/keras-safe/"
"""Where the documentation is published (pyproject's Documentation URL, mkdocs' ``site_url``)."""

_Anchor = Literal[
    "SerializationError",
    "RegistrationError",
    "VerificationError",
    "IntegrityError",
    "UnsafeModelError",
    "MissingObjectsError",
    "CompatibilityError",
    "CompatibilityWarning",
    "TrainingStateWarning",
]
"""The sections of docs/errors.md (``{ #Name }``) a message may link to."""


def _see_docs(anchor: _Anchor) -> str:
    """``See <docs>/errors/#<anchor>``: the last line of a message explained in the docs."""
    return f"See {_DOCS_URL}errors/#{anchor}"
