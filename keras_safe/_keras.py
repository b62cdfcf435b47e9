"""Every use of Keras' private API in keras_safe, in one place.

Keras' public ``keras.saving`` API covers most of what keras_safe needs. The
few things it does not expose are wrapped here, each with the reason, so a
Keras upgrade that moves them breaks one small module (covered by
``tests/test_keras_compat.py``) instead of the whole package.
"""

from __future__ import annotations

from typing import Any

from keras.src import api_export
from keras.src.backend.common import global_state
from keras.src.models import model as model_module
from keras.src.models.functional import Functional
from keras.src.saving import object_registration


def public_keras_name(obj: Any) -> str | None:
    """The canonical exported name of a Keras symbol (``"keras.layers.Dense"``).

    ``keras.saving.serialize_keras_object`` uses this table to decide whether a
    class is a Keras built-in; there is no public accessor for it.
    """
    try:
        name = api_export.get_name_from_symbol(obj)
    except TypeError:  # unhashable objects are never exported symbols
        return None
    return name if isinstance(name, str) else None


def keras_symbol(name: str) -> Any:
    """The Keras symbol exported under ``name`` (``"keras.layers.Dense"``), or None."""
    return api_export.get_symbol_from_name(name)


def forget_registered_name(obj: Any, key: str) -> None:
    """Undo the object -> key half of ``register_keras_serializable``.

    ``keras.saving.get_custom_objects()`` exposes the key -> object dict, but
    the reverse map used by ``get_registered_name`` is private; without this,
    a registration undone by ``registry.scope()`` would leave Keras
    serializing the class under a key nobody can resolve.
    """
    names = object_registration.GLOBAL_CUSTOM_NAMES
    if names.get(obj) == key:
        del names[obj]


def set_registered_name(obj: Any, key: str) -> None:
    """Make ``keras.saving.get_registered_name(obj)`` return ``key``.

    Used for registered objects Keras' own decorator refuses (enums and
    other classes without ``get_config``) and to restore a registration.
    """
    object_registration.GLOBAL_CUSTOM_NAMES[obj] = key


def has_unbuilt_sublayers(layer: Any) -> bool:
    """Whether a layer tracks sublayers that have no weights yet.

    Same test as Keras' ``might_have_unbuilt_state`` (``layer._layers`` has
    no public equivalent that excludes the layer itself).
    """
    return any(not sublayer.built for sublayer in layer._layers)


def build_by_running(layer: Any, build_config: dict[str, Any]) -> bool:
    """Create a layer's state by running ``call`` on symbolic inputs.

    Keras does this for models whose ``build`` is not overridden
    (``Model.build_from_config``) but not for layers, so a layer that makes
    its sublayers in ``__init__`` and has no ``build`` would load with
    unbuilt sublayers. Returns whether the run succeeded.
    """
    if "input_shape" in build_config:
        return bool(layer._build_by_run_for_single_pos_arg(build_config["input_shape"]))
    if "shapes_dict" in build_config:
        return bool(layer._build_by_run_for_kwargs(build_config["shapes_dict"]))
    return False


def is_functional_init(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``keras.Model.__init__`` would take these arguments as (inputs, outputs)."""
    return bool(model_module.functional_init_arguments(args, kwargs))


def add_functional_base(cls: type) -> None:
    """Make ``cls`` a Functional model by adding ``Functional`` to its own bases.

    Keras does this itself in ``Model.__init__`` (``inject_functional_model_class``)
    by rewriting the bases of *every* class between ``cls`` and ``keras.Model``,
    so a shared base class such as ``SerializableModel`` would become
    Functional for every other subclass in the process too.
    """
    if not issubclass(cls, Functional):
        cls.__bases__ = (*cls.__bases__, Functional)


def sharing_objects() -> bool:
    """Whether Keras is inside ``ObjectSharingScope`` (saving or loading a model).

    Within it, a config carrying ``"shared_object_id"`` is deserialized once
    and reused (``serialization_lib.get_shared_object``); the scope's state
    has no public accessor.
    """
    return global_state.get_global_attribute("shared_objects/id_to_config_map") is not None
