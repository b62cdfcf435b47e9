"""keras_safe: Keras models with custom components that save and load reliably and safely.

Public names:

* :class:`SerializableLayer`, :class:`SerializableModel`, :class:`Serializable`:
  base classes whose ``get_config``/``from_config`` come from ``__init__``.
* :func:`register` and :data:`registry`: custom objects known to keras_safe and Keras.
* :func:`save` / :func:`load` (also ``safe_save`` / ``safe_load``): ``.keras``
  archives with an embedded, verified manifest; :func:`inspect`, :func:`verify`;
  :class:`ArchiveLimits` bounds what a loaded file may hold.
* :func:`upgrade`: re-save an old file after the migrations of
  ``config_version`` / ``upgrade_config`` and renamed classes' ``aliases``.
* The errors of :mod:`keras_safe.errors`.
"""

from keras_safe.base import Serializable, SerializableLayer, SerializableModel
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
from keras_safe.manifest import Manifest, ModelSummary, ObjectRecord
from keras_safe.registry import Registry, RegistryEntry, register, registry
from keras_safe.saving import save

safe_save = save
safe_load = load

__version__ = "0.1.0"

__all__ = [
    "ArchiveLimits",
    "CompatibilityError",
    "CompatibilityWarning",
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
    "inspect",
    "load",
    "register",
    "registry",
    "safe_load",
    "safe_save",
    "save",
    "upgrade",
    "verify",
]
