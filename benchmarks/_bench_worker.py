"""One measurement of ``bench_save_load.py``, run in a fresh Python process.

``python _bench_worker.py '<json spec>'`` performs one job and prints one
line ``BENCH-RESULT {json}``. Every timed save or load runs in its own
process, so that neither the allocator's cached memory nor Keras' or
TensorFlow's caches from one side can flatter the other.

Peak RSS of one operation: after the model is built and trained (whose own
peak would otherwise dominate the process' high-water mark), the worker
resets the kernel's high-water mark to the current RSS (``echo 5 >
/proc/self/clear_refs``, Linux >= 4.0), runs the operation, and reads
``VmHWM`` from ``/proc/self/status``: the largest RSS the process had while
the operation ran, baseline included. Where the reset is not available the
worker says so (``hwm_reset: false``) and reports ``ru_maxrss``, which then
also covers the setup.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_T0 = time.perf_counter()
import keras  # noqa: E402

_T1 = time.perf_counter()
import keras_safe  # noqa: E402

for _name in keras_safe.__all__:  # public names load on first use: count them too
    getattr(keras_safe, _name)
_T2 = time.perf_counter()
import numpy as np  # noqa: E402

# -- the models ---------------------------------------------------------------------


@keras_safe.register(package="keras_safe_bench")
class DenseBlock(keras_safe.SerializableLayer):
    """A residual dense block: ``x + activation(x @ kernel + bias)``."""

    def __init__(
        self,
        units: int,
        activation: str = "gelu",
        kernel_initializer: str = "glorot_uniform",
        residual: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = kernel_initializer
        self.residual = residual

    def build(self, input_shape: Any) -> None:
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer=self.kernel_initializer, name="kernel"
        )
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, x: Any) -> Any:
        y = self.activation(keras.ops.matmul(x, self.kernel) + self.bias)
        return x + y if self.residual else y


class PlainDenseBlock(keras.layers.Layer):
    """The same layer as a plain Keras subclass (for the construction benchmark)."""

    def __init__(
        self,
        units: int,
        activation: str = "gelu",
        kernel_initializer: str = "glorot_uniform",
        residual: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = kernel_initializer
        self.residual = residual

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": self.kernel_initializer,
            "residual": self.residual,
        }


def shape_for(params: int) -> tuple[int, int]:
    """(width, depth) of a stack of width x width blocks with about ``params`` parameters."""
    width = max(64, round((params / 24) ** 0.5 / 64) * 64)
    depth = max(1, round(params / (width * (width + 1))))
    return width, depth


def build_model(kind: str, params: int) -> Any:
    """A compiled model of about ``params`` parameters, trained one step (Adam state)."""
    keras.utils.set_random_seed(0)
    width, depth = shape_for(params)
    inputs = keras.Input((width,))
    x = inputs
    for i in range(depth):
        if kind == "custom":
            x = DenseBlock(width, name=f"block_{i}")(x)
        else:
            x = keras.layers.Dense(width, activation="gelu", name=f"dense_{i}")(x)
    model = keras.Model(inputs, x, name=f"{kind}_{params}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    # One eager training step: creates and fills the optimizer state without
    # tracing a tf.function (which costs tens of seconds for deep models).
    import tensorflow as tf

    batch = np.random.default_rng(0).standard_normal((8, width)).astype("float32")
    with tf.GradientTape() as tape:
        loss = model.compute_loss(x=batch, y=batch, y_pred=model(batch, training=True))
    variables = model.trainable_variables
    model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
    return model


# -- measuring ----------------------------------------------------------------------


def _status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def measure(operation: Any) -> dict[str, Any]:
    """Wall time and peak RSS of ``operation()``, after flushing and collecting."""
    gc.collect()
    os.sync()  # dirty pages of earlier writes must not be flushed on our clock
    reset = _reset_high_water_mark()
    baseline = _status("VmRSS")
    profiler = _profiler()
    start = time.perf_counter()
    result = operation()
    seconds = time.perf_counter() - start
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["KERAS_SAFE_BENCH_PROFILE"])
    if reset:
        peak = _status("VmHWM")
    else:  # ru_maxrss is in KiB on Linux, bytes on macOS
        scale = 1 if sys.platform == "darwin" else 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    del result
    return {"seconds": seconds, "peak_rss": peak, "baseline_rss": baseline, "hwm_reset": reset}


def _profiler() -> Any:
    """A running cProfile profiler if ``KERAS_SAFE_BENCH_PROFILE`` names a file for it."""
    if not os.environ.get("KERAS_SAFE_BENCH_PROFILE"):
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _save_operation(side: str, model: Any, path: str) -> Any:
    if side.startswith("plain"):
        return lambda: model.save(path)
    verify = side == "keras_safe_verify"
    return lambda: keras_safe.save(model, path, roundtrip=verify)


def _load_operation(side: str, path: str) -> Any:
    if side.startswith("plain"):
        return lambda: keras.models.load_model(path)
    return lambda: keras_safe.load(path)


def job_save(spec: dict[str, Any]) -> dict[str, Any]:
    # Warm up the same code path on a tiny model, so one-time costs (lazy
    # imports, first h5py file) are paid outside the clock, as in a process
    # that saves repeatedly.
    with tempfile.TemporaryDirectory(dir=spec["workdir"]) as scratch:
        tiny = build_model(spec["model"], 5_000)
        _save_operation(spec["side"], tiny, os.path.join(scratch, "warm.keras"))()
        del tiny
    model = build_model(spec["model"], spec["params"])
    result = measure(_save_operation(spec["side"], model, spec["path"]))
    result["file_bytes"] = os.path.getsize(spec["path"])
    result["weights_in_memory"] = _keras_keeps_weights_in_memory(model)
    return result


def job_load(spec: dict[str, Any]) -> dict[str, Any]:
    _load_operation(spec["side"], spec["warm_path"])()
    return measure(_load_operation(spec["side"], spec["path"]))


def job_prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the file both loaders read (and a tiny one to warm up with); time digests."""
    keras_safe.save(build_model(spec["model"], 5_000), spec["warm_path"], roundtrip=False)
    model = build_model(spec["model"], spec["params"])
    keras_safe.save(model, spec["path"], roundtrip=False)
    return {
        "params": int(model.count_params()),
        "shape": shape_for(spec["params"]),
        "optimizer_params": int(sum(np.prod(v.shape) for v in model.optimizer.variables)),
        "file_bytes": os.path.getsize(spec["path"]),
        "digest": _digests(spec["path"], spec["rounds"]),
    }


def _digests(path: str, rounds: int) -> dict[str, Any]:
    """keras_safe's member digest (from the file) vs hashlib over the same bytes in memory."""
    from keras_safe._format.reader import WEIGHTS, ArchiveReader

    with ArchiveReader(Path(path)) as reader:
        data = reader.read_all(WEIGHTS)
        sides = {
            "hashlib": lambda: hashlib.sha256(data).hexdigest(),
            "keras_safe": lambda: reader.sha256(WEIGHTS),
        }
        samples = _rounds(sides, rounds)
        if sides["hashlib"]() != sides["keras_safe"]():
            raise AssertionError("keras_safe's digest differs from hashlib's")
    return {"bytes": len(data), "samples": samples}


def job_construct(spec: dict[str, Any]) -> dict[str, Any]:
    """``count`` constructions of a SerializableLayer vs the same plain Layer subclass."""
    count = spec["count"]
    sides = {
        "plain": lambda n=count: [PlainDenseBlock(64) for _ in range(n)],
        "keras_safe": lambda n=count: [DenseBlock(64) for _ in range(n)],
    }
    for side in sides.values():  # warm up (first-call costs, caches)
        side(100)
    return {"count": count, "samples": _rounds(sides, spec["rounds"])}


def _rounds(sides: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Time each side once per round, rotating which side goes first."""
    names = list(sides)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            start = time.perf_counter()
            sides[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def _keras_keeps_weights_in_memory(model: Any) -> bool:
    from keras.src.saving import saving_lib

    return bool(saving_lib.is_memory_sufficient(model))


def main() -> None:
    spec = json.loads(sys.argv[1])
    job = globals()[f"job_{spec['job']}"]
    result = job(spec)
    # Every worker is a fresh process: each one also times the two imports.
    result["imports"] = {"keras": _T1 - _T0, "keras_safe": _T2 - _T1}
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
