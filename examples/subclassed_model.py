"""Train a subclassed keras_safe.SerializableModel, save it, reload it in a fresh process.

Run: python examples/subclassed_model.py

The model (examples/residual_mlp.py) is a subclassed keras.Model with
nested custom layers and neither get_config nor from_config. The reloading
process imports nothing by hand: keras_safe.load(..., allow_imports=
("residual_mlp",)) lets keras_safe import the module the file names, and
nothing else. Exits 1 if anything differs.
"""

from __future__ import annotations

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

from residual_mlp import ResidualMLP  # noqa: E402

RELOAD = """
import sys
import numpy as np
import keras_safe

model = keras_safe.load(sys.argv[1], allow_imports=("residual_mlp",))
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
print("reloaded:", type(model).__name__, [type(b).__name__ for b in model.blocks])
"""


def main() -> int:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("int32")

    model = ResidualMLP(classes=2, width=32, depth=2, name="residual_mlp")
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)

    # The one-liner for a test suite: config, archive, weights and outputs.
    keras_safe.testing.assert_roundtrip(model, x[:8])

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "residual_mlp.keras")
        manifest = keras_safe.save(model, path, sample_input=x[:8])
        print("saved", [record.key for record in manifest.objects])
        np.save(os.path.join(tmp, "x.npy"), x)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        subprocess.run(
            [sys.executable, "-c", RELOAD, path, os.path.join(tmp, "x.npy"),
             os.path.join(tmp, "out.npy")],
            check=True, env=env,
        )
        reloaded = np.load(os.path.join(tmp, "out.npy"))

    same = np.array_equal(model.predict(x, verbose=0), reloaded)
    print(f"outputs of the reloaded model match: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
