"""Faults while saving: kill -9, a full disk, a read-only folder, racing writers and readers.

Each claim runs real processes on real files. The long version of the kill
test (50+ trials) is ``tools/kill_save.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ROOT, SRC, run_python

import keras_safe

sys.path.insert(0, str(ROOT / "tools"))
import kill_save

pytestmark = pytest.mark.slow

# Builds the same model for the same seed (weights included), in any process.
MODEL = """
import numpy as np
import keras

def build(seed, units=64):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(units, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 16), "float32"), np.zeros((4, 4), "float32"), verbose=0)
    return model

SAMPLE = np.linspace(-1, 1, 32, dtype="float32").reshape(2, 16)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(MODEL) + textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 600) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"child failed ({process.returncode}):\n{out}\n{err[-4000:]}"
    return out


def _temporaries(directory: Path) -> list[str]:
    return kill_save.temporaries(directory)


def test_kill_9_during_save_always_leaves_a_verifiable_file(tmp_path):
    outcome = kill_save.run_trials(3, tmp_path, seed=1, units=256, log=lambda line: None)
    assert outcome.failures == []
    assert outcome.trials == 3
    assert _temporaries(tmp_path) == []


def test_disk_full_raises_a_clear_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    result = run_python(
        textwrap.dedent(MODEL)
        + """
import errno, resource, sys
import keras_safe
target = sys.argv[1]
keras_safe.save(build(0, units=8), target)
old = open(target, "rb").read()
resource.setrlimit(resource.RLIMIT_FSIZE, (len(old) + 4096, resource.RLIM_INFINITY))
try:
    keras_safe.save(build(1, units=512), target)
except keras_safe.KerasSafeError as error:
    assert isinstance(error, OSError) and error.errno == errno.EFBIG, repr(error)
    print("refused:", error)
assert open(target, "rb").read() == old, "the old file changed"
print("old file intact")
""",
        str(target),
    )
    assert f"Could not write {target}: File too large" in result.stdout
    assert "is unchanged and no temporary file was left behind" in result.stdout
    assert "old file intact" in result.stdout
    assert _temporaries(tmp_path) == []
    assert keras_safe.verify(target).ok


@contextmanager
def _read_only(directory: Path) -> Iterator[None]:
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    # root writes through permission bits; an immutable folder stops it.
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)]).returncode != 0:
        pytest.skip("cannot make a folder read-only for root here (no chattr +i)")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_read_only_folder_raises_a_clear_error_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    code = textwrap.dedent(MODEL) + "import sys, keras_safe\nkeras_safe.save(build(0), sys.argv[1])"
    _finish(_python(code, str(target)))
    old = target.read_bytes()
    with _read_only(tmp_path):
        attempt = _python(
            """
import sys, keras_safe
try:
    keras_safe.save(build(1), sys.argv[1])
except keras_safe.KerasSafeError as error:
    assert isinstance(error, OSError), repr(error)
    print("refused:", error)
""",
            str(target),
        )
        out = _finish(attempt)
    denied = "(Operation not permitted|Permission denied)"
    assert re.search(f"Cannot write next to {re.escape(str(target))}: {denied}", out)
    assert target.read_bytes() == old
    assert _temporaries(tmp_path) == []


SAVER = """
import sys, time, keras_safe
target, seed, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = build(seed)
for _ in range(times):
    print(keras_safe.save(model, target).digest, flush=True)
"""


def test_two_processes_saving_to_one_path_leave_one_complete_archive(tmp_path):
    target = tmp_path / "model.keras"
    writers = [_python(SAVER, str(target), str(seed), "4") for seed in (1, 2)]
    digests = {line for writer in writers for line in _finish(writer).split()}
    assert len(digests) == 2
    report = keras_safe.verify(target)
    assert report.ok, report.problems
    assert report.manifest is not None and report.manifest.digest in digests
    assert _temporaries(tmp_path) == []


def test_loading_while_another_process_replaces_the_file(tmp_path):
    target = tmp_path / "model.keras"
    done = tmp_path / "writer-done"
    code = textwrap.dedent(MODEL) + "import sys, keras_safe\nkeras_safe.save(build(1), sys.argv[1])"
    _finish(_python(code, str(target)))
    writer = _python(
        """
import sys, pathlib, keras_safe
target, done = sys.argv[1], pathlib.Path(sys.argv[2])
models = [build(1), build(2)]
for i in range(8):
    keras_safe.save(models[i % 2], target, roundtrip=False)
done.touch()
""",
        str(target),
        str(done),
    )
    reader = _python(
        """
import sys, pathlib, keras, numpy as np, keras_safe
target, done = sys.argv[1], pathlib.Path(sys.argv[2])
expected = [keras.ops.convert_to_numpy(build(seed)(SAMPLE)) for seed in (1, 2)]
loads, errors = 0, []
while not done.exists() or loads < 3:
    try:
        output = keras.ops.convert_to_numpy(keras_safe.load(target)(SAMPLE))
    except Exception as error:
        errors.append(f"{type(error).__name__}: {error}")
        continue
    finally:
        loads += 1
    if not any(np.array_equal(output, e) for e in expected):
        errors.append("a model that is neither the old nor the new one")
print(loads, len(errors))
for error in errors[:5]:
    print(error)
""",
        str(target),
        str(done),
    )
    _finish(writer)
    first, *messages = _finish(reader).strip().splitlines()
    loads, errors = map(int, first.split())
    assert errors == 0, messages
    assert loads >= 3


def test_overwrite_false_refuses_and_keeps_the_file(tmp_path):
    target = tmp_path / "model.keras"
    code = textwrap.dedent(MODEL) + "import sys, keras_safe\nkeras_safe.save(build(0), sys.argv[1])"
    _finish(_python(code, str(target)))
    old = target.read_bytes()
    attempt = _python(
        """
import sys, keras_safe
try:
    keras_safe.save(build(1), sys.argv[1], overwrite=False)
except FileExistsError as error:
    assert isinstance(error, keras_safe.KerasSafeError)
    print("refused:", error)
""",
        str(target),
    )
    assert "already exists and overwrite=False" in _finish(attempt)
    assert target.read_bytes() == old
    assert _temporaries(tmp_path) == []


def test_stale_temporaries_of_dead_processes_are_cleaned(tmp_path):
    from keras_safe._format.writer import _host_tag

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        host = _host_tag()
        stale = tmp_path / f".model.keras.keras-safe-{host}-{dead}-abc123.tmp"
        live = tmp_path / f".model.keras.keras-safe-{host}-{sleeper.pid}-def456.tmp"
        stale.write_bytes(b"half a model")
        live.write_bytes(b"a save in progress")
        code = (
            textwrap.dedent(MODEL)
            + "import sys, keras_safe\nkeras_safe.save(build(0), sys.argv[1])"
        )
        _finish(_python(code, str(tmp_path / "model.keras")))
        assert not stale.exists()
        assert live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
