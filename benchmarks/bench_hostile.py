"""Every hostile file of the test suite through every entry point: the bound, memory, time.

Builds the hostile corpus (``tests/hostile_corpus.py``) and the resource
classes (``tests/resource_kit.py``), then runs each file through each entry
point of ``tests/entry_points.py`` (the library functions and the
``keras-safe`` commands) in one worker process, after a warm-up load. For
each run it prints the class, the entry point, the bound that refused the
file (the ``ArchiveLimits`` field named in the error, or the check), how
far the peak resident memory rose above the level before the run (Linux
``VmHWM``, reset before every run), and the time taken.

Usage::

    python benchmarks/bench_hostile.py [--only SUBSTRING] [--summary]

``--summary`` prints one line per class (its worst entry point) instead of
every run. Needs Linux (``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from keras_safe._format.limits import ArchiveLimits  # noqa: E402  (no Keras import)

LIMITS = [field.name for field in dataclasses.fields(ArchiveLimits)]

WORKER = textwrap.dedent(
    """
    import json, re, sys, tempfile, time, warnings
    from pathlib import Path

    warnings.simplefilter("ignore")
    import entry_points, hostile_corpus, resource_kit
    import keras_safe

    root, only = Path(sys.argv[1]), sys.argv[2]

    def status(field):
        text = open("/proc/self/status").read()
        return int(re.search(field + r":\\s+(\\d+)", text).group(1)) << 10

    bench = hostile_corpus.Bench(root)
    sys.path.insert(0, str(bench.modules))
    hostile_corpus.register_victim(bench.marker)
    cases = [(c.name, c.kwargs(bench), c.build) for c in hostile_corpus.CORPUS]
    folder = root / "resources"
    folder.mkdir()
    resource = [(f"resource:{c.name}", {}, c.build) for c in resource_kit.CASES]
    files = {}
    for name, kwargs, build in [*cases, *resource]:
        if only in name:
            where = root / "cases" / name.replace(":", "_")
            where.mkdir(parents=True, exist_ok=True)
            path = build(folder) if name.startswith("resource:") else build(bench, where)
            files[name] = (path, kwargs)
    scratch = Path(tempfile.mkdtemp())
    keras_safe.load(bench.good)
    for entry in entry_points.ENTRY_POINTS:  # warm up every entry point
        entry_points.run(entry.name, bench.good, {}, bench.good, scratch)
    for name, (path, kwargs) in files.items():
        for entry in entry_points.ENTRY_POINTS:
            open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
            before, start = status("VmRSS"), time.monotonic()
            outcome = entry_points.run(entry.name, path, kwargs, bench.good, scratch)
            seconds = time.monotonic() - start
            row = {
                "class": name,
                "entry": entry.name,
                "refused": outcome.refused,
                "error": outcome.error,
                "message": " ".join(outcome.message.split())[:2000],
                "rise": max(0, status("VmHWM") - before),
                "seconds": seconds,
                "marker": bench.marker.exists(),
            }
            print("ROW " + json.dumps(row), flush=True)
    """
)

_CHECKS = [
    ("the payload ran", "RAN"),
    ("SHA-256", "digest"),
    ("not in its manifest", "digest"),
    ("content digest", "expected_digest"),
    ("signing_key", "signature"),
    ("not signed", "signature"),
    ("compares .keras archives", "usage (not an archive)"),
    ("refers to things keras_safe does not load", "allowlist"),
    ("unexpected member", "archive layout"),
    ("member named", "archive layout"),
    ("needs 1 custom object", "missing objects"),
    ("custom object(s) that are not available", "missing objects"),
    ("weights file could fill", "variable budget"),
    ("HDF5", "HDF5 checks"),
    ("model.weights.h5", "HDF5 checks"),
    ("member", "archive layout"),
    ("zip", "archive layout"),
]


def bound_of(row: dict[str, object]) -> str:
    """The limit or check that refused the file, read off the error message."""
    if row["marker"]:
        return "PAYLOAD RAN"
    if not row["refused"]:
        return "-"
    message = str(row["message"])
    named = re.search(r"ArchiveLimits\.(max_[a-z0-9_]+)", message)
    if named:
        return named.group(1)
    for limit in LIMITS:
        if limit in message:
            return limit
    for needle, label in _CHECKS:
        if needle in message:
            return label
    return str(row["error"] or "refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="only classes whose name contains this")
    parser.add_argument("--summary", action="store_true", help="one line per class")
    args = parser.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), str(ROOT)]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, folder, args.only],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert worker.stdout is not None
        if not args.summary:
            print(f"{'class':58} {'entry point':12} {'bound':26} {'RSS rise':>9} {'time':>7}")
        for line in worker.stdout:
            if not line.startswith("ROW "):
                continue
            row = json.loads(line[4:])
            row["bound"] = bound_of(row)
            rows.append(row)
            if not args.summary:
                print(_line(row), flush=True)
        worker.wait()
    if args.summary:
        print(f"{'class':58} {'worst entry':12} {'bound':26} {'RSS rise':>9} {'time':>7}")
        for name in dict.fromkeys(row["class"] for row in rows):
            mine = [row for row in rows if row["class"] == name]
            worst = max(mine, key=lambda row: (row["rise"], row["seconds"]))
            bounds = [row["bound"] for row in mine if row["bound"] != "-"]
            worst = {**worst, "bound": bounds[0] if bounds else "-"}
            worst["seconds"] = max(row["seconds"] for row in mine)
            print(_line(worst))
    refused = sum(1 for row in rows if row["refused"])
    print(
        f"\n{len(rows)} runs ({len({r['class'] for r in rows})} classes x "
        f"{len({r['entry'] for r in rows})} entry points), {refused} refused; "
        f"payload ran: {sum(1 for r in rows if r['marker'])}; "
        f"peak RSS rise max {max(r['rise'] for r in rows) >> 20} MiB; "
        f"slowest {max(r['seconds'] for r in rows):.2f} s"
    )


def _line(row: dict[str, object]) -> str:
    rise = int(row["rise"])  # type: ignore[call-overload]
    seconds = float(row["seconds"])  # type: ignore[arg-type]
    where = f"{row['class']!s:58} {row['entry']!s:12} {row['bound']!s:26}"
    return f"{where} {rise >> 20:>5} MiB {seconds:6.2f}s"


if __name__ == "__main__":
    main()
