"""Every class or function reference inside a model config, found the way Keras reads it.

:func:`iter_references` walks a whole config (layers at any depth, nested
arguments, functional node arguments, the compile config) and yields each
reference as a :class:`Reference`. Any dict with a ``"class_name"`` is one,
wherever it sits and whatever else it holds, because that is how Keras'
deserializer reads it; keras_safe's own tagged forms are references too.
:mod:`keras_safe._guard.allowlist` decides what each may resolve to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from keras_safe._config.codec import TAG

__all__ = ["Reference", "StringValue", "in_words", "iter_references", "iter_strings"]

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


# -- strings that Keras may turn into objects --------------------------------------------

# Where Keras' legacy deserializer (configs without "module": .h5 files) puts
# the registered function a string names in its place, as Keras' legacy
# serializer writes functions: by name.
_LEGACY_FUNCTION_ARGS = ("activation", "initializer", "regularizer", "constraint")


@dataclass(frozen=True)
class StringValue:
    """A string inside a config, and what Keras does with one there.

    ``place`` is ``"compile"`` (inside a compile config, which Keras
    deserializes whole: a string equal to a custom object's key becomes that
    object), ``"legacy"`` (a function argument of a legacy class config,
    where Keras' legacy loader does the same), or ``"other"`` (everywhere
    else but functional call arguments, which keras_safe checks apart).
    """

    walk: _Walk = field(repr=False)
    value: str
    place: str
    index: int | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """A readable location, such as ``"model > dense.activation"``."""
        text = self.walk.where()
        return text if self.index is None else f"{text}[{self.index}]"


def iter_strings(config: Any) -> Iterator[StringValue]:
    """Every string value of ``config`` that is not a name, a reference's own field or data.

    Skipped: ``name``, the fields that make a dict a reference (class
    names, modules, registered names, a function reference's name, the
    fields of keras_safe's tagged forms), Keras' data markers (constants,
    tensors of the graph) and functional calls (``inbound_nodes``).
    Locations are computed only when asked for (configs may hold a
    vocabulary of millions of strings).
    """
    stack: list[tuple[Any, _Walk, str]] = [(config, _Walk(), "other")]
    while stack:
        node, at, place = stack.pop()
        if isinstance(node, str):
            yield StringValue(at, node, place)
        elif isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                if isinstance(item, str):
                    yield StringValue(at, item, place, i)
                elif isinstance(item, (list, tuple, dict)):
                    stack.append((item, _Walk(at.layers, (*at.args, f"[{i}]")), place))
        elif isinstance(node, dict):
            stack.extend(reversed(list(_string_children(node, at, place))))


def _string_children(
    node: dict[str, Any], at: _Walk, place: str
) -> Iterator[tuple[Any, _Walk, str]]:
    class_name = node.get("class_name")
    if not isinstance(class_name, str):
        skip = {TAG, "registered_name", "module", "class_name", "member"} if TAG in node else set()
        for key, value in node.items():
            if key not in skip:
                yield value, at.child(key), "compile" if key == "compile_config" else place
        return
    if class_name in _DATA_CLASSES or class_name in _CODE_CLASSES or class_name == "function":
        return
    legacy = "module" not in node
    inner = node.get("config")
    layer_name = inner.get("name") if isinstance(inner, dict) else None
    here = _Walk((*at.layers, layer_name), ()) if isinstance(layer_name, str) and layer_name else at
    for key, value in node.items():
        if key in (TAG, "class_name", "module", "registered_name", "shared_object_id"):
            continue
        if key == "inbound_nodes":
            continue  # functional calls: allowlist.node_string_problems
        if key == "compile_config":
            yield value, here.child(key), "compile"
        elif key == "config" and isinstance(value, dict):
            for arg, item in value.items():
                if arg == "name":
                    continue
                inner_place = place
                if place != "compile":
                    function_arg = any(arg.endswith(kind) for kind in _LEGACY_FUNCTION_ARGS)
                    inner_place = "legacy" if legacy and function_arg else "other"
                yield item, here.child(arg), inner_place
        else:
            yield value, (here if key == "config" else here.child(key)), place


_COMPILE_ARGUMENTS = {
    "loss": ("the loss", "a loss"),
    "metrics": ("the metrics", "a metric"),
    "weighted_metrics": ("the weighted metrics", "a weighted metric"),
    "optimizer": ("the optimizer", "part of the optimizer"),
}
_WHERE = re.compile(r"^(?P<name>[^.\[]*)(?P<args>.*)$")


def in_words(where: str) -> str:
    """A :attr:`Reference.where` as a user says it.

    ``"model.compile_config.loss"`` is "the loss passed to compile()",
    ``"model > block > dense.kernel_initializer"`` is "the
    kernel_initializer of layer 'dense' (in model > block)".
    """
    *outer, last = where.split(" > ")
    match = _WHERE.match(last)
    name, args = (match["name"], match["args"]) if match else (last, "")
    if args.startswith(".compile_config"):
        rest = args[len(".compile_config") :].lstrip(".")
        argument, _, inner = rest.partition(".")
        argument, bracket, _ = argument.partition("[")
        whole, part = _COMPILE_ARGUMENTS.get(argument, (f"the {argument}", f"part of {argument}"))
        if not argument:
            return "the arguments passed to compile()"
        if argument == "optimizer" and inner.startswith("config.learning_rate"):
            return "the learning-rate schedule of the optimizer passed to compile()"
        if not inner and not bracket:
            return f"{whole} passed to compile()"
        return f"{part} passed to compile() ({rest})"
    if name in ("", "<config>"):
        return f"the model config ({where})"
    inside = f" (in {' > '.join(outer)})" if outer else ""
    kind = "layer" if outer else "model"
    if not args:
        return f"{kind} {name!r}{inside}"
    return f"the {args.lstrip('.')} of {kind} {name!r}{inside}"


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
