"""Train a tiny transformer classifier, save it, resume training in a fresh process.

Run: python examples/transformer.py

Every component is custom (examples/tiny_transformer/): layers with nested
sublayers, a loss, a metric and a learning-rate schedule, none with a
hand-written get_config. The fresh process imports nothing by hand: it lets
keras_safe.load import the package (allow_imports=("tiny_transformer",)),
checks the outputs are identical, and continues training from the restored
optimizer state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import keras  # noqa: E402
from tiny_transformer import (  # noqa: E402
    ConfidentAccuracy,
    PositionalEmbedding,
    SmoothedCrossentropy,
    TransformerBlock,
    WarmupCosine,
)

import keras_safe  # noqa: E402

VOCAB, LENGTH, DIM, CLASSES, STEPS = 50, 16, 32, 3, 5

RESUME = """
import sys
import numpy as np
import keras_safe

path, inputs, labels, expected = sys.argv[1:5]
x, y = np.load(inputs), np.load(labels)
model = keras_safe.load(path, allow_imports=("tiny_transformer",))
assert "tiny_transformer" in sys.modules, "the package was imported by keras_safe.load"
assert np.array_equal(model.predict(x, verbose=0), np.load(expected)), "outputs differ"
steps = int(model.optimizer.iterations.numpy())
schedule = model.optimizer.get_config()["learning_rate"]["class_name"]  # WarmupCosine
history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
print(f"resumed at step {steps} with {schedule} and {type(model.loss).__name__}; "
      f"now at step {int(model.optimizer.iterations.numpy())}, "
      f"loss {history.history['loss'][-1]:.4f}")
assert int(model.optimizer.iterations.numpy()) == steps + len(x) // 16
"""


def build_model() -> keras.Model:
    tokens = keras.Input((LENGTH,), dtype="int32")
    x = PositionalEmbedding(VOCAB, LENGTH, DIM)(tokens)
    x = TransformerBlock(num_heads=2, key_dim=DIM, name="block_1")(x)
    x = TransformerBlock(
        num_heads=2,
        key_dim=DIM,
        feed_forward=keras.Sequential([keras.layers.Dense(DIM, activation="relu")]),
        name="block_2",
    )(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    model = keras.Model(tokens, outputs, name="tiny_transformer")
    model.compile(
        optimizer=keras.optimizers.Adam(WarmupCosine(peak=3e-3, warmup_steps=2, total_steps=50)),
        loss=SmoothedCrossentropy(num_classes=CLASSES),
        metrics=[ConfidentAccuracy(threshold=0.4)],
    )
    return model


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, size=(16 * STEPS, LENGTH)).astype("int32")
    y = (x[:, 0] % CLASSES).astype("int32")
    model = build_model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # STEPS training steps

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "transformer.keras")
        manifest = keras_safe.save(model, path, sample_input=x[:8])
        print(f"saved after {int(model.optimizer.iterations.numpy())} steps; the file needs:")
        for record in manifest.objects:
            print(f"  {record.key:<38} {record.kind:<9} module {record.module}")
        files = {name: os.path.join(tmp, f"{name}.npy") for name in ("x", "y", "out")}
        np.save(files["x"], x)
        np.save(files["y"], y)
        np.save(files["out"], model.predict(x, verbose=0))
        # Only the examples directory is on the path; nothing is imported by hand.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        subprocess.run(
            [sys.executable, "-c", RESUME, path, files["x"], files["y"], files["out"]],
            check=True, env=env,
        )


if __name__ == "__main__":
    main()
