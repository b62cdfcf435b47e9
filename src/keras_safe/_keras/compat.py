"""Shims for the Keras 3 releases keras_safe supports that lack a newer private API.

Each shim uses Keras' own function where the installed Keras has it and
otherwise does what that function does (same algorithm, same checks), so
the result is the same on every supported release. Detection is by feature
(``hasattr``), not by version number; ``tests/_keras/test_keras_compat.py`` pins,
per Keras version, which branch is taken and that both agree.

The oldest Keras keras_safe runs on is ``MIN_KERAS``; importing this module
on anything older raises ``CompatibilityError`` (``check_keras_version``), so
every keras_safe call that needs Keras refuses it with a message that says
what to install.
"""

from __future__ import annotations

import math
from typing import Any

import h5py
import keras
from keras.src.saving import saving_lib

from keras_safe.errors import CompatibilityError

# Keras 3.10 rebuilds a Functional model's keras.ops nodes under new names
# ("mean" comes back as "mean_2"), so save(roundtrip=True) refuses such models
# there; 3.11 is the oldest release the whole test suite passes on.
MIN_KERAS = (3, 11, 0)


def keras_version() -> tuple[int, int, int]:
    """The installed Keras version as ``(major, minor, patch)`` (suffixes dropped)."""
    parts = []
    for part in keras.version().split(".")[:3]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        parts.append(int(digits or 0))
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def check_keras_version() -> None:
    """Refuse a Keras older than ``MIN_KERAS`` with an error that says what to do."""
    if keras_version() < MIN_KERAS:
        need = ".".join(map(str, MIN_KERAS))
        raise CompatibilityError(
            f"keras_safe needs Keras >= {need}; Keras {keras.version()} is installed. "
            f'Fix: pip install --upgrade "keras>={need}".'
        )


check_keras_version()


# -- saving_lib._get_unique_name (Keras >= 3.15) ------------------------------------


def _get_unique_name_fallback(name: str, used_names: dict[str, int]) -> str:
    # Keras < 3.15 inlines this in _save_container_state/_load_container_state.
    if name in used_names:
        used_names[name] += 1
        return f"{name}_{used_names[name]}"
    used_names[name] = 0
    return name


get_unique_name = getattr(saving_lib, "_get_unique_name", _get_unique_name_fallback)

# Keras >= 3.15 (PR #22362) saves a container nested in a container as a
# ``container``, ``container_1`` ... group and walks sets no more; older
# releases skip nested containers and walk sets found as attributes.
NESTED_CONTAINERS = hasattr(saving_lib, "_container_path_present")
WALKED_CONTAINERS: tuple[type, ...] = (
    (list, dict, tuple) if NESTED_CONTAINERS else (list, dict, tuple, set)
)


# -- saving_lib.safe_get_h5_dataset (Keras >= 3.14; the bomb check >= 3.15) ----------

_H5_DATASET_BOMB_FLOOR_BYTES = 1 << 32
_H5_DATASET_MAX_EXPANSION = 1000


def _safe_get_h5_dataset_fallback(group: Any, name: str) -> Any:
    # Keras 3.15's checks (keras_safe's own _guard.hdf5_bounds has already
    # refused links, external and virtual storage before Keras reads).
    if "/" in name:
        group_name, name = name.rsplit("/", 1)
        for part in group_name.split("/"):
            if not part:
                raise ValueError(f"Invalid path in H5 file: {group_name}/{name}")
            if part not in group:
                raise KeyError(group_name)
            link = group.get(part, default=None, getclass=True, getlink=True)
            if link in (h5py.ExternalLink, h5py.SoftLink):
                raise ValueError(f"Not allowed: H5 file with {link.__name__}")
            group = group[part]
            if not isinstance(group, h5py.Group):
                raise ValueError(f"Invalid H5 file, expected Group but received {type(group)}")
    if name not in group:
        raise KeyError(name)
    link = group.get(name, default=None, getclass=True, getlink=True)
    if link in (h5py.ExternalLink, h5py.SoftLink):
        raise ValueError(f"Not allowed: H5 file with {link.__name__}")
    dataset = group[name]
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"Invalid H5 file, expected Dataset, received {type(dataset)}")
    if dataset.external:
        raise ValueError(f"Not allowed: H5 file with external Dataset: {dataset.external}")
    if dataset.is_virtual:
        raise ValueError("Not allowed: H5 file with virtual Dataset")
    declared = math.prod(dataset.shape) * dataset.dtype.itemsize
    stored = dataset.id.get_storage_size()
    if declared > _H5_DATASET_BOMB_FLOOR_BYTES and declared > _H5_DATASET_MAX_EXPANSION * stored:
        raise ValueError(
            f"Not allowed: H5 dataset '{name}' declares {declared} bytes but only "
            f"{stored} are stored on disk; refusing to load a potential "
            "decompression/shape bomb."
        )
    return dataset


safe_get_h5_dataset = getattr(saving_lib, "safe_get_h5_dataset", _safe_get_h5_dataset_fallback)


# -- H5IOStore.has_path (Keras >= 3.15) ------------------------------------------------


def h5_store_has_path(store: Any, path: str) -> bool:
    """``store.has_path(path)``; Keras < 3.15's H5IOStore has no such method."""
    own = getattr(saving_lib.H5IOStore, "has_path", None)
    if own is not None:
        return bool(own(store, path))
    return path in store.h5_file


# -- layers kept in a container nested in a container (saved by Keras >= 3.15) -------

_NESTED_FIX = 'Fix: pip install --upgrade "keras>=3.15"'


def _has_variables(obj: Any) -> bool:
    try:
        return bool(getattr(obj, "variables", None))
    except Exception:
        return False


def unsaved_nested_objects(model: Any) -> list[str]:
    """Objects with variables that this Keras would not save: ``["holder.blocks[1][0]"]``.

    Keras < 3.15 saves the objects it finds in a list, tuple, dict or set
    attribute but skips a container inside such a container, so a layer
    kept only there (``self.blocks = [Dense(2), [Dense(2)]]``) is written
    without its weights and loads freshly initialized. Objects also reached
    another way (a Functional model's ``_operations_by_depth`` repeats its
    ``layers``) are saved there and not listed. Empty on Keras >= 3.15.
    """
    if NESTED_CONTAINERS:
        return []
    from keras.src.saving.keras_saveable import KerasSaveable

    visited: set[int] = set()
    nested: list[tuple[str, Any]] = []

    def visit(obj: Any, where: str) -> None:
        if id(obj) in visited:
            return
        visited.add(id(obj))
        for attr, child in saving_lib._walk_saveable(obj):
            if isinstance(child, KerasSaveable):
                visit(child, f"{where}.{attr}")
            elif isinstance(child, WALKED_CONTAINERS):
                container: Any = child
                items = container.items() if isinstance(container, dict) else enumerate(container)
                for key, item in items:
                    if isinstance(item, KerasSaveable):
                        visit(item, f"{where}.{attr}[{key!r}]")
                    elif isinstance(item, (list, dict, tuple, set)):
                        collect(item, f"{where}.{attr}[{key!r}]", set())

    def collect(container: Any, where: str, seen: set[int]) -> None:
        if id(container) in seen:
            return
        seen.add(id(container))
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, item in items:
            if isinstance(item, KerasSaveable):
                nested.append((f"{where}[{key!r}]", item))
            elif isinstance(item, (list, dict, tuple, set)):
                collect(item, f"{where}[{key!r}]", seen)

    visit(model, getattr(model, "name", type(model).__name__))
    found: dict[int, str] = {}
    for where, obj in nested:
        if id(obj) not in visited and id(obj) not in found and _has_variables(obj):
            found[id(obj)] = where
    return list(found.values())


def check_nested_objects_saved(model: Any) -> None:
    """Refuse to save a model whose weights this Keras would silently leave out."""
    unsaved = unsaved_nested_objects(model)
    if unsaved:
        shown = ", ".join(unsaved[:5]) + (" ..." if len(unsaved) > 5 else "")
        raise CompatibilityError(
            f"Saving layers kept in a list or dict nested inside another list or dict "
            f"attribute ({shown}) needs Keras >= 3.15: Keras {keras.version()} does not "
            f"save their weights, so the file would load them freshly initialized. "
            f"{_NESTED_FIX}, or keep such layers in a flat list, dict or attribute."
        )


def nested_container_weights(paths: list[str]) -> str | None:
    """Why weights under ``container`` groups went unread on Keras < 3.15, or None."""
    if NESTED_CONTAINERS:
        return None
    hits = [p for p in paths if any(_is_container_segment(s) for s in p.split("/"))]
    if not hits:
        return None
    return (
        f"weights of layers kept in a list or dict nested inside another list or dict "
        f"({hits[0]}{' ...' if len(hits) > 1 else ''}) were saved by Keras >= 3.15; loading "
        f"them needs Keras >= 3.15, and Keras {keras.version()} is installed. {_NESTED_FIX}."
    )


def _is_container_segment(segment: str) -> bool:
    if segment == "container":
        return True
    head, _, tail = segment.rpartition("_")
    return head == "container" and tail.isdigit()
