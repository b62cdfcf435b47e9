"""What a config makes Keras compute and allocate besides variables, bounded before Keras runs.

Variables are budgeted while Keras creates them (``_keras.variable_budget``).
Everything else a config can make Keras do is checked here, on the parsed
JSON, before Keras sees it:

* **Structure a saved model never has is refused**, not estimated: in a
  functional config every layer must lie on a path to an output (Keras saves
  only the graph between inputs and outputs), and every call (node) must take
  at least one tensor of the graph; a node called on constants only would run
  eagerly while the graph is rebuilt (``BroadcastTo`` to 30000x30000,
  ``RepeatVector(200_000_000)``).
* **Work** is counted: the layer calls needed to rebuild every graph, a
  nested model counted once per call of it (``max_layer_calls``), and the
  iterations of Keras' rebuild loop, which is quadratic in a config listing
  layers deepest-first (``max_rebuild_steps``), simulated on names only.
* **Memory besides variables** is summed for the whole load
  (``max_build_bytes``): numpy constants (``count x itemsize``, sub-array and
  structured dtypes refused) and lookup vocabularies as numpy pads them
  (every token as long as the longest, out-of-vocabulary tokens included,
  TF-IDF weights padded to ``max_tokens``).
  What only the rebuilt graph can tell (Normalization broadcasting a scalar
  mean to its input shape, vocabularies stored as assets) is charged against
  what is left of the same budget (:class:`BuildEstimate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from keras_safe._format.limits import ArchiveLimits

__all__ = ["BuildEstimate", "asset_vocabulary_bytes", "screen_resources"]

_LOOKUP_LAYERS = frozenset({"StringLookup", "IntegerLookup", "TextVectorization", "IndexLookup"})
_INPUT_LAYERS = frozenset({"InputLayer"})
# float64 padding, its float32 tensor, the variable holding a copy.
_IDF_BYTES_PER_TOKEN = 8 + 4 + 4


@dataclass
class BuildEstimate:
    """What the static screen found, for the checks that run later in the same load.

    ``build_bytes``: memory besides variables already accounted for.
    ``oov_tokens`` and ``special_length``: the most out-of-vocabulary tokens
    and the longest mask/OOV token of any lookup layer (they are padded
    together with a vocabulary read from an asset).
    """

    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    build_bytes: int = 0
    layer_calls: int = 0
    oov_tokens: int = 0
    special_length: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        """Bytes of ``max_build_bytes`` left for what Keras allocates while building."""
        return max(0, self.limits.max_build_bytes - self.build_bytes)

    def charge(self, nbytes: int, what: str) -> None:
        self.build_bytes += nbytes
        if self.build_bytes > self.limits.max_build_bytes:
            self.problems.append(
                f"{what} needs {nbytes} bytes; with the rest of the config that is "
                f"{self.build_bytes} bytes besides variables (limit "
                f"{self.limits.max_build_bytes}, ArchiveLimits.max_build_bytes)."
            )


def screen_resources(config: Any, limits: ArchiveLimits) -> BuildEstimate:
    """Check ``config`` (a parsed model config); the problems found are in ``.problems``."""
    estimate = BuildEstimate(limits)
    for where, node in _objects(config, "<config>"):
        _constant(node, where, estimate)
        _lookup(node, where, estimate)
    if not estimate.problems:
        estimate.layer_calls = _Calls(limits, estimate).build(config, _name(config))[0]
        if not estimate.problems and estimate.layer_calls > limits.max_layer_calls:
            estimate.problems.append(
                f"rebuilding the model's graphs takes {estimate.layer_calls} layer calls "
                f"(nested models count once per call of them; limit {limits.max_layer_calls}, "
                "ArchiveLimits.max_layer_calls)."
            )
    return estimate


def asset_vocabulary_bytes(data: bytes, estimate: BuildEstimate) -> int:
    """Bytes numpy takes for a ``vocabulary.txt`` asset once a lookup layer reads it."""
    lines = data.count(b"\n") + 1
    longest = max((len(line) for line in data.split(b"\n")), default=0)
    return (lines + estimate.oov_tokens + 2) * max(longest, estimate.special_length, 1) * 4


# -- walking -------------------------------------------------------------------------


def _objects(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every dict with a ``class_name`` in ``node``, with a readable location."""
    stack: list[tuple[str, Any]] = [(where, node)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, list):
            stack.extend((at, x) for x in reversed(item))
        elif isinstance(item, dict):
            if isinstance(item.get("class_name"), str):
                inner = item.get("config")
                name = inner.get("name") if isinstance(inner, dict) else None
                here = f"{at} > {name}" if isinstance(name, str) else at
                yield here, item
                at = here
            stack.extend((at, v) for v in reversed(list(item.values())))


def _name(node: Any) -> str:
    inner = node.get("config") if isinstance(node, dict) else None
    name = inner.get("name") if isinstance(inner, dict) else None
    return name if isinstance(name, str) else "<model>"


# -- constants and vocabularies ---------------------------------------------------------


def _leaves(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            yield item


def _constant(node: dict[str, Any], where: str, estimate: BuildEstimate) -> None:
    if node.get("class_name") not in ("__numpy__", "__tensor__"):
        return
    inner = node.get("config")
    if not isinstance(inner, dict):
        return
    dtype = inner.get("dtype")
    leaves = list(_leaves(inner.get("value")))
    try:
        parsed = np.dtype(dtype) if isinstance(dtype, str) else None
    except (TypeError, ValueError, SyntaxError):
        parsed = None
    if parsed is not None and (parsed.subdtype is not None or parsed.fields is not None):
        estimate.problems.append(
            f"{where}: a constant of dtype {dtype!r} (a sub-array or structured dtype, which "
            "multiplies every element); constants in a model config have plain dtypes."
        )
        return
    itemsize = parsed.itemsize if parsed is not None else 8
    texts = [len(x) for x in leaves if isinstance(x, str)]
    if texts and (parsed is None or parsed.kind in "US"):
        itemsize = max(itemsize, 4 * max(texts))
    nbytes = max(1, len(leaves)) * max(1, itemsize)
    estimate.charge(nbytes, f"{where}: a constant of dtype {dtype!r}")


def _lookup(node: dict[str, Any], where: str, estimate: BuildEstimate) -> None:
    if node.get("class_name") not in _LOOKUP_LAYERS:
        return
    inner = node.get("config")
    if not isinstance(inner, dict):
        return
    oov = inner.get("num_oov_indices", 1)
    oov = oov if isinstance(oov, int) and not isinstance(oov, bool) and oov > 0 else 0
    specials = [inner.get(k) for k in ("oov_token", "mask_token")]
    special = max((_token_length(s) for s in specials if s is not None), default=0)
    vocabulary = inner.get("vocabulary")
    tokens = list(_leaves(vocabulary)) if isinstance(vocabulary, list) else []
    longest = max([special, *(_token_length(t) for t in tokens)], default=0)
    estimate.oov_tokens = max(estimate.oov_tokens, oov)
    estimate.special_length = max(estimate.special_length, special)
    estimate.charge(
        (len(tokens) + oov + 2) * max(longest, 1) * 4,
        f"{where}: {node['class_name']} with {len(tokens)} vocabulary and {oov} "
        f"out-of-vocabulary tokens, the longest {longest} characters (numpy pads every "
        "token to the longest)",
    )
    max_tokens = inner.get("max_tokens")
    if (
        inner.get("output_mode") == "tf_idf"
        and inner.get("pad_to_max_tokens") is True
        and isinstance(max_tokens, int)
        and not isinstance(max_tokens, bool)
        and max_tokens > 0
    ):
        # set_vocabulary pads idf_weights to max_tokens with numpy (float64),
        # converts them to a tensor and copies that into a TensorFlow variable
        # that no Keras variable budget sees.
        estimate.charge(
            max_tokens * _IDF_BYTES_PER_TOKEN,
            f"{where}: {node['class_name']}(output_mode='tf_idf', pad_to_max_tokens=True, "
            f"max_tokens={max_tokens}) (its idf_weights are padded to max_tokens)",
        )


def _token_length(token: Any) -> int:
    return len(token) if isinstance(token, str) else len(repr(token))


# -- graphs ---------------------------------------------------------------------------


def _history(value: Any) -> Iterator[tuple[Any, Any]]:
    """The (layer name, node index) of every tensor a node's arguments refer to."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__":
                inner = item.get("config")
                history = inner.get("keras_history") if isinstance(inner, dict) else None
                if isinstance(history, (list, tuple)) and len(history) >= 2:
                    yield history[0], history[1]
                continue
            stack.extend(item.values())


def _node_inputs(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, list):  # legacy: [[layer, node_index, tensor_index, kwargs], ...]
        return [(x[0], x[1]) for x in node if isinstance(x, list) and len(x) >= 3]
    if isinstance(node, dict):
        return list(_history([node.get("args"), node.get("kwargs")]))
    return []


def _output_names(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list) and len(item) == 3 and isinstance(item[0], str):
            yield item[0]
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


class _Calls:
    """Counts the layer calls Keras makes to build a config, checking each graph."""

    def __init__(self, limits: ArchiveLimits, estimate: BuildEstimate) -> None:
        self.limits = limits
        self.estimate = estimate
        self.total = 0

    def build(self, node: Any, where: str) -> tuple[int, int]:
        """(calls to build ``node``, calls each later call of it takes)."""
        inner = node.get("config") if isinstance(node, dict) else None
        if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
            return 1, 1
        layers = [x for x in inner["layers"] if isinstance(x, dict)]
        functional = "output_layers" in inner
        build_calls, run_calls = 0, 0
        for layer in layers:
            built, run = self.build(layer, f"{where} > {_name(layer)}")
            if self.estimate.problems:
                return 0, 0
            nodes = layer.get("inbound_nodes") if functional else None
            calls = len(nodes) if isinstance(nodes, list) else (0 if functional else 1)
            build_calls += built + calls * run
            run_calls += calls * run
            if build_calls > self.limits.max_layer_calls:
                return build_calls, run_calls  # enough to refuse; stop counting
        if functional:
            self._check_graph(inner, layers, where)
        return max(1, build_calls), max(1, run_calls)

    def _check_graph(self, inner: dict[str, Any], layers: list[dict[str, Any]], where: str) -> None:
        problems = self.estimate.problems
        by_name: dict[Any, dict[str, Any]] = {}
        for layer in layers:
            by_name[_layer_name(layer)] = layer
        inputs = set(_output_names(inner.get("input_layers")))
        reached: set[Any] = set()
        stack = list(_output_names(inner.get("output_layers")))
        while stack:
            name = stack.pop()
            if name in reached or name not in by_name:
                continue
            reached.add(name)
            for node in _nodes(by_name[name]):
                stack.extend(layer for layer, _ in _node_inputs(node))
        for name, layer in by_name.items():
            if name in reached or (name in inputs and not _nodes(layer)):
                continue
            problems.append(
                f"{where} > {name}: the {layer.get('class_name')} is not connected to any "
                "output of the model. Keras saves only layers between inputs and outputs, but "
                "would build (and call) this one while rebuilding the graph; refusing the file."
            )
            return
        for name, layer in by_name.items():
            for node in _nodes(layer):
                if not _node_inputs(node):
                    problems.append(
                        f"{where} > {name}: a call of the {layer.get('class_name')} takes no "
                        "tensor of the graph, only constants, so Keras would run it eagerly "
                        "while rebuilding the graph. Saved models never hold such calls; "
                        "refusing the file."
                    )
                    return
        self._rebuild_steps(layers, where)

    def _rebuild_steps(self, layers: list[dict[str, Any]], where: str) -> None:
        # Keras' functional_from_config makes pass after pass over the layer
        # list, calling each layer's pending nodes in order until one needs a
        # node not built yet: passes x layers iterations. The pass in which
        # each node is built follows from its inputs' (one pass later when an
        # input's layer comes later in the list), computed once per node.
        position = {_layer_name(x): i for i, x in enumerate(layers)}
        initial = {_layer_name(x): _initial_nodes(x) for x in layers}
        inputs = {_layer_name(x): [_node_inputs(node) for node in _nodes(x)] for x in layers}
        built: dict[tuple[Any, int], int] = {}
        passes = 0
        for name, calls in inputs.items():
            for index in range(len(calls)):
                found = self._pass_of((name, index), position, initial, inputs, built)
                if found is None:
                    return  # a cycle or a dangling reference: Keras refuses the graph itself
                passes = max(passes, found)
        self.total += passes * len(layers)
        if self.total > self.limits.max_rebuild_steps:
            self.estimate.problems.append(
                f"{where}: rebuilding this functional graph takes {passes} passes over its "
                f"{len(layers)} layers in Keras' rebuild loop (its layers are not listed inputs "
                f"first, as Keras saves them; limit {self.limits.max_rebuild_steps} steps, "
                "ArchiveLimits.max_rebuild_steps)."
            )

    @staticmethod
    def _pass_of(
        key: tuple[Any, int],
        position: dict[Any, int],
        initial: dict[Any, int],
        inputs: dict[Any, list[list[tuple[Any, Any]]]],
        built: dict[tuple[Any, int], int],
    ) -> int | None:
        """The rebuild pass in which node ``key`` (layer, index among its saved calls) is built."""

        def requirements(node: tuple[Any, int]) -> list[tuple[tuple[Any, int] | None, int]]:
            # (the node it waits for or None when built from the start, the layer's position)
            name, index = node
            found: list[tuple[tuple[Any, int] | None, int]] = []
            if index > 0:
                found.append(((name, index - 1), position[name]))
            for layer, i in inputs[name][index]:
                if layer not in position or not isinstance(i, int) or i < 0:
                    return []
                saved = i - initial[layer]
                if saved >= len(inputs[layer]):
                    return []
                found.append(((layer, saved) if saved >= 0 else None, position[layer]))
            return found

        stack, active = [key], {key}
        while stack:
            node = stack[-1]
            needs = requirements(node)
            if not needs and (node[1] > 0 or inputs[node[0]][node[1]]):
                return None
            waiting = [d for d, _ in needs if d is not None and d not in built]
            if waiting:
                if any(d in active for d in waiting):
                    return None
                stack.extend(waiting)
                active.update(waiting)
                continue
            here = position[node[0]]
            built[node] = max(
                [1]
                + [built[d] + (1 if at > here else 0) if d is not None else 1 for d, at in needs]
            )
            stack.pop()
            active.discard(node)
        return built[key]


def _layer_name(layer: dict[str, Any]) -> Any:
    name = layer.get("name")
    if name is None and isinstance(layer.get("config"), dict):
        name = layer["config"].get("name")
    return name if isinstance(name, (str, int, float)) else repr(name)


def _nodes(layer: dict[str, Any]) -> list[Any]:
    nodes = layer.get("inbound_nodes")
    return nodes if isinstance(nodes, list) else []


def _initial_nodes(layer: dict[str, Any]) -> int:
    # An input layer, and a nested functional model, start with a node of their own.
    inner = layer.get("config")
    own = layer.get("class_name") in _INPUT_LAYERS
    return 1 if own or (isinstance(inner, dict) and "output_layers" in inner) else 0
