"""Train with a custom loss and metric, save, and evaluate the reloaded model elsewhere.

Run: python examples/custom_loss_metric.py

The loss and metric (examples/focal.py) subclass keras_safe.Serializable,
so their arguments (gamma, alpha, threshold) are saved in the model's
training configuration. A fresh process loads the file with
allow_imports=("focal",), gets the same loss and metric back, and
evaluates to the same numbers. Exits 1 if anything differs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

import keras_safe

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from focal import BinaryFocalLoss, RecallAtThreshold  # noqa: E402

EVALUATE = """
import json, sys
import numpy as np
import keras_safe

model = keras_safe.load(sys.argv[1], allow_imports=("focal",))
data = np.load(sys.argv[2])
print(json.dumps({
    "loss": f"{type(model.loss).__name__}(gamma={model.loss.gamma}, alpha={model.loss.alpha})",
    "scores": model.evaluate(data["x"], data["y"], verbose=0, return_dict=True),
}))
"""


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.8).astype("float32")[:, None]  # imbalanced classes

    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer="adam",
        loss=BinaryFocalLoss(gamma=2.0, alpha=0.75),
        metrics=[RecallAtThreshold(threshold=0.6)],
    )
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)

    # What a test suite would check for each of them:
    keras_safe.testing.assert_roundtrip(BinaryFocalLoss(gamma=3.0))
    keras_safe.testing.assert_roundtrip(RecallAtThreshold(threshold=0.7))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "focal.keras")
        manifest = keras_safe.save(model, path)
        print("saved", [record.key for record in manifest.objects])
        np.savez(os.path.join(tmp, "data.npz"), x=x, y=y)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        child = subprocess.run(
            [sys.executable, "-c", EVALUATE, path, os.path.join(tmp, "data.npz")],
            check=True, env=env, capture_output=True, text=True,
        )
    result = json.loads(child.stdout.strip().splitlines()[-1])
    print("reloaded loss:", result["loss"])
    print("scores here:  ", expected)
    print("scores there: ", result["scores"])
    same = (
        result["loss"] == "BinaryFocalLoss(gamma=2.0, alpha=0.75)"
        and result["scores"] == expected
    )
    print(f"same loss, metric and scores after reloading: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
