"""The allowlist: every class or function a model config refers to, checked.

:func:`~keras_safe._guard.references.iter_references` finds every reference in a
config the way Keras reads it; :class:`Resolver` decides what each may
resolve to: a Keras built-in of a kind models are made of, an object in the
registry, an object the caller passed in ``custom_objects``, or an object
registered by importing a module under an ``allow_imports`` prefix. Nothing
else is imported, and a config that names anything else never reaches Keras.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from keras_safe import _keras
from keras_safe._config.registry import registry
from keras_safe._guard.references import Reference, in_words, iter_references, iter_strings
from keras_safe._guard.screen import (
    KERAS_TEAM_PACKAGES,
    builtin_config_problem,
    screen_references,
)
from keras_safe.errors import MissingObjectsError, UnsafeModelError, _see_docs

if TYPE_CHECKING:
    from keras_safe._format.manifest import Manifest

__all__ = [
    "Reference",
    "Resolved",
    "Resolver",
    "iter_references",
    "resolve_all",
    "resolve_pending",
    "screen_all",
]

_FUNCTION_MODULES = ("keras.activations", "keras.losses", "keras.metrics")
# Exported from those modules, but not model parts: they deserialize configs.
_NOT_MODEL_FUNCTIONS = frozenset({"get", "serialize", "deserialize"})
_ALLOWED_BASES: tuple[type, ...] = (
    keras.layers.Layer,
    keras.initializers.Initializer,
    keras.regularizers.Regularizer,
    keras.constraints.Constraint,
    keras.losses.Loss,
    keras.metrics.Metric,
    keras.optimizers.Optimizer,
    keras.optimizers.schedules.LearningRateSchedule,
    keras.DTypePolicy,
)
# Functional graphs record the keras.ops they apply (`x + y`, `keras.ops.relu`)
# as Operation nodes (_keras.is_keras_operation); they are model parts too. The
# few that take Python callables are refused.
_OPS_WITH_CALLABLES = frozenset(
    {"WhileLoop", "ForiLoop", "VectorizedMap", "Cond", "Switch", "Map", "Scan", "AssociativeScan"}
)
# Layers that run code or load files chosen by the model file.
_REFUSED_LAYERS: tuple[type, ...] = tuple(
    cls
    for name in ("Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer")
    if isinstance(cls := _keras.keras_symbol(f"keras.layers.{name}"), type)
)
# Packages whose functions a config may name but that never hold model parts.
_FOREIGN_PACKAGES = frozenset({"tensorflow", "tf", "numpy", "h5py", "jax", "torch", "builtins"})
# A config names a backend's class only for an optimizer twin, which the load
# path rewrites to its public name before resolving (_keras.names).
_TWIN_EXAMPLE = next(
    f"{module}.{name}, read as {public}"
    for (module, name), public in _keras.BACKEND_OPTIMIZER_TWINS.items()
    if name == "Adam"
)
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Resolved:
    """A reference and what it resolved to (``source``: keras/registry/custom)."""

    reference: Reference
    obj: Any
    source: str


@dataclass
class Resolver:
    """Resolves references against Keras built-ins, the registry, ``custom_objects``.

    ``custom_objects`` keys may be short class names or registered keys.
    Modules under an ``allow_imports`` prefix are imported when a reference
    into them does not resolve otherwise (whole package names only:
    ``"my_project"`` allows ``my_project.layers``, never ``my_project_evil``).
    """

    custom_objects: Mapping[str, Any] = field(default_factory=dict)
    allow_imports: tuple[str, ...] = ()
    imported: list[str] = field(default_factory=list)
    short_names: dict[str, Any] = field(default_factory=dict)
    # Registered key -> defining module, from the manifest: functions are
    # written as "package>name" with no module (see _module_of).
    module_hints: Mapping[str, str] = field(default_factory=dict)
    failed_imports: list[str] = field(default_factory=list)

    def keras_custom_objects(self) -> dict[str, Any]:
        """``custom_objects`` for Keras, plus keys resolved through short names."""
        return {**self.custom_objects, **self.short_names}

    def resolve(self, ref: Reference, *, imports: bool = True) -> Resolved | None:
        """What ``ref`` stands for, or None if nothing allowed matches.

        Mirrors Keras' own lookup (``serialization_lib._retrieve_class_or_fn``
        and the legacy name tables) so the object approved here is the object
        Keras will use. Every custom object approved is also handed to Keras
        under the key it looks up (:meth:`keras_custom_objects`). With
        ``imports=False`` nothing is imported.

        Raises:
            UnsafeModelError: the reference names code, a Lambda, a Keras
                symbol that is not a model part, or cannot be interpreted.
        """
        if ref.kind in ("code", "malformed", "data"):
            raise UnsafeModelError(
                _REFUSALS.get(ref.kind, "{where}: {name}").format(where=ref.where, name=ref.name)
            )
        found = self._custom(ref)
        module = self.module_of(ref)
        if found is None and imports and self._may_import(module):
            self._import(module)
            found = self._custom(ref)
        if found is not None:
            return found
        return self._builtin(ref)

    def module_of(self, ref: Reference) -> str | None:
        """The module to import for ``ref`` under ``allow_imports``.

        A class config names its module. A registered function is written
        as ``{"module": "builtins", "config": "package>name"}`` (and as a
        bare ``"package>name"`` in older compile configs): its module is the
        one the manifest recorded at saving, else the key's package.
        """
        if ref.kind == "function" and ref.module in (None, "builtins") and ">" in ref.name:
            return self.module_hints.get(ref.name) or ref.name.partition(">")[0]
        return ref.module

    def _lookup_key(self, ref: Reference) -> str:
        # Functions by their config name, classes by registered_name (the
        # class name when the field is absent, nothing when it is null).
        if ref.kind == "function":
            return ref.name
        return ref.name if ref.registered_name is None else ref.registered_name

    def _custom(self, ref: Reference) -> Resolved | None:
        # Global registrations win over custom_objects, as in
        # keras.saving.deserialize_keras_object.
        key = self._lookup_key(ref)
        if not key:
            return None
        obj = registry.get(key)
        if obj is None:
            obj = keras.saving.get_custom_objects().get(key)
        source = "registry"
        if obj is None:
            source = "custom"
            obj = self.custom_objects.get(key)
            if obj is None and ref.kind != "function" and ref.name in self.custom_objects:
                # custom_objects given by short class name for a registered key.
                obj = self.custom_objects[ref.name]
        if obj is None:
            return None
        # Keras gets exactly what was approved under the key it looks up
        # (registry aliases and short names included), so it never falls
        # through to a built-in of the same name that was not checked.
        self.short_names[key] = obj
        return Resolved(ref, obj, source)

    def _builtin(self, ref: Reference) -> Resolved | None:
        module = ref.module or ""
        if ref.kind == "function":
            return self._builtin_function(ref, module)
        if ref.kind != "class":
            return None
        if ref.legacy:
            return self._legacy_builtin(ref)
        if not _is_keras_module(module):
            self._refuse_foreign(ref, module)
            return None
        return self._check_kind(ref, module, _keras.keras_symbol(f"{module}.{ref.name}"))

    def _builtin_function(self, ref: Reference, module: str) -> Resolved | None:
        if module == "builtins":
            # Keras tries several modules in an order that varies between
            # processes: every candidate must be acceptable.
            candidates = [
                (candidate, obj)
                for candidate in _keras.builtin_function_modules()
                if (obj := _keras.keras_symbol(f"{candidate}.{ref.name}")) is not None
            ]
        elif _is_keras_module(module):
            candidates = [(module, _keras.keras_symbol(f"{module}.{ref.name}"))]
        else:
            self._refuse_foreign(ref, module)
            return None
        if not candidates:
            if module == "builtins" and hasattr(builtins, ref.name):
                self._refuse_foreign(ref, module)
            return None
        for candidate, obj in candidates:
            if (
                candidate not in _FUNCTION_MODULES
                or ref.name in _NOT_MODEL_FUNCTIONS
                or obj is None
                or isinstance(obj, type)
                or not callable(obj)
            ):
                return self._refuse_keras(ref, candidate)
        return Resolved(ref, candidates[0][1], "keras")

    def _legacy_builtin(self, ref: Reference) -> Resolved | None:
        # Configs without a module (legacy .h5, old layer configs) name
        # built-ins by class name; Keras looks the name up in one of several
        # tables depending on where the reference sits, so every table's
        # object of that name must be acceptable.
        found = _keras.legacy_candidates(ref.name)
        if not found:
            return None
        checked = [self._check_kind(ref, "keras", obj) for obj in found]
        return checked[0]

    def _check_kind(self, ref: Reference, module: str, obj: Any) -> Resolved | None:
        if obj is None:
            obj = _keras.unexported_symbol(module, ref.name)
        if isinstance(obj, type) and issubclass(obj, _ALLOWED_BASES):
            if issubclass(obj, _REFUSED_LAYERS):
                raise UnsafeModelError(
                    f"{ref.where}: {module}.{ref.name} layers run code or load files chosen "
                    "by the model file, so keras_safe refuses them. Replace the layer with a "
                    "registered keras_safe.SerializableLayer."
                )
            problem = builtin_config_problem(ref, obj)
            if problem is not None:
                raise UnsafeModelError(problem)
            return Resolved(ref, obj, "keras")
        if _keras.is_keras_operation(obj):
            if obj.__name__ in _OPS_WITH_CALLABLES:
                raise UnsafeModelError(
                    f"{ref.where}: {module}.{ref.name} takes Python functions from the file; "
                    "keras_safe refuses it. Move the loop into a registered "
                    "keras_safe.SerializableLayer."
                )
            return Resolved(ref, obj, "keras")
        return self._refuse_keras(ref, module)

    def _refuse_keras(self, ref: Reference, module: str) -> Resolved:
        backend = _keras.keras_backend_package(module)
        if backend is not None:
            public = _keras.BACKEND_OPTIMIZER_TWINS.get((module, ref.name))
            if public is not None:
                raise UnsafeModelError(
                    f"{ref.where}: the config refers to {module}.{ref.name}, the {backend} "
                    f"backend's twin of {public}, under registered_name {ref.registered_name!r}: "
                    "Keras writes it under its class name, and would look that key up among "
                    "custom objects first. Refusing to load it."
                )
            raise UnsafeModelError(
                f"{ref.where}: the config refers to {module}.{ref.name}, a class of Keras' "
                f"{backend} backend, which is not a model part. keras_safe accepts a backend's "
                "class only as the twin of a public Keras optimizer, written as Keras writes "
                f"it (such as {_TWIN_EXAMPLE}); refusing to load it."
            )
        raise UnsafeModelError(
            f"{ref.where}: the config refers to {module}.{ref.name}, which is not a Keras "
            "layer, model, initializer, regularizer, constraint, activation, loss, metric, "
            "optimizer, learning-rate schedule or dtype policy. Model files may only refer "
            "to those; refusing to load it."
        )

    def _refuse_foreign(self, ref: Reference, module: str) -> None:
        # A name in the standard library or a framework is never a custom
        # object that is merely not imported yet: it is an attempt to run it.
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in _FOREIGN_PACKAGES:
            raise UnsafeModelError(
                f"{ref.where}: the config refers to {module}.{ref.name}, a function or class "
                f"of {top!r}, not a model part. Model files may only refer to Keras model "
                "parts and registered objects; refusing to load it."
            )

    def may_import(self, module: str | None) -> bool:
        """Whether ``allow_imports`` lets ``module`` be imported."""
        return self._may_import(module)

    def _may_import(self, module: str | None) -> bool:
        if not module or not _MODULE_RE.match(module):
            return False
        if any(part.startswith("__") for part in module.split(".")):
            return False  # __main__, __init__: never imported by name from a file
        return any(module == p or module.startswith(f"{p}.") for p in self.allow_imports)

    def _import(self, module: str | None) -> None:
        assert module is not None
        if module in sys.modules:
            return
        try:
            importlib.import_module(module)
        except ImportError:
            self.failed_imports.append(module)
            return  # reported as missing, with the manifest's hints
        self.imported.append(module)


# -- every reference of a file ---------------------------------------------------------


def screen_all(
    configs: list[dict[str, Any]],
    resolver: Resolver,
    manifest: Manifest | None,
    path: Path,
    more_problems: list[str] | None = None,
) -> tuple[list[Resolved], list[Reference]]:
    """Refuse every unsafe reference of ``configs``, importing nothing.

    Returns what resolved and what is still pending (to be found under
    ``allow_imports``, or missing). ``more_problems`` (the resource
    screen's) are refused with the rest.

    Raises:
        UnsafeModelError: listing every problem found, at once.
    """
    refs = [ref for config in configs for ref in iter_references(config, include_data=True)]
    if manifest is not None:
        resolver.module_hints = {r.key: r.module for r in manifest.objects if r.module}
    unsafe = screen_references(refs)
    unsafe += node_string_problems(configs, resolver)
    strings, problems = string_references(configs, resolver)
    refs += strings
    unsafe += problems
    unsafe += more_problems or []
    resolved: list[Resolved] = []
    pending: list[Reference] = []
    for ref in refs:
        if ref.kind == "data":
            continue
        try:
            found = resolver.resolve(ref, imports=False)
        except UnsafeModelError as exc:
            unsafe.append(str(exc))
            continue
        if found is None:
            pending.append(ref)
        else:
            resolved.append(found)
    if unsafe:
        lines = "\n".join(f"  - {line}" for line in dict.fromkeys(unsafe))
        raise UnsafeModelError(
            f"{path} refers to things keras_safe does not load:\n{lines}\n"
            + _see_docs("UnsafeModelError")
        )
    return resolved, pending


def resolve_pending(
    resolved: list[Resolved],
    pending: list[Reference],
    resolver: Resolver,
    manifest: Manifest | None,
    path: Path,
) -> list[Resolved]:
    """Resolve what :func:`screen_all` left pending, importing under ``allow_imports``.

    Raises:
        MissingObjectsError: listing every object still not found.
    """
    resolved = list(resolved)
    missing: dict[str, Reference] = {}
    for ref in pending:
        found = resolver.resolve(ref)
        if found is None:
            missing.setdefault(ref.key, ref)
        else:
            resolved.append(found)
    if missing and resolver.imported:
        # A module imported for a later reference may have registered an
        # earlier one (legacy configs name classes without their module).
        for key, ref in list(missing.items()):
            found = resolver.resolve(ref, imports=False)
            if found is not None:
                resolved.append(found)
                del missing[key]
    if missing:
        raise MissingObjectsError(
            _missing_message(missing, manifest, resolver, path), tuple(missing)
        )
    return resolved


def resolve_all(
    configs: list[dict[str, Any]],
    resolver: Resolver,
    manifest: Manifest | None,
    path: Path,
    more_problems: list[str] | None = None,
) -> list[Resolved]:
    """Resolve every reference or raise, listing every unsafe or missing one.

    Everything is checked without importing anything first; modules under
    ``allow_imports`` are imported only for a file with nothing unsafe in it.
    """
    resolved, pending = screen_all(configs, resolver, manifest, path, more_problems)
    return resolve_pending(resolved, pending, resolver, manifest, path)


def string_references(
    configs: list[dict[str, Any]], resolver: Resolver
) -> tuple[list[Reference], list[str]]:
    """Strings Keras would replace by a registered object: references, or refused.

    ``deserialize_keras_object`` returns the registered object (or custom
    object) for a string equal to its key, and Keras calls it where the
    config is deserialized whole: the compile config, and the function
    arguments (activations, initializers, regularizers, constraints) of
    legacy class configs, which Keras' legacy serializer writes by name.
    There such a string is a reference like any other: it must resolve
    through the allowlist. Everywhere else a saved model writes a registered
    object as a ``{"class_name": ...}`` reference, never as a bare string
    (Keras resolves one in places, ``initializers.get("key")`` and the
    arguments a layer deserializes itself, such as a wrapper's ``layer``):
    a string naming a registered object there is refused.

    Returns the references to resolve and the problems found.
    """
    custom = set(resolver.custom_objects)
    registered = set(keras.saving.get_custom_objects())

    def is_registered(text: str) -> bool:
        return text in registered or registry.get(text) is not None

    refs: list[Reference] = []
    problems: list[str] = []
    for config in configs:
        for found in iter_strings(config):
            text = found.value
            if found.place in ("compile", "legacy"):
                if found.place == "compile" and ">" in text:
                    continue  # iter_references yields these already
                if text in custom or is_registered(text):
                    refs.append(Reference("function", text, None, text, found.where))
            elif is_registered(text) or (">" in text and text in custom):
                problems.append(
                    f"{found.where}: the string {text!r} is the key of a registered object, "
                    "which Keras may put in its place; a saved model refers to a registered "
                    'object as {"class_name": ..., "registered_name": ...}, never as a bare '
                    "string here. Refusing it."
                )
    return refs, problems


def node_string_problems(configs: list[dict[str, Any]], resolver: Resolver) -> list[str]:
    """Strings in functional node arguments that Keras would replace by a registered object.

    Keras deserializes a node's arguments with ``deserialize_keras_object``,
    which returns the registered object (or custom object) for any string
    equal to its key. A saved graph records a function argument as a
    ``{"class_name": "function"}`` reference, never as a bare string, so such
    a string is a reference where none is expected: refused.
    """
    keys = set(keras.saving.get_custom_objects()) | set(resolver.custom_objects)
    problems: list[str] = []
    stack: list[tuple[str, Any]] = [("<config>", config) for config in configs]
    while stack:
        where, node = stack.pop()
        if isinstance(node, list):
            stack.extend((where, item) for item in node)
        elif isinstance(node, dict):
            inner = node.get("config")
            name = inner.get("name") if isinstance(inner, dict) else None
            here = f"{where} > {name}" if isinstance(name, str) else where
            nodes = node.get("inbound_nodes")
            for call in nodes if isinstance(nodes, list) else ():
                if isinstance(call, dict):
                    problems += [
                        f"{here}: the argument {text!r} of a call in the graph is the key of "
                        "a registered object, which Keras would pass in place of the string; "
                        "a saved graph never holds such a string. Refusing it."
                        for text in _node_strings(call)
                        if text in keys or registry.get(text) is not None
                    ]
            stack.extend((here, value) for value in node.values())
    return problems


def _node_strings(call: dict[str, Any]) -> list[str]:
    # The strings deserialize_keras_object looks up: in lists and in dicts
    # that are not objects (no class_name and config).
    found: list[str] = []
    stack: list[Any] = [call.get("args"), call.get("kwargs")]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict) and not ("class_name" in item and "config" in item):
            stack.extend(item.values())
    return found


# Keras-team packages: Keras itself imports their modules by the name a file
# gives (serialization_lib._retrieve_class_or_fn); keras_safe does only under
# allow_imports (see the README, "Keras-team packages").
_KERAS_TEAM = KERAS_TEAM_PACKAGES


def _public_module(module: str) -> str:
    """What a user imports to get ``module``: the package for Keras-team ones."""
    top = module.split(".")[0]
    return top if top in _KERAS_TEAM else module


def _missing_message(
    missing: dict[str, Reference], manifest: Manifest | None, resolver: Resolver, path: Path
) -> str:
    lines, modules, distributions = [], [], []
    for key, ref in missing.items():
        record = manifest.object(key) if manifest is not None else None
        module = (record.module if record else None) or resolver.module_of(ref)
        origin = record.origin if record else f"module {module or '?'}"
        lines.append(f"  - {key} ({ref.kind}, {origin}; used as {in_words(ref.where)})")
        if module and module not in ("__main__", "builtins"):
            modules.append(module)
        if record and record.distribution:
            distributions.append(f"{record.distribution}=={record.version}".rstrip("=None"))
    packages = tuple(sorted({m.split(".")[0] for m in modules}))
    allowed = [p for p in packages if resolver.may_import(p)]
    fixes = []
    if modules:
        imports = ", ".join(dict.fromkeys(_public_module(m) for m in modules))
        fixes.append(f"import the module(s) that define them first: import {imports}")
        if len(allowed) < len(packages):
            fixes.append(
                f"or let keras_safe import them: keras_safe.load(path, allow_imports={packages!r})"
            )
    fixes.append("or pass them: keras_safe.load(path, custom_objects={'Name': Name, ...})")
    if distributions:
        fixes.append(f"if not installed: pip install {' '.join(dict.fromkeys(distributions))}")
    if allowed:
        tried = []
        if resolver.imported:
            tried.append(f"imported {', '.join(resolver.imported)}")
        if resolver.failed_imports:
            tried.append(f"could not import {', '.join(dict.fromkeys(resolver.failed_imports))}")
        fixes.append(
            f"allow_imports={tuple(allowed)!r} was given ("
            + ("; ".join(tried) or "nothing left to import")
            + "), and that did not make them available: each must be registered by the module "
            "that defines it, under the key listed"
        )
    renamed = next(
        (
            k
            for k, ref in missing.items()
            if ref.kind == "class"
            and ">" in k
            and k.partition(">")[0] not in _KERAS_TEAM
            and _may_have_moved(ref.module, resolver)
        ),
        None,
    )
    if renamed is not None:
        fixes.append(
            "if a class moved to another module, import that one; if it was renamed (or its "
            f"package was), keep the old key: @keras_safe.register(..., aliases=({renamed!r},))"
        )
    team = sorted({p for p in packages if p in _KERAS_TEAM})
    note = ""
    if team:
        note = (
            f"\n{', '.join(team)} is a Keras-team package: keras_safe imports it only when "
            f"asked (allow_imports={tuple(team)!r}, or import {', '.join(team)} before "
            "loading), never because a file names it."
        )
    return (
        f"{path} needs {len(missing)} custom object(s) that are not available in this "
        "process:\n"
        + "\n".join(lines)
        + "\nFix: "
        + "\n     ".join(fixes)
        + note
        + "\n"
        + _see_docs("MissingObjectsError")
    )


def _may_have_moved(module: str | None, resolver: Resolver) -> bool:
    """Whether a class missing from ``module`` may have been moved or renamed.

    So when the module was imported without registering it, or cannot be
    found at all; not when its package is installed but merely not imported
    (then importing it is the fix, not an alias).
    """
    if module is None or module in sys.modules or module in resolver.failed_imports:
        return True
    top = module.split(".")[0]
    try:
        return importlib.util.find_spec(top) is None
    except (ImportError, ValueError):
        return True


_REFUSALS = {
    "code": (
        "{where}: the config holds a serialized {name} (Python code or an object rebuilt "
        "from a registry named by the file). keras_safe never runs code from a file; "
        "rewrite that part as a registered class or function."
    ),
    "malformed": (
        "{where}: the config has a reference Keras cannot interpret ({name}); the file "
        "was edited or is damaged."
    ),
    "data": "{where}: {name} is a value marker, not a reference.",
}


def _is_keras_module(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def normalize_prefixes(allow_imports: Any) -> tuple[str, ...]:
    """Validate ``allow_imports`` (a str or an iterable of package names)."""
    prefixes = (allow_imports,) if isinstance(allow_imports, str) else tuple(allow_imports)
    for prefix in prefixes:
        if not isinstance(prefix, str) or not _MODULE_RE.match(prefix) or prefix == "__main__":
            raise ValueError(
                f"allow_imports entries must be package names like 'my_project', got {prefix!r}."
            )
    return prefixes
