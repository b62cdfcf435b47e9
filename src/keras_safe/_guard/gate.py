"""The one gate every entry point passes a file's configs through.

``load``, ``verify``, ``upgrade``, ``load_latest`` (and ``save``'s own
re-read), ``inspect`` and ``diff``, for ``.keras`` archives and legacy
``.h5`` files alike, call :func:`check_configs` on the configs they parsed
before doing anything else with them. It runs, on the parsed JSON and
without importing anything:

* the resource screen (:mod:`keras_safe._guard.resources`): structure a
  saved model never has, layer calls and rebuild steps, memory besides
  variables;
* the reference allowlist (:mod:`keras_safe._guard.allowlist`): every class
  or function a config names, and every string Keras would turn into one,
  must be a model part, and nothing may name code;
* the checks around references (:mod:`keras_safe._guard.screen`).

Every problem found is listed in one :class:`~keras_safe.UnsafeModelError`.
What is merely missing (a custom object not imported yet) is not a
refusal here: ``inspect`` and ``diff`` report such files, and ``load``
resolves what is pending with :func:`resolve_pending` afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_safe import _keras
from keras_safe._format.limits import ArchiveLimits
from keras_safe._guard.allowlist import (
    Reference,
    Resolved,
    Resolver,
    resolve_pending,
    screen_all,
)
from keras_safe._guard.resources import BuildEstimate, screen_resources
from keras_safe.errors import UnsafeModelError, _see_docs

if TYPE_CHECKING:
    from keras_safe._format.manifest import Manifest

__all__ = ["Screened", "check_configs", "resolve_pending"]


@dataclass
class Screened:
    """What passed the gate: the configs as checked, the build estimate, the references.

    ``configs`` are the configs passed in, each with every backend optimizer
    twin read as its public class (the same object when it names none):
    build from these, so what is built is what was checked, without a
    second walk over the config.
    """

    configs: list[dict[str, Any]]
    estimate: BuildEstimate
    resolver: Resolver
    resolved: list[Resolved]
    pending: list[Reference]


def check_configs(
    configs: list[dict[str, Any]],
    path: Path,
    limits: ArchiveLimits,
    *,
    resolver: Resolver | None = None,
    manifest: Manifest | None = None,
) -> Screened:
    """Check a file's configs (the model config first, then e.g. a legacy training config).

    ``resolver`` carries the caller's ``custom_objects`` and
    ``allow_imports`` (none for ``inspect`` and ``diff``); nothing is
    imported here.

    Raises:
        UnsafeModelError: listing every unsafe reference and every resource
            bound exceeded, before Keras sees any of it.
    """
    # A torch optimizer twin is checked as the public class it stands for, at
    # every entry point (load rewrites it the same way before building).
    configs = [_keras.public_optimizer_names(config) for config in configs]
    estimate = screen_resources(configs[0], limits) if configs else BuildEstimate(limits)
    resolver = resolver if resolver is not None else Resolver()
    try:
        resolved, pending = screen_all(configs, resolver, manifest, path)
    except UnsafeModelError:
        if not estimate.problems:
            raise
        # List the resource problems with the rest, in one message.
        screen_all(configs, resolver, manifest, path, estimate.problems)
        raise
    if estimate.problems:
        lines = "\n".join(f"  - {line}" for line in dict.fromkeys(estimate.problems))
        raise UnsafeModelError(
            f"{path} asks Keras for more work or memory than a model needs, so it is "
            f"refused before Keras builds anything:\n{lines}\n" + _see_docs("UnsafeModelError")
        )
    return Screened(configs, estimate, resolver, resolved, pending)
