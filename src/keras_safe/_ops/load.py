"""``load``, ``inspect`` and ``verify``: every check before Keras parses a byte.

``load_archive`` reads top to bottom as the order of the checks (the
archive's names, sizes and layout were checked when it was opened): pins
(expected digest, signature), the member list against the manifest, the
config's digest, the JSON guards, the reference allowlist, drift, and only
then Keras rebuilding the model within a memory budget, while the weights
are hashed on another core; the weights are read only after their digest
matched and their HDF5 metadata passed the checks of ``h5guard``, and the
model is returned only if every weight in the file went into it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
from typing_extensions import Unpack

from keras_safe import _keras
from keras_safe._config import migration
from keras_safe._format.integrity import (
    Hasher,
    check_digest,
    check_member_list,
    check_pins,
    parse_json,
    read_manifest,
)
from keras_safe._format.limits import ArchiveLimits, resolve_limits
from keras_safe._format.manifest import Manifest, environment
from keras_safe._format.reader import ASSETS_DIR, CONFIG, WEIGHTS, ArchiveReader
from keras_safe._guard import containment
from keras_safe._guard.allowlist import Resolved, Resolver
from keras_safe._guard.gate import check_configs, resolve_pending
from keras_safe._guard.hdf5_bounds import DatasetChecker, dataset_shapes, open_weights, scan_weights
from keras_safe._guard.resources import BuildEstimate, asset_vocabulary_bytes
from keras_safe._ops import foreign
from keras_safe._ops.drift import backend_note, find_drift, report_drift
from keras_safe._ops.options import (
    LoadKwargs,
    LoadOptions,
    OnMismatch,
    OnOptimizerMismatch,
    as_path,
    existing_path,
    renamed_keywords,
    sniff,
)
from keras_safe.errors import (
    CompatibilityError,
    IntegrityError,
    KerasSafeError,
    TrainingStateWarning,
    UnsafeModelError,
    _see_docs,
    _UsageError,
)

__all__ = ["VerifyReport", "inspect", "load", "verify"]

_BENIGN_WARNINGS = ("the saved optimizer has 0 variables",)


@renamed_keywords("load", verify_key="signing_key")
def load(
    filepath: str | os.PathLike[str],
    *,
    custom_objects: Mapping[str, Any] | None = None,
    compile: bool = True,
    allow_imports: tuple[str, ...] | list[str] | str = (),
    on_mismatch: OnMismatch = "warn",
    expected_digest: str | None = None,
    signing_key: bytes | None = None,
    limits: ArchiveLimits | None = None,
    on_optimizer_mismatch: OnOptimizerMismatch = "error",
    verify_key: bytes | None = None,
) -> Any:
    """Load a model saved by :func:`keras_safe.save` (or a plain ``.keras`` / ``.h5``).

    Every check runs before Keras parses anything: member digests, the
    reference allowlist (Keras built-ins of model kinds, the registry,
    ``custom_objects``, modules under ``allow_imports``), missing objects
    (all listed at once), and drift since saving. The model is returned only
    if every weight in the file went into it.

    Args:
        filepath: A ``.keras`` archive or legacy ``.h5`` file.
        custom_objects: Extra objects, keyed by class name or registered key.
        compile: Restore the training configuration and optimizer state.
        allow_imports: Package prefixes whose modules may be imported to find
            custom objects (``("my_project",)``); nothing else is imported.
        on_mismatch: ``"warn"``, ``"error"`` or ``"ignore"`` changes of
            versions, modules, signatures or sources since saving.
        expected_digest: Refuse the file unless its content digest is this.
        signing_key: Refuse the file unless it is signed with this key (the
            ``signing_key`` it was saved with).
        limits: Bounds on sizes, counts and nesting checked before anything
            is read (:class:`~keras_safe.ArchiveLimits`; None for the defaults).
        on_optimizer_mismatch: What to do with optimizer state in the file
            that the loaded model's optimizer cannot take (a file saved by
            plain Keras from a model whose class overrides ``compile()``,
            such as a keras-hub task): ``"error"`` (the default) refuses the
            file; ``"warn"`` loads everything else and leaves the optimizer
            as the model's constructor made it, with a
            :class:`~keras_safe.TrainingStateWarning` naming what was dropped.
        verify_key: Deprecated: the former name of ``signing_key`` (same
            meaning; warns). Passing both is an error.

    Raises:
        IntegrityError: digests, sizes or signature do not match (corruption,
            truncation, tampering).
        UnsafeModelError: the file refers to something not allowed to run.
        MissingObjectsError: custom objects are not available; lists all.
        CompatibilityError: the code changed so the saved config or weights no
            longer fit (or drift with ``on_mismatch="error"``), or the file's
            optimizer state does not fit the loaded model's optimizer.

    Example:
        >>> model = keras_safe.load("model.keras", allow_imports=("my_project",))
    """
    options = LoadOptions.make(
        custom_objects,
        compile,
        allow_imports,
        on_mismatch,
        expected_digest,
        signing_key,
        limits,
        on_optimizer_mismatch,
    )
    path = existing_path(filepath)
    with containment.contained_failures(path):
        if sniff(path) == "hdf5":
            return foreign.load_h5(path, options)
        with ArchiveReader(path, options.limits) as reader:
            return load_archive(reader, options)


def inspect(filepath: str | os.PathLike[str], *, limits: ArchiveLimits | None = None) -> Manifest:
    """The :class:`~keras_safe.Manifest` of a file, without building the model.

    Neither the model nor its weights are read. For a file without a
    manifest (saved by plain Keras), one is derived from its config
    (``written_by == "keras"``, no digests). ``aliases`` maps each saved key
    that this process resolves through an alias (a renamed class) to the
    key it resolves to now.

    Args:
        filepath: A ``.keras`` archive or legacy ``.h5`` file.
        limits: Bounds checked before anything is read, as for :func:`load`.

    Example:
        >>> keras_safe.inspect("model.keras").objects[0].key
        'my_project>CustomAttention'
    """
    checked = resolve_limits(limits)
    path = existing_path(filepath)
    with containment.contained_failures(path):
        if sniff(path) == "hdf5":
            return migration.with_aliases(foreign.inspect_h5(path, checked))
        with ArchiveReader(path, checked) as reader:
            manifest = read_manifest(reader)
            config = parse_json(reader.read(CONFIG), CONFIG, path, checked)
            config = check_configs([config], path, checked, manifest=manifest).configs[0]
            if reader.has(WEIGHTS):
                # The same HDF5 checks as load and diff, though inspect reads no
                # weight; weights that are not HDF5 at all (damage) do not stop it.
                where = f"{WEIGHTS} in {path}"
                with contextlib.suppress(IntegrityError):
                    window = reader.window(WEIGHTS)
                    open_weights(window, where, checked, reader.size(WEIGHTS)).close()
            if manifest is None:
                manifest = foreign.derive_manifest(reader, config)
            return migration.with_aliases(manifest)


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`.

    Attributes:
        ok: True when every check passed (also the report's truth value).
        problems: Why not, one paragraph per problem.
        warnings: Compatibility warnings raised while loading.
        error: The keras_safe error behind ``problems``, if any.
    """

    path: Path
    ok: bool
    manifest: Manifest | None
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    error: KerasSafeError | None = field(default=None, compare=False)

    def __bool__(self) -> bool:
        return self.ok


@renamed_keywords("verify", verify_key="signing_key")
def verify(filepath: str | os.PathLike[str], **load_kwargs: Unpack[LoadKwargs]) -> VerifyReport:
    """Run every load-time check on a file; return a report instead of a model.

    Takes :func:`load`'s keyword arguments. keras_safe errors become
    ``ok=False`` with their message in ``problems``; invalid arguments raise.

    Example:
        >>> report = keras_safe.verify("model.keras", allow_imports=("my_project",))
        >>> report.ok
        True
    """
    path = as_path(filepath)
    manifest: Manifest | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            manifest = inspect(path, limits=load_kwargs.get("limits"))
            load(path, **load_kwargs)
        except _UsageError:
            raise
        except KerasSafeError as exc:
            noted = tuple(str(w.message) for w in caught)
            return VerifyReport(path, False, manifest, (str(exc),), noted, exc)
    noted = tuple(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    return VerifyReport(path, True, manifest, (), noted)


# -- references ---------------------------------------------------------------------


# -- loading ------------------------------------------------------------------------


def load_archive(
    reader: ArchiveReader,
    options: LoadOptions,
    *,
    own_file: bool = False,
    read_back: Collection[str] = (),
) -> Any:
    """Every check, then the model; see the module docstring for the order.

    ``own_file``: the archive was just written by this process
    (``save(roundtrip=True)``), so its weights need no guarding before they are
    parsed: their digests are checked once loaded, the hashing overlapping
    the loading instead of delaying it. ``read_back``: members of such a file
    whose manifest digest the writer computed by reading them back from this
    very file; hashing them again would compare the file's bytes with
    themselves, so it is skipped (for the weights of a 100M-parameter model
    with Adam, 1.2 GB). Every other digest is checked.
    """
    path = reader.path
    manifest = read_manifest(reader)
    check_pins(manifest, options, path)
    config_bytes = reader.read(CONFIG)
    hasher: Hasher | None = None
    if manifest is not None:
        check_member_list(manifest, reader)
        check_digest(reader, manifest, CONFIG, _sha256(config_bytes))
        skipped = set(read_back) if own_file else set()
        names = [n for n in manifest.members if n != CONFIG and n not in skipped]
        hasher = Hasher(reader, manifest, names) if names else None
        if hasher is not None:
            hasher.start()
    try:
        # A model loaded without compiling never reads its compile config, so
        # nothing in it is resolved either.
        config = parse_json(config_bytes, CONFIG, path, reader.limits)
        if not options.compile and config.get("compile_config") is not None:
            config = {**config, "compile_config": None}
        resolver = Resolver(options.custom_objects, options.allow_imports)
        screened = check_configs(
            [config], path, reader.limits, resolver=resolver, manifest=manifest
        )
        # Built as checked: a torch optimizer read as the public class it stands
        # for, so the file loads under any backend.
        config = screened.configs[0]
        estimate = screened.estimate
        resolved = resolve_pending(screened.resolved, screened.pending, resolver, manifest, path)
        if manifest is not None:
            live = {r.reference.key: r.obj for r in resolved if r.source == "registry"}
            now = environment()
            report_drift(
                find_drift(manifest, now, live),
                options.on_mismatch,
                path,
                backend_note(manifest, now),
            )
        # Variables are budgeted against the bytes the weights occupy in the
        # file: a compressed member may declare far more than it holds.
        weights_bytes = 0
        if reader.has(WEIGHTS):
            weights_bytes = min(reader.size(WEIGHTS), reader.members[WEIGHTS].compress_size)
        model = build_model(config, resolver.keras_custom_objects(), path, weights_bytes, estimate)
        if config.get("compile_config") and not own_file:
            _warn_unapplied_compile(model, config["compile_config"])
        if hasher is not None and not own_file:
            hasher.check()
            hasher = None
        saved_optimizer = _class_name(config.get("compile_config"))
        load_weights(model, reader, options, resolved, estimate, saved_optimizer)
        if hasher is not None:
            hasher.check()
            hasher = None
    finally:
        if hasher is not None:
            hasher.join()
    return model


def _class_name(compile_config: Any) -> str | None:
    """The class name of the optimizer a compile config names, if any."""
    optimizer = compile_config.get("optimizer") if isinstance(compile_config, dict) else None
    if isinstance(optimizer, dict) and isinstance(optimizer.get("class_name"), str):
        return str(optimizer["class_name"])
    return optimizer if isinstance(optimizer, str) else None


def _warn_unapplied_compile(model: Any, compile_config: Any) -> None:
    """Say so when Keras skipped the saved compile config (it warns in its own words)."""
    if _keras.restores_compile(model) or _same_compile(model, compile_config):
        return
    cls = type(model).__name__
    saved = _class_name(compile_config)
    current = getattr(model, "optimizer", None)
    warnings.warn(
        f"{cls} overrides compile() without compile_from_config(), so the training "
        f"configuration saved with it (optimizer {saved or 'none'}, and its loss and metrics) "
        "was not applied: "
        + (
            f"the model has what its constructor compiled (optimizer {type(current).__name__}). "
            if current is not None
            else "the model is not compiled. "
        )
        + "Call model.compile(...) before training to use other settings.",
        TrainingStateWarning,
        stacklevel=4,
    )


def _same_compile(model: Any, saved: Any) -> bool:
    """Whether the model's constructor compiled it as it was saved (optimizer names aside)."""
    try:
        current = _keras.public_optimizer_names(json.loads(json.dumps(model.get_compile_config())))
    except Exception:  # a custom get_compile_config
        return False

    def anonymous(config: Any) -> Any:
        if not isinstance(config, dict) or not isinstance(config.get("optimizer"), dict):
            return config
        optimizer = dict(config["optimizer"])
        optimizer["config"] = {k: v for k, v in optimizer.get("config", {}).items() if k != "name"}
        return {**config, "optimizer": optimizer}

    return bool(anonymous(current) == anonymous(saved))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_model(
    config: dict[str, Any],
    custom_objects: dict[str, Any],
    path: Path,
    weights_bytes: int | None = None,
    estimate: BuildEstimate | None = None,
) -> Any:
    """Let Keras build the (already checked) config; its failures become ours.

    With ``weights_bytes`` (the size of the weights the model will be loaded
    from), Keras may allocate variables for at most four times that
    (optimizer slots included): a config asking for ``Dense(units=10**9)``
    is refused before the memory is taken. With ``estimate`` (from
    :func:`~keras_safe._guard.gate.check_configs`), what ``build()``
    allocates besides variables is bounded by what is left of
    ``max_build_bytes``, and the rebuild by ``max_build_seconds`` of wall
    clock (checked before every layer call and variable).
    """
    budget = containment.variable_budget(weights_bytes)
    build_bytes = estimate.remaining if estimate is not None else None
    seconds = estimate.limits.max_build_seconds if estimate is not None else None
    try:
        with (
            warnings.catch_warnings(),
            _keras.variable_budget(budget, build_bytes, seconds) as exceeded,
        ):
            warnings.filterwarnings("ignore", message=".*build\\(\\)` was called on layer")
            # Said in keras_safe's words by load_archive (_warn_unapplied_compile).
            warnings.filterwarnings("ignore", message="`compile\\(\\)` was not called as part")
            model = _keras.deserialize_model(config, custom_objects)
    except KerasSafeError:
        raise
    except Exception as exc:
        if exceeded:
            raise containment.too_large(path, exceeded) from None
        raise CompatibilityError(
            f"Keras could not rebuild the model in {path} from its config: "
            f"{type(exc).__name__}: {containment.first_lines(exc)}\nFix: the code of a custom "
            "class probably changed since saving; add a migration (config_version / "
            f"upgrade_config) or restore the old signature.\n{_see_docs('CompatibilityError')}"
        ) from exc
    if exceeded:
        raise containment.too_large(path, exceeded)
    if not isinstance(model, keras.Model):
        raise UnsafeModelError(
            f"{path} holds a {type(model).__name__}, not a model; refusing to return it."
        )
    return model


def load_weights(
    model: Any,
    reader: ArchiveReader,
    options: LoadOptions,
    resolved: Sequence[Resolved] = (),
    estimate: BuildEstimate | None = None,
    saved_optimizer: str | None = None,
) -> None:
    """Load every variable; fail unless each weight in the file went somewhere.

    ``resolved`` (the config's references) tells which classes were renamed
    since saving, so their weights are found under the old names.
    ``saved_optimizer`` is the class the compile config names, for messages.
    """
    if not reader.has(WEIGHTS):
        other = next((n for n in reader.members if n.startswith("model.weights")), None)
        raise CompatibilityError(
            f"{reader.path} has no {WEIGHTS}"
            + (f" (it has {other}, a format keras_safe does not read)" if other else "")
            + "; keras_safe loads archives whose weights are in HDF5, as Keras writes them."
        )
    has_assets = any(n.startswith(ASSETS_DIR) and not n.endswith("/") for n in reader.members)
    scratch_dir = (
        tempfile.TemporaryDirectory(prefix="keras-safe-assets-")
        if has_assets
        else contextlib.nullcontext(None)
    )
    with scratch_dir as scratch:
        assets_dir = _extract_assets(reader, Path(scratch), estimate) if scratch else None
        try:
            store = _keras.RecordingH5Store(reader.window(WEIGHTS))
        except OSError as exc:
            raise IntegrityError(f"{WEIGHTS} in {reader.path} is not valid HDF5: {exc}") from exc
        try:
            where = f"{WEIGHTS} in {reader.path}"
            datasets: dict[str, tuple[tuple[int, ...], str]] = {}
            scan_weights(store.h5_file, where, reader.limits, reader.size(WEIGHTS), datasets)
            store.scanned = True
            datasets = datasets or dataset_shapes(store.h5_file)
            skip, mismatch = _optimizer_to_skip(
                model, datasets, options, reader.path, saved_optimizer, store.h5_file
            )
            migration.map_renamed_layers(model, store, resolved)
            store.check = DatasetChecker(_keras.model_variables(model, not skip), where)
            errors, warned = _keras.load_state(model, store, assets_dir, skip)
            if store.check.refusals:
                raise UnsafeModelError("\n".join(dict.fromkeys(store.check.refusals)))
        finally:
            store.close()
    has_optimizer = not skip and getattr(model, "optimizer", None) is not None
    unread = [
        name
        for name in sorted(set(datasets) - store.consumed)
        if has_optimizer or not name.startswith("optimizer/")
    ]
    problems = errors + [w for w in warned if not any(b in w for b in _BENIGN_WARNINGS)]
    if len(unread) == 1:
        problems.append(f"weight {unread[0]} in the file was not loaded into any variable")
    elif unread:
        problems.append(
            f"{len(unread)} weights in the file were not loaded into any variable: "
            + _first_few(unread)
        )
    too_new = _keras.compat.nested_container_weights(unread)
    if too_new is not None:
        problems.append(too_new)
    if mismatch is not None and not problems:
        raise mismatch
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems[:5])
        if len(problems) > 5:
            lines += f"\n  ... and {len(problems) - 5} more"
        raise CompatibilityError(
            f"Not every weight in {reader.path} could be loaded into the rebuilt model, so it "
            f"is not returned. {len(problems)} problem(s):\n{lines}\nFix: a layer's build() "
            "must create all its weights (including those of its sublayers); a class renamed "
            "since saving needs register(aliases=('old_package>OldName',)) so its weights "
            f"are found.\n{_see_docs('CompatibilityError')}"
        )


def _first_few(names: list[str], first: int = 3) -> str:
    shown = ", ".join(names[:first])
    return shown + (f" and {len(names) - first} more" if len(names) > first else "")


def _optimizer_to_skip(
    model: Any,
    datasets: Mapping[str, Any],
    options: LoadOptions,
    path: Path,
    saved_optimizer: str | None,
    h5_file: Any = None,
) -> tuple[tuple[Any, ...], CompatibilityError | None]:
    """``(model.optimizer,)`` when the file's optimizer state is not to be loaded.

    That is: ``compile=False``; a file without optimizer state
    (``save(include_optimizer=False)``, or left out because it could not
    load back); or state the loaded optimizer cannot take, which is refused
    unless ``on_optimizer_mismatch="warn"`` (Keras itself skips it with a
    warning and goes on): then the error to raise is returned too, raised
    only if the model's own weights all loaded (otherwise they are the cause).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return (), None
    saved = [name for name in datasets if name.startswith("optimizer/")]
    if not options.compile or not saved:
        return (optimizer,), None
    flat = [name for name in saved if name.startswith("optimizer/vars/")]
    if len(flat) != len(saved) or len(flat) == len(optimizer.variables):
        return (), None  # nested optimizers (loss scaling): Keras' own checks decide
    if _never_stepped(flat, h5_file) and len(flat) < len(optimizer.variables):
        # Saved compiled but never trained (plain model.save after compile()):
        # the optimizer was not built, so the file holds its step count, 0,
        # and its learning rate, which the compile config holds too. The
        # loaded optimizer starts from exactly that; nothing is lost.
        return (optimizer,), None
    cls = type(model).__name__
    if not _keras.restores_compile(model):
        why = (
            f"{cls} overrides compile() without compile_from_config(), so Keras does not "
            "restore the saved optimizer: the model has the one its constructor compiled"
        )
    elif not optimizer.built:
        why = "the model has no trainable variables to build its optimizer for"
    else:
        why = (
            "the saved optimizer was built for other variables than the model's trainable variables"
        )
    what = (
        f"the optimizer state in {path} ({len(flat)} variables of the saved optimizer"
        f"{' ' + saved_optimizer if saved_optimizer else ''}: its step count and slots, "
        f"{_first_few(sorted(flat, key=_natural))}) does not fit the loaded model's optimizer "
        f"{type(optimizer).__name__}, which has {len(optimizer.variables)} variables, because "
        f"{why}"
    )
    if options.on_optimizer_mismatch == "warn":
        warnings.warn(
            f"keras_safe.load: {what}. It was not loaded: every weight of the model was, and "
            "its optimizer is as the model's constructor made it.",
            TrainingStateWarning,
            stacklevel=5,
        )
        return (optimizer,), None
    return (optimizer,), CompatibilityError(
        f"{what[0].upper()}{what[1:]}.\nFix: to load the model without that state (a "
        "warning names what is dropped): keras_safe.load(path, on_optimizer_mismatch='warn'), "
        "or keras_safe.load(path, compile=False); then re-save it with keras_safe.save, which "
        f"records in the file what it holds.\n{_see_docs('CompatibilityError')}"
    )


def _never_stepped(flat: list[str], h5_file: Any) -> bool:
    """Whether the file's optimizer variables are an unbuilt optimizer's, at step 0.

    An optimizer that was never built has only its step count
    (``optimizer/vars/0``) and, with a constant learning rate, that rate.
    """
    if h5_file is None or not 1 <= len(flat) <= 2 or "optimizer/vars/0" not in flat:
        return False
    try:
        steps = h5_file["optimizer"]["vars"]["0"]
        return steps.shape == () and steps.dtype.kind in "iu" and int(steps[()]) == 0
    except (KeyError, TypeError, ValueError, OSError):
        return False


def _natural(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("/")
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def _extract_assets(
    reader: ArchiveReader, scratch: Path, estimate: BuildEstimate | None = None
) -> Path | None:
    names = [n for n in reader.members if n.startswith(ASSETS_DIR) and not n.endswith("/")]
    if not names:
        return None
    root = scratch / "assets"
    root.mkdir()
    for name in names:
        target = scratch / name
        data = reader.read_all(name)
        if estimate is not None and name.endswith("/vocabulary.txt"):
            # A lookup layer reads it into one numpy array: every token padded
            # to the longest, with the out-of-vocabulary tokens.
            need = asset_vocabulary_bytes(data, estimate)
            if need > estimate.remaining:
                raise UnsafeModelError(
                    f"Member {name!r} of {reader.path} is a vocabulary numpy would pad to "
                    f"{need} bytes, more than what is left of ArchiveLimits.max_build_bytes "
                    f"({estimate.remaining} bytes); refusing it before Keras reads it."
                )
            estimate.build_bytes += need
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise UnsafeModelError(
                f"Member {name!r} of {reader.path} clashes with another asset ({exc.strerror}); "
                "an asset cannot be both a file and a folder."
            ) from None
    return root
