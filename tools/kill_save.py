"""Kill -9 keras_safe.save at random points; the file at the path must always survive.

Each trial starts a fresh process that builds a model (different weights each
trial), times one save to a scratch file next to the target (which also
cleans temporary files left by the previous, killed trial), then saves to
the target and is killed with SIGKILL after a random delay within that
save's duration. After every kill the target must load and verify, and be
either the previous file or a complete new one. After the last trial one
more save runs to completion and no temporary file may remain.

Usage::

    python tools/kill_save.py --trials 50 [--seed 0] [--units 512]

Prints one line per trial and a summary; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import keras
    import keras_safe

    target, scratch, seed, units = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((units,))
    hidden = keras.layers.Dense(units, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(8)(hidden))
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, units), "float32"), np.zeros((8, 8), "float32"), verbose=0)
    started = time.perf_counter()
    keras_safe.save(model, scratch)
    print("ready", time.perf_counter() - started, flush=True)
    sys.stdin.readline()
    print("saving", flush=True)
    manifest = keras_safe.save(model, target)
    print("saved", manifest.digest, flush=True)
    """
)


@dataclass
class Outcome:
    """What happened over all trials."""

    trials: int = 0
    replaced: int = 0
    kept: int = 0
    failures: list[str] = field(default_factory=list)
    leftovers_seen: int = 0


def temporaries(directory: Path) -> list[str]:
    """keras_safe temporary files in ``directory``."""
    return sorted(name for name in os.listdir(directory) if ".keras-safe-" in name)


def _child_env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _start(target: Path, scratch: Path, seed: int, units: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), str(scratch), str(seed), str(units)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_child_env(),
    )


def _read_line(child: subprocess.Popen[str], expected: str, timeout: float = 300) -> str:
    assert child.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited ({child.wait()}) before {expected!r}")
        if line.startswith(expected):
            return line.strip()
    raise TimeoutError(expected)


def run_trials(
    trials: int, directory: Path, *, seed: int = 0, units: int = 512, log=print
) -> Outcome:
    """Run ``trials`` kill trials in ``directory``; see the module docstring."""
    import keras_safe

    rng = random.Random(seed)
    target, scratch = directory / "model.keras", directory / "scratch.keras"
    outcome = Outcome()
    first = _start(target, scratch, seed, units)
    _read_line(first, "ready")
    assert first.stdin is not None
    first.stdin.write("\n")
    first.stdin.flush()
    previous = _read_line(first, "saved").split()[1]
    first.wait()
    for trial in range(trials):
        child = _start(target, scratch, seed + trial + 1, units)
        duration = float(_read_line(child, "ready").split()[1])
        delay = rng.uniform(0, duration * 1.2)
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        _read_line(child, "saving")
        time.sleep(delay)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        outcome.trials += 1
        leftovers = temporaries(directory)
        outcome.leftovers_seen += bool(leftovers)
        report = keras_safe.verify(target)
        digest = report.manifest.digest if report.manifest is not None else None
        if not report.ok:
            status = "FAILS to verify"
            outcome.failures.append(f"trial {trial}: {report.problems}")
        elif digest == previous:
            status = "is the previous file, verifies"
            outcome.kept += 1
        else:
            status = "is the complete new file, verifies"
            outcome.replaced += 1
            previous = digest
        log(
            f"trial {trial:3d}: killed {delay:.3f}s into a {duration:.3f}s save; the target "
            f"{status}; temporary files left: {len(leftovers)}"
        )
    final = _start(target, scratch, seed, units)
    _read_line(final, "ready")
    assert final.stdin is not None
    final.stdin.write("\n")
    final.stdin.flush()
    _read_line(final, "saved")
    final.wait()
    left = temporaries(directory)
    if left:
        outcome.failures.append(f"temporary files left after a complete save: {left}")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--units", type=int, default=512, help="model width (save duration)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="kill-save-") as directory:
        started = time.perf_counter()
        outcome = run_trials(args.trials, Path(directory), seed=args.seed, units=args.units)
    print(
        f"\n{outcome.trials} kill -9 trials in {time.perf_counter() - started:.0f}s: "
        f"{outcome.kept} kept the previous file, {outcome.replaced} had already replaced it, "
        f"{outcome.leftovers_seen} left a temporary file (cleaned by the next save), "
        f"{len(outcome.failures)} failures"
    )
    for failure in outcome.failures:
        print("FAILURE:", failure)
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
