"""Fuzz keras_safe.load with thousands of mutated model files.

A worker process builds the seed models once, then loads one mutated file
per case (see ``tests/fuzz_kit.py`` for the mutations) and reports each
outcome and its peak memory. This process enforces a per-case timeout: a
worker that goes silent is killed, the case is recorded as a hang, and a new
worker continues with the next case. Only ``keras_safe.KerasSafeError``
subclasses may escape ``load``; any other exception, a hang, or a worker
whose peak RSS passes ``--max-rss-mb`` is a failure.

Usage::

    python tools/fuzz_load.py --cases 5000 [--seed 0] [--timeout 60] [--max-rss-mb 4096]

Prints a summary (cases tried, outcomes by kind, failures, peak RSS, slowest
case); exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import collections
import os
import select
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent(
    """
    import random, resource, sys, time, warnings
    from pathlib import Path
    from fuzz_kit import make_seeds, mutate, run_case

    workdir = Path(sys.argv[1])
    first, last, seed = (int(arg) for arg in sys.argv[2:5])
    seeds = make_seeds(workdir)
    print("ready", flush=True)
    warnings.simplefilter("ignore")
    for case in range(first, last):
        rng = random.Random(seed * 1_000_003 + case)
        started = time.perf_counter()
        path = mutate(seeds, rng, workdir)
        print("start", case, path.name, flush=True)
        outcome = run_case(path).replace("\\n", " | ")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print("done", case, f"{time.perf_counter() - started:.3f}", rss, outcome, flush=True)
    """
)


def _worker(workdir: Path, first: int, last: int, seed: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(workdir), str(first), str(last), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _line(process: subprocess.Popen[str], timeout: float) -> str | None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        return None
    return process.stdout.readline()


def fuzz(cases: int, seed: int, timeout: float, max_rss_mb: int) -> int:
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    peak_rss, slowest, tried = 0, (0.0, -1), 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-load-") as directory:
        case = 0
        while case < cases:
            worker = _worker(Path(directory), case, cases, seed)
            if _line(worker, 600) != "ready\n":
                print("worker failed to start", file=sys.stderr)
                return 2
            current = None
            while True:
                line = _line(worker, timeout)
                if line is None:  # silent for too long: a hang
                    worker.kill()
                    worker.wait()
                    failures.append(f"case {current}: no result within {timeout:.0f}s (hang)")
                    outcomes["hang"] += 1
                    tried += 1
                    case = (current if current is not None else case) + 1
                    break
                if not line:  # the worker died (a crash is a failure) or finished
                    code = worker.wait()
                    if current is not None and code != 0:
                        failures.append(f"case {current}: worker died with exit code {code}")
                        outcomes["crash"] += 1
                        tried += 1
                        case = current + 1
                    else:
                        case = cases
                    break
                fields = line.rstrip("\n").split(" ", 5)
                if fields[0] == "start":
                    current = int(fields[1])
                    continue
                _, number, seconds, rss, *rest = fields
                outcome = " ".join(rest)
                tried += 1
                current = None
                peak_rss = max(peak_rss, int(rss))
                slowest = max(slowest, (float(seconds), int(number)))
                outcomes[outcome.split(":")[0]] += 1
                if outcome.startswith("FAILED"):
                    failures.append(f"case {number}: {outcome[:2000]}")
                if int(rss) > max_rss_mb:
                    failures.append(f"case {number}: worker peak RSS {rss} MB > {max_rss_mb} MB")
                if tried % 250 == 0:
                    print(f"... {tried} cases, {len(failures)} failures", flush=True)
    elapsed = time.perf_counter() - started
    print(f"\ncases tried: {tried} in {elapsed:.0f}s (seed {seed})")
    for outcome, count in outcomes.most_common():
        print(f"  {count:6d}  {outcome}")
    print(f"peak worker RSS: {peak_rss} MB; slowest case: {slowest[1]} ({slowest[0]:.2f}s)")
    print(f"failures: {len(failures)}")
    for failure in failures[:20]:
        print("  " + failure)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--max-rss-mb", type=int, default=4096)
    args = parser.parse_args(argv)
    return fuzz(args.cases, args.seed, args.timeout, args.max_rss_mb)


if __name__ == "__main__":
    sys.exit(main())
