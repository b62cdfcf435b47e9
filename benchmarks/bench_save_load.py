"""The cost of keras_safe's checks, measured against plain Keras in one run.

Usage::

    python benchmarks/bench_save_load.py [--sizes 1M,25M,100M] [--repeat N]
        [--models custom,builtin] [--json OUT] [--markdown [FILE]] [--profile DIR]

For every size, a model of width x width residual dense blocks (custom
``SerializableLayer`` blocks; at the largest size also the same stack of
built-in ``Dense`` layers), compiled with Adam and trained one step so that
optimizer state is saved and loaded too, is saved and loaded by each side:

- save: plain ``model.save`` (twice: the A/A row is the run's noise floor),
  ``keras_safe.save(roundtrip=False)``, ``keras_safe.save(roundtrip=True)``;
- load: plain ``keras.models.load_model`` (twice, A/A) and ``keras_safe.load``
  with every check on, all reading the same file.

Method, so that the figures survive a noisy shared machine: every timed
operation runs in a fresh process (``_bench_worker.py``), which builds the
model, warms the same code path up on a tiny model, flushes dirty pages
(``os.sync()``), collects garbage, resets the kernel's RSS high-water mark
and then times the operation and reads its peak RSS. Sides are interleaved
(A B C D, then B C D A, ...), so slow phases of the machine hit every side;
each figure is the median (and min) of ``--repeat`` rounds (5 or more for
figures worth quoting). ``--repeat 1`` is a smoke run that keeps the script
working: custom model only, no A/A rows.

Also measured: digest throughput (keras_safe hashing a member from the file
vs ``hashlib.sha256`` over the same bytes in memory), 10,000 constructions of
a ``SerializableLayer`` vs the same plain ``keras.layers.Layer`` subclass,
and ``import keras_safe`` with every public name loaded after ``import
keras`` (timed in every worker, each a fresh process).

``--markdown`` prints the results as the table of docs/benchmarks.md;
``--markdown docs/benchmarks.md`` replaces the table between the
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` markers of that file. ``--profile DIR`` writes a
cProfile of each timed operation (which slows it: not for figures).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_bench_worker.py"
SAVE_SIDES = ("plain", "plain_again", "keras_safe", "keras_safe_verify")
LOAD_SIDES = ("plain", "plain_again", "keras_safe")
LABELS = {
    ("save", "plain_again"): "save: plain vs plain (A/A, noise floor)",
    ("save", "keras_safe"): "save: keras_safe.save(roundtrip=False)",
    ("save", "keras_safe_verify"): "save: keras_safe.save(roundtrip=True)",
    ("load", "plain_again"): "load: plain vs plain (A/A, noise floor)",
    ("load", "keras_safe"): "load: keras_safe.load (all checks)",
}
# (operation, side, time target, RSS target): the targets keras_safe holds itself to.
TARGETS = (
    ("save", "keras_safe", 1.05, 1.05),
    ("save", "keras_safe_verify", 1.5, 1.05),
    ("load", "keras_safe", 1.05, 1.05),
)
CONSTRUCTION_TARGET = 1.3
MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def parse_size(text: str) -> int:
    """``"25M"`` -> 25_000_000 (suffixes K, M, G)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMG]?)\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 500K, 1M, 25M)")
    scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}[match[2].upper()]
    return int(float(match[1]) * scale)


def size_label(params: int) -> str:
    """``25_200_000`` -> ``"25.2M"``."""
    for scale, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "K")):
        if params >= scale:
            return f"{params / scale:.3g}{suffix}"
    return str(params)


# -- running workers ----------------------------------------------------------------


PROFILE_DIR: Path | None = None  # --profile: cProfile each timed operation into here


def run_worker(spec: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run one job in a fresh interpreter; return its result."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONHASHSEED": "0"}
    if PROFILE_DIR is not None and "side" in spec:
        count = len(list(PROFILE_DIR.glob("*.prof")))
        name = f"{count:03d}-{spec['model']}-{size_label(spec['params'])}-{spec['job']}-"
        env["KERAS_SAFE_BENCH_PROFILE"] = str(PROFILE_DIR / f"{name}{spec['side']}.prof")
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return dict(json.loads(line[len("BENCH-RESULT ") :]))
    raise RuntimeError(
        f"benchmark worker failed ({spec['job']} {spec.get('side', '')}), exit "
        f"{proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )


def rotated(items: tuple[str, ...], shift: int) -> list[str]:
    shift %= len(items)
    return list(items[shift:] + items[:shift])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_size(params: int, kind: str, repeat: int, workdir: Path) -> dict[str, Any]:
    """All save and load sides of one model, interleaved round by round.

    The A/A sides (plain against plain) need two rounds or more to say
    anything about the noise; a single round leaves them out.
    """
    save_sides = SAVE_SIDES if repeat > 1 else tuple(s for s in SAVE_SIDES if s != "plain_again")
    load_sides = LOAD_SIDES if repeat > 1 else tuple(s for s in LOAD_SIDES if s != "plain_again")
    tag = f"{kind}-{size_label(params)}"
    source = workdir / f"{tag}.keras"
    warm = workdir / f"{tag}-warm.keras"
    base = {"model": kind, "params": params, "workdir": str(workdir)}
    info = run_worker(
        {**base, "job": "prepare", "path": str(source), "warm_path": str(warm), "rounds": repeat}
    )
    imports = [info["imports"]]
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        "save": {side: [] for side in save_sides},
        "load": {side: [] for side in load_sides},
    }
    for r in range(repeat):
        for side in rotated(save_sides, r):
            target = workdir / f"{tag}-{side}-{r}.keras"
            result = run_worker({**base, "job": "save", "side": side, "path": str(target)})
            target.unlink()
            imports.append(result["imports"])
            samples["save"][side].append(result)
            log(f"  {tag} round {r + 1}/{repeat} save {side}: {result['seconds']:.2f} s")
        for side in rotated(load_sides, r):
            spec = {**base, "job": "load", "side": side, "path": str(source)}
            result = run_worker({**spec, "warm_path": str(warm)})
            imports.append(result["imports"])
            samples["load"][side].append(result)
            log(f"  {tag} round {r + 1}/{repeat} load {side}: {result['seconds']:.2f} s")
    source.unlink()
    warm.unlink()
    return {
        "model": kind,
        "size": params,
        "info": info,
        "samples": samples,
        "digest": info["digest"],
        "imports": imports,
    }


# -- summarising --------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values)}


def summarise(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per compared side: medians, mins and keras_safe/plain ratios."""
    rows = []
    for operation, by_side in run["samples"].items():
        plain_time = stats([s["seconds"] for s in by_side["plain"]])
        plain_rss = stats([s["peak_rss"] for s in by_side["plain"]])
        for side, values in by_side.items():
            if side == "plain":
                continue
            time_ = stats([s["seconds"] for s in values])
            rss = stats([s["peak_rss"] for s in values])
            rows.append(
                {
                    "model": run["model"],
                    "size": run["size"],
                    "operation": operation,
                    "side": side,
                    "label": LABELS[(operation, side)],
                    "plain_seconds": plain_time,
                    "seconds": time_,
                    "time_ratio": time_["median"] / plain_time["median"],
                    "time_ratio_min": time_["min"] / plain_time["min"],
                    "plain_peak_rss": plain_rss,
                    "peak_rss": rss,
                    "rss_ratio": rss["median"] / plain_rss["median"],
                }
            )
    return rows


def digest_summary(run: dict[str, Any]) -> dict[str, float]:
    size = run["digest"]["bytes"]
    samples = run["digest"]["samples"]
    rates = {side: size / min(values) / 1e6 for side, values in samples.items()}
    return {"bytes": size, **{f"{k}_MBps": v for k, v in rates.items()}}


def check_targets(rows: list[dict[str, Any]], construction: dict[str, Any]) -> list[str]:
    """One line per target, at the largest size measured of the custom model."""
    custom = [row for row in rows if row["model"] == "custom"] or rows
    largest = max(row["size"] for row in custom)
    lines = []
    for operation, side, time_target, rss_target in TARGETS:
        key = (largest, operation, side)
        row = next(r for r in custom if (r["size"], r["operation"], r["side"]) == key)
        for what, ratio, target in (
            ("time", row["time_ratio"], time_target),
            ("peak RSS", row["rss_ratio"], rss_target),
        ):
            verdict = "ok" if ratio <= target else "MISSED"
            lines.append(
                f"{row['label']} at {size_label(largest)} params, {what}: "
                f"{ratio:.2f}x (target <= {target}x) {verdict}"
            )
    ratio = construction["ratio"]
    verdict = "ok" if ratio <= CONSTRUCTION_TARGET else "MISSED"
    lines.append(
        f"construction of {construction['count']} layers: {ratio:.2f}x "
        f"(target <= {CONSTRUCTION_TARGET}x) {verdict}"
    )
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


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    versions = {}
    code = (
        "import json, sys, platform, numpy, h5py, keras, tensorflow, keras_safe, importlib.util;"
        "print(json.dumps({'python': platform.python_version(), 'numpy': numpy.__version__,"
        "'h5py': h5py.__version__, 'keras': keras.__version__,"
        "'tensorflow': tensorflow.__version__, 'keras_safe': keras_safe.__version__,"
        "'psutil': bool(importlib.util.find_spec('psutil'))}))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        versions = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "date": datetime.date.today().isoformat(),
    }


# -- reporting ----------------------------------------------------------------------


_MODEL_NAMES = {"custom": "custom blocks", "builtin": "built-in Dense"}


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    v = m["versions"]
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gb']} GB RAM, "
        f"{m['os']}), Python {v.get('python')}, TensorFlow {v.get('tensorflow')}, Keras "
        f"{v.get('keras')}, keras_safe {v.get('keras_safe')}; {report['repeat']} interleaved "
        "rounds, each operation in a fresh process; times are medians (min), peak RSS is the "
        "process' largest resident size during the operation.",
        "",
        "| model | operation | plain s | keras_safe s | ratio | plain peak MB | "
        "keras_safe peak MB | RSS ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        params = report["params"][f"{row['model']}-{row['size']}"]
        lines.append(
            f"| {_MODEL_NAMES[row['model']]} {size_label(params)} | {row['label']} | "
            f"{row['plain_seconds']['median']:.2f} ({row['plain_seconds']['min']:.2f}) | "
            f"{row['seconds']['median']:.2f} ({row['seconds']['min']:.2f}) | "
            f"{row['time_ratio']:.2f}x | {_mb(row['plain_peak_rss']['median'])} | "
            f"{_mb(row['peak_rss']['median'])} | {row['rss_ratio']:.2f}x |"
        )
    c = report["construction"]
    imports = report["imports"]
    lines += [
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
    return "\n".join(lines)


def text_report(report: dict[str, Any]) -> str:
    lines = [markdown(report), "", "Targets:"]
    if report["repeat"] < 5:
        lines[-1] += f" (only {report['repeat']} round(s): not figures to quote)"
    lines += [f"  {line}" for line in report["targets"]]
    return "\n".join(lines)


def replace_block(path: Path, table: str) -> None:
    text = path.read_text()
    start, end = text.find(MARK_BEGIN), text.find(MARK_END)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {MARK_BEGIN} ... {MARK_END} block to replace.")
    path.write_text(text[: start + len(MARK_BEGIN)] + "\n" + table + "\n" + text[end:])


# -- main ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1M,25M,100M", help="comma-separated, e.g. 1M,25M")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (>= 5 to quote)")
    parser.add_argument(
        "--models",
        help="custom, builtin or custom,builtin (the default; custom only with --repeat 1)",
    )
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    parser.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        help="print the results table, or with a FILE (docs/benchmarks.md) replace the table "
        "between its markers",
    )
    parser.add_argument("--workdir", type=Path, help="where files are written (default: temp)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write a cProfile of every timed operation to DIR (slows them: not for figures)",
    )
    args = parser.parse_args(argv)
    if args.profile is not None:
        global PROFILE_DIR
        args.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = args.profile.resolve()
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if args.models is None:  # --repeat 1 is a smoke run: keep it short
        args.models = "custom" if args.repeat == 1 else "custom,builtin"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not set(models) <= {"custom", "builtin"} or not models:
        parser.error("--models takes custom, builtin or custom,builtin")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="keras-safe-bench-", dir=args.workdir))
    try:
        runs = []
        for params in sizes:
            # Custom blocks at every size; the built-in stack once, at the largest.
            for kind in models:
                if kind == "custom" or params == max(sizes):
                    log(f"{kind} model, {size_label(params)} parameters")
                    runs.append(bench_size(params, kind, args.repeat, workdir))
        log("constructions")
        construction = run_worker({"job": "construct", "count": 10_000, "rounds": args.repeat})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = [row for run in runs for row in summarise(run)]
    report: dict[str, Any] = {
        "machine": machine(),
        "repeat": args.repeat,
        "params": {f"{r['model']}-{r['size']}": r["info"]["params"] for r in runs},
        "rows": rows,
        "digests": {
            f"{_MODEL_NAMES[r['model']]} {size_label(r['info']['params'])}": digest_summary(r)
            for r in runs
        },
        "construction": construction_summary(construction),
        "imports": {
            key: stats([i[key] for run in runs for i in run["imports"]])
            for key in ("keras", "keras_safe")
        },
        "runs": runs,
        "wall_seconds": time.perf_counter() - started,
    }
    report["targets"] = check_targets(rows, report["construction"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.markdown and args.markdown != "-":
        replace_block(Path(args.markdown), markdown(report))
    print(markdown(report) if args.markdown == "-" else text_report(report))
    log(f"done in {report['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
