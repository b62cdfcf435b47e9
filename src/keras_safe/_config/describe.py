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

from keras_safe import _keras

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
    # Scans every installed distribution's metadata once (a few hundred
    # milliseconds with a large environment): only listings of the whole
    # registry need it. Saves and loads ask one distribution first
    # (installed_distribution_of, distribution_providing).
    return dict(importlib.metadata.packages_distributions())


def _answer(name: str) -> tuple[str | None, str | None]:
    try:
        return name, importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return name, None


def _outside_distributions(top: str) -> bool:
    return top in ("__main__", "builtins", "")


@functools.cache
def distribution_of(module: str) -> tuple[str | None, str | None]:
    """The installed distribution (name, version) providing ``module``, if any.

    The first distribution ``importlib.metadata.packages_distributions``
    names for the module's top-level package, found by scanning them all.
    """
    top = module.split(".", 1)[0]
    if _outside_distributions(top):
        return None, None
    names = _distributions_by_package().get(top)
    if not names:
        return None, None
    return _answer(names[0])


def _provides(dist: importlib.metadata.Distribution, top: str) -> bool:
    """Whether ``dist`` installs the top-level module or package ``top``.

    Read as the running Python's ``importlib.metadata.packages_distributions``
    reads it: the names ``top_level.txt`` declares, else the top-level names
    of the files the distribution lists.
    """
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return top in declared
    record = dist.read_text("RECORD")
    if record and top not in record:
        # Every name read from RECORD is part of its text: not worth parsing.
        return False
    return top in _keras.inferred_top_level_names(dist)


def _first_providing(top: str) -> str | None:
    """The name of the first distribution providing ``top``, in ``packages_distributions``' order.

    Reads each distribution's ``top_level.txt`` (or its RECORD) until one
    provides ``top``, and the metadata of that one only: a small part of
    the full scan, with the same answer. A scan already made answers first.
    """
    if _distributions_by_package.cache_info().currsize:
        names = _distributions_by_package().get(top)
        return names[0] if names else None
    return _read_first_providing(top)


def _read_first_providing(top: str) -> str | None:
    for dist in importlib.metadata.distributions():
        if _provides(dist, top):
            name: str = dist.metadata["Name"]
            return name
    return None


@functools.cache
def installed_distribution_of(module: str) -> tuple[str | None, str | None]:
    """:func:`distribution_of`, without scanning every distribution's metadata.

    The distribution named like the module's top-level package
    (``importlib.metadata`` normalizes ``_``, ``-`` and case) is asked
    first, and is the answer if it provides that package; otherwise the
    installed distributions are read in order until one provides it (none
    for a script or a project that is not installed).
    """
    top = module.split(".", 1)[0]
    if _outside_distributions(top):
        return None, None
    try:
        dist: importlib.metadata.Distribution | None = importlib.metadata.distribution(top)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        dist = None
    name = dist.metadata["Name"] if dist is not None and _provides(dist, top) else None
    name = name or _first_providing(top)
    return _answer(name) if name else (None, None)


@functools.cache
def distribution_providing(module: str, name: str | None) -> tuple[str | None, str | None]:
    """:func:`installed_distribution_of`, asking the distribution ``name`` first.

    A loaded file names the distribution each object came from. If that
    distribution is still installed and still provides ``module``'s
    top-level package, its (name, version) is the answer, read from that
    one distribution's metadata; otherwise the answer is
    :func:`installed_distribution_of`'s.
    """
    top = module.split(".", 1)[0]
    if name and not _outside_distributions(top):
        try:
            dist = importlib.metadata.distribution(name)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            dist = None
        if dist is not None and _provides(dist, top):
            return dist.metadata["Name"], dist.version
    return installed_distribution_of(module)
