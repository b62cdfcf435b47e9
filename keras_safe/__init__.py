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
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> (module, attribute); attribute None means the module itself.
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "Serializable": ("keras_safe.base", "Serializable"),
    "SerializableLayer": ("keras_safe.base", "SerializableLayer"),
    "SerializableModel": ("keras_safe.base", "SerializableModel"),
    "CompatibilityError": ("keras_safe.errors", "CompatibilityError"),
    "CompatibilityWarning": ("keras_safe.errors", "CompatibilityWarning"),
    "IntegrityError": ("keras_safe.errors", "IntegrityError"),
    "KerasSafeError": ("keras_safe.errors", "KerasSafeError"),
    "MissingObjectsError": ("keras_safe.errors", "MissingObjectsError"),
    "RegistrationError": ("keras_safe.errors", "RegistrationError"),
    "SerializationError": ("keras_safe.errors", "SerializationError"),
    "UnsafeModelError": ("keras_safe.errors", "UnsafeModelError"),
    "VerificationError": ("keras_safe.errors", "VerificationError"),
    "VerifyReport": ("keras_safe.loading", "VerifyReport"),
    "inspect": ("keras_safe.loading", "inspect"),
    "load": ("keras_safe.loading", "load"),
    "safe_load": ("keras_safe.loading", "load"),
    "verify": ("keras_safe.loading", "verify"),
    "Manifest": ("keras_safe.manifest", "Manifest"),
    "ModelSummary": ("keras_safe.manifest", "ModelSummary"),
    "ObjectRecord": ("keras_safe.manifest", "ObjectRecord"),
    "Registry": ("keras_safe.registry", "Registry"),
    "RegistryEntry": ("keras_safe.registry", "RegistryEntry"),
    "register": ("keras_safe.registry", "register"),
    "registry": ("keras_safe.registry", "registry"),
    "save": ("keras_safe.saving", "save"),
    "safe_save": ("keras_safe.saving", "save"),
    "DiffReport": ("keras_safe.diffing", "DiffReport"),
    "diff": ("keras_safe.diffing", "diff"),
    "load_latest": ("keras_safe.callbacks", "load_latest"),
    "callbacks": ("keras_safe.callbacks", None),
    "testing": ("keras_safe.testing", None),
    "upgrade": ("keras_safe.evolution", "upgrade"),
    "ArchiveLimits": ("keras_safe.limits", "ArchiveLimits"),
}

if TYPE_CHECKING:
    from keras_safe import callbacks as callbacks
    from keras_safe import testing as testing
    from keras_safe.base import Serializable, SerializableLayer, SerializableModel
    from keras_safe.callbacks import load_latest
    from keras_safe.diffing import DiffReport, diff
    from keras_safe.errors import (
        CompatibilityError,
        CompatibilityWarning,
        IntegrityError,
        KerasSafeError,
        MissingObjectsError,
        RegistrationError,
        SerializationError,
        UnsafeModelError,
        VerificationError,
    )
    from keras_safe.evolution import upgrade
    from keras_safe.limits import ArchiveLimits
    from keras_safe.loading import VerifyReport, inspect, load, verify
    from keras_safe.loading import load as safe_load
    from keras_safe.manifest import Manifest, ModelSummary, ObjectRecord
    from keras_safe.registry import Registry, RegistryEntry, register, registry
    from keras_safe.saving import save
    from keras_safe.saving import save as safe_save


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


class _Package(types.ModuleType):
    """The package's module type: keeps public names from being hidden by submodules.

    Importing a submodule binds it as an attribute of the package, and
    ``keras_safe.registry`` the module would hide ``keras_safe.registry`` the
    registry object. Such bindings of a public name to a module other than
    the one it names are dropped; the name then resolves through
    ``__getattr__``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        export = _EXPORTS.get(name)
        if export is not None and export[1] is not None and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

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
