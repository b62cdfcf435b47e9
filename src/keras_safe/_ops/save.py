"""``save``, ``load``, ``inspect`` and ``verify``: the orchestration.

Each step's details live one hop away: the archive in ``archive``, the
reference allowlist in ``policy``, the manifest in ``manifest``, drift in
``drift``, comparisons in ``compare``, Keras internals in ``_keras``.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from keras_safe import _keras
from keras_safe._config.codec import registered_key
from keras_safe._config.describe import installed_distribution_of, kind_of
from keras_safe._config.registry import registry
from keras_safe._format.manifest import (
    FORMAT_VERSION,
    Manifest,
    MemberRecord,
    ModelSummary,
    ObjectRecord,
    content_digest,
    describe_object,
    environment,
)
from keras_safe._format.reader import CONFIG, METADATA, WEIGHTS
from keras_safe._format.writer import AtomicArchiveWriter
from keras_safe._guard.allowlist import Reference, Resolver, iter_references
from keras_safe._guard.references import in_words
from keras_safe._ops.compare import config_differences
from keras_safe._ops.options import as_path, renamed_keywords
from keras_safe._ops.rebuild import verify_written
from keras_safe.errors import (
    KerasSafeError,
    SerializationError,
    TrainingStateWarning,
    UnsafeModelError,
    _FileExistsError,
    _see_docs,
    _UsageError,
    _WriteError,
)

__all__ = ["save"]


@renamed_keywords("save", verify="roundtrip")
def save(
    model: Any,
    filepath: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    roundtrip: bool = True,
    sample_input: Any = None,
    signing_key: bytes | None = None,
    include_optimizer: bool | None = None,
    verify: bool | None = None,
) -> Manifest:
    """Save ``model`` as a ``.keras`` archive with an embedded manifest.

    The file is an ordinary Keras 3 archive (``keras.models.load_model``
    reads it) whose ``metadata.json`` also records the custom objects the
    model needs, the versions it was saved with and a SHA-256 of every
    member. Models that could not load back are refused before anything is
    written, listing every problem; the write is atomic; and with
    ``roundtrip=True`` the written bytes are loaded back (registry only, as a
    fresh process would) and compared with ``model`` before the file is
    moved into place.

    Args:
        model: The ``keras.Model`` to save.
        filepath: Target path; must end in ``.keras``.
        overwrite: Replace an existing file (atomically). With False an
            existing file raises an error that is a ``FileExistsError``.
        roundtrip: Rebuild from the written bytes and compare configs, every
            weight bit for bit and optimizer state before committing.
        sample_input: Also compare the outputs of both models on this input.
        signing_key: Bytes for an HMAC-SHA256 of the manifest, checked by
            ``load(..., signing_key=...)``.
        include_optimizer: Whether the file holds the optimizer's state (its
            step count and slots). ``None`` (the default): whenever loading
            can put it back, and otherwise not, with a
            :class:`~keras_safe.TrainingStateWarning` saying what is left
            out and why (a model whose class overrides ``compile()``, such as
            a keras-hub task, gets the optimizer its constructor compiles, so
            Keras never restores the saved one). ``True``: refuse to save
            unless it is included. ``False``: leave it out (the training
            configuration is still saved; a loaded model starts with a
            fresh optimizer). The manifest records which
            (``manifest.model.optimizer_state``, ``training_note``).
        verify: Deprecated: the former name of ``roundtrip`` (same meaning;
            warns). Passing both is an error.

    Returns:
        The :class:`~keras_safe.Manifest` written; ``manifest.digest`` pins the file.

    Raises:
        SerializationError: the model uses unregistered classes or functions,
            Lambda layers, or objects whose config does not round-trip; or
            ``include_optimizer=True`` and the optimizer state cannot load back.
        VerificationError: the reloaded model differs; the old file stays.

    Example:
        >>> manifest = keras_safe.save(model, "model.keras")
        >>> manifest.digest
        '5f0c...'
    """
    target = _target_for_save(filepath)
    if not isinstance(model, keras.Model):
        raise _UsageError(
            f"keras_safe.save expects a keras.Model, got {type(model).__name__}. To save a "
            "single layer, wrap it: keras.Sequential([keras.Input(shape), layer])."
        )
    if not overwrite and target.exists():
        raise _FileExistsError(
            f"{target} already exists and overwrite=False; nothing was written. Pass "
            "overwrite=True to replace it, or choose another path."
        )
    if roundtrip and sample_input is not None:
        _check_sample_input_runs(model)
    config = _serialize(model)
    records = _preflight(config)
    training = _training_state(model, include_optimizer)
    _keras.compat.check_nested_objects_saved(model)  # Keras < 3.15 would drop weights
    try:
        writer = AtomicArchiveWriter(target, overwrite=overwrite)
    except OSError as exc:
        raise _WriteError(exc.errno, f"Cannot write next to {target}: {exc.strerror}") from exc
    try:
        zf = writer.zipfile
        zf.writestr(CONFIG, json.dumps(config))
        _keras.write_state(model, zf.open_in_place(WEIGHTS), zf, "assets", training.skip)
        members = {name: MemberRecord(sha, size) for name, (sha, size) in writer.digests.items()}
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            environment=environment(),
            saved_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            model=_summary(model, config, training),
            objects=records,
            members=members,
            digest=content_digest(members),
        )
        if signing_key is not None:
            manifest = manifest.signed(signing_key)
        zf.writestr(METADATA, json.dumps(_metadata(manifest)))
        writer.finish()
        if roundtrip:
            verify_written(
                model,
                config,
                writer.temp_path,
                sample_input,
                target=target,
                compare_optimizer=training.state == "included",
                compare_compile=training.compile_restored,
                read_back=writer.read_back,
                manifest=manifest,
            )
        writer.commit()
    except KerasSafeError:
        writer.abort()
        raise
    except OSError as exc:
        writer.abort()
        raise _WriteError(
            exc.errno,
            f"Could not write {target}: {exc.strerror or exc}. The file that was there (if "
            "any) is unchanged and no temporary file was left behind.",
        ) from exc
    except BaseException:
        writer.abort()
        raise
    return manifest


# -- save's steps -----------------------------------------------------------------


def _target_for_save(filepath: Any) -> Path:
    path = as_path(filepath)
    if path.suffix != ".keras":
        raise _UsageError(
            f"Cannot save to {str(path)!r}: keras_safe writes the Keras 3 archive format, whose "
            "files end in '.keras'. Use keras_safe.save(model, "
            f"{str(path.with_suffix('.keras'))!r})."
        )
    if path.is_dir():
        raise _UsageError(f"Cannot save to {path}: it is a directory.")
    if not path.parent.is_dir():
        raise _UsageError(f"Cannot save to {path}: directory {path.parent} does not exist.")
    return path


def _serialize(model: Any) -> dict[str, Any]:
    try:
        return _keras.serialize_model(model)
    except Exception as exc:
        problems = _layer_config_problems(model) or [f"{type(exc).__name__}: {exc}"]
        raise SerializationError(_problem_list(model, problems)) from exc


def _check_sample_input_runs(model: Any) -> None:
    """Refuse ``sample_input`` for a model that takes strings, except under TensorFlow.

    Only TensorFlow has string tensors: under JAX or torch Keras cannot call
    a model whose input is a string (StringLookup, TextVectorization inside
    the model), so its outputs on ``sample_input`` cannot be compared.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    strings, readers = [], []
    for layer in getattr(model, "layers", []):  # a subclassed model has no input layers
        try:
            taken = keras.tree.flatten(
                layer.output if isinstance(layer, keras.layers.InputLayer) else layer.input
            )
        except (AttributeError, ValueError):  # called more than once: no single input
            continue
        if any(getattr(t, "dtype", None) == "string" for t in taken):
            if isinstance(layer, keras.layers.InputLayer):
                strings.append(repr(layer.name))
            else:
                readers.append(f"{layer.name!r} ({type(layer).__name__})")
    if not strings:
        return
    read_by = f", read by layer {', '.join(readers)}" if readers else ""
    raise _UsageError(
        f"keras_safe.save(sample_input=...) cannot run the model {model.name!r} on the "
        f"{backend} backend: it takes string input (input {', '.join(strings)}{read_by}), and only "
        "TensorFlow has string tensors; Keras refuses to call it under another backend. "
        "Nothing was written. Fix: save without sample_input (the config and every weight "
        "are still compared), or save it with KERAS_BACKEND=tensorflow, or move the string "
        "layers into the input pipeline (tf.data) and save the model from their output."
    )


def _preflight(config: dict[str, Any]) -> tuple[ObjectRecord, ...]:
    """Every reference must resolve the way a fresh process would resolve it."""
    resolver = Resolver()
    problems: list[str] = []
    records: dict[str, ObjectRecord] = {}
    for ref in iter_references(config):
        try:
            resolved = resolver.resolve(ref)
        except UnsafeModelError as exc:
            problems.append(str(exc))
            continue
        if resolved is None:
            problems.append(_unregistered_message(ref))
            continue
        if resolved.source != "registry":
            continue
        key = registry.key_of(resolved.obj) or ref.key
        if key not in records:
            obj = resolved.obj
            records[key] = describe_object(
                key,
                obj,
                kind_of(obj),
                installed_distribution_of(getattr(obj, "__module__", "") or ""),
            )
            if ref.kind == "class" and ref.config is not None:
                problems.extend(_round_trip_problems(ref, obj))
    if problems:
        raise SerializationError(_problem_list(None, problems))
    return tuple(records.values())


def _problem_list(model: Any, problems: list[str]) -> str:
    name = f" {model.name!r}" if model is not None else ""
    lines = "\n".join(f"  - {p}" for p in dict.fromkeys(problems))
    return (
        f"The model{name} cannot be saved so that it loads back; nothing was written. "
        f"{len(problems)} problem(s):\n{lines}\n{_see_docs('SerializationError')}"
    )


def _summary(model: Any, config: dict[str, Any], training: _TrainingState) -> ModelSummary:
    optimizer = getattr(model, "optimizer", None)
    saved = optimizer is not None and training.state == "included"
    return ModelSummary(
        class_name=config.get("class_name"),
        name=model.name,
        layers=_keras.count_layers(model),
        trainable_params=_count_values(model.trainable_weights),
        non_trainable_params=_count_values(model.non_trainable_weights),
        optimizer_params=_count_values(optimizer.variables) if saved and optimizer else None,
        optimizer=type(optimizer).__name__ if optimizer is not None else None,
        optimizer_state=training.state,
        training_note=training.note,
    )


def _metadata(manifest: Manifest) -> dict[str, Any]:
    # Keras' own two keys first, so the file reads like any Keras archive.
    return {
        "keras_version": keras.__version__,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "keras_safe": manifest.to_json(),
    }


def _unregistered_message(ref: Reference) -> str:
    """Why saving refuses an unresolvable reference, and the fix."""
    module = ref.module if ref.module not in (None, "builtins") else None
    in_script = module in (None, "__main__")
    package = "your_project" if in_script else str(module).split(".")[0]
    fix = f"Fix: decorate it with @keras_safe.register(package={package!r})"
    if in_script:
        fix += (
            "; to load the file in another process, define it in an importable module "
            "rather than a script or notebook"
        )
    # The compile settings in a user's words ("the loss passed to compile()").
    where = in_words(ref.where) if ".compile_config" in ref.where else ref.where
    if ref.kind == "function":
        origin = "" if in_script else f" (module {module})"
        return (
            f"{where}: function {ref.name!r}{origin} is not registered, so a fresh "
            f"process cannot find it. {fix}."
        )
    name = ref.name if in_script else f"{module}.{ref.name}"
    return (
        f"{where}: class {name} is not registered, so a fresh process cannot find it. "
        f"{fix} (and subclass keras_safe.SerializableLayer / Serializable if it has no "
        "get_config)."
    )


def _layer_config_problems(model: Any) -> list[str]:
    """One line per layer whose config cannot be produced, found layer by layer."""
    problems = []
    for layer in [model, *_keras.all_layers(model)]:
        try:
            keras.saving.serialize_keras_object(layer)
        except Exception as exc:  # a layer's own get_config may raise anything
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fix = (
                "subclass keras_safe.SerializableLayer (its config comes from __init__), or "
                "write get_config() returning every constructor argument"
            )
            if isinstance(exc, NotImplementedError) and registered_key(type(layer)) is None:
                fix += " and register it with @keras_safe.register"
            problems.append(f"{layer.name} ({type(layer).__name__}): {first} Fix: {fix}.")
    return problems


def _round_trip_problems(ref: Reference, cls: Any) -> list[str]:
    """Check that a custom object's config rebuilds an object with the same config."""
    if not (isinstance(cls, type) and hasattr(cls, "from_config")):
        return []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rebuilt = cls.from_config(copy.deepcopy(ref.config))
            again = keras.saving.serialize_keras_object(rebuilt)
    except Exception as exc:  # user code: anything can fail
        return [
            f"{ref.where}: {cls.__qualname__}.from_config(get_config()) fails: "
            f"{type(exc).__name__}: {exc}"
        ]
    inner = again.get("config") if isinstance(again, dict) else None
    return [
        f"{line} ({cls.__name__}'s config does not round-trip)"
        for line in config_differences(
            json.loads(json.dumps(ref.config)), json.loads(json.dumps(inner)), ref.where
        )
    ]


def _count_values(variables: Any) -> int:
    return sum(math.prod(v.shape) for v in variables)


@dataclass(frozen=True)
class _TrainingState:
    """What the file keeps of the model's training state, and why."""

    state: str  # "included", "excluded" or "none" (ModelSummary.optimizer_state)
    note: str | None = None
    skip: tuple[Any, ...] = ()  # objects whose variables stay out of the file
    compile_restored: bool = True


def _training_state(model: Any, include_optimizer: bool | None) -> _TrainingState:
    """Decide whether the optimizer's variables go into the file (see ``save``).

    They go in only if loading puts every one of them back: Keras restores
    the optimizer of a loaded model from the compile config, which it skips
    for a class that overrides ``compile()``; and the slots are matched to
    the model's trainable variables by position, so an optimizer built for
    other variables (a custom ``train_step`` updating some of them) cannot
    be matched. A compiled, never-trained model's optimizer is built first,
    as the first training step would build it, because loading builds it.
    """
    if include_optimizer not in (None, True, False):
        raise _UsageError(
            f"include_optimizer must be None, True or False, got {include_optimizer!r}."
        )
    optimizer = getattr(model, "optimizer", None)
    restored = _keras.restores_compile(model)
    if optimizer is None:
        # A class that compiles itself in __init__ (keras-hub tasks with
        # compile=False) loads compiled: the rebuilt compile config is its own.
        return _TrainingState("none", compile_restored=restored)
    cls = type(model).__name__
    reason = None
    if not restored:
        reason = (
            f"{cls} overrides compile() without compile_from_config(), so Keras does not apply "
            "the saved training configuration on load: the loaded model has the optimizer, loss "
            "and metrics its constructor compiles"
        )
    else:
        _keras.build_optimizer(model)
        variables = list(model.trainable_variables)
        if optimizer.built and not _keras.optimizer_built_for(optimizer, variables):
            reason = (
                f"the optimizer was built for other variables than the {len(variables)} "
                f"trainable variables of {cls} (a custom train_step?), so loading cannot tell "
                "which variable each of its slots belongs to"
            )
    steps = _steps(optimizer)
    what = (
        f"{type(optimizer).__name__} state: {len(optimizer.variables)} variables, "
        f"{steps} training step(s)"
    )
    if include_optimizer is False:
        note = f"optimizer state not saved (include_optimizer=False; {what})"
        if reason is not None:
            note += f"; {reason}"
        return _TrainingState("excluded", note + ".", (optimizer,), restored)
    if reason is None:
        return _TrainingState("included", None, (), restored)
    if include_optimizer:
        raise SerializationError(
            f"The optimizer state of {model.name!r} cannot be saved so that it loads back; "
            f"nothing was written: {reason}.\nFix: save without it, "
            "keras_safe.save(model, path, include_optimizer=False)"
            + (
                ", or give the class a compile_from_config(config) that compiles it"
                if not restored
                else ""
            )
            + "."
        )
    note = f"optimizer state not saved ({what}): {reason}."
    if steps > 0:
        warnings.warn(
            f"keras_safe.save: {note} Pass include_optimizer=False to say so explicitly.\n"
            + _see_docs("TrainingStateWarning"),
            TrainingStateWarning,
            stacklevel=3,
        )
    return _TrainingState("excluded", note, (optimizer,), restored)


def _steps(optimizer: Any) -> int:
    try:
        return int(keras.ops.convert_to_numpy(optimizer.iterations))
    except Exception:  # an optimizer without a step counter
        return 0
