"""Checkpoints during training: ``SafeCheckpoint`` and ``load_latest``.

``SafeCheckpoint`` is ``keras.callbacks.ModelCheckpoint`` (it subclasses
it: same arguments, same decisions about when to save and under which
name) writing keras_safe archives with :func:`keras_safe.save`, so each
checkpoint is written atomically, carries its manifest and digests, and
a process killed mid-save leaves the previous checkpoint intact.
:func:`load_latest` resumes from the newest checkpoint that passes every
check.

Under a multi-worker ``tf.distribute`` strategy every worker runs the
callback, because reading distributed variables may need all of them;
only the chief (``strategy.extended.should_checkpoint``) writes to
``filepath``, the others write to a temporary directory that is deleted
right away, as TensorFlow's multi-worker guide recommends.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import string
import tempfile
import warnings
from pathlib import Path
from typing import Any

from typing_extensions import Unpack

from keras_safe import _keras
from keras_safe._ops.load import load
from keras_safe._ops.options import LoadKwargs, SaveKwargs, as_path, renamed_keywords
from keras_safe._ops.save import save
from keras_safe.errors import KerasSafeError, _UsageError

__all__ = ["SafeCheckpoint", "checkpoint_destination", "load_latest"]

_SAVE_KWARGS = frozenset(SaveKwargs.__annotations__)


class SafeCheckpoint(_keras.CheckpointCallback):
    """A drop-in for ``keras.callbacks.ModelCheckpoint`` that writes keras_safe archives.

    Same argument names and meaning as ``ModelCheckpoint`` (``filepath`` may
    hold ``{epoch:02d}``, ``{val_loss:.3f}`` and any other logged value);
    every checkpoint is written by :func:`keras_safe.save`: atomically, with
    a manifest and digests, never half-written.

    Args:
        filepath: Where to save; must end in ``.keras``. Its directory is
            created if needed.
        monitor: The logged quantity ``save_best_only`` and ``mode`` look at.
        save_best_only: Save only when ``monitor`` improved.
        mode: ``"auto"``, ``"min"`` or ``"max"``: which way is better.
        save_freq: ``"epoch"``, or save every this many batches.
        keep: Keep only the newest ``keep`` files matching ``filepath``'s
            pattern in its directory (None keeps all).
        roundtrip: Prove each checkpoint loads back before it replaces
            anything, as ``keras_safe.save(..., roundtrip=True)`` does (the
            default): the first checkpoint of a model is rebuilt from its
            bytes and compared; later ones reuse that proof while the model's
            config, classes and variables are unchanged, so they cost what
            ``roundtrip=False`` costs. ``False``: every check but the rebuild.
        verbose: 1 prints a line per save, as ``ModelCheckpoint`` does.
        initial_value_threshold: As ``ModelCheckpoint``: the best value to beat.
        **save_kwargs: Passed on to :func:`keras_safe.save`
            (``sample_input``, ``signing_key``, ``include_optimizer``).
        verify: Deprecated: the former name of ``roundtrip`` (same meaning;
            warns). Passing both is an error.

    Example:
        >>> checkpoint = keras_safe.callbacks.SafeCheckpoint(
        ...     "checkpoints/epoch-{epoch:02d}.keras", keep=3)
        >>> model.fit(x, y, epochs=10, callbacks=[checkpoint])
        >>> model = keras_safe.load_latest("checkpoints")
    """

    @renamed_keywords("SafeCheckpoint", verify="roundtrip")
    def __init__(
        self,
        filepath: str | os.PathLike[str],
        monitor: str = "val_loss",
        *,
        save_best_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        keep: int | None = None,
        roundtrip: bool = True,
        verbose: int = 0,
        initial_value_threshold: float | None = None,
        verify: bool | None = None,
        **save_kwargs: Unpack[SaveKwargs],
    ) -> None:
        path = _checked_filepath(filepath)
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise _UsageError(f"keep must be None or a positive number of files, got {keep!r}.")
        unknown = sorted(set(save_kwargs) - _SAVE_KWARGS)
        if "save_weights_only" in unknown:
            raise _UsageError(
                "SafeCheckpoint saves whole models (config, weights, optimizer state) as "
                "keras_safe archives; for weights only, use keras.callbacks.ModelCheckpoint("
                "..., save_weights_only=True)."
            )
        if unknown:
            raise _UsageError(
                f"SafeCheckpoint got unexpected argument(s) {', '.join(unknown)}; extra "
                f"arguments go to keras_safe.save, which takes {', '.join(sorted(_SAVE_KWARGS))}."
            )
        super().__init__(
            path,
            monitor=monitor,
            verbose=verbose,
            save_best_only=save_best_only,
            mode=mode,
            save_freq=save_freq,
            initial_value_threshold=initial_value_threshold,
        )
        self.keep = keep
        self.roundtrip = roundtrip
        self.save_kwargs = save_kwargs
        self._pattern = _file_pattern(os.path.basename(path))

    @property
    def verify(self) -> bool:
        """Deprecated: the former name of :attr:`roundtrip` (warns)."""
        _deprecated_attribute()
        return self.roundtrip

    @verify.setter
    def verify(self, value: bool) -> None:
        _deprecated_attribute()
        self.roundtrip = value

    def write_checkpoint(self, filepath: str) -> None:
        """Save the model to ``filepath`` (the chief) or a scratch copy (other workers)."""
        target = Path(filepath)
        strategy = getattr(self.model, "distribute_strategy", None)
        destination, temporary = checkpoint_destination(target, strategy)
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            save(
                self.model,
                destination,
                overwrite=True,
                roundtrip=self.roundtrip,
                **self.save_kwargs,
            )
        finally:
            if temporary:
                shutil.rmtree(destination.parent, ignore_errors=True)
        if not temporary and self.keep is not None:
            prune(target, self._pattern, self.keep)


def _deprecated_attribute() -> None:
    warnings.warn(
        "SafeCheckpoint.verify is deprecated; use SafeCheckpoint.roundtrip — same meaning.",
        DeprecationWarning,
        stacklevel=3,
    )


def _checked_filepath(filepath: Any) -> str:
    try:
        path = os.fspath(filepath)
    except TypeError:
        raise _UsageError(
            f"filepath must be a str or os.PathLike, got {type(filepath).__name__}."
        ) from None
    if not isinstance(path, str) or not path.endswith(".keras"):
        raise _UsageError(
            f"SafeCheckpoint writes .keras archives, so filepath must end in '.keras', got "
            f"{path!r}. For example: 'checkpoints/epoch-{{epoch:02d}}.keras'."
        )
    return path


def checkpoint_destination(filepath: Path, strategy: Any) -> tuple[Path, bool]:
    """Where this process writes a checkpoint: ``(path, is_temporary)``.

    The chief of a multi-worker strategy (and any single-worker strategy)
    writes ``filepath``; another worker writes into a fresh temporary
    directory, to be deleted once written.
    """
    extended = getattr(strategy, "extended", None)
    if extended is None or getattr(extended, "should_checkpoint", True):
        return filepath, False
    resolver = getattr(strategy, "cluster_resolver", None)
    task = f"{getattr(resolver, 'task_type', 'worker')}-{getattr(resolver, 'task_id', 0)}"
    scratch = Path(tempfile.mkdtemp(prefix=f"keras-safe-{task}-"))
    return scratch / filepath.name, True


def _file_pattern(basename: str) -> re.Pattern[str]:
    """A regex matching the names ``basename`` formats to (each ``{...}`` is ``.+``)."""
    parts = []
    for literal, field, _spec, _conversion in string.Formatter().parse(basename):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(".+")
    return re.compile("".join(parts) + r"\Z")


def _newest_first(paths: list[Path]) -> list[Path]:
    def key(path: Path) -> tuple[float, str]:
        try:
            return (path.stat().st_mtime, path.name)
        except OSError:
            return (0.0, path.name)

    return sorted(paths, key=key, reverse=True)


def prune(written: Path, pattern: re.Pattern[str], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints matching ``pattern``; return them."""
    directory = written.parent
    matching = [
        path
        for path in directory.iterdir()
        if pattern.match(path.name) and not path.name.startswith(".") and path != written
    ]
    removed = []
    for path in _newest_first(matching)[keep - 1 :]:
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:  # pruned by another process meanwhile
            continue
    return removed


@renamed_keywords("load_latest", verify_key="signing_key")
def load_latest(directory: str | os.PathLike[str], **load_kwargs: Unpack[LoadKwargs]) -> Any:
    """The newest checkpoint in ``directory`` that passes every check, or None.

    Tries the ``.keras`` files of ``directory`` newest first (by
    modification time) with :func:`keras_safe.load` and returns the first
    that loads. Files that fail a check (a digest, a missing object ...)
    are skipped and reported in one ``UserWarning``; if every file fails,
    the newest file's error is raised, listing all of them.

    Args:
        directory: Where the checkpoints are (``SafeCheckpoint``'s directory).
        **load_kwargs: Passed on to :func:`keras_safe.load`.

    Returns:
        The model, or None when ``directory`` holds no ``.keras`` file (or
        does not exist yet): the first run of a training script.

    Example:
        >>> model = keras_safe.load_latest("checkpoints") or build_model()
    """
    folder = as_path(directory, "directory")
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise _UsageError(f"load_latest expects a directory of checkpoints; {folder} is a file.")
    candidates = _newest_first(
        [
            path
            for path in folder.iterdir()
            if path.suffix == ".keras" and not path.name.startswith(".") and path.is_file()
        ]
    )
    skipped: list[tuple[Path, KerasSafeError]] = []
    for path in candidates:
        try:
            model = load(path, **load_kwargs)
        except _UsageError:
            if path.exists():
                raise
            continue  # removed since listed (keep= of a running training)
        except KerasSafeError as exc:
            skipped.append((path, exc))
            continue
        if skipped:
            warnings.warn(
                f"load_latest loaded {path}, skipping {len(skipped)} newer checkpoint(s) that "
                f"failed their checks:\n{_listing(skipped)}",
                UserWarning,
                stacklevel=2,
            )
        return model
    if skipped:
        error = copy.copy(skipped[0][1])
        error.args = (
            f"None of the {len(skipped)} checkpoint(s) in {folder} passes its checks:\n"
            f"{_listing(skipped)}",
        )
        raise error from skipped[0][1]
    return None


def _listing(skipped: list[tuple[Path, KerasSafeError]], reasons: int = 12) -> str:
    """One item per checkpoint: its error's first line, then (indented) the rest of it."""
    lines = []
    for path, exc in skipped:
        text = str(exc).strip().splitlines() or [type(exc).__name__]
        lines.append(f"  - {path.name}: {type(exc).__name__}: {text[0]}")
        lines.extend(f"    {line.rstrip()}" for line in text[1 : 1 + reasons])
        if len(text) > 1 + reasons:
            lines.append(f"      ... and {len(text) - 1 - reasons} more line(s)")
    return "\n".join(lines)
