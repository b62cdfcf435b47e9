"""Readable text for manifests and verification reports (the command line's output).

Every line fits :data:`keras_safe._cli.terminal.WIDTH` columns once wrapped;
the full data is always available as JSON (``keras-safe inspect --json``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from keras_safe._cli.terminal import human_size
from keras_safe._format.manifest import ENVIRONMENT_LABELS, Manifest, ObjectRecord, environment
from keras_safe._ops.drift import backend_note

__all__ = ["allow_imports_hint", "manifest_text", "verify_text"]

_LABEL = 16


def _field(label: str, value: str) -> str:
    return f"  {label:<{_LABEL}}{value}"


def _count(value: int | None, noun: str) -> str:
    return f"{value:,} {noun}" if value is not None else f"? {noun}"


def manifest_text(path: Path, manifest: Manifest) -> str:
    """What ``keras-safe inspect`` prints."""
    lines = [str(path)]
    env = manifest.environment
    if manifest.written_by == "keras_safe":
        saved = f"keras_safe {env.get('keras_safe') or '?'} (manifest format "
        saved += f"{manifest.format_version})"
        if manifest.saved_at:
            saved += f" at {manifest.saved_at}"
    else:
        saved = (
            f"Keras {env.get('keras') or '?'}, without a keras_safe manifest: no digests to "
            "check. Re-save it with keras_safe.save or 'keras-safe upgrade' to pin it."
        )
    lines.append(_field("saved by", saved))
    versions = ", ".join(
        f"{label} {env[key]}"
        for key, label in ENVIRONMENT_LABELS.items()
        if key != "keras_safe" and env.get(key)  # keras_safe's is on the "saved by" line
    )
    if versions:
        lines.append(_field("versions", versions))
    lines.append(_field("model", _model_line(manifest)))
    if manifest.model.optimizer_state is not None:
        lines.append(_field("optimizer", _optimizer_line(manifest)))
    elif manifest.model.optimizer_params is not None:
        lines.append(_field("optimizer", _count(manifest.model.optimizer_params, "values")))
    if manifest.model.training_note:
        lines.append(_field("training state", manifest.model.training_note))
    if manifest.digest:
        lines.append(_field("content digest", manifest.digest))
    if manifest.written_by == "keras_safe":
        signed = "hmac-sha256 (check it: keras-safe verify FILE --signing-key-file KEY)"
        lines.append(_field("signature", signed if manifest.signature else "none"))
    lines += ["", f"custom objects ({len(manifest.objects)})"]
    lines += [line for record in manifest.objects for line in _object_lines(record)]
    if not manifest.objects:
        lines.append("  none: the model uses Keras built-ins only")
    lines += ["", f"members ({len(manifest.members)})"]
    for name, member in manifest.members.items():
        digest = member.sha256 or "(no digest recorded)"
        lines.append(f"  {human_size(member.size):>10}  {digest:<64}  {name}")
    return "\n".join(lines)


def _optimizer_line(manifest: Manifest) -> str:
    model = manifest.model
    if model.optimizer_state == "none":
        return "none (the model was not compiled with an optimizer)"
    name = model.optimizer or "optimizer"
    if model.optimizer_state == "included":
        return f"{name}, state included ({_count(model.optimizer_params or 0, 'values')})"
    return f"{name}, state not in the file (see training state)"


def _model_line(manifest: Manifest) -> str:
    model = manifest.model
    text = model.class_name or "model"
    if model.name:
        text += f" {model.name!r}"
    parts = [_count(model.layers, "layers")]
    if model.params is not None:
        params = _count(model.params, "parameters")
        if model.non_trainable_params is not None:
            params += f" ({model.trainable_params:,} trainable)"
        parts.append(params)
    return f"{text}: {', '.join(parts)}"


def _object_lines(record: ObjectRecord) -> list[str]:
    head = f"  {record.key}  ({record.kind}"
    if record.config_version != 1:
        head += f", config version {record.config_version}"
    where = f"{record.module or '?'}.{record.qualname or '?'}"
    detail = f"    defined in {where}"
    if record.distribution:
        detail += f"; distribution {record.distribution} {record.version or ''}".rstrip()
    return [head + ")", detail]


def verify_text(report: Any) -> str:
    """What ``keras-safe verify`` prints for a file that passed."""
    manifest: Manifest | None = report.manifest
    lines = [f"OK: {report.path}"]
    if manifest is not None and manifest.written_by == "keras_safe":
        lines.append(
            f"  every member matches its SHA-256 in the manifest (content digest {manifest.digest})"
        )
    else:
        lines.append("  no keras_safe manifest, so no digests to check (saved by plain Keras)")
    if manifest is not None:
        lines.append(
            f"  {len(manifest.objects)} custom object(s) resolved; the model was rebuilt and "
            "every weight in the file loaded into it"
        )
    note = backend_note(manifest, environment()) if manifest is not None else None
    if note is not None:
        lines.append(f"  note: {note}")
    for warning in report.warnings:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


def allow_imports_hint(
    manifest: Manifest | None,
    missing: tuple[str, ...],
    command: str,
    filepath: str,
    allowed: tuple[str, ...],
) -> str:
    """The command-line form of the fix for missing custom objects."""
    records = [manifest.object(key) for key in missing] if manifest is not None else []
    packages = sorted(
        {
            record.module.split(".")[0]
            for record in records
            if record is not None
            and record.module
            and record.module.split(".")[0] not in ("__main__", "builtins")
        }
    )
    if not packages:
        return ""
    unimportable = [p for p in packages if p in allowed and importlib.util.find_spec(p) is None]
    if unimportable:
        names = " ".join(unimportable)
        return (
            f"\n{names} cannot be imported by this process: it is not installed and not on "
            "PYTHONPATH (keras-safe does not look in the current directory). Fix: install the "
            f"project (pip install -e .), or: PYTHONPATH=. keras-safe {command} {filepath} "
            f"--allow-imports {' '.join(packages)}"
        )
    return (
        f"\nFrom the command line: keras-safe {command} {filepath} --allow-imports "
        f"{' '.join(packages)}  (the packages must be importable: installed, or on PYTHONPATH)"
    )
