"""What a registered object is and where it comes from: its kind, Keras or not, distribution.

Used by :mod:`keras_safe._config.registry` for :class:`~keras_safe.RegistryEntry`.
"""

from __future__ import annotations

import enum
import functools
import importlib.metadata
import inspect
from typing import Any

import keras

# Checked in order: the first base class an object derives from names its kind.
_KINDS: tuple[tuple[str, type], ...] = (
    ("model", keras.Model),
    ("layer", keras.layers.Layer),
    ("loss", keras.losses.Loss),
    ("metric", keras.metrics.Metric),
    ("optimizer", keras.optimizers.Optimizer),
    ("schedule", keras.optimizers.schedules.LearningRateSchedule),
    ("initializer", keras.initializers.Initializer),
    ("regularizer", keras.regularizers.Regularizer),
    ("constraint", keras.constraints.Constraint),
    ("dtype_policy", keras.DTypePolicy),
    ("enum", enum.Enum),
)


def kind_of(obj: Any) -> str:
    """The kind of a registrable object: ``"layer"``, ``"loss"``, ``"function"`` ..."""
    if inspect.isclass(obj):
        for kind, base in _KINDS:
            if issubclass(obj, base):
                return kind
        return "class"
    return "function"


def defined_in_keras(cls: type) -> bool:
    """Whether ``cls`` is defined in Keras itself (its module is ``keras`` or below it).

    True for Keras' layers and models and for the containers Keras wraps
    attribute values in (``TrackedList`` ...); False for subclasses defined
    elsewhere.
    """
    return cls.__module__.split(".", 1)[0] == "keras"


def definition_of(obj: Any) -> tuple[str, str]:
    """(module, qualname) of a class or function: what one registry key stands for."""
    return (getattr(obj, "__module__", None) or "?", getattr(obj, "__qualname__", "?"))


@functools.cache
def _distributions_by_package() -> dict[str, list[str]]:
    # Scans every installed distribution once (a few hundred milliseconds
    # with a large environment): saves and listings need it, loads ask the
    # distribution their file names first (distribution_providing).
    return dict(importlib.metadata.packages_distributions())


@functools.cache
def distribution_of(module: str) -> tuple[str | None, str | None]:
    """The installed distribution (name, version) providing ``module``, if any."""
    top = module.split(".", 1)[0]
    if top in ("__main__", "builtins", ""):
        return None, None
    names = _distributions_by_package().get(top)
    if not names:
        return None, None
    name = names[0]
    try:
        return name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return name, None


def _provides(dist: importlib.metadata.Distribution, top: str) -> bool:
    """Whether ``dist`` installs the top-level module or package ``top``.

    Read as ``importlib.metadata.packages_distributions`` reads it: the
    names ``top_level.txt`` declares, else the top-level names of the files
    the distribution lists.
    """
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return top in declared
    for file in dist.files or ():
        parts = file.parts
        if len(parts) > 1:
            if parts[0] == top:
                return True
        elif inspect.getmodulename(file.name) == top:
            return True
    return False


@functools.cache
def distribution_providing(module: str, name: str | None) -> tuple[str | None, str | None]:
    """:func:`distribution_of`, asking the distribution ``name`` first.

    A loaded file names the distribution each object came from. If that
    distribution is still installed and still provides ``module``'s
    top-level package, its (name, version) is the answer, read from that
    one distribution's metadata; otherwise every installed distribution is
    scanned, as :func:`distribution_of` does.
    """
    top = module.split(".", 1)[0]
    if name and top not in ("__main__", "builtins", ""):
        try:
            dist = importlib.metadata.distribution(name)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            dist = None
        if dist is not None and _provides(dist, top):
            return dist.metadata["Name"], dist.version
    return distribution_of(module)
