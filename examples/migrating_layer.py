"""A layer whose code changes twice, and a model saved with its first version.

Three versions of the module ``my_layers`` are deployed one after the other,
each run in its own fresh Python process, as code released months apart:

1. ``Gate(num_units)`` saves a model.
2. ``num_units`` is renamed ``units``: ``config_version = 2`` and an
   ``upgrade_config`` that renames it in old configs.
3. The class is renamed ``GatedUnit`` (registered with the old key as an
   alias) and takes a new ``temperature``: ``config_version = 3``, old configs
   get the value that keeps the old behaviour.

Versions 2 and 3 load the file saved by version 1 with identical outputs;
version 3 then re-saves it for the current code with ``keras_safe.upgrade``.

Run: ``python examples/migrating_layer.py``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

VERSION_1 = """
import keras
import keras_safe


@keras_safe.register(package="my_layers")
class Gate(keras_safe.SerializableLayer):
    def __init__(self, num_units, **kwargs):
        super().__init__(**kwargs)
        self.num_units = num_units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.num_units))

    def call(self, x):
        return keras.ops.sigmoid(x @ self.kernel)
"""

VERSION_2 = """
import keras
import keras_safe


@keras_safe.register(package="my_layers")
class Gate(keras_safe.SerializableLayer):
    config_version = 2

    @classmethod
    def upgrade_config(cls, config, from_version):
        if from_version < 2:
            config["units"] = config.pop("num_units")
        return config

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, x):
        return keras.ops.sigmoid(x @ self.kernel)
"""

VERSION_3 = """
import keras
import keras_safe


@keras_safe.register(package="my_layers", aliases=("my_layers>Gate",))
class GatedUnit(keras_safe.SerializableLayer):
    config_version = 3

    @classmethod
    def upgrade_config(cls, config, from_version):
        if from_version < 2:
            config["units"] = config.pop("num_units")
        if from_version < 3:
            config["temperature"] = 1.0
        return config

    def __init__(self, units, temperature, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.temperature = temperature

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))

    def call(self, x):
        return keras.ops.sigmoid(x @ self.kernel / self.temperature)
"""

SAVE = """
import sys
from pathlib import Path

import keras
import numpy as np
import keras_safe
from my_layers import Gate

work = Path(sys.argv[1])
inputs = keras.Input((8,))
x = Gate(4)(inputs)
x = Gate(4)(x)  # two of them: Keras numbers their weight paths by class name
model = keras.Model(inputs, keras.layers.Dense(1)(x))
sample = np.random.default_rng(0).random((3, 8)).astype("float32")
keras_safe.save(model, work / "model.keras", sample_input=sample)
np.save(work / "sample.npy", sample)
np.save(work / "expected.npy", model.predict(sample, verbose=0))
print("version 1: saved model.keras")
"""

LOAD = """
import sys
import warnings
from pathlib import Path

import numpy as np
import keras_safe

work, version = Path(sys.argv[1]), sys.argv[2]
sample, expected = np.load(work / "sample.npy"), np.load(work / "expected.npy")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", keras_safe.CompatibilityWarning)
    model = keras_safe.load(work / "model.keras", allow_imports=("my_layers",))
np.testing.assert_array_equal(model.predict(sample, verbose=0), expected)
print(f"version {version}: model.keras loads, outputs identical")
for warning in caught:
    print("    " + str(warning.message).replace("\\n", "\\n    "))  # what changed since saving
if version == "3":
    aliases = keras_safe.inspect(work / "model.keras").aliases
    print(f"version 3: saved keys resolved through aliases: {aliases}")
    upgrade_to = work / "model_v3.keras"
    manifest = keras_safe.upgrade(work / "model.keras", upgrade_to, on_mismatch="ignore")
    upgraded = keras_safe.load(upgrade_to, expected_digest=manifest.digest)
    np.testing.assert_array_equal(upgraded.predict(sample, verbose=0), expected)
    records = [(record.key, record.config_version) for record in manifest.objects]
    print(f"version 3: upgraded to model_v3.keras with {records}")
"""


def run(script: str, module_source: str, work: Path, *args: str) -> None:
    """Run ``script`` in a fresh interpreter that sees ``module_source`` as ``my_layers``."""
    code_dir = work / f"code_{len(list(work.glob('code_*')))}"
    code_dir.mkdir()
    (code_dir / "my_layers.py").write_text(module_source)
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    paths = [str(code_dir), str(repo), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(work), *args], env=env, check=True
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="keras-safe-migrating-") as tmp:
        work = Path(tmp)
        try:
            run(SAVE, VERSION_1, work)
            run(LOAD, VERSION_2, work, "2")
            run(LOAD, VERSION_3, work, "3")
        except subprocess.CalledProcessError as exc:
            print(f"failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
