"""Files keras_safe did not write: plain Keras archives and legacy HDF5 files.

They have no manifest, hence no digests to check, but they go through the
same reference allowlist before Keras parses them, and :func:`inspect`
describes them from their config.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from keras_safe import _keras
from keras_safe._config.migration import VERSION_KEY
from keras_safe._format.integrity import recorded_members
from keras_safe._format.limits import ArchiveLimits
from keras_safe._format.manifest import Manifest, MemberRecord, ModelSummary, ObjectRecord
from keras_safe._format.reader import METADATA, WEIGHTS, ArchiveReader
from keras_safe._guard import containment
from keras_safe._guard.allowlist import Reference, Resolver, iter_references
from keras_safe._guard.gate import check_configs, resolve_pending
from keras_safe._guard.hdf5_bounds import dataset_shapes, scan_weights
from keras_safe._guard.json_bounds import parse_json_object
from keras_safe.errors import CompatibilityError, IntegrityError, KerasSafeError

if TYPE_CHECKING:
    from keras_safe._ops.options import LoadOptions

__all__ = ["derive_manifest", "inspect_h5", "load_h5"]


def _custom_records(configs: list[Any]) -> tuple[ObjectRecord, ...]:
    """Objects a config needs that are not Keras built-ins, as far as it tells."""
    resolver = Resolver()
    records: dict[str, ObjectRecord] = {}
    for config in configs:
        for ref in iter_references(config):
            if _is_builtin(resolver, ref) or ref.key in records:
                continue
            version = ref.config.get(VERSION_KEY) if isinstance(ref.config, dict) else None
            records[ref.key] = ObjectRecord(
                key=ref.key,
                kind=ref.kind,
                module=ref.module,
                qualname=ref.name,
                config_version=version if type(version) is int and version > 0 else 1,
            )
    return tuple(records.values())


def _is_builtin(resolver: Resolver, ref: Reference) -> bool:
    try:
        found = resolver.resolve(ref)
    except KerasSafeError:
        return False
    return found is not None and found.source == "keras"


def _count_layers(config: Any) -> int | None:
    """Layers listed in Functional/Sequential configs, nested ones included."""
    count, seen = 0, False
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            layers = node.get("layers")
            if isinstance(layers, list):
                seen = True
                count += sum(1 for item in layers if isinstance(item, dict))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count if seen else None


def _summary(
    config: dict[str, Any], shapes: dict[str, tuple[tuple[int, ...], str]]
) -> ModelSummary:
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    model_params = [s for name, (s, _) in shapes.items() if not name.startswith("optimizer/")]
    optimizer = [s for name, (s, _) in shapes.items() if name.startswith("optimizer/")]

    def size(shapes_: list[tuple[int, ...]]) -> int:
        total = 0
        for shape in shapes_:
            n = 1
            for dim in shape:
                n *= dim
            total += n
        return total

    name = inner.get("name") if isinstance(inner, dict) else None
    return ModelSummary(
        class_name=config.get("class_name") if isinstance(config.get("class_name"), str) else None,
        name=name if isinstance(name, str) else None,
        layers=_count_layers(config),
        # Trainable and non-trainable are not told apart in the file.
        trainable_params=size(model_params) if shapes else None,
        optimizer_params=size(optimizer) if optimizer else None,
    )


def derive_manifest(reader: ArchiveReader, config: dict[str, Any]) -> Manifest:
    """A manifest for a plain ``.keras`` archive, read off its config and members.

    ``config``: as :func:`~keras_safe._guard.gate.check_configs` returned it
    (optimizer twins read as their public classes).
    """
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    if reader.has(WEIGHTS):
        try:
            with h5py.File(reader.window(WEIGHTS), "r") as handle:
                where = f"{WEIGHTS} in {reader.path}"
                scan_weights(handle, where, reader.limits, reader.size(WEIGHTS), shapes)
                shapes = shapes or dataset_shapes(handle)
        except OSError:
            shapes = {}
    keras_version = None
    if reader.has(METADATA):
        metadata = parse_json_object(
            reader.read(METADATA), f"{METADATA} in {reader.path}", reader.limits
        )
        keras_version = metadata.get("keras_version")
    return Manifest(
        format_version=0,
        environment={"keras": keras_version if isinstance(keras_version, str) else None},
        saved_at=None,
        model=_summary(config, shapes),
        objects=_custom_records([config]),
        members={name: MemberRecord(None, reader.size(name)) for name in recorded_members(reader)},
        digest=None,
        written_by="keras",
    )


# -- legacy HDF5 ----------------------------------------------------------------------


def _h5_configs(
    handle: Any, path: Path, limits: ArchiveLimits
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    def attribute(name: str) -> Any:
        raw = handle.attrs.get(name)
        if raw is None:
            return None
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8")
        return parse_json_object(data, f"The {name} of {path}", limits)

    model_config = attribute("model_config")
    if not isinstance(model_config, dict):
        raise IntegrityError(
            f"{path} is an HDF5 file without a model config: a weights-only file (load it "
            "with model.load_weights) or not a Keras model."
        )
    training = attribute("training_config")
    return model_config, training if isinstance(training, dict) else None


def _open_h5(path: Path, limits: ArchiveLimits) -> Any:
    """Open a legacy model file once and check its structure (metadata only)."""
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise IntegrityError(f"{path} is not a readable HDF5 file: {exc}") from exc
    try:
        scan_weights(handle, str(path), limits, path.stat().st_size)
    except BaseException:
        handle.close()
        raise
    return handle


def inspect_h5(path: Path, limits: ArchiveLimits | None = None) -> Manifest:
    """A manifest for a legacy ``.h5`` model file, read off its attributes."""
    with _open_h5(path, limits or ArchiveLimits()) as handle:
        model_config, training = _h5_configs(handle, path, limits or ArchiveLimits())
        configs = [model_config] + ([{"compile_config": training}] if training else [])
        check_configs(configs, path, limits or ArchiveLimits())
        weights = handle.get("model_weights", handle)
        shapes = dataset_shapes(weights)
        keras_version = handle.attrs.get("keras_version")
    if isinstance(keras_version, bytes):
        keras_version = keras_version.decode("utf-8", "replace")
    return Manifest(
        format_version=0,
        environment={"keras": keras_version if isinstance(keras_version, str) else None},
        saved_at=None,
        model=_summary(model_config, shapes),
        objects=_custom_records([model_config, {"compile_config": training}]),
        members={},
        digest=None,
        written_by="keras",
    )


def load_h5(path: Path, options: LoadOptions) -> Any:
    """Check a legacy ``.h5`` model's references, then let Keras load it.

    The file is opened once and the same open file is handed to Keras, so
    the bytes checked are the bytes loaded even if the path is replaced
    meanwhile.
    """
    if options.expected_digest is not None or options.signing_key is not None:
        raise IntegrityError(
            f"{path} is a legacy HDF5 file without a manifest, so it has no digest or "
            "signature to check. Convert it once with keras_safe.upgrade, then pin that file."
        )
    with _open_h5(path, options.limits) as handle:
        model_config, training = _h5_configs(handle, path, options.limits)
        resolver = Resolver(options.custom_objects, options.allow_imports)
        # Keras reads the training config only to compile the model.
        compiled = training if options.compile else None
        configs = [model_config] + ([{"compile_config": compiled}] if compiled else [])
        screened = check_configs(configs, path, options.limits, resolver=resolver)
        estimate = screened.estimate
        resolve_pending(screened.resolved, screened.pending, resolver, None, path)
        budget = containment.variable_budget(path.stat().st_size)
        try:
            with (
                _keras.safe_mode(),
                _keras.variable_budget(
                    budget, estimate.remaining, options.limits.max_build_seconds
                ) as exceeded,
            ):
                model = _keras.load_legacy_h5(
                    handle, resolver.keras_custom_objects(), options.compile
                )
        except KerasSafeError:
            raise
        except Exception as exc:
            if exceeded:
                raise containment.too_large(path, exceeded) from None
            hint = (
                "\nIf the failure is in the training configuration (Keras 3.15 cannot "
                "restore string losses such as 'mse' from legacy .h5 files), load it with "
                "compile=False."
                if options.compile
                else ""
            )
            raise CompatibilityError(
                f"Keras could not load the legacy HDF5 model {path}: {type(exc).__name__}: "
                f"{containment.first_lines(exc)}{hint}"
            ) from exc
        if exceeded:
            raise containment.too_large(path, exceeded)
    return model
