"""Save a model with a custom attention layer, reload it in a fresh process.

Run: python examples/attention.py

The layer (examples/custom_attention.py) has no get_config/from_config; it
subclasses keras_safe.SerializableLayer and is registered with
@keras_safe.register. The reloading process imports that module and calls
plain keras.models.load_model, with no custom_objects.
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

from custom_attention import build_model  # noqa: E402

RELOAD = """
import sys
import numpy as np
import keras
import custom_attention  # registers CustomAttention; nothing else is needed

model = keras.models.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(x, verbose=0))
print("reloaded:", type(model.get_layer("attention")).__name__)
"""


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12, 8)).astype("float32")
    y = (x.mean(axis=(1, 2)) > 0).astype("float32")

    model = build_model()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # one training step
    expected = model.predict(x, verbose=0)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "attention.keras")
        model.save(path)
        np.save(os.path.join(tmp, "x.npy"), x)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        subprocess.run(
            [sys.executable, "-c", RELOAD, path, os.path.join(tmp, "x.npy"),
             os.path.join(tmp, "out.npy")],
            check=True, env=env,
        )
        reloaded = np.load(os.path.join(tmp, "out.npy"))

    same = np.array_equal(expected, reloaded)
    print(f"saved {path.rsplit(os.sep, 1)[-1]}, reloaded in a fresh process; outputs match: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
