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

import builtins
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
from keras_safe.screen import builtin_config_problem

__all__ = ["Reference", "Resolved", "Resolver", "iter_references"]

# Keras' own data markers inside configs: values, not references (the legacy
# JSON encoder's tuples and shapes too).
_DATA_CLASSES = frozenset(
    {
        "__numpy__",
        "__tensor__",
        "__bytes__",
        "__ellipsis__",
        "__slice__",
        "__keras_tensor__",
        "__tuple__",
        "TensorShape",
    }
)
# Deserializing these runs code, or builds objects from a registry named by
# the file (TensorFlow type specs, in Keras' legacy JSON decoder).
_CODE_CLASSES = frozenset({"__lambda__", "__typespec__", "TypeSpec", "CompositeTensor"})
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
# Layers that run code or load files chosen by the model file.
_REFUSED_LAYERS: tuple[type, ...] = tuple(
    cls
    for name in ("Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer")
    if isinstance(cls := _keras.keras_symbol(f"keras.layers.{name}"), type)
)
# Packages whose functions a config may name but that never hold model parts.
_FOREIGN_PACKAGES = frozenset({"tensorflow", "tf", "numpy", "h5py", "jax", "torch", "builtins"})
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Reference:
    """One reference to a class or function inside a config.

    ``kind`` is ``"class"``, ``"function"``, ``"enum"``, ``"code"`` (a
    serialized lambda or type spec), ``"malformed"`` (a reference Keras
    cannot interpret) or ``"data"`` (Keras' own value markers, yielded only
    with ``include_data=True``). ``where`` is a readable location such as
    ``"model > encoder > attention.kernel_initializer"``.

    ``registered_name`` is the key Keras looks the object up by among custom
    objects: None when the config has no such field (Keras then uses the
    class name), ``""`` when the config sets it to null (Keras then looks up
    only its built-ins). ``shared_id`` is the config's ``shared_object_id``;
    ``legacy`` is True for class configs without a ``"module"`` field, which
    Keras resolves with its legacy (name-table) deserializer.
    """

    kind: str
    name: str
    module: str | None
    registered_name: str | None
    where: str
    config: Any = field(default=None, compare=False, repr=False)
    shared_id: Any = field(default=None, compare=False)
    legacy: bool = field(default=False, compare=False)

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

    def child(self, key: Any) -> _Walk:
        return _Walk(self.layers, (*self.args, str(key)))


def iter_references(config: Any, *, include_data: bool = False) -> Iterator[Reference]:
    """Every class/function reference in ``config``, depth first.

    Any dict with a ``"class_name"`` is a reference, wherever it sits and
    whatever else it holds, because that is how Keras' deserializer reads
    it; keras_safe's own tagged forms are references too.
    """
    for ref in _walk(config, _Walk(), in_compile=False):
        if include_data or ref.kind != "data":
            yield ref


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
        yield from _tagged(node, at)
    if "class_name" in node:
        yield from _walk_object(node, at, in_compile)
        return
    for key, value in node.items():
        if key != TAG:
            yield from _walk(value, at.child(key), in_compile or key == "compile_config")


def _tagged(node: dict[str, Any], at: _Walk) -> Iterator[Reference]:
    # keras_safe's codec resolves {TAG: "class"} by registered_name when it is
    # a string, else as an exported Keras class; {TAG: "enum"} by key only.
    tag = node.get(TAG)
    if tag not in ("enum", "class"):
        return
    registered, name = node.get("registered_name"), node.get("class_name")
    if isinstance(registered, str):
        yield Reference(
            "enum" if tag == "enum" else "class", registered, None, registered, at.where()
        )
    elif tag == "class" and isinstance(name, str):
        yield Reference("class", name, _str_or_none(node.get("module")), "", at.where())
    else:
        yield Reference("malformed", repr(registered or name), None, None, at.where())


def _walk_object(node: dict[str, Any], at: _Walk, in_compile: bool) -> Iterator[Reference]:
    class_name = node.get("class_name")
    module = node.get("module")
    inner = node.get("config")
    if not isinstance(class_name, str) or not isinstance(module, (str, type(None))):
        yield Reference("malformed", repr(class_name), None, None, at.where())
        return
    if class_name in _DATA_CLASSES:
        yield Reference("data", class_name, module, None, at.where(), inner)
        for key, value in node.items():
            if key not in ("class_name", "module"):
                yield from _walk(value, at.child(key), in_compile)
        return
    if class_name in _CODE_CLASSES:
        yield Reference("code", class_name, module, None, at.where())
        return
    registered = _registered_field(node)
    if registered is None and "registered_name" in node and node["registered_name"] is not None:
        yield Reference("malformed", repr(node["registered_name"]), module, None, at.where())
        return
    if class_name == "function":
        if not isinstance(inner, str):
            yield Reference("malformed", repr(inner), module, None, at.where())
            return
        yield Reference("function", inner, module, registered, at.where())
        return
    layer_name = inner.get("name") if isinstance(inner, dict) else None
    here = _Walk((*at.layers, layer_name), ()) if isinstance(layer_name, str) and layer_name else at
    yield Reference(
        "class",
        class_name,
        module,
        registered,
        here.where(),
        inner,
        node.get("shared_object_id"),
        "module" not in node,
    )
    for key, value in node.items():
        if key in ("class_name", "module", "registered_name", "shared_object_id"):
            continue
        child = here if key == "config" else here.child(key)
        yield from _walk(value, child, in_compile or key == "compile_config")


def _registered_field(node: dict[str, Any]) -> str | None:
    """The custom-object key Keras looks up: None = use class_name, "" = none."""
    if "registered_name" not in node:
        return None
    value = node["registered_name"]
    if value is None:
        return ""
    return value if isinstance(value, str) else None


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
        if found is None and imports and self._may_import(ref.module):
            self._import(ref.module)
            found = self._custom(ref)
        if found is not None:
            return found
        return self._builtin(ref)

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
            problem = builtin_config_problem(ref, obj)
            if problem is not None:
                raise UnsafeModelError(problem)
            return Resolved(ref, obj, "keras")
        return self._refuse_keras(ref, module)

    def _refuse_keras(self, ref: Reference, module: str) -> Resolved:
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
            return  # reported as missing, with the manifest's hints
        self.imported.append(module)


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
