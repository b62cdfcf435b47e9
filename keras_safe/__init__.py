"""keras_safe: Keras models with custom components that save and load reliably and safely.

Public names:

* :class:`SerializableLayer`, :class:`SerializableModel`, :class:`Serializable`:
  base classes whose ``get_config``/``from_config`` come from ``__init__``.
* :func:`register` and :data:`registry`: custom objects known to keras_safe and Keras.
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
from keras_safe.registry import Registry, RegistryEntry, register, registry

__version__ = "0.1.0"

__all__ = [
    "CompatibilityError",
    "CompatibilityWarning",
    "IntegrityError",
    "KerasSafeError",
    "MissingObjectsError",
    "RegistrationError",
    "Registry",
    "RegistryEntry",
    "Serializable",
    "SerializableLayer",
    "SerializableModel",
    "SerializationError",
    "UnsafeModelError",
    "VerificationError",
    "__version__",
    "register",
    "registry",
]
