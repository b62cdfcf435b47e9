"""Training beyond one device: tf.distribute strategies with keras_safe.save and SafeCheckpoint.

Each scenario runs in fresh processes: logical devices and cluster
configuration must be set before TensorFlow initializes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SRC, run_python

pytestmark = [pytest.mark.slow, pytest.mark.tensorflow_only(reason="tf.distribute strategies")]

MIRRORED = """
import sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import keras_safe

out = sys.argv[1]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
x = np.random.default_rng(0).random((64, 6)).astype("float32")
y = x.sum(axis=1, keepdims=True)
with strategy.scope():
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu"),
        # synchronized: each replica would otherwise keep its own moving statistics
        keras.layers.BatchNormalization(synchronized=True),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse")
checkpoint = keras_safe.callbacks.SafeCheckpoint(out + "/ckpt/epoch-{epoch}.keras", roundtrip=True)
model.fit(x, y, epochs=2, batch_size=16, callbacks=[checkpoint], verbose=0)
keras_safe.save(model, out + "/mirrored.keras", sample_input=x)
# A direct call, not predict(): predict splits the batch (across replicas here,
# in batches of 32 outside), and float sums over other splits round differently.
np.save(out + "/outputs.npy", keras.ops.convert_to_numpy(model(x, training=False)))
"""

LOAD = """
import sys
import keras
import numpy as np
import keras_safe

out = sys.argv[1]
x = np.random.default_rng(0).random((64, 6)).astype("float32")
expected = np.load(out + "/outputs.npy")
for path in (out + "/mirrored.keras", out + "/ckpt/epoch-2.keras"):
    model = keras_safe.load(path)
    assert np.array_equal(keras.ops.convert_to_numpy(model(x, training=False)), expected), path
print("identical")
"""


def test_mirrored_strategy_saves_and_loads_outside_it(tmp_path: Path) -> None:
    run_python(MIRRORED, str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "epoch-1.keras",
        "epoch-2.keras",
    ]
    assert "identical" in run_python(LOAD, str(tmp_path)).stdout


WORKER = """
import json, os, sys
import numpy as np

index, ports, target = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"localhost:{port}" for port in ports]},
    "task": {"type": "worker", "index": index},
})
import tensorflow as tf
import keras
import keras_safe

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)
    ])
# Keras 3's fit() does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585),
# so the callback is driven the way fit() drives it at the end of an epoch.
checkpoint = keras_safe.callbacks.SafeCheckpoint(target, roundtrip=True)
checkpoint.set_model(model)
checkpoint.on_epoch_begin(0)
checkpoint.on_epoch_end(0, logs={"loss": 1.0, "val_loss": 1.0})
x = np.ones((4, 6), "float32")
np.save(os.environ["OUT"] + f"/worker{index}.npy", keras.ops.convert_to_numpy(model(x)))
print("chief" if strategy.extended.should_checkpoint else "worker", flush=True)
"""


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_multi_worker_only_the_chief_writes(tmp_path: Path) -> None:
    ports = ",".join(map(str, _free_ports(2)))
    (tmp_path / "not-a-directory").write_text("")
    targets = [
        tmp_path / "ckpt" / "epoch-{epoch}.keras",
        # worker 1 gets a path nobody can write: writing there would fail the run
        tmp_path / "not-a-directory" / "epoch-{epoch}.keras",
    ]
    workers = []
    for index, target in enumerate(targets):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}",
            "TMPDIR": str(scratch),
            "OUT": str(tmp_path),
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(index), ports, str(target)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    results = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_out, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err[-4000:]
    assert [out.strip() for out, _ in results] == ["chief", "worker"]
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["epoch-1.keras"]
    assert list((tmp_path / "tmp1").iterdir()) == []  # the worker's scratch copy is gone

    loaded = run_python(
        """
        import sys
        import numpy as np
        import keras_safe
        model = keras_safe.load(sys.argv[1])
        outputs = model(np.ones((4, 6), "float32"), training=False)
        print(np.array_equal(outputs.numpy(), np.load(sys.argv[2])))
        """,
        str(tmp_path / "ckpt" / "epoch-1.keras"),
        str(tmp_path / "worker0.npy"),
    )
    assert loaded.stdout.strip() == "True"
    np.testing.assert_array_equal(
        np.load(tmp_path / "worker0.npy"), np.load(tmp_path / "worker1.npy")
    )
