"""Keras' names for things: exported symbols, registered names, legacy lookup tables.

Where keras_safe resolves a reference the way Keras will (``public_keras_name``,
``legacy_candidates``) or registers an object in Keras' own registry.
"""

from __future__ import annotations

import sys
from typing import Any

import keras
from keras.src import api_export
from keras.src.backend.common import global_state
from keras.src.saving import object_registration, serialization_lib
from keras.src.utils import naming


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


def unexported_symbol(module: str, name: str) -> Any:
    """A Keras built-in that is not exported (e.g. ``Functional``), by its defining module.

    Keras writes such classes with the module under ``keras.src`` that
    defines them; if Keras could write one, that module is already
    imported. None for any other module, and for a module not imported.
    """
    if not module.startswith("keras.src."):
        return None
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


def is_keras_operation(obj: Any) -> bool:
    """Whether ``obj`` is one of Keras' operation classes (defined under ``keras.src.ops``).

    Functional graphs record the ``keras.ops`` they apply (``x + y``,
    ``keras.ops.relu``) as nodes of these classes; Keras' own test modules
    there do not count.
    """
    return (
        isinstance(obj, type)
        and issubclass(obj, keras.Operation)
        and obj is not keras.Operation
        and obj.__module__.startswith("keras.src.ops.")
        and not obj.__module__.endswith("_test")
    )


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


def scoped_custom_objects() -> dict[str, Any]:
    """The objects of the active ``keras.saving.custom_object_scope`` (thread-local).

    Keras resolves names against them while it loads a model; there is no
    public accessor for the active scope's dict.
    """

    scoped = global_state.get_global_attribute("custom_objects_scope_dict", {})
    return dict(scoped) if isinstance(scoped, dict) else {}


def set_registered_name(obj: Any, key: str) -> None:
    """Make ``keras.saving.get_registered_name(obj)`` return ``key``.

    Used for registered objects Keras' own decorator refuses (enums and
    other classes without ``get_config``) and to restore a registration.
    """
    object_registration.GLOBAL_CUSTOM_NAMES[obj] = key


def snake_case(name: str) -> str:
    """A class name as Keras turns it into a weight path segment (``naming.to_snake_case``)."""
    return str(naming.to_snake_case(name))


# -- where Keras' deserializers look names up (mirrored by the allowlist) --------


def builtin_function_modules() -> tuple[str, ...]:
    """Modules Keras searches for a function saved with module ``"builtins"``.

    ``serialization_lib._retrieve_class_or_fn`` tries each of
    ``BUILTIN_MODULES`` in set order (which varies between processes), so the
    allowlist must accept a name only if every module's symbol is acceptable.
    """
    return tuple(f"keras.{name}" for name in sorted(serialization_lib.BUILTIN_MODULES))


_LEGACY_TABLES: list[dict[str, Any]] = []


def legacy_name_tables() -> tuple[dict[str, Any], ...]:
    """The name -> object tables Keras searches for a class named without a module.

    Legacy configs (``.h5`` files, and layer configs without ``"module"`` in
    any file) are resolved by ``keras.src.legacy.saving`` against
    ``keras.src.layers.__dict__`` (plus the model classes), and nested
    objects against each kind's ``ALL_OBJECTS_DICT``. A name may be in
    several; which one Keras uses depends on where the reference sits.
    """
    if not _LEGACY_TABLES:
        from keras.src import (
            activations,
            constraints,
            initializers,
            layers,
            losses,
            metrics,
            models,
            optimizers,
            regularizers,
        )

        layer_table = {
            **vars(layers),
            "InputLayer": layers.InputLayer,
            "Functional": models.Functional,
            "Model": models.Model,
            "Sequential": models.Sequential,
        }
        _LEGACY_TABLES.append(layer_table)
        for module in (
            activations,
            constraints,
            initializers,
            losses,
            metrics,
            optimizers,
            regularizers,
        ):
            _LEGACY_TABLES.append(dict(module.ALL_OBJECTS_DICT))
    return tuple(_LEGACY_TABLES)


def legacy_candidates(name: str) -> list[Any]:
    """Every object Keras may use for a class named ``name`` without a module.

    ``keras.optimizers.deserialize`` lowercases names before its lookup, so
    ``"Adam"`` is found as ``"adam"`` there.
    """
    from keras.src import optimizers

    found = [table[name] for table in legacy_name_tables() if name in table]
    lowered = optimizers.ALL_OBJECTS_DICT.get(name.lower())
    if lowered is not None and all(obj is not lowered for obj in found):
        found.append(lowered)
    return found


def vocabulary_layers() -> tuple[type, ...]:
    """Layers whose ``vocabulary`` argument may be a path Keras reads at construction.

    ``IndexLookup`` (the private base of StringLookup and IntegerLookup)
    reads a vocabulary file with ``tf.io.gfile``, which also fetches remote
    URLs; TextVectorization passes its vocabulary on to one.
    """
    from keras.src.layers.preprocessing.index_lookup import IndexLookup

    return (IndexLookup, keras_symbol("keras.layers.TextVectorization"))
