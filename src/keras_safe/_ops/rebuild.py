"""``save(roundtrip=True)``: rebuild the model from the written bytes and compare.

The rebuild goes through every check of :func:`keras_safe.load` (registry
only, no live objects), so a model that passes loads in a fresh process.

It runs twice only when something is wrong. The first rebuild is deferred
(see ``_keras.deferred_variables``): its variables get no values of their
own, and each value loaded from the file is compared bit for bit with the
live variable at the same position as it is assigned, then dropped, so that
neither a second copy of the weights nor their random initial values are
ever made (for a 100M-parameter model with Adam, that would be 1.2 GB
generated, 1.2 GB read into fresh memory and 1.2 GB copied). That rebuild
can only confirm; anything it finds, or a model it cannot build that way, is
settled by an ordinary rebuild, which explains the problem as a fresh
process would meet it.

What a rebuild proves is kept for the next save of the same model (a
training script saving every epoch): that this config, read with these
registered classes, rebuilds a model whose variables are these, in this
order, and loads the written values into them. While none of that changed
(see :func:`_proof_basis`), a later save needs no rebuild: only the values
changed, and they are written by the same code, with the manifest's
digests computed from the written bytes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Collection, Hashable
from pathlib import Path
from typing import Any

import keras

from keras_safe import _keras
from keras_safe._config.registry import registry
from keras_safe._format.manifest import Manifest
from keras_safe._format.reader import METADATA, WEIGHTS, ArchiveReader
from keras_safe._ops import load as loading
from keras_safe._ops.compare import config_differences, output_differences, weight_differences
from keras_safe._ops.options import LoadOptions
from keras_safe.errors import KerasSafeError, VerificationError, _see_docs

__all__ = ["forget_proofs", "last_verification", "verify_written"]

_log = logging.getLogger("keras_safe")
_LAST = threading.local()
# model -> the basis of the last rebuild that confirmed a file of it
_PROVEN: weakref.WeakKeyDictionary[Any, Hashable] = weakref.WeakKeyDictionary()
_PROVEN_LOCK = threading.Lock()
# Methods whose Keras versions write and read variables and assets by position
# only; an override elsewhere may depend on the values, so its proof is not reused.
_STATE_METHODS = ("save_own_variables", "load_own_variables", "save_assets", "load_assets")


def last_verification() -> tuple[str, str | None] | None:
    """How this thread's last ``save(roundtrip=True)`` rebuilt the model, or None.

    ``("deferred", None)``: the deferred rebuild confirmed the file (the fast
    path); ``("reused", None)``: an earlier rebuild of the same model proved
    everything this save could change except the values (see the module's
    docstring); ``("ordinary", reason)``: the ordinary rebuild settled it, and
    ``reason`` says why the deferred one did not. Not part of the file nor of
    the returned manifest: for tests and the benchmark.
    """
    last: tuple[str, str | None] | None = getattr(_LAST, "path", None)
    return last


def verify_written(
    model: Any,
    config: dict[str, Any],
    path: Path,
    sample_input: Any,
    *,
    target: Path | None = None,
    compare_optimizer: bool = True,
    compare_compile: bool = True,
    read_back: Collection[str] = (),
    manifest: Manifest | None = None,
) -> None:
    """Raise :class:`~keras_safe.VerificationError` unless ``path`` rebuilds ``model``.

    ``target`` is the path the file is being saved to: messages name it,
    never the temporary file. ``read_back``: the members whose recorded
    digest the writer computed from the written file itself (not hashed
    again). ``compare_optimizer=False``: the file holds
    no optimizer state (see ``save``'s ``include_optimizer``);
    ``compare_compile=False``: loading does not apply the compile config
    (the class overrides ``compile()``), so the rebuilt one is not compared.
    ``manifest``: the manifest written; with it, a confirmed rebuild is
    remembered for the next save of ``model`` (see :func:`_proof_basis`).
    """
    shown = target if target is not None else path
    if not compare_compile:
        config = {k: v for k, v in config.items() if k != "compile_config"}
    problems: list[str] | None = None
    _LAST.path = None
    basis = _proof_basis(model, sample_input, manifest, compare_optimizer)
    if basis is not None and _proven(model) == basis:
        _LAST.path = ("reused", None)
        _log.debug(
            "save(roundtrip=True) of %s: reused the proof of an earlier save of this model "
            "(same config, classes and variables; only values changed)",
            shown,
        )
        return
    try:
        scope = _ComparingScope(model if sample_input is None else None, compare_optimizer)
        with _keras.deferred_variables(scope):
            rebuilt = _rebuild(path, shown, read_back)
            problems = _differences(model, config, rebuilt, sample_input, scope, compare_optimizer)
    except Exception as exc:  # the ordinary rebuild below reports what is wrong
        problems = None
        reason = f"the deferred rebuild failed: {type(exc).__name__}: {_one_line(exc)}"
    else:
        reason = f"the deferred rebuild could not confirm it: {'; '.join(problems[:3])}"
    if problems == []:
        _remember(model, basis)
        _LAST.path = ("deferred", None)
        _log.debug("save(roundtrip=True) of %s: the deferred rebuild confirmed the file", shown)
    else:
        _LAST.path = ("ordinary", reason)
        _log.debug("save(roundtrip=True) of %s: ordinary rebuild, because %s", shown, reason)
        rebuilt = _rebuild(path, shown, read_back)
        problems = _differences(model, config, rebuilt, sample_input, None, compare_optimizer)
        if not problems:
            _remember(model, basis)
    if problems:
        _remember(model, None)
        raise VerificationError(
            f"The model rebuilt from the bytes written for {shown} differs from the one being "
            f"saved, so {shown} was not written (a file already there is unchanged). "
            f"{summarize(problems)}\n{_fix(model)}\n{_see_docs('VerificationError')}"
        )


def _proof_basis(
    model: Any,
    sample_input: Any,
    manifest: Manifest | None,
    with_optimizer: bool,
) -> Hashable | None:
    """Everything a rebuild of ``model``'s file depends on but the values; None: never reused.

    The digest of every member but the weights (config.json holds the
    config as written, and assets carry data that loading interprets);
    every custom object as recorded (module, version, signature, source
    digest) and the registry's
    key-to-object map (loading resolves through it); Keras' backend and
    global dtype policy; each variable's path, shape and dtype, and the
    optimizer's. Not reused when outputs on ``sample_input`` are compared
    (they depend on the values), nor when a layer, the model or its
    optimizer writes or reads its own state with code other than Keras'.
    """
    if manifest is None or sample_input is not None:
        return None
    optimizer = getattr(model, "optimizer", None) if with_optimizer else None
    owners = [model, *_keras.all_layers(model), *([optimizer] if optimizer is not None else [])]
    for owner in owners:
        for name in _STATE_METHODS:
            defined_in = next((c for c in type(owner).__mro__ if name in vars(c)), None)
            if defined_in is not None and not defined_in.__module__.startswith("keras."):
                return None
    variables = list(model.weights) + (list(optimizer.variables) if optimizer is not None else [])
    try:
        layout = tuple((v.path, tuple(v.shape), str(v.dtype)) for v in variables)
        known = tuple(sorted((key, id(registry.get(key))) for key in registry))
    except (TypeError, ValueError, AttributeError):
        return None
    members = tuple(
        sorted(
            (name, record.sha256)
            for name, record in manifest.members.items()
            if name not in (WEIGHTS, METADATA)
        )
    )
    return (
        members,
        manifest.objects,
        known,
        keras.backend.backend(),
        keras.config.dtype_policy().name,
        layout,
        with_optimizer,
    )


def forget_proofs() -> None:
    """Forget every remembered proof: each model's next save rebuilds (benchmarks, tests)."""
    with _PROVEN_LOCK:
        _PROVEN.clear()


def _proven(model: Any) -> Hashable | None:
    with _PROVEN_LOCK:
        try:
            return _PROVEN.get(model)
        except TypeError:  # not weak-referenceable
            return None


def _remember(model: Any, basis: Hashable | None) -> None:
    with _PROVEN_LOCK:
        try:
            if basis is None:
                _PROVEN.pop(model, None)
            else:
                _PROVEN[model] = basis
        except TypeError:
            pass


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (Keras' are several, with terminal colours)."""
    line = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _fix(model: Any) -> str:
    """The fix for a rebuilt model that differs, by its likeliest cause."""
    lora = [
        layer.name for layer in _keras.all_layers(model) if getattr(layer, "lora_enabled", False)
    ]
    if lora:
        return (
            f"Likely cause: {len(lora)} layer(s) have LoRA enabled ({', '.join(lora[:3])}"
            f"{', ...' if len(lora) > 3 else ''}), which a model rebuilt from its constructor "
            "arguments (a keras-hub backbone after enable_lora()) does not record, so the "
            "rebuilt model has no LoRA weights. Fix: save the model as it was before "
            "enable_lora() and the adapters with backbone.save_lora_weights(...), or build the "
            "layers with lora_rank in their config."
        )
    return (
        "Fix: make get_config()/from_config() capture every constructor argument (or subclass "
        "keras_safe.SerializableLayer), and create all weights in build()."
    )


def summarize(problems: list[str], first: int = 5) -> str:
    """``"N difference(s):"`` and the first few, then how many more."""
    lines = "\n".join(f"  - {p}" for p in problems[:first])
    more = f"\n  ... and {len(problems) - first} more" if len(problems) > first else ""
    return f"{len(problems)} difference(s):\n{lines}{more}"


def _rebuild(path: Path, shown: Path | None = None, read_back: Collection[str] = ()) -> Any:
    """The model as a fresh process would load it: registry only, every check on.

    It is rebuilt in this process, from the bytes written, with nothing
    but what ``keras_safe.load`` would use in a new one.
    """
    options = LoadOptions.make(None, True, (), "ignore", None, None)
    with ArchiveReader(path) as reader:
        try:
            return loading.load_archive(reader, options, own_file=True, read_back=read_back)
        except KerasSafeError as exc:
            shown = shown or path
            text = str(exc).replace(str(path), str(shown)).replace(path.name, shown.name)
            raise VerificationError(
                f"The file written for {shown} does not load back the way keras_safe.load would "
                f"load it in a new process, so {shown} was not written (a file already there is "
                f"unchanged):\n{text}\n{_see_docs('VerificationError')}"
            ) from exc


class _ComparingScope(_keras.ObservingScope):
    """The stateless scope of a deferred rebuild.

    Given the live model, the values assigned to the rebuilt model's weights
    and optimizer variables are compared with the live variable at the same
    position as they arrive, and only the outcome is kept; other values (or
    all of them, without a live model: outputs on ``sample_input`` are
    computed from them) are kept as Keras keeps them.
    """

    def __init__(self, live: Any, with_optimizer: bool = True) -> None:
        super().__init__()
        self._live = live
        self._with_optimizer = with_optimizer
        self._pairs: dict[int, tuple[Any, str]] = {}
        self._rebuilt: set[int] = set()
        self.compared: dict[int, list[str]] = {}
        self.read_unloaded = False

    @property
    def live_model(self) -> Any:
        """The live model (None when outputs are compared: then nothing is borrowed)."""
        return self._live

    def model_built(self, rebuilt: Any) -> None:
        """Pair the rebuilt model's variables with the live ones (before loading)."""
        lists = _variable_lists(self._live or rebuilt, rebuilt, self._with_optimizer)
        for what, live, new in lists:
            self._rebuilt.update(id(b) for b in new)
            if self._live is not None:
                for a, b in zip(live, new, strict=False):
                    self._pairs[id(b)] = (a, what)

    def value_read(self, variable: Any, value: Any) -> None:
        """Every read of a variable in the scope.

        A rebuilt variable read while no loaded value is kept for it (its
        placeholder, or a value already compared and dropped) would not read
        what an ordinary rebuild reads: this rebuild then cannot confirm.
        """
        if value is None and id(variable) in self._rebuilt:
            self.read_unloaded = True

    def assigned(self, variable: Any, value: Any) -> bool:
        """Compare a loaded value of a paired variable and drop it; keep any other."""
        pair = self._pairs.get(id(variable))
        if pair is None:
            return False
        live, what = pair
        self.compared[id(variable)] = weight_differences([live], [variable], what, lambda _: value)
        return True

    def differences(self, saved: list[Any], rebuilt: list[Any], what: str) -> list[str]:
        """Like ``weight_differences``, for variables loaded in this scope."""
        return weight_differences(saved, rebuilt, what, self.current_value, self.compared)


def _variable_lists(
    live: Any, rebuilt: Any, with_optimizer: bool = True
) -> list[tuple[str, list[Any], list[Any]]]:
    """(what, live variables, rebuilt variables) for the weights and optimizer state."""
    lists = [("weight", list(live.weights), list(rebuilt.weights))]
    optimizer = getattr(live, "optimizer", None)
    if with_optimizer and optimizer is not None and optimizer.variables:
        other = getattr(rebuilt, "optimizer", None)
        lists.append(
            ("optimizer variable", list(optimizer.variables), list(getattr(other, "variables", [])))
        )
    return lists


def _differences(
    model: Any,
    config: dict[str, Any],
    rebuilt: Any,
    sample_input: Any,
    scope: _ComparingScope | None,
    compare_optimizer: bool = True,
) -> list[str]:
    """Every difference; ``scope`` holds what a deferred rebuild loaded."""
    rebuilt_config = _keras.serialize_model(rebuilt)
    if "compile_config" not in config:
        rebuilt_config.pop("compile_config", None)
    problems = config_differences(config, rebuilt_config)
    if scope is not None and scope.read_unloaded:
        problems.append("a rebuilt variable was read before it was loaded")
    for what, live, new in _variable_lists(model, rebuilt, compare_optimizer):
        if scope is None:
            problems += weight_differences(live, new, what)
        else:
            problems += scope.differences(live, new, what)
    if sample_input is not None and not problems:
        with scope if scope is not None else contextlib.nullcontext():
            problems += output_differences(model, rebuilt, sample_input)
        if scope is not None and scope.read_unloaded:
            problems.append("a rebuilt variable was read before it was loaded")
    return problems
