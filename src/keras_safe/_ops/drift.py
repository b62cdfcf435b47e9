"""What changed between the environment a file was saved in and this one.

Environment drift (Keras and TensorFlow versions) and per-object drift
(module moved, ``__init__`` signature changed, source changed, distribution
version changed) are reported together, as one
:class:`~keras_safe.CompatibilityWarning` or :class:`~keras_safe.CompatibilityError`
according to ``on_mismatch``. A change of Keras backend is not drift: files
move between backends by design, so it is information (:func:`backend_note`),
added to a report of drift and shown by ``keras-safe verify``, never a
warning by itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from keras_safe._config.describe import distribution_providing, kind_of
from keras_safe._config.registry import registry
from keras_safe._format.manifest import ENVIRONMENT_LABELS, Manifest, describe_object
from keras_safe.errors import CompatibilityError, CompatibilityWarning, _see_docs

__all__ = ["backend_note", "find_drift", "report_drift"]

# The versions that change how a model loads. The backend is not among them:
# a file moves between backends by design (backend_note).
_DRIFT_LABELS = {
    "keras": ENVIRONMENT_LABELS["keras"],
    "tensorflow": ENVIRONMENT_LABELS["tensorflow"],
}


def find_drift(
    manifest: Manifest, current: Mapping[str, str | None], objects: Mapping[str, Any]
) -> list[str]:
    """One line per difference; ``objects`` maps manifest keys to live objects."""
    lines: list[str] = []
    for key, label in _DRIFT_LABELS.items():
        saved, now = manifest.environment.get(key), current.get(key)
        if saved and now and saved != now:
            lines.append(f"{label} {saved} when saved, {now} now")
    for record in manifest.objects:
        obj = objects.get(record.key)
        if obj is None:
            continue
        # The installed distribution only matters against a version the file
        # recorded: without one there is nothing to compare it with.
        distribution = (
            distribution_providing(obj.__module__, record.distribution)
            if record.version
            else (None, None)
        )
        live = describe_object(record.key, obj, kind_of(obj), distribution)
        what = record.key
        if (
            record.module
            and live.module
            and (record.module, record.qualname)
            != (
                live.module,
                live.qualname,
            )
        ):
            lines.append(
                f"{what}: was {record.module}.{record.qualname}, now {live.module}.{live.qualname}"
            )
        if record.signature and live.signature and record.signature != live.signature:
            lines.append(f"{what}: signature was {record.signature}, now {live.signature}")
        elif (
            record.source_sha256
            and live.source_sha256
            and record.source_sha256 != live.source_sha256
        ):
            lines.append(f"{what}: source code changed since the file was saved")
        current_key = registry.canonical_key(record.key)
        if current_key is not None and current_key != record.key:
            lines.append(f"{what}: saved under this key, now an alias of {current_key}")
        if live.config_version > record.config_version:
            lines.append(
                f"{what}: config v{record.config_version} when saved, v{live.config_version} "
                f"now (translated by {live.qualname}.upgrade_config)"
            )
        if record.version and live.version and record.version != live.version:
            lines.append(
                f"{what}: distribution {record.distribution} {record.version} when saved, "
                f"{live.version} now"
            )
    return lines


def backend_note(manifest: Manifest, current: Mapping[str, str | None]) -> str | None:
    """A line of information when the file was saved under another Keras backend.

    Not drift: keras_safe files load under every backend, weights and
    optimizer state included (see the save/load guide, "Moving files
    between backends"), so this is never a warning by itself.
    """
    saved, now = manifest.environment.get("backend"), current.get("backend")
    if not saved or not now or saved == now:
        return None
    return (
        f"saved under the {saved} backend, loaded under {now}: files move between backends, "
        "weights and optimizer state included"
    )


def report_drift(lines: list[str], on_mismatch: str, path: object, note: str | None = None) -> None:
    """Warn, raise or stay quiet about ``lines``, per ``on_mismatch``.

    ``note`` (:func:`backend_note`) is information added to a report of
    ``lines``; alone it is never reported.
    """
    if not lines or on_mismatch == "ignore":
        return
    body = "\n".join(f"  - {line}" for line in lines)
    if note is not None:
        body += f"\n  (for information, not a problem: {note})"
    message = (
        f"{path} was saved in a different environment:\n{body}\n"
        "keras_safe rebuilds the model with the code of this process, so if these changes "
        "alter behaviour its outputs will differ from the original's. Pass "
        "on_mismatch='ignore' to accept such files silently, or on_mismatch='error' to "
        "refuse them."
    )
    if on_mismatch == "error":
        raise CompatibilityError(f"{message}\n{_see_docs('CompatibilityError')}")
    warnings.warn(
        f"{message}\n{_see_docs('CompatibilityWarning')}", CompatibilityWarning, stacklevel=3
    )
