"""Save a model with a custom attention layer, reload it in a fresh process.

Run: python examples/attention.py

The layer (examples/custom_attention.py) has no get_config/from_config; it
subclasses keras_safe.SerializableLayer and is registered with
@keras_safe.register. The model is saved with keras_safe.save; a fresh
Python process that imports the layer's module (nothing else) reloads it with
keras_safe.load, without custom_objects, and with plain
keras.models.load_model too, since the file is an ordinary .keras archive.
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

import keras_safe  # noqa: E402

RELOAD = """
import sys
import numpy as np
import keras
import keras_safe
import custom_attention  # registers CustomAttention; nothing else is needed

path, inputs, out = sys.argv[1:4]
x = np.load(inputs)
model = keras_safe.load(path)
np.save(out, model.predict(x, verbose=0))
plain = keras.models.load_model(path)  # the same file, read by Keras alone
assert np.array_equal(plain.predict(x, verbose=0), np.load(out))
print("reloaded in a fresh process:", type(model.get_layer("attention")).__name__)
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
        manifest = keras_safe.save(model, path, sample_input=x[:4])
        print(f"saved {os.path.basename(path)}: digest {manifest.digest}")
        print(f"  Keras {manifest.keras_version}, {manifest.model.params} parameters")
        for record in manifest.objects:
            print(f"  needs {record.key} ({record.kind}) from module {record.module}")
        np.save(os.path.join(tmp, "x.npy"), x)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        subprocess.run(
            [sys.executable, "-c", RELOAD, path, os.path.join(tmp, "x.npy"),
             os.path.join(tmp, "out.npy")],
            check=True, env=env,
        )
        reloaded = np.load(os.path.join(tmp, "out.npy"))

    same = np.array_equal(expected, reloaded)
    print(f"outputs match: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
