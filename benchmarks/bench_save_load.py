"""The cost of keras_safe's checks, measured against plain Keras in one run.

Usage::

    python benchmarks/bench_save_load.py [--sizes 1M,25M,100M] [--repeat N]
        [--modes fresh,warm] [--contended SIZES] [--backends LIST] [--backend-sizes SIZES]
        [--checkpoint SIZES] [--dtype float32|bfloat16|auto] [--json OUT]
        [--markdown [FILE]] [--chart STEM] [--profile DIR]

For every size, a model of width x width residual dense blocks (custom
``SerializableLayer`` blocks; at the largest size also the same stack of
built-in ``Dense`` layers), compiled with Adam and stepped once so that
optimizer state is saved and loaded too, is saved and loaded by each side:

- save: plain ``model.save`` (twice: the A/A row is the run's noise floor),
  ``keras_safe.save(roundtrip=False)``, ``keras_safe.save(roundtrip=True)``;
- load: plain ``keras.models.load_model`` (twice, A/A) and ``keras_safe.load``
  with every check on, all reading the same file.

Each timed operation reports wall time, CPU time (user + system of the
process, all its threads) and peak RSS (the process' high-water mark during
the operation alone). Two modes, both by default:

- ``fresh``: every timed operation in a fresh process (``_bench_worker.py``),
  which builds the model, warms the same code path up on a tiny model,
  flushes dirty pages (``os.sync()``) and collects garbage first: what a
  script that saves once pays;
- ``warm``: one process per model saving and loading again and again, as a
  training script does: every side, interleaved, after an untimed round.

Sides are interleaved (fresh processes: A B C D, then B C D A, ...; one
process: a new seeded random order each round, so no side always follows
the same one), so slow phases of the machine hit every side; each figure
is the median (and min) of ``--repeat`` rounds (5 or more for figures worth
quoting). Also measured:

- ``--contended SIZES``: the warm mode again with every core kept busy by a
  CPU burner (one busy-looping process per core, started and stopped by the
  benchmark), so the cost of keras_safe's extra threads is visible;
- ``--backends``: save, save+verify and load ratios under each Keras backend
  installed (``KERAS_BACKEND``=tensorflow, jax, torch), warm mode, at
  ``--backend-sizes``; and per backend the first load of a fresh process
  (after ``import keras`` and the model's layers, nothing warmed up, so
  keras_safe's own imports for loading count), at the smallest of them;
- ``--checkpoint SIZES``: the cost of one checkpoint during a small training
  run (an MLP on synthetic data, a few hundred steps per epoch), as a
  fraction of an epoch: ``keras.callbacks.ModelCheckpoint`` and
  ``SafeCheckpoint`` (default: ``roundtrip=True``, whose first checkpoint
  rebuilds and later ones reuse its proof; and ``roundtrip=False``);
- in fresh mode: digest throughput, 10,000 layer constructions and ``import
  keras_safe`` after ``import keras``.

``--repeat 1`` is a smoke run that keeps the script working: warm mode only,
no A/A rows, no busy-machine rows, a short training run. 1B parameters (``--sizes 1G``) need about
24 GB: ``--dtype auto`` (the default) makes a model bfloat16 when its float32
weights and Adam state (12 bytes per parameter) would take more than a third
of the machine's memory; the table says which dtype each row used.

``--markdown`` prints the results as the tables of docs/benchmarks.md;
``--markdown docs/benchmarks.md`` replaces the tables between the
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` markers of that file and
draws the chart (``docs/benchmarks-chart.png`` and ``.svg``, matplotlib)
from the same run, referenced between ``<!-- bench-chart -->`` and
``<!-- bench-chart:end -->``. ``--chart STEM`` writes the chart elsewhere.
``--from-json FILE`` publishes a run saved with ``--json FILE`` again
without measuring. ``--profile DIR`` writes a cProfile of each timed
operation's last round (which slows it: not for figures) and the top
entries of the smallest model's ``save(roundtrip=True)`` to ``DIR/summary.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_bench_worker.py"
SAVE_SIDES = ("plain", "plain_again", "keras_safe", "keras_safe_verify")
# In one warm process a model's later saves reuse what its first
# save(roundtrip=True) proved; this side times a first save again each round.
WARM_SAVE_SIDES = (*SAVE_SIDES, "keras_safe_first")
LOAD_SIDES = ("plain", "plain_again", "keras_safe")
BACKENDS = ("tensorflow", "jax", "torch")
LABELS = {
    ("save", "plain_again"): "save: plain vs plain (A/A)",
    ("save", "keras_safe"): "save(roundtrip=False)",
    ("save", "keras_safe_verify"): "save(roundtrip=True)",
    ("save", "keras_safe_first"): "save(roundtrip=True), first save of the model",
    ("load", "plain_again"): "load: plain vs plain (A/A)",
    ("load", "keras_safe"): "load (all checks)",
}
# (operation, side): the time target keras_safe holds itself to; peak RSS <= 1.0x
# and CPU time <= 1.2x apply to each.
TIME_TARGETS = {
    ("save", "keras_safe"): 1.05,
    ("save", "keras_safe_verify"): 1.5,
    ("save", "keras_safe_first"): 1.5,
    ("load", "keras_safe"): 1.0,
}
RSS_TARGET = 1.0
CPU_TARGET = 1.2
CONSTRUCTION_TARGET = 1.3
MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"
CHART_BEGIN, CHART_END = "<!-- bench-chart -->", "<!-- bench-chart:end -->"


def parse_size(text: str) -> int:
    """``"25M"`` -> 25_000_000 (suffixes K, M, G; ``1B`` is ``1G``)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGB]?)\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 500K, 1M, 25M, 1B)")
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9}[match[2].upper()]
    return int(float(match[1]) * scale)


def parse_sizes(text: str | None) -> list[int]:
    if not text or text.strip().lower() == "none":
        return []
    return [parse_size(s) for s in text.split(",") if s.strip()]


def size_label(params: int) -> str:
    """``25_200_000`` -> ``"25.2M"``."""
    for scale, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "K")):
        if params >= scale:
            return f"{params / scale:.3g}{suffix}"
    return str(params)


def machine_memory() -> int:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0


def dtype_for(params: int, choice: str) -> str:
    """``auto``: bfloat16 when float32 weights and Adam state would take over a third of RAM."""
    if choice != "auto":
        return choice
    memory = machine_memory()
    return "bfloat16" if memory and params * 12 > memory / 3 else "float32"


# -- running workers ----------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_worker(spec: dict[str, Any], backend: str = "tensorflow", timeout: float = 7200) -> Any:
    """Run one job in a fresh interpreter; return its result."""
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONHASHSEED": "0",
        "KERAS_BACKEND": backend,
    }
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    raise RuntimeError(
        f"benchmark worker failed ({backend}: {spec['job']} {spec.get('side', '')}), exit "
        f"{proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )


def rotated(items: tuple[str, ...], shift: int) -> list[str]:
    shift %= len(items)
    return list(items[shift:] + items[:shift])


def fresh_run(
    params: int, kind: str, repeat: int, workdir: Path, dtype: str, profile: Path | None
) -> dict[str, Any]:
    """All save and load sides of one model, each operation in a fresh process."""
    save_sides = SAVE_SIDES if repeat > 1 else tuple(s for s in SAVE_SIDES if s != "plain_again")
    load_sides = LOAD_SIDES if repeat > 1 else tuple(s for s in LOAD_SIDES if s != "plain_again")
    tag = f"fresh-{kind}-{size_label(params)}"
    source = workdir / f"{tag}.keras"
    warm = workdir / f"{tag}-warm.keras"
    base = {"model": kind, "params": params, "workdir": str(workdir), "dtype": dtype, "tag": tag}
    if profile is not None:
        base["profile_dir"] = str(profile)
    info = run_worker(
        {**base, "job": "prepare", "path": str(source), "warm_path": str(warm), "rounds": repeat}
    )
    imports = [info.pop("imports")]
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        "save": {side: [] for side in save_sides},
        "load": {side: [] for side in load_sides},
    }
    for r in range(repeat):
        for side in rotated(save_sides, r):
            target = workdir / f"{tag}-{side}-{r}.keras"
            result = run_worker({**base, "job": "save", "side": side, "path": str(target)})
            target.unlink()
            imports.append(result.pop("imports"))
            samples["save"][side].append(result)
            log(f"  {tag} round {r + 1}/{repeat} save {side}: {_brief(result)}")
            path, why = result.get("verify_path") or ("deferred", None)
            if path != "deferred":
                log(f"  {tag} save {side} took the {path} rebuild, not the deferred one: {why}")
        for side in rotated(load_sides, r):
            spec = {**base, "job": "load", "side": side, "path": str(source)}
            result = run_worker({**spec, "warm_path": str(warm)})
            imports.append(result.pop("imports"))
            samples["load"][side].append(result)
            log(f"  {tag} round {r + 1}/{repeat} load {side}: {_brief(result)}")
    source.unlink()
    warm.unlink()
    digest = info.pop("digest")
    return {
        "mode": "fresh",
        "model": kind,
        "size": params,
        "backend": "tensorflow",
        "info": {**info, "file_bytes": info.get("file_bytes")},
        "samples": samples,
        "digest": digest,
        "imports": imports,
    }


FIRST_LOAD_SIDES = ("plain", "keras_safe")


def first_load_run(
    params: int, repeat: int, workdir: Path, dtype: str, backend: str
) -> dict[str, Any]:
    """The first load of a fresh process under ``backend``, plain and keras_safe interleaved."""
    tag = f"first-{backend}-custom-{size_label(params)}"
    source = workdir / f"{tag}.keras"
    warm = workdir / f"{tag}-warm.keras"
    base = {
        "model": "custom",
        "params": params,
        "workdir": str(workdir),
        "dtype": dtype,
        "tag": tag,
    }
    spec = {**base, "job": "prepare", "path": str(source), "warm_path": str(warm), "rounds": 1}
    info = run_worker(spec, backend)
    for key in ("digest", "imports", "backend"):
        info.pop(key, None)
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        "load": {side: [] for side in FIRST_LOAD_SIDES}
    }
    for r in range(repeat):
        for side in rotated(FIRST_LOAD_SIDES, r):
            job = {**base, "job": "first_load", "side": side, "path": str(source)}
            result = run_worker(job, backend)
            result.pop("imports", None)
            samples["load"][side].append(result)
            log(f"  {tag} round {r + 1}/{repeat} first load {side}: {_brief(result)}")
    source.unlink()
    warm.unlink()
    return {
        "mode": "first",
        "model": "custom",
        "size": params,
        "backend": backend,
        "info": info,
        "samples": samples,
        "imports": [],
    }


def _brief(result: dict[str, Any]) -> str:
    return f"{result['seconds']:.2f} s, CPU {result['cpu']:.2f} s"


def warm_run(
    params: int,
    kind: str,
    repeat: int,
    workdir: Path,
    dtype: str,
    profile: Path | None,
    *,
    backend: str = "tensorflow",
    mode: str = "warm",
) -> dict[str, Any]:
    """Every side of one model in one process, ``repeat`` interleaved rounds."""
    tag = f"{mode}-{backend}-{kind}-{size_label(params)}"
    spec: dict[str, Any] = {
        "job": "warm",
        "model": kind,
        "params": params,
        "rounds": repeat,
        "workdir": str(workdir),
        "dtype": dtype,
        "tag": tag,
    }
    spec["save_sides"] = list(WARM_SAVE_SIDES)
    spec["load_sides"] = list(LOAD_SIDES)
    if repeat == 1:  # a smoke run: no A/A sides
        spec["save_sides"] = [s for s in WARM_SAVE_SIDES if s != "plain_again"]
        spec["load_sides"] = [s for s in LOAD_SIDES if s != "plain_again"]
    # Each save side keeps its own file (overwritten every round, as a
    # checkpoint is); when that many files of this size would not fit on the
    # disk (1B parameters: 6 GB each), each is removed after it is timed.
    file_bytes = params * 3 * (2 if dtype == "bfloat16" else 4)
    if shutil.disk_usage(workdir).free < (len(spec["save_sides"]) + 3) * file_bytes:
        spec["unlink_saves"] = True
    if profile is not None:
        spec["profile_dir"] = str(profile)
    if mode == "contended":
        spec["burners"] = os.cpu_count() or 1
    started = time.perf_counter()
    result = run_worker(spec, backend)
    log(f"  {tag}: {repeat} round(s) in {time.perf_counter() - started:.0f} s")
    return {
        "mode": mode,
        "model": kind,
        "size": params,
        "backend": backend,
        "info": result["info"],
        "samples": result["samples"],
        "imports": [result["imports"]],
    }


# -- summarising --------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values)}


_PATH_NAMES = {"deferred": "rebuilt", "reused": "proof reused", "ordinary": "ordinary rebuild"}


def _paths(samples: list[dict[str, Any]]) -> str:
    """How save(roundtrip=True) checked its file in these samples, e.g. " [rebuilt]"."""
    paths = [s["verify_path"][0] for s in samples if s.get("verify_path")]
    names = [_PATH_NAMES.get(p, p) for p in dict.fromkeys(paths)]
    return f" [{', '.join(names)}]" if names else ""


def summarise(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per compared side: medians, mins and keras_safe/plain ratios."""
    rows = []
    for operation in sorted(run["samples"], key=("save", "load").index):
        by_side = run["samples"][operation]
        plain = {k: stats([s[k] for s in by_side["plain"]]) for k in ("seconds", "cpu", "peak_rss")}
        # The table's order, whatever order the sides ran in.
        for side in sorted(by_side, key=lambda name: (*WARM_SAVE_SIDES, *LOAD_SIDES).index(name)):
            values = by_side[side]
            if side == "plain":
                continue
            mine = {k: stats([s[k] for s in values]) for k in ("seconds", "cpu", "peak_rss")}
            rows.append(
                {
                    "mode": run["mode"],
                    "backend": run["backend"],
                    "model": run["model"],
                    "size": run["size"],
                    "params": run["info"]["params"],
                    "dtype": run["info"].get("dtype", "float32"),
                    "operation": operation,
                    "side": side,
                    "label": LABELS[(operation, side)] + _paths(values),
                    "plain": plain,
                    "keras_safe": mine,
                    "time_ratio": mine["seconds"]["median"] / plain["seconds"]["median"],
                    "time_ratio_min": mine["seconds"]["min"] / plain["seconds"]["min"],
                    "cpu_ratio": mine["cpu"]["median"] / max(plain["cpu"]["median"], 1e-9),
                    "rss_ratio": mine["peak_rss"]["median"] / plain["peak_rss"]["median"],
                }
            )
    return rows


def digest_summary(run: dict[str, Any]) -> dict[str, float]:
    size = run["digest"]["bytes"]
    samples = run["digest"]["samples"]
    rates = {side: size / min(values) / 1e6 for side, values in samples.items()}
    return {"bytes": size, **{f"{k}_MBps": v for k, v in rates.items()}}


def check_targets(rows: list[dict[str, Any]]) -> list[str]:
    """One line per missed target (fresh and warm modes, TensorFlow, every size)."""
    lines = []
    for row in rows:
        target = TIME_TARGETS.get((row["operation"], row["side"]))
        if target is None or row["mode"] not in ("fresh", "warm"):
            continue
        if row["backend"] != "tensorflow":
            continue
        where = f"{row['mode']} {row['model']} {size_label(row['params'])} {row['label']}"
        for what, ratio, limit in (
            ("time", row["time_ratio"], target),
            ("CPU time", row["cpu_ratio"], CPU_TARGET),
            ("peak RSS", row["rss_ratio"], RSS_TARGET),
        ):
            verdict = "MISSED" if missed(ratio, limit) else "ok"
            lines.append(f"{where}, {what}: {ratio:.2f}x (target <= {limit}x) {verdict}")
    return lines


def construction_summary(result: dict[str, Any]) -> dict[str, Any]:
    plain = stats(result["samples"]["plain"])
    safe = stats(result["samples"]["keras_safe"])
    return {
        "count": result["count"],
        "plain_seconds": plain,
        "keras_safe_seconds": safe,
        "ratio": safe["median"] / plain["median"],
    }


def checkpoint_summary(result: dict[str, Any]) -> dict[str, Any]:
    epoch = result["median_epoch_seconds"]
    sides = {}
    for side, values in result["sides"].items():
        if side == "none" or not values["seconds"]:
            continue
        seconds = statistics.median(values["seconds"])
        first = values.get("first") or [seconds]
        sides[side] = {
            "seconds": seconds,
            "cpu": statistics.median(values["cpu"]),
            "fraction": seconds / epoch,
            "first_seconds": statistics.median(first),
        }
    return {
        "params": result["params"],
        "steps": result["steps"],
        "batch": result["batch"],
        "epoch_seconds": epoch,
        "sides": sides,
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    versions = {}
    code = (
        "import json, sys, platform, numpy, h5py, keras, tensorflow, keras_safe;"
        "print(json.dumps({'python': platform.python_version(), 'numpy': numpy.__version__,"
        "'h5py': h5py.__version__, 'keras': keras.__version__,"
        "'tensorflow': tensorflow.__version__, 'keras_safe': keras_safe.__version__}))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode == 0:
        versions = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("jax", "torch"):
        with contextlib.suppress(Exception):
            if importlib.util.find_spec(name) is not None:
                from importlib.metadata import version

                versions[name] = version(name)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(machine_memory() / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "date": datetime.date.today().isoformat(),
        "memory_refault": memory_refault(),
    }


REFAULT_MB, REFAULT_PAUSE = 512, 5.0


def memory_refault(mb: int = REFAULT_MB, pause: float = REFAULT_PAUSE) -> dict[str, float] | None:
    """System time to fill ``mb`` of memory right after freeing it, and ``pause`` s after.

    Some virtual machines return free memory to their host (virtio-balloon
    free page reporting); touching it again then costs far more system time
    than touching memory freed a moment ago. Saves that allocate memory
    (plain Keras' in-memory weights file, any new file's page cache) pay it,
    so it is part of what the numbers were measured on. None without
    ``getrusage`` (Windows).
    """
    try:
        import numpy as np
    except ImportError:
        return None
    if resource is None:
        return None

    def fill_after(wait: float) -> float:
        block = np.ones(mb << 17)  # float64: mb MB, every page touched
        del block
        time.sleep(wait)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        block = np.ones(mb << 17)
        spent = resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
        del block
        return spent

    fill_after(0.0)  # the first fill maps the memory for the first time
    return {
        "mb": mb,
        "pause": pause,
        "just_freed": min(fill_after(0.0) for _ in range(2)),
        "after_pause": fill_after(pause),
    }


def installed_backends(wanted: list[str]) -> tuple[list[str], list[str]]:
    """(installed, missing) among the wanted backends."""
    installed, missing = [], []
    for name in wanted:
        (installed if importlib.util.find_spec(name) is not None else missing).append(name)
    return installed, missing


# -- reporting ----------------------------------------------------------------------


_MODEL_NAMES = {"custom": "custom blocks", "builtin": "built-in Dense"}
_MODE_NAMES = {
    "fresh": "fresh process",
    "warm": "warm process",
    "contended": "warm, all cores busy",
    "first": "first load, fresh process",
}


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def _model(row: dict[str, Any]) -> str:
    dtype = "" if row["dtype"] == "float32" else f" ({row['dtype']})"
    return f"{_MODEL_NAMES[row['model']]} {size_label(row['params'])}{dtype}"


def missed(ratio: float, target: float) -> bool:
    """Whether a ratio misses its target, as shown (to two decimals)."""
    return round(ratio, 2) > target


def _ratio(value: float, target: float | None) -> str:
    text = f"{value:.2f}x"
    return f"**{text}**" if target is not None and missed(value, target) else text


def _refault_note(m: dict[str, Any]) -> str:
    probe = m.get("memory_refault")
    if not probe:
        return ""
    return (
        f" On this machine, filling {probe['mb']} MB of memory costs {probe['just_freed']:.2f} s "
        f"of system time right after it was freed and {probe['after_pause']:.2f} s after "
        f"{probe['pause']:g} s free (memory returned to a host is faulted back in): a cost any "
        "side pays when it allocates."
    )


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = m["versions"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gb']} GB RAM, "
        f"{m['os']}), Python {v.get('python')}, TensorFlow {v.get('tensorflow')}, Keras "
        f"{v.get('keras')}, keras_safe {v.get('keras_safe')}; {_rounds(report)} interleaved "
        "round(s). Times are medians of wall time, with CPU time (user + system, every thread) "
        "in parentheses; peak RSS is the process' largest resident size during the operation. "
        f"Ratios are keras_safe / plain Keras; a ratio in bold misses its target (time: "
        f"save(roundtrip=False) <= {TIME_TARGETS['save', 'keras_safe']}x, save(roundtrip=True) <= "
        f"{TIME_TARGETS['save', 'keras_safe_verify']}x, load <= "
        f"{TIME_TARGETS['load', 'keras_safe']}x; CPU <= {CPU_TARGET}x; peak RSS <= "
        f"{RSS_TARGET}x). The A/A rows compare plain Keras "
        "with itself: the noise of the run. Rows with all cores busy are not held to targets."
        + _refault_note(m),
        "",
        "| mode | model | operation | plain s (CPU) | keras_safe s (CPU) | time | CPU | "
        "plain peak MB | keras_safe peak MB | RSS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    glance = targets_table(report)
    if glance:  # the summary first, then every row it comes from
        lines[2:2] = [*glance, ""]
    for row in report["rows"]:
        if row["backend"] != "tensorflow" or row["mode"] == "first":  # in the backend table
            continue
        held = row["mode"] != "contended" and row["side"] != "plain_again"
        target = TIME_TARGETS.get((row["operation"], row["side"])) if held else None
        p, k = row["plain"], row["keras_safe"]
        lines.append(
            f"| {_MODE_NAMES[row['mode']]} | {_model(row)} | {row['label']} | "
            f"{p['seconds']['median']:.3g} ({p['cpu']['median']:.3g}) | "
            f"{k['seconds']['median']:.3g} ({k['cpu']['median']:.3g}) | "
            f"{_ratio(row['time_ratio'], target)} | "
            f"{_ratio(row['cpu_ratio'], CPU_TARGET if held else None)} | "
            f"{_mb(p['peak_rss']['median'])} | {_mb(k['peak_rss']['median'])} | "
            f"{_ratio(row['rss_ratio'], RSS_TARGET if held else None)} |"
        )
    lines += _backend_table(report)
    lines += _checkpoint_table(report)
    lines += _other_costs(report)
    return "\n".join(lines)


# The targets at a glance: (what, operation, side in one process, side in a
# fresh process), each with a time row and a CPU row. In a fresh process
# every save is a model's first, so "later saves" exist only in one process.
_GLANCE = (
    ("save(roundtrip=False)", "save", "keras_safe", "keras_safe"),
    (
        "save(roundtrip=True), first save of a model",
        "save",
        "keras_safe_first",
        "keras_safe_verify",
    ),
    ("save(roundtrip=True), later saves", "save", "keras_safe_verify", None),
    ("load", "load", "keras_safe", "keras_safe"),
)


def targets_table(report: dict[str, Any]) -> list[str]:
    """Every target at every size, one process / fresh processes (TensorFlow, custom blocks)."""
    rows = [
        r
        for r in report["rows"]
        if r["backend"] == "tensorflow"
        and r["model"] == "custom"
        and r["mode"] in ("warm", "fresh")
    ]
    if not rows:
        return []
    sizes = sorted({r["size"] for r in rows})
    found = {(r["mode"], r["size"], r["operation"], r["side"]): r for r in rows}
    heads = []
    for size in sizes:
        row = next(r for r in rows if r["size"] == size)
        dtype = "" if row["dtype"] == "float32" else f" ({row['dtype']})"
        heads.append(f"{size_label(row['params'])}{dtype}")

    def cell(
        size: int, operation: str, sides: tuple[str, str | None], ratio: str, target: float
    ) -> str:
        parts = []
        for mode, side in zip(("warm", "fresh"), sides, strict=True):
            row = found.get((mode, size, operation, side)) if side else None
            parts.append(_ratio(row[ratio], target) if row else "-")
        return " / ".join(parts)

    lines = [
        "Every target at every size (TensorFlow, custom blocks; one process / fresh "
        "processes; **bold** misses its target; `-`: not measured, or no such case):",
        "",
        f"| target | {' | '.join(heads)} |",
        f"|---|{'---:|' * len(sizes)}",
    ]
    for what, operation, warm_side, fresh_side in _GLANCE:
        for ratio, label, target in (
            ("time_ratio", "time", TIME_TARGETS[operation, warm_side]),
            ("cpu_ratio", "CPU", CPU_TARGET),
        ):
            cells = [
                cell(size, operation, (warm_side, fresh_side), ratio, target) for size in sizes
            ]
            lines.append(f"| {what}, {label} <= {target}x | {' | '.join(cells)} |")
    worst = []
    noise = []
    for size in sizes:
        parts, spread = [], []
        for mode in ("warm", "fresh"):
            mine = [
                r["rss_ratio"]
                for r in rows
                if (r["mode"], r["size"]) == (mode, size) and r["side"] != "plain_again"
            ]
            parts.append(_ratio(max(mine), RSS_TARGET) if mine else "-")
            spread += [
                r["time_ratio"]
                for r in rows
                if (r["mode"], r["size"]) == (mode, size) and r["side"] == "plain_again"
            ]
        worst.append(" / ".join(parts))
        noise.append(f"{min(spread):.2f}-{max(spread):.2f}x" if spread else "-")
    lines.append(f"| peak RSS, highest of the operations <= {RSS_TARGET}x | {' | '.join(worst)} |")
    lines.append(f"| A/A rows (plain vs plain), time: the noise | {' | '.join(noise)} |")
    return lines


def _backend_table(report: dict[str, Any]) -> list[str]:
    rows = [r for r in report["rows"] if r["mode"] == "warm" and r["side"] != "plain_again"]
    first_loads = [r for r in report["rows"] if r["mode"] == "first"]
    backends = report.get("backends", {})
    if not backends:
        return []
    lines = [
        "",
        "Per backend (warm process, and the first load of a fresh process that imported Keras "
        "and the model's layers; time ratio, CPU ratio in parentheses):",
        "",
        "| backend | model | save(roundtrip=False) | save(roundtrip=True), first save | "
        "save(roundtrip=True), later saves | load | first load, fresh process |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, status in backends.items():
        if status != "ok":
            lines.append(f"| {backend} | {status} | | | | | |")
            continue
        mine = [r for r in rows if r["backend"] == backend and r["size"] in report["backend_sizes"]]
        for size in sorted({r["size"] for r in mine}):
            cells = []
            for key in (
                ("save", "keras_safe"),
                ("save", "keras_safe_first"),
                ("save", "keras_safe_verify"),
                ("load", "keras_safe"),
            ):
                row = next(
                    (r for r in mine if r["size"] == size and (r["operation"], r["side"]) == key),
                    None,
                )
                cells.append(f"{row['time_ratio']:.2f}x ({row['cpu_ratio']:.2f}x)" if row else "-")
            fresh = next(
                (r for r in first_loads if r["backend"] == backend and r["size"] == size), None
            )
            cells.append(
                f"{fresh['time_ratio']:.2f}x ({fresh['cpu_ratio']:.2f}x)" if fresh else "-"
            )
            first = next(r for r in mine if r["size"] == size)
            lines.append(f"| {backend} | {_model(first)} | " + " | ".join(cells) + " |")
    errors = report.get("backend_errors", {})
    for key, error in errors.items():
        lines.append(f"| {key} | failed: {error} | | | | | |")
    return lines


def _checkpoint_table(report: dict[str, Any]) -> list[str]:
    checkpoints = report.get("checkpoints", [])
    if not checkpoints:
        return []
    lines = [
        "",
        "Checkpoints during training (an MLP on synthetic data, a checkpoint per epoch; median "
        "seconds per checkpoint and its share of an epoch's training time):",
        "",
        "| model | epoch | `ModelCheckpoint` | `SafeCheckpoint(roundtrip=False)` | "
        "`SafeCheckpoint` (default) | its first checkpoint (the rebuild) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in checkpoints:
        cells = []
        for side in ("plain", "keras_safe", "keras_safe_verify"):
            s = c["sides"].get(side)
            cells.append(f"{s['seconds']:.3f} s ({s['fraction']:.1%})" if s else "-")
        first = c["sides"].get("keras_safe_verify", {}).get("first_seconds")
        cells.append(f"{first:.3f} s" if first is not None else "-")
        lines.append(
            f"| MLP {size_label(c['params'])}, {c['steps']} steps of {c['batch']} | "
            f"{c['epoch_seconds']:.2f} s | " + " | ".join(cells) + " |"
        )
    return lines


def _other_costs(report: dict[str, Any]) -> list[str]:
    c = report.get("construction")
    if c is None:
        return []
    imports = report["imports"]
    lines = [
        "",
        "| other costs | plain | keras_safe | ratio |",
        "|---|---:|---:|---:|",
        f"| {c['count']:,} layer constructions (s) | {c['plain_seconds']['median']:.3f} | "
        f"{c['keras_safe_seconds']['median']:.3f} | {c['ratio']:.2f}x |",
        "| `import keras` / then `import keras_safe` and all its names (s) | "
        f"{imports['keras']['median']:.2f} | "
        f"+{imports['keras_safe']['median']:.2f} | "
        f"{1 + imports['keras_safe']['median'] / imports['keras']['median']:.2f}x |",
    ]
    for key, d in report["digests"].items():
        lines.append(
            f"| SHA-256 of the {_mb(d['bytes'])} MB weights file, {key} (MB/s): "
            f"`hashlib` in memory / keras_safe from the file | {d['hashlib_MBps']:,.0f} | "
            f"{d['keras_safe_MBps']:,.0f} | {d['hashlib_MBps'] / d['keras_safe_MBps']:.2f}x |"
        )
    return lines


def text_report(report: dict[str, Any]) -> str:
    lines = [markdown(report), "", "Targets:"]
    if report["repeat"] < 5:
        lines[-1] += f" (only {report['repeat']} round(s): not figures to quote)"
    lines += [f"  {line}" for line in report["targets"]]
    return "\n".join(lines)


def replace_block(path: Path, table: str, chart: str | None) -> None:
    text = path.read_text()
    start, end = text.find(MARK_BEGIN), text.find(MARK_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {MARK_BEGIN} ... {MARK_END} block to replace.")
    text = text[: start + len(MARK_BEGIN)] + "\n" + table + "\n" + text[end:]
    if chart is not None:
        first, last = text.find(CHART_BEGIN), text.find(CHART_END)
        if first < 0 or last < first:
            raise SystemExit(f"{path} has no {CHART_BEGIN} ... {CHART_END} block for the chart.")
        image = (
            "![Time and peak memory of save and load against model size, plain Keras and "
            f"keras_safe]({chart})\n"
        )
        text = text[: first + len(CHART_BEGIN)] + "\n" + image + text[last:]
    path.write_text(text)


# -- the chart ----------------------------------------------------------------------


_LINES = (
    ("save", "plain", "save: plain Keras", "tab:blue", "-", "o"),
    ("save", "keras_safe", "save: keras_safe (roundtrip=False)", "tab:orange", "-", "o"),
    ("save", "keras_safe_verify", "save: keras_safe (roundtrip=True)", "tab:red", "-", "o"),
    (
        "save",
        "keras_safe_first",
        "save: keras_safe (roundtrip=True), first save of the model",
        "tab:red",
        ":",
        "^",
    ),
    ("load", "plain", "load: plain Keras", "tab:blue", "--", "s"),
    ("load", "keras_safe", "load: keras_safe", "tab:orange", "--", "s"),
)


def draw_chart(report: dict[str, Any], stem: Path) -> list[Path]:
    """Time and peak RSS against parameters, plain vs keras_safe, one line per operation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    modes = [m for m in ("warm", "fresh") if any(r["mode"] == m for r in report["runs"])]
    figure, axes = plt.subplots(len(modes), 2, figsize=(11, 4.2 * len(modes)), squeeze=False)
    for (left, right), mode in zip(axes, modes, strict=True):
        runs = sorted(
            (
                r
                for r in report["runs"]
                if r["mode"] == mode and r["model"] == "custom" and r["backend"] == "tensorflow"
            ),
            key=lambda r: r["size"],
        )
        for operation, side, label, color, style, marker in _LINES:
            if mode == "fresh" and side == "keras_safe_verify":
                label += ", each a first save"  # a fresh process saves its model once
            xs, times, peaks = [], [], []
            for run in runs:
                values = run["samples"].get(operation, {}).get(side)
                if values:
                    xs.append(run["info"]["params"])
                    times.append(statistics.median(v["seconds"] for v in values))
                    peaks.append(statistics.median(v["peak_rss"] for v in values) / 2**20)
            if xs:
                left.plot(xs, times, style, color=color, marker=marker, label=label)
                right.plot(xs, peaks, style, color=color, marker=marker, label=label)
        for axis, title, unit in ((left, "Time", "seconds"), (right, "Peak memory (RSS)", "MB")):
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
            axis.yaxis.set_minor_formatter(ticker.NullFormatter())
            axis.set_xlabel("parameters")
            axis.set_ylabel(unit)
            axis.set_title(f"{title}, {_MODE_NAMES[mode]}")
            axis.grid(True, which="both", alpha=0.3)
        left.legend(fontsize=8)
    figure.suptitle(
        f"keras_safe vs plain Keras (median of {_rounds(report)} "
        f"round(s), {report['machine']['date']})",
        fontsize=10,
    )
    figure.tight_layout()
    written = []
    for suffix in (".png", ".svg"):
        path = stem.with_suffix(suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, metadata={"Date": None} if suffix == ".svg" else None)
        written.append(path)
    plt.close(figure)
    return written


# -- profiles -----------------------------------------------------------------------


def profile_summary(directory: Path, smallest: int, top: int = 30) -> str:
    """The top entries (cumulative time) of the smallest model's save(roundtrip=True) profiles.

    In one process, its first save (the rebuild) and a later one (the proof
    reused); in a fresh process every save is a first.
    """
    pattern = f"*custom-{size_label(smallest)}-save-keras_safe_{{first,verify}}.prof"
    found = sorted(
        path
        for side in ("first", "verify")
        for path in directory.glob(f"*custom-{size_label(smallest)}-save-keras_safe_{side}.prof")
    )
    if not found:
        return f"no profile matching {pattern} in {directory}"
    out = []
    for path in found:
        stream = io.StringIO()
        stats_ = pstats.Stats(str(path), stream=stream)
        stats_.strip_dirs().sort_stats("cumulative").print_stats(top)
        out.append(f"== {path.name}\n{stream.getvalue()}")
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,25M,100M", help="comma-separated, e.g. 1M,25M,1B")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (>= 5 to quote)")
    parser.add_argument(
        "--modes", help="fresh, warm or fresh,warm (the default; warm only with --repeat 1)"
    )
    parser.add_argument(
        "--models", help="custom, builtin or custom,builtin (the default; custom with --repeat 1)"
    )
    parser.add_argument(
        "--contended",
        help="sizes measured again (warm) with every core busy (default: up to two sizes of "
        "at most 25M; none with --repeat 1)",
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="Keras backends compared, those installed (default: tensorflow,jax,torch; none)",
    )
    parser.add_argument(
        "--backend-sizes", help="sizes of the per-backend rows (default: the smallest two)"
    )
    parser.add_argument(
        "--checkpoint",
        help="MLP sizes of the checkpoint-during-training rows (default: 1M,25M; none)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="variable dtype (auto: bfloat16 where float32 with Adam would not fit; 1B)",
    )
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    parser.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        help="print the results tables, or with a FILE (docs/benchmarks.md) replace the tables "
        "between its markers and draw the chart next to it",
    )
    parser.add_argument("--chart", type=Path, help="draw the chart to STEM.png and STEM.svg")
    parser.add_argument("--workdir", type=Path, help="where files are written (default: temp)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="cProfile every timed operation's last round into DIR (slows them: not figures)",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="measure nothing: publish the results runs wrote with --json FILE (several runs, "
        "e.g. 1B measured apart with fewer rounds, are published as one)",
    )
    args = parser.parse_args(argv)
    chart_stem = args.chart
    if chart_stem is None and args.markdown and args.markdown != "-":
        chart_stem = Path(args.markdown).with_name("benchmarks-chart")
    if args.from_json is not None:
        reports = [json.loads(path.read_text()) for path in args.from_json]
        publish(merge_reports(reports), args.markdown, chart_stem)
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    smoke = args.repeat == 1
    sizes = parse_sizes(args.sizes)
    if not sizes:
        parser.error("--sizes names no size")
    modes = [m.strip() for m in (args.modes or ("warm" if smoke else "fresh,warm")).split(",")]
    if not set(modes) <= {"fresh", "warm"} or not modes:
        parser.error("--modes takes fresh, warm or fresh,warm")
    if args.models is None:
        args.models = "custom" if smoke else "custom,builtin"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not set(models) <= {"custom", "builtin"} or not models:
        parser.error("--models takes custom, builtin or custom,builtin")
    contended = (
        parse_sizes(args.contended)
        if args.contended is not None
        else []
        if smoke
        else [s for s in sizes if s <= 25_000_000][:2]
    )
    backend_sizes = (
        parse_sizes(args.backend_sizes) if args.backend_sizes is not None else sorted(sizes)[:2]
    )
    checkpoint_sizes = parse_sizes(args.checkpoint if args.checkpoint is not None else "1M,25M")
    if smoke and args.checkpoint is None:
        checkpoint_sizes = checkpoint_sizes[:1]
    wanted_backends = parse_list(args.backends)
    unknown = sorted(set(wanted_backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; choose among {', '.join(BACKENDS)}")
    profile = None
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        profile = args.profile.resolve()
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="keras-safe-bench-", dir=args.workdir))
    runs: list[dict[str, Any]] = []
    report: dict[str, Any] = {"repeat": args.repeat}
    try:
        largest = max(sizes)
        for params in sizes:
            dtype = dtype_for(params, args.dtype)
            for kind in models:
                if kind == "builtin" and params != largest:
                    continue  # the built-in stack once, at the largest size
                for mode in modes:
                    log(f"{mode}: {kind} model, {size_label(params)} parameters ({dtype})")
                    if mode == "fresh":
                        runs.append(fresh_run(params, kind, args.repeat, workdir, dtype, profile))
                    else:
                        runs.append(warm_run(params, kind, args.repeat, workdir, dtype, profile))
        for params in contended:
            dtype = dtype_for(params, args.dtype)
            log(f"contended ({os.cpu_count()} CPU burners): custom model, {size_label(params)}")
            runs.append(
                warm_run(params, "custom", args.repeat, workdir, dtype, None, mode="contended")
            )
        installed, missing = installed_backends(wanted_backends)
        backends: dict[str, str] = {name: "not installed" for name in missing}
        errors: dict[str, str] = {}
        for backend in installed:
            backends[backend] = "ok"
            for params in backend_sizes:
                have = any(
                    r["mode"] == "warm"
                    and r["backend"] == backend
                    and r["size"] == params
                    and r["model"] == "custom"
                    for r in runs
                )
                if have:
                    continue
                log(f"backend {backend}: custom model, {size_label(params)}")
                try:
                    runs.append(
                        warm_run(
                            params,
                            "custom",
                            args.repeat,
                            workdir,
                            dtype_for(params, args.dtype),
                            None,
                            backend=backend,
                        )
                    )
                except RuntimeError as exc:
                    errors[f"{backend} {size_label(params)}"] = _last_error_line(str(exc))
                    log(f"  failed: {errors[f'{backend} {size_label(params)}']}")
            if backend_sizes:
                params = min(backend_sizes)
                log(f"backend {backend}: first load in a fresh process, {size_label(params)}")
                try:
                    runs.append(
                        first_load_run(
                            params, args.repeat, workdir, dtype_for(params, args.dtype), backend
                        )
                    )
                except RuntimeError as exc:
                    errors[f"{backend} first load"] = _last_error_line(str(exc))
                    log(f"  failed: {errors[f'{backend} first load']}")
        report["backends"] = backends
        report["backend_errors"] = errors
        report["backend_sizes"] = backend_sizes
        checkpoints = []
        for params in checkpoint_sizes:
            steps = 20 if smoke else (300 if params <= 5_000_000 else 100)
            epochs = 2 if smoke else 4  # the first (tracing) epoch is left out
            log(f"checkpoints: MLP {size_label(params)}, {steps} steps per epoch")
            result = run_worker(
                {
                    "job": "checkpoint",
                    "params": params,
                    "steps": steps,
                    "epochs": epochs,
                    "rounds": 1,
                    "workdir": str(workdir),
                }
            )
            checkpoints.append(checkpoint_summary(result))
        report["checkpoints"] = checkpoints
        if "fresh" in modes:
            log("constructions")
            construction = run_worker({"job": "construct", "count": 10_000, "rounds": args.repeat})
            report["construction"] = construction_summary(construction)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [row for run in runs for row in summarise(run)]
    report.update(
        {
            "machine": machine(),
            "rows": rows,
            "runs": runs,
            "wall_seconds": time.perf_counter() - started,
        }
    )
    fresh = [r for r in runs if r["mode"] == "fresh"]
    if fresh:
        report["digests"] = {
            f"{_MODEL_NAMES[r['model']]} {size_label(r['info']['params'])}": digest_summary(r)
            for r in fresh
        }
        report["imports"] = {
            key: stats([i[key] for run in fresh for i in run["imports"]])
            for key in ("keras", "keras_safe")
        }
    report["targets"] = check_targets(rows)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    publish(report, args.markdown, chart_stem)
    if profile is not None:
        summary = profile_summary(profile, min(sizes))
        (profile / "summary.txt").write_text(summary)
        log(f"profiles in {profile}; save(roundtrip=True)'s top entries: {profile / 'summary.txt'}")
    log(f"done in {report['wall_seconds']:.0f} s")
    return 0


def _rounds(report: dict[str, Any]) -> str:
    return str(report.get("repeat_note", report["repeat"]))


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' reports as one: their rows and runs together, the rest from the first.

    A size measured in more than one run is taken from the first run that
    has it. When the runs made different numbers of rounds, ``repeat``
    says which sizes made which (``repeat_note``: ``"5 (1B: 3)"``).
    """
    if len(reports) == 1:
        return reports[0]
    for report in reports:  # rows as this version of the script makes them
        report["rows"] = [row for run in report["runs"] for row in summarise(run)]
    merged = dict(reports[0])
    rows, runs = list(merged["rows"]), list(merged["runs"])
    seen = {(r["mode"], r["backend"], r["model"], r["size"]) for r in runs}
    other_rounds: dict[int, list[str]] = {}
    for report in reports[1:]:
        for run in report["runs"]:
            key = (run["mode"], run["backend"], run["model"], run["size"])
            if key in seen:
                continue
            seen.add(key)
            runs.append(run)
            rows += [
                r for r in report["rows"] if (r["mode"], r["backend"], r["model"], r["size"]) == key
            ]
            if report["repeat"] != reports[0]["repeat"]:
                labels = other_rounds.setdefault(report["repeat"], [])
                if size_label(run["size"]) not in labels:
                    labels.append(size_label(run["size"]))
        # What only a later run measured (the memory probe): the first run's values win.
        merged["machine"] = {**report.get("machine", {}), **merged["machine"]}
        for key in ("checkpoints", "construction", "digests", "imports", "backends"):
            if not merged.get(key) and report.get(key):
                merged[key] = report[key]
        merged.setdefault("backend_sizes", report.get("backend_sizes", []))
    merged["rows"], merged["runs"] = rows, runs
    if other_rounds:
        parts = [f"{', '.join(sizes)}: {n}" for n, sizes in other_rounds.items()]
        merged["repeat_note"] = f"{reports[0]['repeat']} ({'; '.join(parts)})"
    merged["wall_seconds"] = sum(r.get("wall_seconds", 0.0) for r in reports)
    merged["targets"] = check_targets(rows)
    return merged


def publish(report: dict[str, Any], markdown_to: str | None, chart_stem: Path | None) -> None:
    """Draw the chart, replace the tables of a page (``markdown_to``) and print the results."""
    if chart_stem is not None:
        try:
            written = draw_chart(report, chart_stem)
            report["chart"] = [str(p) for p in written]
            log("chart: " + ", ".join(str(p) for p in written))
        except ImportError:
            log("chart: matplotlib is not installed (pip install 'keras_safe[bench]')")
    if markdown_to and markdown_to != "-":
        target = Path(markdown_to)
        chart = None
        if chart_stem is not None and report.get("chart"):
            chart = os.path.relpath(chart_stem.with_suffix(".svg"), target.parent)
        replace_block(target, markdown(report), chart)
    print(markdown(report) if markdown_to == "-" else text_report(report))


def parse_list(text: str | None) -> list[str]:
    if not text or text.strip().lower() == "none":
        return []
    return [item.strip() for item in text.split(",") if item.strip()]


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (errors or lines or ["unknown error"])[-1][:200]


if __name__ == "__main__":
    sys.exit(main())
