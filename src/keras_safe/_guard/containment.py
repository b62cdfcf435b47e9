"""Guards around Keras for files that may be hostile.

* :func:`contained_failures`: whatever a damaged or hostile file makes
  ``zipfile``, h5py or Keras raise reaches the caller as a keras_safe error.
* :func:`variable_budget`: how much memory a rebuilt model's variables may
  take, given the size of the weights it will be loaded from (see
  ``_keras.variable_budget`` for how it is enforced inside Keras).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keras_safe.errors import IntegrityError, KerasSafeError, UnsafeModelError

__all__ = ["contained_failures", "first_lines", "too_large", "variable_budget"]


def variable_budget(weights_bytes: int | None) -> int:
    """Bytes of variables a model loaded from ``weights_bytes`` of weights may allocate."""
    # Optimizer slots (Adam: two per weight) are built from the compile config
    # and are in the file only once the model was trained: allow for them.
    return 4 * (weights_bytes or 0) + (64 << 20)


def too_large(path: Path, exceeded: list[str]) -> UnsafeModelError:
    """The error for a config that exceeded a budget while Keras rebuilt it."""
    if "max_build_seconds" in exceeded[0]:
        return UnsafeModelError(
            f"The config in {path} kept Keras rebuilding the model past the time limit "
            f"({exceeded[0]}); refusing it. Models Keras saves rebuild in seconds; for a "
            "file you trust, raise the limit: "
            "load(path, limits=keras_safe.ArchiveLimits(max_build_seconds=...))."
        )
    if "max_build_bytes" in exceeded[0]:
        return UnsafeModelError(
            f"The config in {path} asks Keras to allocate more memory besides variables than "
            f"ArchiveLimits.max_build_bytes allows ({exceeded[0]}); refusing to build it "
            "(a memory bomb)."
        )
    return UnsafeModelError(
        f"The config in {path} asks Keras to allocate more than its weights file could fill "
        f"({exceeded[0]}); refusing to build it (a memory bomb)."
    )


@contextmanager
def contained_failures(path: Path) -> Iterator[None]:
    """Whatever a damaged or hostile file makes zipfile, h5py or Keras raise becomes ours.

    keras_safe's own errors pass through; anything else (ValueError,
    KeyError, RecursionError, MemoryError ... from deep inside a reader)
    becomes an :class:`~keras_safe.IntegrityError` naming the file.
    """
    try:
        yield
    except KerasSafeError:
        raise
    except Exception as exc:
        raise IntegrityError(
            f"{path} could not be read: {type(exc).__name__}: {first_lines(exc)}\nThe file "
            "is damaged, or was made to break readers; keras_safe refused it."
        ) from exc


def first_lines(exc: BaseException, limit: int = 800) -> str:
    """An exception's text, cut to ``limit`` characters."""
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."
