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
    # Keras' backend packages hold one backend's machinery: a config names
    # their classes only for an optimizer twin (see public_optimizer_names),
    # which is rewritten to its public name before anything is resolved.
    if not module.startswith("keras.src.") or keras_backend_package(module) is not None:
        return None
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


# -- optimizers under their public names -------------------------------------------
#
# On the torch backend, ``keras.optimizers.Adam(...)`` returns an instance of a
# subclass defined in keras.src.backend.torch.optimizers
# (``TorchOptimizer.__new__`` swaps the class), and Keras writes that
# subclass's module into the file. Such a file names a module that exists
# only for torch, so it cannot be resolved under another backend (and names a
# module not imported yet in a fresh torch process). Each twin takes the
# public optimizer's config unchanged and the public class builds the twin
# again on torch, so the file can name the public class instead. The table
# is exactly the one of TorchOptimizer.__new__, pinned by the tests.
_TORCH_OPTIMIZERS = "keras.src.backend.torch.optimizers"
BACKEND_OPTIMIZER_TWINS: dict[tuple[str, str], str] = {
    (f"{_TORCH_OPTIMIZERS}.torch_{name.lower()}", name): f"keras.optimizers.{name}"
    for name in (
        "Adadelta",
        "Adagrad",
        "Adam",
        "Adamax",
        "AdamW",
        "Lion",
        "Nadam",
        "RMSprop",
        "SGD",
    )
}
"""``(module, class name)`` of a backend's optimizer class -> its public name."""


def keras_backend_package(module: str) -> str | None:
    """The backend whose package of Keras ``module`` is in (``"torch"``), or None.

    Keras' backend packages (``keras.src.backend.<name>``) hold one backend's
    machinery; a config names their classes only for an optimizer twin.
    """
    prefix = "keras.src.backend."
    if not module.startswith(prefix):
        return None
    return module[len(prefix) :].partition(".")[0] or None


def public_optimizer_name(module: Any, class_name: Any, registered_name: Any) -> str | None:
    """The public name of a backend optimizer twin, or None for anything else.

    Only the exact ``(module, class name)`` pairs of
    :data:`BACKEND_OPTIMIZER_TWINS`, written the way Keras writes them
    (registered under their class name, or not at all); any other reference
    into a backend package is left for the allowlist to refuse.
    """
    public = BACKEND_OPTIMIZER_TWINS.get((module, class_name))
    if public is None or registered_name not in (None, class_name):
        return None
    return public


def public_optimizer_names(config: Any) -> Any:
    """``config`` with every backend optimizer twin written under its public name.

    Returns ``config`` itself when it names none (the usual case), else a
    copy in which each such reference reads as Keras writes the public
    class under TensorFlow or JAX: ``{"module": "keras.optimizers",
    "class_name": "Adam", "registered_name": None, ...}``.
    """
    if isinstance(config, list):
        items = [public_optimizer_names(item) for item in config]
        same = all(new is old for new, old in zip(items, config, strict=True))
        return config if same else items
    if not isinstance(config, dict):
        return config
    rewritten = {key: public_optimizer_names(value) for key, value in config.items()}
    public = public_optimizer_name(
        config.get("module"), config.get("class_name"), config.get("registered_name")
    )
    if public is not None:
        module, _, name = public.rpartition(".")
        rewritten.update(module=module, class_name=name, registered_name=None)
        return rewritten
    same = all(rewritten[key] is value for key, value in config.items())
    return config if same else rewritten


def backend_optimizer_twins() -> dict[type, type]:
    """Public optimizer class -> the class the current backend instantiates for it.

    Only classes that differ (on torch: the nine of
    :data:`BACKEND_OPTIMIZER_TWINS`); for pinning the table in tests.
    """
    from keras.src import optimizers

    found: dict[type, type] = {}
    for cls in optimizers.ALL_OBJECTS:
        if public_keras_name(cls) is None or not issubclass(cls, optimizers.Optimizer):
            continue
        made = type(cls.__new__(cls))
        if made is not cls:
            found[cls] = made
    return found


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
