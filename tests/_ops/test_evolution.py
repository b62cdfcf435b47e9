"""Config evolution across real code changes: a model saved with version 1 of a
module, loaded in fresh processes with edited versions of the same module."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_python, write_module

pytestmark = pytest.mark.slow

V1 = """
import keras
import keras_safe


@keras_safe.register(package="my_project")
class Gate(keras_safe.SerializableLayer):
    def __init__(self, num_units, **kwargs):
        super().__init__(**kwargs)
        self.num_units = num_units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.num_units), name="kernel")

    def call(self, x):
        return keras.ops.tanh(x @ self.kernel)


@keras_safe.register(package="my_project")
class Stack(keras_safe.SerializableModel):
    def __init__(self, width=4, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.blocks = [Gate(width), keras.layers.Dense(width), Gate(width)]

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def build_model():
    inputs = keras.Input((4,))
    x = Gate(4)(inputs)
    x = keras.layers.Dense(4)(x)
    x = Gate(4)(x)
    model = keras.Model(inputs, Stack()(x))
    # A loss object: Keras 3.15 cannot restore loss="mse" from its own legacy .h5 files.
    model.compile(optimizer="adam", loss=keras.losses.MeanSquaredError())
    return model
"""

# Version 2: `num_units` renamed `units`, with the migration.
V2 = V1.replace("num_units", "units").replace(
    "    def __init__(self, units, **kwargs):",
    """    config_version = 2

    @classmethod
    def upgrade_config(cls, config, from_version):
        if from_version < 2:
            config["units"] = config.pop("num_units")
        return config

    def __init__(self, units, **kwargs):""",
)

# The same rename, without bumping config_version or adding the migration.
V2_NO_MIGRATION = V1.replace("num_units", "units")

# Version 3: class renamed (old key kept as an alias), new argument `scale`.
V3 = (
    V1.replace("num_units", "units")
    .replace(
        '@keras_safe.register(package="my_project")\nclass Gate(',
        '@keras_safe.register(package="my_project", aliases=("my_project>Gate",))\n'
        "class GatedUnit(",
    )
    .replace(
        "    def __init__(self, units, **kwargs):\n        super().__init__(**kwargs)\n",
        """    config_version = 3

    @classmethod
    def upgrade_config(cls, config, from_version):
        if from_version < 2:
            config["units"] = config.pop("num_units")
        if from_version < 3:
            config.setdefault("scale", 1.0)
        return config

    def __init__(self, units, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
""",
    )
    .replace("keras.ops.tanh(x @ self.kernel)", "keras.ops.tanh(x @ self.kernel) * self.scale")
    .replace("Gate(width)", "GatedUnit(width, scale=1.0)")
    .replace("Gate(4)", "GatedUnit(4, scale=1.0)")
)

SAVE_V1 = """
import sys
from pathlib import Path

import keras
import numpy as np
import keras_safe
from my_project.layers import build_model

out = Path(sys.argv[1])
model = build_model()
x = np.random.default_rng(0).random((8, 4)).astype("float32")
model.fit(x, x, epochs=1, verbose=0)
np.save(out / "x.npy", x)
np.save(out / "y.npy", keras.ops.convert_to_numpy(model(x)))
keras_safe.save(model, out / "v1.keras")
model.save(out / "plain.keras")  # plain Keras: no manifest
model.save(out / "legacy.h5")  # Keras 3's legacy HDF5 format
"""

LOAD_ALL = """
import sys
import warnings
from pathlib import Path

import numpy as np
import keras
import keras_safe

out = Path(sys.argv[1])
x, y = np.load(out / "x.npy"), np.load(out / "y.npy")
for name in ("v1.keras", "plain.keras", "legacy.h5"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", keras_safe.CompatibilityWarning)
        model = keras_safe.load(out / name, allow_imports=("my_project",))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), y, err_msg=name)
    for warning in caught:
        if issubclass(warning.category, keras_safe.CompatibilityWarning):
            print(f"WARNING {name}: {warning.message}")
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model saved with version 1 (keras_safe, plain .keras and legacy .h5) and
    one directory per later version of the module (all named my_project.layers)."""
    root = tmp_path_factory.mktemp("evolution")
    for version, source in [
        ("v1", V1),
        ("v2", V2),
        ("v2_no_migration", V2_NO_MIGRATION),
        ("v3", V3),
    ]:
        (root / version).mkdir()
        write_module(root / version, "my_project.layers", source)
    run_python(SAVE_V1, str(root), path=[root / "v1"])
    return root


def test_v2_renamed_argument_loads_v1_files_with_identical_outputs(saved: Path) -> None:
    proc = run_python(
        LOAD_ALL
        + """
import my_project.layers
plain = keras.models.load_model(out / "v1.keras")  # plain Keras runs the migration too
np.testing.assert_array_equal(keras.ops.convert_to_numpy(plain(x)), y)
""",
        str(saved),
        path=[saved / "v2"],
    )
    assert "my_project>Gate: config v1 when saved, v2 now (translated by Gate." in proc.stdout


def test_v3_renamed_class_loads_v1_files_and_upgrades_them(saved: Path) -> None:
    proc = run_python(
        LOAD_ALL
        + """
assert keras_safe.inspect(out / "v1.keras").aliases == {"my_project>Gate": "my_project>GatedUnit"}
assert keras_safe.inspect(out / "legacy.h5").aliases == {"my_project>Gate": "my_project>GatedUnit"}
try:  # plain Keras resolves the alias but looks for the weights under the new name
    keras.models.load_model(out / "v1.keras")
except ValueError as exc:
    print("PLAIN KERAS:", str(exc).splitlines()[0])
for name in ("v1.keras", "plain.keras", "legacy.h5"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_safe.CompatibilityWarning)
        manifest = keras_safe.upgrade(out / name, out / f"up_{name}.keras")
    assert [(o.key, o.config_version) for o in manifest.objects] == [
        ("my_project>GatedUnit", 3), ("my_project>Stack", 1)
    ], manifest.objects
    with warnings.catch_warnings():
        warnings.simplefilter("error", keras_safe.CompatibilityWarning)  # nothing left to report
        model = keras_safe.load(out / f"up_{name}.keras", expected_digest=manifest.digest)
        report = keras_safe.verify(out / f"up_{name}.keras")
    assert report.ok and not report.warnings, report
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), y)
    print(f"UPGRADED {name} {manifest.digest}")
""",
        str(saved),
        path=[saved / "v3"],
    )
    out = proc.stdout
    assert "my_project>Gate: saved under this key, now an alias of my_project>GatedUnit" in out
    assert "my_project>Gate: config v1 when saved, v3 now (translated by GatedUnit." in out
    assert "PLAIN KERAS: A total of" in out  # documented: plain Keras needs the upgraded file
    digests = dict(line.split()[1:] for line in out.splitlines() if line.startswith("UPGRADED"))
    assert set(digests) == {"v1.keras", "plain.keras", "legacy.h5"}

    # Elsewhere, the upgraded files load with their digests pinned, in plain Keras too.
    run_python(
        """
import sys
from pathlib import Path

import numpy as np
import keras
import keras_safe
import my_project.layers

out = Path(sys.argv[1])
x, y = np.load(out / "x.npy"), np.load(out / "y.npy")
for name, digest in zip(sys.argv[2::2], sys.argv[3::2]):
    path = out / f"up_{name}.keras"
    loaded = keras_safe.load(path, expected_digest=digest)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), y)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(keras.models.load_model(path)(x)), y)
""",
        str(saved),
        *[part for item in digests.items() for part in item],
        path=[saved / "v3"],
    )


def test_renamed_argument_without_migration_is_a_precise_error(saved: Path) -> None:
    proc = run_python(
        """
import sys
from pathlib import Path

import keras
import keras_safe
import my_project.layers

out = Path(sys.argv[1])
try:
    keras_safe.load(out / "v1.keras")
except keras_safe.CompatibilityError as exc:
    print("KERAS_SAFE:", exc)
try:
    keras.models.load_model(out / "v1.keras")
except Exception as exc:
    print("PLAIN KERAS:", type(exc).__name__, exc)
""",
        str(saved),
        path=[saved / "v2_no_migration"],
    )
    ours = proc.stdout.split("PLAIN KERAS:")[0]
    assert "KERAS_SAFE:" in ours
    for text in [
        "The saved config of Gate (saved at config v1, this code is at v1) does not fit "
        "Gate.__init__(units, **kwargs)",
        "saved argument `num_units` is not accepted by Gate.__init__ any more",
        "required argument `units` of Gate.__init__ is not in the saved config",
        "1. bump Gate.config_version to 2",
        'config["units"] = config.pop("num_units")',
        "aliases=('my_project>Gate',)",
    ]:
        assert text in ours, text
    assert "saved argument `num_units` is not accepted" in proc.stdout.split("PLAIN KERAS:")[1]


def test_config_newer_than_the_code_is_refused(saved: Path) -> None:
    run_python(
        """
import sys
from pathlib import Path

import numpy as np
import keras_safe
from my_project.layers import build_model

model = build_model()
model.fit(np.ones((2, 4)), np.ones((2, 4)), verbose=0)  # optimizer state saved too
keras_safe.save(model, Path(sys.argv[1]) / "v2.keras")
""",
        str(saved),
        path=[saved / "v2"],
    )
    proc = run_python(
        """
import sys
from pathlib import Path

import keras
import keras_safe
import my_project.layers

out = Path(sys.argv[1])
try:
    keras_safe.load(out / "v2.keras")
except keras_safe.CompatibilityError as exc:
    print("KERAS_SAFE:", exc)
try:
    keras.models.load_model(out / "v2.keras")
except Exception as exc:
    print("PLAIN KERAS:", type(exc).__name__, exc)
""",
        str(saved),
        path=[saved / "v1"],
    )
    expected = "saved with Gate config v2, this code understands up to v1: upgrade my_project"
    ours, plain = proc.stdout.split("PLAIN KERAS:")
    assert "KERAS_SAFE:" in ours and expected in ours
    assert "my_project>Gate" in ours
    assert expected in plain


def test_module_moved_loads_once_the_new_module_is_imported(saved: Path) -> None:
    moved = saved / "moved"
    moved.mkdir()
    write_module(moved, "my_project.blocks", V1)  # my_project.layers is gone
    proc = run_python(
        """
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import keras_safe

out = Path(sys.argv[1])
x, y = np.load(out / "x.npy"), np.load(out / "y.npy")
try:
    keras_safe.load(out / "v1.keras", allow_imports=("my_project",))
except keras_safe.MissingObjectsError as exc:
    print("MISSING:", exc)
import my_project.blocks

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", keras_safe.CompatibilityWarning)
    model = keras_safe.load(out / "v1.keras")
np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), y)
print("WARNING:", caught[0].message)
""",
        str(saved),
        path=[moved],
    )
    assert "my_project>Gate (class, module my_project.layers" in proc.stdout
    assert "if a class moved to another module, import that one" in proc.stdout
    assert "my_project>Gate: was my_project.layers.Gate, now my_project.blocks.Gate" in proc.stdout
