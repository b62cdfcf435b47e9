"""Checks on the values around references: what the allowlist alone cannot see.

:mod:`keras_safe._guard.allowlist` decides which classes and functions a config may
name. Some dangers sit next to an allowed name: a StringLookup whose
``vocabulary`` is a path Keras reads (CVE-2025-12058), a ``shared_object_id``
that makes Keras reuse an object of another class (Keras returns whatever
object it deserialized first under that id, without looking at the class
named here), a string in a legacy layer config that Keras silently replaces
with a Keras function of the same name, a numpy dtype that asks for gigabytes
per element, a layer name that becomes a path when the model is saved, or
a keras-hub tokenizer told to read its vocabulary from a path.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_safe import _keras

if TYPE_CHECKING:
    from keras_safe._guard.references import Reference

__all__ = ["KERAS_TEAM_PACKAGES", "builtin_config_problem", "screen_references"]

_NUMERIC_KINDS = frozenset("biufc?US")
_MAX_ITEMSIZE = 1024
_MAX_OOV_INDICES = 1_000_000
# Keras dtype names numpy does not know without ml_dtypes, or at all.
_OTHER_DTYPES = frozenset({"string", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int4", "uint4"})


def builtin_config_problem(ref: Reference, cls: type) -> str | None:
    """Why a Keras built-in's config must not reach Keras, or None."""
    config = ref.config if isinstance(ref.config, dict) else {}
    if not issubclass(cls, _keras.vocabulary_layers()):
        return None
    oov = config.get("num_oov_indices")
    if isinstance(oov, int) and oov > _MAX_OOV_INDICES:
        # IndexLookup.set_vocabulary builds a Python list of that many tokens.
        return (
            f"{ref.where}: {cls.__name__}(num_oov_indices={oov}) would make Keras build a list "
            f"of {oov} tokens (limit {_MAX_OOV_INDICES}); refusing a memory bomb."
        )
    if isinstance(config.get("vocabulary"), str):
        return (
            f"{ref.where}: {cls.__name__}(vocabulary={config['vocabulary']!r}) would make Keras "
            "read a file or URL chosen by the model file (CVE-2025-12058). A saved lookup layer "
            "keeps its vocabulary inside the archive; refusing the file."
        )
    return None


def screen_references(refs: Iterable[Reference]) -> list[str]:
    """Every problem found around ``refs`` (from ``iter_references(include_data=True)``)."""
    problems: list[str] = []
    shared: dict[Any, Reference] = {}
    layer_table = _keras.legacy_name_tables()[0]
    for ref in refs:
        if ref.kind == "data":
            problems.extend(_data_problems(ref))
            continue
        if ref.kind != "class":
            continue
        config = ref.config if isinstance(ref.config, dict) else None
        if ref.shared_id is not None:
            problems.extend(_shared_problems(ref, shared))
        if config is None:
            continue
        name = config.get("name")
        if isinstance(name, str) and not _safe_name(name):
            problems.append(
                f"{ref.where}: the name {name!r} of a {ref.name} is not a plain name; Keras "
                "turns names into paths inside the weights file and the assets folder."
            )
        if ref.legacy:
            problems.extend(_legacy_string_problems(ref, config, layer_table))
        if _from_keras_team(ref):
            problems.extend(
                f"{ref.where}: {ref.name}({key}={config[key]!r}) would make it read a file "
                "chosen by the model file (as CVE-2025-12058 for Keras' lookup "
                "layers). A saved tokenizer keeps its vocabulary inside the archive; refusing "
                "the file."
                for key in _FILE_ARGUMENTS
                if isinstance(config.get(key), str)
            )
    return problems


# Keras-team packages whose classes keras_safe loads only under allow_imports,
# and the constructor arguments by which their tokenizers read a file.
KERAS_TEAM_PACKAGES = frozenset({"keras_hub", "keras_nlp", "keras_cv", "keras_rs"})
_FILE_ARGUMENTS = ("vocabulary", "merges", "proto")


def _from_keras_team(ref: Reference) -> bool:
    package = (ref.registered_name or "").partition(">")[0] or (ref.module or "").split(".")[0]
    return package in KERAS_TEAM_PACKAGES


def _safe_name(name: str) -> bool:
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and not any(ord(ch) < 32 for ch in name)
    )


def _shared_problems(ref: Reference, shared: dict[Any, Reference]) -> list[str]:
    sid = ref.shared_id
    if isinstance(sid, bool) or not isinstance(sid, int):
        return [f"{ref.where}: shared_object_id {sid!r} is not an integer; the file was edited."]
    first = shared.setdefault(sid, ref)
    if (first.name, first.module, first.registered_name) == (
        ref.name,
        ref.module,
        ref.registered_name,
    ):
        return []
    return [
        f"{ref.where}: shared_object_id {sid} names {_label(ref)} here but {_label(first)} at "
        f"{first.where}; Keras would reuse the object it built first for both, so what is "
        "checked here is not what would load. The file was edited."
    ]


def _label(ref: Reference) -> str:
    return f"{ref.module}.{ref.name}" if ref.module else ref.name


def _legacy_string_problems(
    ref: Reference, config: dict[str, Any], layer_table: dict[str, Any]
) -> list[str]:
    # keras.src.legacy.saving.serialization replaces any string value (but
    # `name`) that names a function in its layer table by that function.
    return [
        f"{ref.where}.{key}: the string {value!r} names the Keras function "
        f"{getattr(layer_table[value], '__module__', '?')}.{value}, which Keras' legacy loader "
        "would put in its place; it is not a model part."
        for key, value in config.items()
        if key != "name"
        and isinstance(value, str)
        and value in layer_table
        and inspect.isfunction(layer_table[value])
    ]


def _data_problems(ref: Reference) -> list[str]:
    if ref.name not in ("__numpy__", "__tensor__"):
        return []
    config = ref.config if isinstance(ref.config, dict) else {}
    dtype = config.get("dtype")
    try:
        parsed = np.dtype(dtype) if isinstance(dtype, str) else None
    except (TypeError, ValueError, SyntaxError):
        parsed = None
    if (dtype is None and ref.name == "__tensor__") or dtype in _OTHER_DTYPES:
        return []
    if parsed is None or parsed.kind not in _NUMERIC_KINDS or parsed.itemsize > _MAX_ITEMSIZE:
        return [
            f"{ref.where}: a {ref.name} value of dtype {dtype!r}; constants in a model config "
            "are numbers, booleans or short strings."
        ]
    return []
