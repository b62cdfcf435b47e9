"""Every use of Keras' private API, and of CPython's, in keras_safe, in one package.

Keras' public ``keras.saving`` API covers most of what keras_safe needs. The
few things it does not expose are wrapped here, each with the reason, so a
Keras upgrade that moves them breaks this package (covered by
``tests/_keras/test_keras_compat.py``) instead of the whole library:

- ``names``: exported symbols, registered names, legacy lookup tables,
  non-exported built-ins and operation classes (``keras.src`` modules), the
  torch backend's optimizer classes and their public names;
- ``models``: safe-mode building and serialization, the variable budget,
  the checkpoint callback hook;
- ``state``: writing and reading the weights file;
- ``deferred``: the value-less rebuild used by ``save(roundtrip=True)`` and its
  ``StatelessScope`` (``ObservingScope``);
- ``cpython``: the undocumented parts of ``zipfile`` the archive writer and
  reader use (the archive's file, a write handle's counts, ``start_dir``),
  and the rule by which ``importlib.metadata`` infers a distribution's
  top-level names from its files.

The rest of keras_safe imports from here only (``from keras_safe import
_keras``), never from ``keras.src``, and names neither ``keras.src`` modules
nor private attributes of Keras' or CPython's objects
(``test_private_keras_imports_live_in_the_keras_package_only``).

``compat`` holds the shims for older Keras releases; importing it (and so
this package) on a Keras older than ``compat.MIN_KERAS`` raises
``CompatibilityError``.
"""

from __future__ import annotations

from keras_safe._keras import compat  # first: refuses a Keras that is too old
from keras_safe._keras.cpython import (
    inferred_top_level_names,
    zip_abandon,
    zip_central_directory_offset,
    zip_file_of,
    zip_written_around,
)
from keras_safe._keras.deferred import (
    ObservingScope,
    cache_attr_skipsets,
    deferred_scope,
    deferred_variables,
)
from keras_safe._keras.models import (
    CheckpointCallback,
    VariableBudgetExceeded,
    add_functional_base,
    all_layers,
    array_view,
    build_by_running,
    build_optimizer,
    count_layers,
    deserialize_model,
    has_unbuilt_sublayers,
    is_functional_init,
    model_variables,
    optimizer_built_for,
    restores_compile,
    safe_mode,
    serialize_model,
    sharing_objects,
    variable_budget,
)
from keras_safe._keras.names import (
    BACKEND_OPTIMIZER_TWINS,
    backend_optimizer_twins,
    builtin_function_modules,
    forget_registered_name,
    is_keras_operation,
    keras_backend_package,
    keras_symbol,
    legacy_candidates,
    legacy_name_tables,
    public_keras_name,
    public_optimizer_name,
    public_optimizer_names,
    scoped_custom_objects,
    set_registered_name,
    snake_case,
    unexported_symbol,
    vocabulary_layers,
)
from keras_safe._keras.state import (
    RecordingH5Store,
    load_legacy_h5,
    load_state,
    weight_path_renames,
    write_state,
)

__all__ = [
    "BACKEND_OPTIMIZER_TWINS",
    "CheckpointCallback",
    "ObservingScope",
    "RecordingH5Store",
    "VariableBudgetExceeded",
    "add_functional_base",
    "all_layers",
    "array_view",
    "backend_optimizer_twins",
    "build_by_running",
    "build_optimizer",
    "builtin_function_modules",
    "cache_attr_skipsets",
    "compat",
    "count_layers",
    "deferred_scope",
    "deferred_variables",
    "deserialize_model",
    "forget_registered_name",
    "has_unbuilt_sublayers",
    "inferred_top_level_names",
    "is_functional_init",
    "is_keras_operation",
    "keras_backend_package",
    "keras_symbol",
    "legacy_candidates",
    "legacy_name_tables",
    "load_legacy_h5",
    "load_state",
    "model_variables",
    "optimizer_built_for",
    "public_keras_name",
    "public_optimizer_name",
    "public_optimizer_names",
    "restores_compile",
    "safe_mode",
    "scoped_custom_objects",
    "serialize_model",
    "set_registered_name",
    "sharing_objects",
    "snake_case",
    "unexported_symbol",
    "variable_budget",
    "vocabulary_layers",
    "weight_path_renames",
    "write_state",
    "zip_abandon",
    "zip_central_directory_offset",
    "zip_file_of",
    "zip_written_around",
]
