"""Measurements of ``bench_save_load.py``, run in a fresh Python process.

``python _bench_worker.py '<json spec>'`` performs one job and prints one
line ``BENCH-RESULT {json}``. The backend is the one ``KERAS_BACKEND`` names
(the orchestrator sets it).

Jobs:

- ``save`` / ``load``: one timed operation of one side, in this fresh process
  (neither the allocator's cached memory nor Keras' or TensorFlow's caches
  from another side can flatter it);
- ``warm``: every side, interleaved in a new order each round, ``rounds`` times in
  this one process, as a training script saves again and again (with
  ``burners``: while that many busy-looping processes keep the cores busy);
- ``checkpoint``: a small training run with and without a checkpoint callback
  (plain ``ModelCheckpoint``, ``SafeCheckpoint``), timing each checkpoint;
- ``first_load``: the first load of a fresh process that imported Keras and
  the model's layers only, nothing warmed up: keras_safe's own imports for
  loading are paid on the clock, as a script that loads one model pays them;
- ``prepare`` (the file the fresh loads read, and digest throughput) and
  ``construct`` (layer constructions).

Each timed operation reports wall time, CPU time (user + system of the whole
process, every thread included: ``getrusage(RUSAGE_SELF)`` before and after)
and peak RSS. Peak RSS of one operation: the worker resets the kernel's
high-water mark to the current RSS (``echo 5 > /proc/self/clear_refs``,
Linux >= 4.0), runs the operation and reads ``VmHWM`` from
``/proc/self/status``: the largest RSS the process had while the operation
ran, baseline included. Where the reset is not available the worker says so
(``hwm_reset: false``) and reports ``ru_maxrss``, which then also covers the
setup.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_JOB = json.loads(sys.argv[1]).get("job") if __name__ == "__main__" and len(sys.argv) > 1 else None

_T0 = time.perf_counter()
import keras  # noqa: E402

_T1 = time.perf_counter()
import keras_safe  # noqa: E402

if _JOB != "first_load":  # the first load imports what it needs on its own clock
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


def build_model(kind: str, params: int, dtype: str = "float32") -> Any:
    """A compiled model of about ``params`` parameters after one Adam step.

    The step applies a constant gradient, on any backend and without
    tracing a training function (which costs tens of seconds for deep
    models): it creates and fills the optimizer state, which is saved and
    loaded too. ``dtype="bfloat16"`` makes every variable (and Adam's slots)
    bfloat16, for sizes whose float32 state would not fit in memory twice.
    """
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(dtype)
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
    variables = model.trainable_variables
    model.optimizer.build(variables)
    grads = [keras.ops.full(v.shape, 1e-3, dtype=v.dtype) for v in variables]
    model.optimizer.apply_gradients(zip(grads, variables, strict=True))
    del grads
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


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(operation: Any, profile: str | None = None) -> dict[str, Any]:
    """Wall time, CPU time and peak RSS of ``operation()``, after flushing and collecting."""
    gc.collect()
    os.sync()  # dirty pages of earlier writes must not be flushed on our clock
    reset = _reset_high_water_mark()
    baseline = _status("VmRSS")
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    result = operation()
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    if reset:
        peak = _status("VmHWM")
    else:  # ru_maxrss is in KiB on Linux, bytes on macOS
        scale = 1 if sys.platform == "darwin" else 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    del result
    return {
        "seconds": seconds,
        "cpu": cpu,
        "peak_rss": peak,
        "baseline_rss": baseline,
        "hwm_reset": reset,
    }


def _save_operation(side: str, model: Any, path: str) -> Any:
    if side.startswith("plain"):
        return lambda: model.save(path)
    if side == "keras_safe_first":
        # The first save of a model in a process: what save(roundtrip=True)
        # proved about it before is forgotten, so it rebuilds.
        from keras_safe._ops.rebuild import forget_proofs

        def first() -> None:
            forget_proofs()
            keras_safe.save(model, path, roundtrip=True)

        return first
    verify = side == "keras_safe_verify"
    return lambda: keras_safe.save(model, path, roundtrip=verify)


def _load_operation(side: str, path: str) -> Any:
    if side.startswith("plain"):
        return lambda: keras.models.load_model(path)
    return lambda: keras_safe.load(path)


def _profile_path(spec: dict[str, Any], name: str) -> str | None:
    directory = spec.get("profile_dir")
    return os.path.join(directory, f"{spec.get('tag', 'run')}-{name}.prof") if directory else None


# -- jobs: one operation per process ------------------------------------------------------


def job_save(spec: dict[str, Any]) -> dict[str, Any]:
    # Warm up the same code path on a tiny model, so one-time costs (lazy
    # imports, first h5py file) are paid outside the clock, as in a process
    # that saves repeatedly.
    dtype = spec.get("dtype", "float32")
    with tempfile.TemporaryDirectory(dir=spec["workdir"]) as scratch:
        tiny = build_model(spec["model"], 5_000, dtype)
        _save_operation(spec["side"], tiny, os.path.join(scratch, "warm.keras"))()
        del tiny
    model = build_model(spec["model"], spec["params"], dtype)
    result = measure(
        _save_operation(spec["side"], model, spec["path"]),
        _profile_path(spec, f"save-{spec['side']}"),
    )
    if spec["side"] == "keras_safe_verify":
        result["verify_path"] = _verification()
    result["file_bytes"] = os.path.getsize(spec["path"])
    return result


def _verification() -> Any:
    """How the last save(roundtrip=True) checked its file: ``["deferred", None]`` (a
    rebuild), ``["reused", None]`` (an earlier save of the same model proved it), or
    ``["ordinary", why]`` (the slower rebuild, 2-3x)."""
    from keras_safe._ops.rebuild import last_verification

    return last_verification()


def job_load(spec: dict[str, Any]) -> dict[str, Any]:
    _load_operation(spec["side"], spec["warm_path"])()
    return measure(
        _load_operation(spec["side"], spec["path"]), _profile_path(spec, f"load-{spec['side']}")
    )


def job_first_load(spec: dict[str, Any]) -> dict[str, Any]:
    """One load, the first of this process: no warm-up, keras_safe's load modules not imported."""
    loaded = sorted(m for m in sys.modules if m.startswith("keras_safe._ops"))
    if loaded:
        raise RuntimeError(f"the first load must import its own modules, found {loaded}")
    return measure(
        _load_operation(spec["side"], spec["path"]), _profile_path(spec, f"first-{spec['side']}")
    )


def job_prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the file the loaders read (and a tiny one to warm up with); time digests."""
    dtype = spec.get("dtype", "float32")
    keras_safe.save(build_model(spec["model"], 5_000, dtype), spec["warm_path"], roundtrip=False)
    model = build_model(spec["model"], spec["params"], dtype)
    keras_safe.save(model, spec["path"], roundtrip=False)
    return {**_describe(model, spec), "digest": _digests(spec["path"], spec["rounds"])}


def _describe(model: Any, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": int(model.count_params()),
        "shape": shape_for(spec["params"]),
        "dtype": spec.get("dtype", "float32"),
        "optimizer_params": int(sum(np.prod(v.shape) for v in model.optimizer.variables)),
        "backend": keras.backend.backend(),
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


# -- job: every side in one warm process --------------------------------------------------


@contextlib.contextmanager
def cpu_burners(count: int) -> Iterator[None]:
    """``count`` busy-looping processes (one per core) while the context runs.

    Started once the model is built and warmed up, so that only the timed
    rounds run on a machine whose cores are all busy.
    """
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        if burners:
            time.sleep(0.5)  # let them reach their loop
        yield
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait()


SAVE_SIDES = ("plain", "plain_again", "keras_safe", "keras_safe_verify", "keras_safe_first")
LOAD_SIDES = ("plain", "plain_again", "keras_safe")


def job_warm(spec: dict[str, Any]) -> dict[str, Any]:
    """Every save and load side, interleaved, ``rounds`` times in this one process.

    A first untimed round warms every side up (one-time costs: lazy imports,
    first files). Each round then runs the sides in a new order, drawn from
    a generator seeded with the round's number: with a fixed cyclic order
    each side would always follow the same one and pay for what that one
    leaves behind (the page cache of a file just written, blocks still being
    freed), which made one side look slower than a side doing strictly more
    work. The save sides overwrite their own file each
    round, as a training script overwrites its checkpoint. The loads read the
    file keras_safe wrote. ``sides`` can narrow the sides (without the A/A
    sides for a single round).
    """
    dtype = spec.get("dtype", "float32")
    model = build_model(spec["model"], spec["params"], dtype)
    workdir = Path(tempfile.mkdtemp(dir=spec["workdir"]))
    try:
        source = workdir / "source.keras"
        keras_safe.save(model, source, roundtrip=False)
        operations: dict[tuple[str, str], Any] = {}
        for side in spec.get("save_sides", SAVE_SIDES):
            operations["save", side] = _save_operation(side, model, str(workdir / f"{side}.keras"))
        for side in spec.get("load_sides", LOAD_SIDES):
            operations["load", side] = _load_operation(side, str(source))
        keys = list(operations)
        for key in keys:  # warm-up round
            operations[key]()
            if key[0] == "save" and spec.get("unlink_saves"):
                (workdir / f"{key[1]}.keras").unlink(missing_ok=True)
            gc.collect()
        samples: dict[str, dict[str, list[dict[str, Any]]]] = {}
        rounds = spec["rounds"]
        with cpu_burners(spec.get("burners", 0)):
            for r in range(rounds):
                for key in random.Random(r).sample(keys, len(keys)):
                    operation, side = key
                    last = r == rounds - 1
                    profile = _profile_path(spec, f"{operation}-{side}") if last else None
                    result = measure(operations[key], profile)
                    if key in (("save", "keras_safe_verify"), ("save", "keras_safe_first")):
                        result["verify_path"] = _verification()
                    if operation == "save" and spec.get("unlink_saves"):
                        # Too large to keep one file per side on this disk: the
                        # next save of this side writes a new file, not a replacement.
                        (workdir / f"{side}.keras").unlink(missing_ok=True)
                    samples.setdefault(operation, {}).setdefault(side, []).append(result)
        info = _describe(model, spec)
        info["file_bytes"] = source.stat().st_size
        return {"info": info, "samples": samples}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- job: checkpoints during a small training run -------------------------------------------


class _Timed:
    """Wraps a callback's ``on_epoch_end`` (where it saves) to time each call."""

    def __init__(self, callback: Any) -> None:
        self.callback = callback
        self.seconds: list[float] = []
        self.cpu: list[float] = []
        inner = callback.on_epoch_end

        def on_epoch_end(epoch: int, logs: Any = None) -> None:
            cpu, start = _cpu_seconds(), time.perf_counter()
            inner(epoch, logs)
            self.seconds.append(time.perf_counter() - start)
            self.cpu.append(_cpu_seconds() - cpu)

        callback.on_epoch_end = on_epoch_end


class _EpochClock(keras.callbacks.Callback):
    """Wall and CPU time of each epoch's training (its checkpoint excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._cpu, self._start = _cpu_seconds(), time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu.append(_cpu_seconds() - self._cpu)


def checkpoint_model(params: int) -> tuple[Any, int]:
    """An MLP of about ``params`` parameters for 10-class classification of 64 features."""
    keras.utils.set_random_seed(0)
    width = max(64, round((params / 3) ** 0.5 / 32) * 32)
    inputs = keras.Input((64,))
    x = keras.layers.Dense(width, activation="relu", name="hidden_0")(inputs)
    x = keras.layers.Dense(width, activation="relu", name="hidden_1")(x)
    x = keras.layers.Dense(width, activation="relu", name="hidden_2")(x)
    x = keras.layers.Dense(width, activation="relu", name="hidden_3")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model, width


def job_checkpoint(spec: dict[str, Any]) -> dict[str, Any]:
    """A training run per side: no checkpoint, ``ModelCheckpoint``, ``SafeCheckpoint``.

    Synthetic data (64 features, 10 classes), ``steps`` batches of 64 per
    epoch, a checkpoint at the end of every epoch. The first epoch (which
    traces the training function) is left out of the figures. Each side
    trains a freshly built model in this process; sides alternate per round.
    """
    steps, epochs, batch = spec["steps"], spec["epochs"], 64
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps * batch, 64)).astype("float32")
    y = rng.integers(0, 10, steps * batch)
    workdir = Path(tempfile.mkdtemp(dir=spec["workdir"]))
    results: dict[str, Any] = {}
    try:
        for r in range(spec["rounds"]):
            sides = ["none", "plain", "keras_safe", "keras_safe_verify"]
            for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
                model, width = checkpoint_model(spec["params"])
                clock = _EpochClock()
                callbacks: list[Any] = [clock]
                timed = None
                if side != "none":
                    path = str(workdir / f"{side}.keras")
                    callback = (
                        keras.callbacks.ModelCheckpoint(path)
                        if side == "plain"
                        else keras_safe.callbacks.SafeCheckpoint(
                            path, roundtrip=side == "keras_safe_verify"
                        )
                    )
                    timed = _Timed(callback)
                    callbacks.append(callback)
                model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=callbacks)
                entry = results.setdefault(
                    side,
                    {"epoch_seconds": [], "epoch_cpu": [], "seconds": [], "cpu": [], "first": []},
                )
                entry["epoch_seconds"] += clock.seconds[1:]
                entry["epoch_cpu"] += clock.cpu[1:]
                if timed is not None:
                    entry["seconds"] += timed.seconds[1:]
                    entry["cpu"] += timed.cpu[1:]
                    # The run's first checkpoint: with roundtrip=True, the one rebuild
                    # that proves the file (later ones reuse the proof).
                    entry["first"] += timed.seconds[:1]
                params = int(model.count_params())
                del model
                gc.collect()
        return {
            "params": params,
            "width": width,
            "steps": steps,
            "batch": batch,
            "sides": results,
            "median_epoch_seconds": statistics.median(results["none"]["epoch_seconds"]),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    job = globals()[f"job_{spec['job']}"]
    result = job(spec)
    # Every worker is a fresh process: each one also times the two imports.
    result["imports"] = {"keras": _T1 - _T0, "keras_safe": _T2 - _T1}
    result["backend"] = keras.backend.backend()
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
