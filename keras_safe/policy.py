"""The allowlist: every class or function a model config refers to, checked.

:func:`iter_references` walks a whole config (layers at any depth, nested
arguments, functional node arguments, the compile config) and yields each
reference to a class or function. :class:`Resolver` decides what each may
resolve to: a Keras built-in of a kind models are made of, an object in the
registry, an object the caller passed in ``custom_objects``, or an object
registered by importing a module under an ``allow_imports`` prefix. Nothing
else is imported, and a config that names anything else never reaches Keras.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import keras

from keras_safe import _keras
from keras_safe.codec import TAG
from keras_safe.errors import UnsafeModelError
from keras_safe.registry import registry

__all__ = ["Reference", "Resolved", "Resolver", "iter_references"]

# Keras' own data markers inside configs: values, not references.
_DATA_CLASSES = frozenset(
    {"__numpy__", "__tensor__", "__bytes__", "__ellipsis__", "__slice__", "__keras_tensor__"}
)
# Deserializing these runs code or reads files named by the file.
_CODE_CLASSES = frozenset({"__lambda__", "__typespec__"})
_FUNCTION_MODULES = ("keras.activations", "keras.losses", "keras.metrics")
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
_REFUSED_LAYERS: tuple[type, ...] = (keras.layers.Lambda, keras.layers.TFSMLayer)
_LEGACY_MODULES = (
    "keras.layers",
    "keras.models",
    "keras.src.models.functional",
    "keras",
    "keras.initializers",
    "keras.regularizers",
    "keras.constraints",
    "keras.optimizers",
    "keras.optimizers.schedules",
    "keras.losses",
    "keras.metrics",
)
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Reference:
    """One reference to a class or function inside a config.

    ``kind`` is ``"class"``, ``"function"``, ``"enum"`` or ``"code"`` (a
    serialized lambda or type spec). ``where`` is a readable location such as
    ``"model > encoder > attention.kernel_initializer"``.
    """

    kind: str
    name: str
    module: str | None
    registered_name: str | None
    where: str
    config: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        """The name the object is looked up by (registered key if it has one)."""
        if self.registered_name and ">" in self.registered_name:
            return self.registered_name
        return self.name


@dataclass
class _Walk:
    layers: tuple[str, ...] = ()
    args: tuple[str, ...] = ()

    def where(self) -> str:
        text = " > ".join(self.layers) or "<config>"
        for part in self.args:
            text += part if part.startswith("[") else f".{part}"
        return text


def iter_references(config: Any) -> Iterator[Reference]:
    """Every class/function reference in ``config``, depth first."""
    yield from _walk(config, _Walk(), in_compile=False)


def _walk(node: Any, at: _Walk, in_compile: bool) -> Iterator[Reference]:
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _walk(item, _Walk(at.layers, (*at.args, f"[{i}]")), in_compile)
        return
    if isinstance(node, str):
        if in_compile and ">" in node:
            yield Reference("function", node, None, node, at.where())
        return
    if not isinstance(node, dict):
        return
    if TAG in node:
        tag = node.get(TAG)
        if tag in ("enum", "class") and (node.get("registered_name") or node.get("class_name")):
            yield Reference(
                "enum" if tag == "enum" else "class",
                str(node.get("class_name") or node.get("registered_name")),
                _str_or_none(node.get("module")),
                _str_or_none(node.get("registered_name")),
                at.where(),
            )
        for key, value in node.items():
            if key != TAG:
                yield from _walk(value, _Walk(at.layers, (*at.args, str(key))), in_compile)
        return
    if "class_name" in node:
        yield from _walk_object(node, at, in_compile)
        return
    for key, value in node.items():
        yield from _walk(
            value, _Walk(at.layers, (*at.args, str(key))), in_compile or key == "compile_config"
        )


def _walk_object(node: dict[str, Any], at: _Walk, in_compile: bool) -> Iterator[Reference]:
    class_name = node.get("class_name")
    module = _str_or_none(node.get("module"))
    inner = node.get("config")
    if not isinstance(class_name, str):
        yield Reference("code", repr(class_name), module, None, at.where())
        return
    if class_name in _DATA_CLASSES:
        if class_name == "__slice__":
            yield from _walk(inner, at, in_compile)
        return
    if class_name in _CODE_CLASSES:
        yield Reference("code", class_name, module, None, at.where())
        return
    registered = _str_or_none(node.get("registered_name"))
    if class_name == "function":
        name = inner if isinstance(inner, str) else repr(inner)
        yield Reference("function", name, module, registered, at.where())
        return
    layer_name = inner.get("name") if isinstance(inner, dict) else None
    here = _Walk((*at.layers, layer_name), ()) if isinstance(layer_name, str) and layer_name else at
    yield Reference("class", class_name, module, registered, here.where(), inner)
    for key, value in node.items():
        if key in ("class_name", "module", "registered_name", "shared_object_id"):
            continue
        child = here if key == "config" else _Walk(here.layers, (*here.args, key))
        yield from _walk(value, child, in_compile or key == "compile_config")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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

    def keras_custom_objects(self) -> dict[str, Any]:
        """``custom_objects`` for Keras, plus keys resolved through short names."""
        return {**self.custom_objects, **self.short_names}

    def resolve(self, ref: Reference) -> Resolved | None:
        """What ``ref`` stands for, or None if nothing allowed matches.

        Raises:
            UnsafeModelError: the reference names code, a Lambda, or a Keras
                symbol that is not a model part.
        """
        if ref.kind == "code":
            raise UnsafeModelError(
                f"{ref.where}: the config holds a serialized {ref.name} (Python code). "
                "keras_safe never runs code from a file; rewrite that part as a registered "
                "class or function."
            )
        found = self._custom(ref)
        if found is None and self._may_import(ref.module):
            self._import(ref.module)
            found = self._custom(ref)
        if found is not None:
            return found
        return self._builtin(ref)

    def _custom(self, ref: Reference) -> Resolved | None:
        # Mirror Keras' own lookup so the object approved here is the one Keras
        # will use: functions by their config name, classes by registered_name
        # (class_name when the key is absent); global registrations win over
        # custom_objects, as in keras.saving.deserialize_keras_object.
        key = ref.name if ref.kind == "function" else (ref.registered_name or ref.name)
        obj = registry.get(key)
        if obj is None:
            obj = keras.saving.get_custom_objects().get(key)
        if obj is not None:
            return Resolved(ref, obj, "registry")
        if key in self.custom_objects:
            return Resolved(ref, self.custom_objects[key], "custom")
        if ref.kind != "function" and ref.name in self.custom_objects:
            # custom_objects given by short class name for a registered key:
            # Keras would miss it, so load() maps the key to it (see aliases()).
            self.short_names[key] = self.custom_objects[ref.name]
            return Resolved(ref, self.custom_objects[ref.name], "custom")
        return None

    def _builtin(self, ref: Reference) -> Resolved | None:
        module = ref.module or ""
        if ref.kind == "function":
            modules = _FUNCTION_MODULES if module in ("", "builtins") else (module,)
            for candidate in modules:
                if candidate in _FUNCTION_MODULES:
                    obj = _keras.keras_symbol(f"{candidate}.{ref.name}")
                    if obj is not None and callable(obj) and not isinstance(obj, type):
                        return Resolved(ref, obj, "keras")
            return self._refuse_keras(ref, module) if _is_keras_module(module) else None
        if not module and ref.kind == "class":
            return self._legacy_builtin(ref)
        if not _is_keras_module(module):
            return None
        return self._check_kind(ref, module, _keras.keras_symbol(f"{module}.{ref.name}"))

    def _legacy_builtin(self, ref: Reference) -> Resolved | None:
        # Legacy (.h5) configs name built-ins by class name only; Keras looks
        # them up in its layer/initializer/... modules, and so do we.
        for module in _LEGACY_MODULES:
            obj = _keras.keras_symbol(f"{module}.{ref.name}")
            if obj is None and module in sys.modules:
                obj = getattr(sys.modules[module], ref.name, None)
            if isinstance(obj, type):
                return self._check_kind(ref, module, obj)
        return None

    def _check_kind(self, ref: Reference, module: str, obj: Any) -> Resolved | None:
        if obj is None and module.startswith("keras.src."):
            # Non-exported built-ins (e.g. Functional) are written with their
            # defining module; it is already imported if Keras could write it.
            loaded = sys.modules.get(module)
            obj = getattr(loaded, ref.name, None) if loaded is not None else None
        if isinstance(obj, type) and issubclass(obj, _ALLOWED_BASES):
            if issubclass(obj, _REFUSED_LAYERS):
                raise UnsafeModelError(
                    f"{ref.where}: {module}.{ref.name} layers run code or load files chosen "
                    "by the model file, so keras_safe refuses them. Replace the layer with a "
                    "registered keras_safe.SerializableLayer."
                )
            return Resolved(ref, obj, "keras")
        return self._refuse_keras(ref, module)

    def _refuse_keras(self, ref: Reference, module: str) -> Resolved:
        raise UnsafeModelError(
            f"{ref.where}: the config refers to {module}.{ref.name}, which is not a Keras "
            "layer, model, initializer, regularizer, constraint, activation, loss, metric, "
            "optimizer, learning-rate schedule or dtype policy. Model files may only refer "
            "to those; refusing to load it."
        )

    def _may_import(self, module: str | None) -> bool:
        if not module or module == "__main__" or not _MODULE_RE.match(module):
            return False
        return any(module == p or module.startswith(f"{p}.") for p in self.allow_imports)

    def _import(self, module: str | None) -> None:
        assert module is not None
        if module in sys.modules:
            return
        try:
            importlib.import_module(module)
        except ImportError:
            return  # reported as missing, with the manifest's hints
        self.imported.append(module)


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
