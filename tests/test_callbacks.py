"""SafeCheckpoint (a ModelCheckpoint writing keras_safe archives) and load_latest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import ROOT, SRC, run_python

import keras_safe
from keras_safe.callbacks import SafeCheckpoint, checkpoint_destination
from keras_safe.errors import _UsageError

X = np.random.default_rng(0).random((48, 5)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def _model() -> keras.Model:
    inputs = keras.Input((5,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(hidden))
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


def _corrupt(path: Path) -> None:
    """Flip a byte inside the stored weights (what a bad disk or copy does)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("model.weights.h5")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 200 + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _age(path: Path, seconds: float) -> None:
    """Make ``path`` look ``seconds`` older (mtime orders checkpoints)."""
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp))


# -- SafeCheckpoint -------------------------------------------------------------------


def test_drop_in_for_model_checkpoint_with_formatted_names(tmp_path: Path) -> None:
    model = _model()
    checkpoint = SafeCheckpoint(str(tmp_path / "ckpt" / "epoch-{epoch:02d}-{val_loss:.3f}.keras"))
    assert isinstance(checkpoint, keras.callbacks.ModelCheckpoint)
    history = model.fit(X, Y, validation_split=0.25, epochs=3, callbacks=[checkpoint], verbose=0)
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    expected = [
        f"epoch-{epoch + 1:02d}-{loss:.3f}.keras"
        for epoch, loss in enumerate(history.history["val_loss"])
    ]
    assert names == expected
    for name in names:
        manifest = keras_safe.inspect(tmp_path / "ckpt" / name)
        assert manifest.written_by == "keras_safe" and manifest.digest
    last = keras_safe.load(tmp_path / "ckpt" / names[-1])
    np.testing.assert_array_equal(last.predict(X, verbose=0), model.predict(X, verbose=0))
    assert int(last.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())


def test_keep_prunes_older_matching_files_only(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    keras_safe.save(
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), tmp_path / "other.keras"
    )
    checkpoint = SafeCheckpoint(str(tmp_path / "epoch-{epoch}.keras"), keep=2)
    _model().fit(X, Y, epochs=4, callbacks=[checkpoint], verbose=0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch-3.keras", "epoch-4.keras", "notes.txt", "other.keras"]


def test_save_best_only_follows_monitor_and_mode(tmp_path: Path) -> None:
    model = _model()
    checkpoint = SafeCheckpoint(
        str(tmp_path / "best-{epoch}.keras"), monitor="val_score", save_best_only=True, mode="max"
    )
    checkpoint.set_model(model)
    for epoch, score in enumerate([0.5, 0.4, 0.7, 0.7, 0.9]):
        checkpoint.on_epoch_begin(epoch)
        checkpoint.on_epoch_end(epoch, logs={"val_score": score})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best-1.keras",
        "best-3.keras",
        "best-5.keras",
    ]


def test_save_freq_in_batches_and_save_kwargs(tmp_path: Path) -> None:
    checkpoint = SafeCheckpoint(
        str(tmp_path / "step-{epoch}-{batch}.keras"),
        save_freq=2,
        roundtrip=True,
        sample_input=X[:4],
    )
    _model().fit(X, Y, batch_size=16, epochs=2, callbacks=[checkpoint], verbose=0)
    # 3 batches per epoch, a save every 2 batches seen
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-1-2.keras",
        "step-2-1.keras",
        "step-2-3.keras",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filepath": "ckpt/model.h5"}, "must end in '.keras'"),
        ({"filepath": 3}, "filepath must be a str or os.PathLike, got int"),
        ({"save_weights_only": True}, "keras.callbacks.ModelCheckpoint(..., save_weights_only"),
        ({"overwrite": False}, "unexpected argument(s) overwrite"),
        ({"keep": 0}, "keep must be None or a positive number"),
        ({"save_freq": "sometimes"}, "Unrecognized save_freq"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs: dict[str, object], message: str) -> None:
    arguments = {"filepath": "ckpt/epoch-{epoch}.keras", **kwargs}
    with pytest.raises(ValueError) as error:
        SafeCheckpoint(**arguments)  # type: ignore[arg-type]
    assert message in str(error.value)


def test_filepath_keeps_keyword_arguments_only_after_monitor() -> None:
    with pytest.raises(TypeError):
        SafeCheckpoint("ckpt/m.keras", "val_loss", 1)  # type: ignore[misc]  # verbose in Keras


# -- load_latest ----------------------------------------------------------------------


def _three_checkpoints(directory: Path) -> list[Path]:
    model = _model()
    checkpoint = SafeCheckpoint(str(directory / "epoch-{epoch}.keras"))
    model.fit(X, Y, epochs=3, callbacks=[checkpoint], verbose=0)
    paths = [directory / f"epoch-{n}.keras" for n in (1, 2, 3)]
    for age, path in zip((30, 20, 10), paths, strict=True):
        _age(path, age)
    return paths


def test_load_latest_returns_the_newest(tmp_path: Path) -> None:
    paths = _three_checkpoints(tmp_path)
    (tmp_path / ".epoch-4.keras.keras-safe-host-1-abc.tmp").write_bytes(b"half a save")
    latest = keras_safe.load_latest(tmp_path)
    expected = keras_safe.load(paths[-1])
    np.testing.assert_array_equal(latest.predict(X, verbose=0), expected.predict(X, verbose=0))


def test_load_latest_skips_and_reports_failing_checkpoints(tmp_path: Path) -> None:
    paths = _three_checkpoints(tmp_path)
    for path in paths[1:]:
        _corrupt(path)
        _age(path, 0)  # corrupting touched them; keep their order
    _age(paths[1], 20)
    with pytest.warns(UserWarning) as caught:
        model = keras_safe.load_latest(tmp_path)
    (warning,) = [w for w in caught if "load_latest" in str(w.message)]
    text = str(warning.message)
    assert f"loaded {paths[0]}" in text and "skipping 2 newer checkpoint(s)" in text
    assert "epoch-3.keras: IntegrityError" in text and "epoch-2.keras: IntegrityError" in text
    expected = keras_safe.load(paths[0])
    np.testing.assert_array_equal(model.predict(X, verbose=0), expected.predict(X, verbose=0))


def test_load_latest_raises_when_nothing_passes(tmp_path: Path) -> None:
    paths = _three_checkpoints(tmp_path)
    with pytest.raises(keras_safe.IntegrityError) as error:
        keras_safe.load_latest(tmp_path, expected_digest="0" * 64)
    message = str(error.value)
    assert f"None of the 3 checkpoint(s) in {tmp_path} passes its checks" in message
    assert all(path.name in message for path in paths)


def test_load_latest_first_run_and_misuse(tmp_path: Path) -> None:
    assert keras_safe.load_latest(tmp_path / "not-yet") is None
    assert keras_safe.load_latest(tmp_path) is None
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(_UsageError, match="expects a directory of checkpoints"):
        keras_safe.load_latest(tmp_path / "model.keras")
    with pytest.raises(_UsageError, match="on_mismatch must be one of"):
        keras_safe.load_latest(tmp_path, on_mismatch="sometimes")


# -- multi-worker decision ------------------------------------------------------------


@pytest.mark.tensorflow_only(reason="tf.distribute strategies")
def test_only_the_chief_writes_the_real_checkpoint(tmp_path: Path) -> None:
    import tensorflow as tf

    target = tmp_path / "epoch-1.keras"
    assert checkpoint_destination(target, tf.distribute.get_strategy()) == (target, False)
    assert checkpoint_destination(target, None) == (target, False)
    # What tf.distribute.MultiWorkerMirroredStrategy reports on worker 1
    worker = SimpleNamespace(
        extended=SimpleNamespace(should_checkpoint=False),
        cluster_resolver=SimpleNamespace(task_type="worker", task_id=1),
    )
    scratch, temporary = checkpoint_destination(target, worker)
    assert temporary and scratch.name == target.name and scratch.parent != tmp_path
    assert scratch.parent.name.startswith("keras-safe-worker-1-")
    scratch.parent.rmdir()


# -- crash during a save, then resume -------------------------------------------------

TRAIN = """
import sys, time
import numpy as np
import keras
import keras_safe
from keras_safe._format import writer as atomic

directory, kill_at = sys.argv[1], int(sys.argv[2])
finish, saves = atomic.AtomicArchiveWriter.finish, []

def slow_finish(self):
    # The archive's members are written but its central directory is not:
    # hold the save here so the test can kill the process mid-save.
    saves.append(self.target)
    if len(saves) == kill_at:
        print("SAVING", self.target.name, flush=True)
        time.sleep(600)
    finish(self)

atomic.AtomicArchiveWriter.finish = slow_finish
x = np.random.default_rng(0).random((64, 5)).astype("float32")
y = x.sum(axis=1, keepdims=True)
inputs = keras.Input((5,))
model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8, activation="relu")(inputs)))
model.compile(optimizer="adam", loss="mse")
checkpoint = keras_safe.callbacks.SafeCheckpoint(directory + "/epoch-{epoch:02d}.keras", keep=3)
model.fit(x, y, batch_size=16, epochs=10, callbacks=[checkpoint], verbose=0)
"""

RESUME = """
import sys
import numpy as np
import keras_safe

directory = sys.argv[1]
x = np.random.default_rng(0).random((64, 5)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras_safe.load_latest(directory)
print("ITERATIONS", int(model.optimizer.iterations.numpy()))
before = model.evaluate(x, y, verbose=0)
checkpoint = keras_safe.callbacks.SafeCheckpoint(directory + "/epoch-{epoch:02d}.keras", keep=3)
model.fit(x, y, batch_size=16, initial_epoch=3, epochs=5, callbacks=[checkpoint], verbose=0)
print("LOSS", before, model.evaluate(x, y, verbose=0))
"""


@pytest.mark.slow
def test_killed_during_a_save_then_resumed(tmp_path: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}"}
    trainer = subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(tmp_path), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert trainer.stdout is not None
        line = trainer.stdout.readline()  # blocks until the 4th save is under way
        assert line.strip() == "SAVING epoch-04.keras", line if line else trainer.stderr.read()
        time.sleep(0.2)
        trainer.send_signal(signal.SIGKILL)
    finally:
        trainer.kill()
        trainer.communicate(timeout=60)
    assert trainer.returncode == -signal.SIGKILL

    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert visible == ["epoch-01.keras", "epoch-02.keras", "epoch-03.keras"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".epoch-04.keras.keras-safe-")

    resumed = run_python(RESUME, str(tmp_path))
    assert "ITERATIONS 12" in resumed.stdout  # 3 epochs x 4 batches: epoch 3's state
    before, after = map(float, resumed.stdout.split("LOSS")[1].split())
    assert after < before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-03.keras",
        "epoch-04.keras",
        "epoch-05.keras",
    ]  # the killed save's temporary file was cleaned up by the next save
