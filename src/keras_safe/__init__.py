"""keras_safe: Keras models with custom components that save and load reliably and safely.

Public names:

* :class:`SerializableLayer`, :class:`SerializableModel`, :class:`Serializable`:
  base classes whose ``get_config``/``from_config`` come from ``__init__``.
* :func:`register` and :data:`registry`: custom objects known to keras_safe and Keras.
* :func:`save` / :func:`load` (also ``safe_save`` / ``safe_load``): ``.keras``
  archives with an embedded, verified manifest; :func:`inspect`, :func:`verify`,
  :func:`diff`; :class:`ArchiveLimits` bounds what a loaded file may hold.
* :func:`upgrade`: re-save an old file after the migrations of
  ``config_version`` / ``upgrade_config`` and renamed classes' ``aliases``.
* :func:`load_latest` and :mod:`keras_safe.callbacks` (``SafeCheckpoint``):
  checkpoints during training; :mod:`keras_safe.testing` (``assert_roundtrip``).
* The errors of :mod:`keras_safe.errors`.

Names are imported on first use, so ``import keras_safe`` (and the
``keras-safe --help`` command line) does not pay for importing TensorFlow
until something that needs it is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> (module, attribute); attribute None means the module itself.
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "Serializable": ("keras_safe._config.base", "Serializable"),
    "SerializableLayer": ("keras_safe._config.base", "SerializableLayer"),
    "SerializableModel": ("keras_safe._config.base", "SerializableModel"),
    "CompatibilityError": ("keras_safe.errors", "CompatibilityError"),
    "CompatibilityWarning": ("keras_safe.errors", "CompatibilityWarning"),
    "IntegrityError": ("keras_safe.errors", "IntegrityError"),
    "KerasSafeError": ("keras_safe.errors", "KerasSafeError"),
    "MissingObjectsError": ("keras_safe.errors", "MissingObjectsError"),
    "RegistrationError": ("keras_safe.errors", "RegistrationError"),
    "SerializationError": ("keras_safe.errors", "SerializationError"),
    "TrainingStateWarning": ("keras_safe.errors", "TrainingStateWarning"),
    "UnsafeModelError": ("keras_safe.errors", "UnsafeModelError"),
    "VerificationError": ("keras_safe.errors", "VerificationError"),
    "VerifyReport": ("keras_safe._ops.load", "VerifyReport"),
    "inspect": ("keras_safe._ops.load", "inspect"),
    "load": ("keras_safe._ops.load", "load"),
    "safe_load": ("keras_safe._ops.load", "load"),
    "verify": ("keras_safe._ops.load", "verify"),
    "Manifest": ("keras_safe._format.manifest", "Manifest"),
    "ModelSummary": ("keras_safe._format.manifest", "ModelSummary"),
    "ObjectRecord": ("keras_safe._format.manifest", "ObjectRecord"),
    "Registry": ("keras_safe._config.registry", "Registry"),
    "RegistryEntry": ("keras_safe._config.registry", "RegistryEntry"),
    "register": ("keras_safe._config.registry", "register"),
    "registry": ("keras_safe._config.registry", "registry"),
    "save": ("keras_safe._ops.save", "save"),
    "safe_save": ("keras_safe._ops.save", "save"),
    "DiffReport": ("keras_safe._ops.diff", "DiffReport"),
    "diff": ("keras_safe._ops.diff", "diff"),
    "load_latest": ("keras_safe.callbacks", "load_latest"),
    "callbacks": ("keras_safe.callbacks", None),
    "testing": ("keras_safe.testing", None),
    "upgrade": ("keras_safe._ops.upgrade", "upgrade"),
    "ArchiveLimits": ("keras_safe._format.limits", "ArchiveLimits"),
}

if TYPE_CHECKING:
    from keras_safe import callbacks as callbacks
    from keras_safe import testing as testing
    from keras_safe._config.base import Serializable, SerializableLayer, SerializableModel
    from keras_safe._config.registry import Registry, RegistryEntry, register, registry
    from keras_safe._format.limits import ArchiveLimits
    from keras_safe._format.manifest import Manifest, ModelSummary, ObjectRecord
    from keras_safe._ops.diff import DiffReport, diff
    from keras_safe._ops.load import VerifyReport, inspect, load, verify
    from keras_safe._ops.load import load as safe_load
    from keras_safe._ops.save import save
    from keras_safe._ops.save import save as safe_save
    from keras_safe._ops.upgrade import upgrade
    from keras_safe.callbacks import load_latest
    from keras_safe.errors import (
        CompatibilityError,
        CompatibilityWarning,
        IntegrityError,
        KerasSafeError,
        MissingObjectsError,
        RegistrationError,
        SerializationError,
        TrainingStateWarning,
        UnsafeModelError,
        VerificationError,
    )


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'keras_safe' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ArchiveLimits",
    "CompatibilityError",
    "CompatibilityWarning",
    "DiffReport",
    "IntegrityError",
    "KerasSafeError",
    "Manifest",
    "MissingObjectsError",
    "ModelSummary",
    "ObjectRecord",
    "RegistrationError",
    "Registry",
    "RegistryEntry",
    "Serializable",
    "SerializableLayer",
    "SerializableModel",
    "SerializationError",
    "TrainingStateWarning",
    "UnsafeModelError",
    "VerificationError",
    "VerifyReport",
    "__version__",
    "callbacks",
    "diff",
    "inspect",
    "load",
    "load_latest",
    "register",
    "registry",
    "safe_load",
    "safe_save",
    "save",
    "testing",
    "upgrade",
    "verify",
]
