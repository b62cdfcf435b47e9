"""The private Keras API wrapped in keras_safe/_keras works with the installed Keras.

A Keras upgrade that moves or changes one of these breaks a test here first.
Also pinned: the Keras behaviours keras_safe works around, so that a Keras
fix shows up as a failure saying which workaround can go.
"""

from __future__ import annotations

import ast
import enum
import inspect
import threading
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import run_python

import keras_safe
from keras_safe import _keras


@pytest.mark.parametrize(
    ("symbol", "name"),
    [
        (keras.layers.Dense, "keras.layers.Dense"),
        (keras.Sequential, "keras.Sequential"),
        (keras.activations.relu, "keras.activations.relu"),
        (keras.initializers.GlorotUniform, "keras.initializers.GlorotUniform"),
        (
            keras.optimizers.schedules.ExponentialDecay,
            "keras.optimizers.schedules.ExponentialDecay",
        ),
        (keras.DTypePolicy, "keras.DTypePolicy"),
    ],
)
def test_public_keras_name_and_symbol(symbol: Any, name: str) -> None:
    assert _keras.public_keras_name(symbol) == name
    assert _keras.keras_symbol(name) is symbol


def test_public_keras_name_of_other_objects() -> None:
    class Custom(keras.layers.Layer):
        pass

    assert _keras.public_keras_name(Custom) is None
    assert _keras.public_keras_name(len) is None
    assert _keras.public_keras_name([1, 2]) is None  # unhashable
    assert _keras.public_keras_name({"a": 1}) is None
    assert _keras.keras_symbol("keras.layers.NoSuchLayer") is None
    assert _keras.keras_symbol("os.system") is None


def test_every_canonical_name_maps_back() -> None:
    for name in ("keras.losses.MeanSquaredError", "keras.metrics.AUC", "keras.optimizers.Adam"):
        symbol = _keras.keras_symbol(name)
        assert symbol is not None
        assert _keras.public_keras_name(symbol) == name


def test_set_and_forget_registered_name() -> None:
    class Mode(enum.Enum):  # no get_config: Keras' own decorator refuses it
        A = 1

    key = "test_keras_compat>Mode"
    assert keras.saving.get_registered_name(Mode) == "Mode"
    _keras.set_registered_name(Mode, key)
    try:
        assert keras.saving.get_registered_name(Mode) == key
        _keras.forget_registered_name(Mode, "another>Key")  # not its key: kept
        assert keras.saving.get_registered_name(Mode) == key
    finally:
        _keras.forget_registered_name(Mode, key)
    assert keras.saving.get_registered_name(Mode) == "Mode"
    _keras.forget_registered_name(Mode, key)  # forgetting twice is harmless


def test_forget_registered_name_undoes_register_keras_serializable() -> None:
    @keras.saving.register_keras_serializable(package="test_keras_compat")
    def fn(x: Any) -> Any:
        return x

    key = "test_keras_compat>fn"
    try:
        assert keras.saving.get_registered_name(fn) == key
        _keras.forget_registered_name(fn, key)
        assert keras.saving.get_registered_name(fn) == "fn"
    finally:
        keras.saving.get_custom_objects().pop(key)


class _Twin(keras.layers.Layer):
    """Sublayers made in __init__ and no build(): what build_by_running is for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, x: Any) -> Any:
        return self.dense(x)


class _TwoInputs(keras.layers.Layer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)

    def call(self, a: Any, b: Any) -> Any:
        return self.dense(a) + self.dense(b)


def test_has_unbuilt_sublayers() -> None:
    layer = _Twin()
    assert _keras.has_unbuilt_sublayers(layer)
    layer(np.ones((1, 3), dtype="float32"))
    assert not _keras.has_unbuilt_sublayers(layer)
    assert not _keras.has_unbuilt_sublayers(keras.layers.Dense(2))  # no sublayers at all


def test_build_by_running_single_input() -> None:
    layer = _Twin()
    assert _keras.build_by_running(layer, {"input_shape": [None, 3]})
    assert layer.dense.built and layer.dense.kernel.shape == (3, 2)


def test_build_by_running_keyword_inputs() -> None:
    layer = _TwoInputs()
    assert _keras.build_by_running(layer, {"shapes_dict": {"a_shape": (4, 5), "b_shape": (4, 5)}})
    assert layer.dense.kernel.shape == (5, 2)


def test_build_by_running_reports_failure() -> None:
    assert not _keras.build_by_running(_Twin(), {})
    # Mismatched inputs: call fails on the symbolic tensors.
    assert not _keras.build_by_running(
        _TwoInputs(), {"shapes_dict": {"a_shape": (4, 5), "b_shape": (4, 7)}}
    )


def test_keras_keeps_the_shapes_build_config_records() -> None:
    # SerializableLayer.build_from_config hands these to build_by_running.
    x = np.ones((1, 3), dtype="float32")
    single = _Twin()
    single(x)
    assert single.get_build_config() == {"input_shape": (1, 3)}

    class KeywordBuild(_TwoInputs):
        def build(self, a_shape: Any, b_shape: Any) -> None:
            pass

    keyword = KeywordBuild()
    keyword(x, x)
    assert keyword.get_build_config() == {"shapes_dict": {"a_shape": (1, 3), "b_shape": (1, 3)}}
    # Without build(), Keras records the first input's shape only
    # (keras/src/layers/layer.py: Layer._maybe_build), so a multi-input layer
    # cannot be built by running call on load; a Functional model builds it
    # by running its graph instead.
    double = _TwoInputs()
    double(x, x)
    assert double.get_build_config() == {"input_shape": (1, 3)}


# -- Keras behaviours keras_safe relies on or works around ----------------------------


def test_operation_new_receives_the_constructor_arguments() -> None:
    # Serializable.__new__ passes the arguments on when the parent __new__
    # takes them (keras/src/ops/operation.py: Operation.__new__).
    parameters = inspect.signature(keras.layers.Layer.__new__).parameters
    kinds = {p.kind for p in parameters.values()}
    assert inspect.Parameter.VAR_POSITIONAL in kinds and inspect.Parameter.VAR_KEYWORD in kinds


def test_get_registered_name_falls_back_to_the_python_name() -> None:
    # registered_key() tells registered from unregistered objects by the '>'.
    class Nobody(keras.layers.Layer):
        pass

    assert keras.saving.get_registered_name(Nobody) == "Nobody"


def test_sequential_from_config_still_drops_trainable() -> None:
    # keras/src/models/sequential.py: Sequential.from_config builds
    # cls(name=name) and ignores "trainable"; keras_safe's decoder restores it
    # (keras_safe/_codec_objects.py: _decode_keras_object). If this fails,
    # Keras fixed it and the workaround can go.
    model = keras.Sequential([keras.layers.Dense(2)])
    model.trainable = False
    assert keras.Sequential.from_config(model.get_config()).trainable is True


def test_deserialize_wraps_type_errors_but_not_value_errors() -> None:
    # keras/src/saving/serialization_lib.py: deserialize_keras_object wraps a
    # TypeError from from_config in a vaguer TypeError; CompatibilityError is
    # a ValueError so that its message reaches the user unchanged.
    class Raises(keras.layers.Layer):
        error: type[Exception] = ValueError

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            raise cls.error("precise message")

    config = {"module": None, "class_name": "Raises", "config": {}, "registered_name": "Raises"}
    with keras.saving.custom_object_scope({"Raises": Raises}):
        with pytest.raises(ValueError, match=r"^precise message$"):
            keras.saving.deserialize_keras_object(config)
        Raises.error = TypeError
        with pytest.raises(TypeError, match="could not be deserialized properly"):
            keras.saving.deserialize_keras_object(config)


def test_is_functional_init() -> None:
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(1)(inputs)
    assert _keras.is_functional_init((inputs, outputs), {})
    assert _keras.is_functional_init((), {"inputs": inputs, "outputs": outputs})
    assert _keras.is_functional_init((inputs,), {"outputs": outputs})
    assert not _keras.is_functional_init((), {"name": "model"})


def test_add_functional_base_changes_only_the_given_class() -> None:
    class Shared(keras.Model):
        pass

    class Graph(Shared):
        def __init__(self) -> None:
            inputs = keras.Input((2,))
            _keras.add_functional_base(type(self))
            super().__init__(inputs, keras.layers.Dense(1)(inputs))

    model = Graph()
    functional = keras.src.models.functional.Functional
    assert isinstance(model, functional)
    assert Shared.__bases__ == (keras.Model,)
    _keras.add_functional_base(Graph)  # already Functional: unchanged
    assert Graph.__bases__ == (Shared, functional)


def test_keras_still_rewrites_shared_bases_for_functional_subclasses() -> None:
    # keras/src/models/model.py: Model.__init__ -> inject_functional_model_class
    # rewrites the bases of every class up to keras.Model. SerializableModel
    # adds Functional to the subclass itself first (SerializableModel.__init__);
    # if this fails, Keras stopped doing it and that workaround can go.
    class Shared(keras.Model):
        pass

    class Graph(Shared):
        def __init__(self) -> None:
            inputs = keras.Input((2,))
            super().__init__(inputs, keras.layers.Dense(1)(inputs))

    Graph()
    assert Shared.__bases__ == (keras.src.models.functional.Functional,)


def test_sharing_objects_tells_when_keras_saves_or_loads() -> None:
    from keras.src.saving.serialization_lib import ObjectSharingScope

    assert not _keras.sharing_objects()
    with ObjectSharingScope():
        assert _keras.sharing_objects()
    assert not _keras.sharing_objects()


def test_keras_alone_loses_a_layer_shared_through_configs(tmp_path: Any) -> None:
    # keras/src/saving/serialization_lib.py: a repeat is marked on the first
    # config after serialize_dict has copied it, so a layer handed to two
    # layers' configs loads as two layers (and its weights fail to load).
    # keras_safe marks each occurrence (_codec_objects._encode_keras_object);
    # if this fails, Keras fixed it and that workaround can go.
    @keras.saving.register_keras_serializable(package="test_keras_compat")
    class Use(keras.layers.Layer):
        def __init__(self, inner: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, x: Any) -> Any:
            return self.inner(x)

        def get_config(self) -> dict[str, Any]:
            inner = keras.saving.serialize_keras_object(self.inner)
            return {**super().get_config(), "inner": inner}

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> Any:
            config["inner"] = keras.saving.deserialize_keras_object(config["inner"])
            return cls(**config)

    try:
        shared = keras.layers.Dense(2)
        inputs = keras.Input((2,))
        model = keras.Model(inputs, Use(shared)(Use(shared)(inputs)))
        model.save(tmp_path / "tied.keras")
        with pytest.raises(ValueError, match="expected 2 variables, but received 0"):
            keras.models.load_model(tmp_path / "tied.keras")
    finally:
        keras.saving.get_custom_objects().pop("test_keras_compat>Use")


# Attributes of zipfile objects that zipfile does not document.
_ZIPFILE_UNDOCUMENTED = frozenset({"fp", "start_dir"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _docstrings(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, kinds)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _private_api_uses(source: str) -> list[str]:
    """Where ``source`` uses Keras' or CPython's private API, one line each."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Import):
            found += [
                f"{line}: import {a.name}" for a in node.names if a.name.startswith("keras.src")
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith("keras.src"):
                found.append(f"{line}: from {module} import ...")
            elif node.level == 0 and not module.startswith("keras_safe"):
                found += [
                    f"{line}: from {module} import {a.name}"
                    for a in node.names
                    if _is_private(a.name)
                ]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # Module names under keras.src, as in `module.startswith("keras.src.ops.")`.
            if "keras.src" in node.value and id(node) not in docstrings:
                found.append(f"{line}: {node.value!r}")
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            # Another library's private attributes (keras_safe's own markers on
            # user classes and functions are named _keras_safe_*).
            foreign_private = (
                _is_private(node.attr)
                and owner not in ("self", "cls")
                and not node.attr.startswith("_keras_safe")
            )
            if foreign_private or node.attr in _ZIPFILE_UNDOCUMENTED:
                found.append(f"{line}: {ast.unparse(node)}")
    return found


def test_private_keras_imports_live_in_the_keras_package_only() -> None:
    """Keras' private API and CPython's are used in keras_safe/_keras only.

    Outside it: no import from keras.src, no keras.src module named in code, no
    private attribute of another library's object (zipfile's write handle
    fields ...), no private name imported from another library, and none of
    zipfile's undocumented attributes (ZipFile.fp, start_dir).
    """
    package = Path(keras_safe.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "_keras":
            continue
        offenders += [
            f"{path.relative_to(package)}:{use}" for use in _private_api_uses(path.read_text())
        ]
    assert offenders == []


@pytest.mark.parametrize(
    "code",
    [
        "from keras.src.saving import saving_lib",
        "import keras.src.ops",
        'ok = module.startswith("keras.src.ops.")',
        'name = f"keras.src.{part}"',
        "handle._crc = crc",
        "end = zipfile._EndRecData(fp)",
        "from zipfile import _EndRecData",
        "archive.fp = None",
        "offset = reader._zip.start_dir",
        "info._end_offset",
    ],
)
def test_the_private_api_check_sees(code: str) -> None:
    assert _private_api_uses(code) != []


def test_the_private_api_check_leaves_alone() -> None:
    code = '''
"""Docstrings may say keras.src."""
from keras_safe.errors import _UsageError
from keras_safe import _keras


class Thing:
    def method(self):
        """So may these: keras.src.saving."""
        self._private = cls._other = _keras.keras_symbol("keras.layers.Dense")
        klass._keras_safe_plan = None
'''
    assert _private_api_uses(code) == []


# -- the variable budget's hook, with threads ------------------------------------------

RACE_CHILD = """
import threading, time, types
import numpy as np
import keras
from keras.src.backend.common import variables
from keras_safe._keras import models


DELAYS = {"early": 0.2, "late": 1.0}


class Slow(types.ModuleType):
    # Looking Variable up takes a while: both threads are inside the install
    # at once, and the late one looks only after the early one has finished.
    def __getattribute__(self, name):
        if name == "Variable":
            time.sleep(DELAYS.get(threading.current_thread().name, 0))
        return super().__getattribute__(name)


variables.__class__ = Slow
threads = [threading.Thread(target=models._install_budget_hook, name=n) for n in DELAYS]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
variables.__class__ = types.ModuleType
try:
    with models.variable_budget(40) as exceeded:  # one float32 variable of 10 values
        keras.Variable(np.zeros(10, "float32"))
except models.VariableBudgetExceeded as exc:  # charged twice: wrapped twice
    exceeded = [str(exc)]
print(f"exceeded: {exceeded}" if exceeded else "charged once")
"""


def test_two_threads_installing_the_budget_hook_wrap_keras_once() -> None:
    proc = run_python(RACE_CHILD)
    assert proc.stdout.strip().splitlines()[-1] == "charged once", proc.stdout


def test_two_threads_load_a_saved_model_at_once(tmp_path: Path) -> None:
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden), name="twin")
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    model.fit(x, np.ones((16, 2), "float32"), batch_size=8, verbose=0)
    path = tmp_path / "twin.keras"
    keras_safe.save(model, path)
    expected = keras.ops.convert_to_numpy(model(x, training=False))

    start = threading.Barrier(2)
    loaded: dict[int, Any] = {}
    failures: list[BaseException] = []

    def load(index: int) -> None:
        try:
            start.wait(timeout=60)
            loaded[index] = keras_safe.load(path)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    assert sorted(loaded) == [0, 1] and loaded[0] is not loaded[1]
    for twin in loaded.values():
        for saved, rebuilt in zip(model.weights, twin.weights, strict=True):
            np.testing.assert_array_equal(np.asarray(rebuilt), np.asarray(saved))
        assert int(twin.optimizer.iterations) == int(model.optimizer.iterations)
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(twin(x, training=False)), expected)


# -- shims for older Keras releases (keras_safe/_keras/compat.py) ----------------------
#
# Each test pins which Keras releases provide the private API a shim stands
# in for, and checks that the shim gives what Keras 3.15 gives.

from keras.src.saving import saving_lib  # noqa: E402

from keras_safe._keras import compat  # noqa: E402

KERAS = compat.keras_version()


def test_keras_version_parses_the_installed_version() -> None:
    assert ".".join(map(str, KERAS)) == keras.version().split("rc")[0].split(".dev")[0]
    assert compat.MIN_KERAS <= KERAS
    compat.check_keras_version()  # supported: no error


@pytest.mark.parametrize(
    "names",
    [
        ["dense", "dense", "conv", "dense"],
        ["container", "dense", "container", "container"],
        ["dense_1", "dense", "dense"],  # a name that looks like a numbered one
    ],
)
def test_get_unique_name_shim(names: list[str]) -> None:
    # saving_lib._get_unique_name appeared in Keras 3.15; older releases inline
    # the same numbering in _save_container_state/_load_container_state.
    assert hasattr(saving_lib, "_get_unique_name") == (KERAS >= (3, 15, 0))
    if KERAS >= (3, 15, 0):
        assert compat.get_unique_name is saving_lib._get_unique_name
    used_shim: dict[str, int] = {}
    got = [compat._get_unique_name_fallback(n, used_shim) for n in names]
    used_active: dict[str, int] = {}
    assert [compat.get_unique_name(n, used_active) for n in names] == got
    assert used_active == used_shim
    expected = {
        "dense": ["dense", "dense_1", "conv", "dense_2"],
        "container": ["container", "dense", "container_1", "container_2"],
        "dense_1": ["dense_1", "dense", "dense_1"],  # Keras' own quirk, kept
    }[names[0]]
    assert got == expected


def _h5_with_traps(path: Path) -> Any:
    import h5py

    with h5py.File(path, "w") as f:
        group = f.create_group("vars")
        group["0"] = np.arange(3, dtype="float32")
        group.create_group("sub")["1"] = np.ones(2, dtype="float32")
        group["soft"] = h5py.SoftLink("/vars/0")
        group["ext"] = h5py.ExternalLink("other.h5", "/x")
        group.create_group("grp")
        group.create_dataset("outside", shape=(4,), dtype="float32", external=[("raw.bin", 0, 16)])
    return h5py.File(path, "r")


def test_safe_get_h5_dataset_shim(tmp_path: Path) -> None:
    # saving_lib.safe_get_h5_dataset appeared in Keras 3.14 (3.12/3.13 had the
    # checks as H5IOStore methods); the fallback makes Keras 3.15's checks.
    assert hasattr(saving_lib, "safe_get_h5_dataset") == (KERAS >= (3, 14, 0))
    if KERAS >= (3, 14, 0):
        assert compat.safe_get_h5_dataset is saving_lib.safe_get_h5_dataset
    else:
        assert compat.safe_get_h5_dataset is compat._safe_get_h5_dataset_fallback
    with _h5_with_traps(tmp_path / "traps.h5") as f:
        group = f["vars"]
        for fn in {compat.safe_get_h5_dataset, compat._safe_get_h5_dataset_fallback}:
            assert fn(group, "0")[()].tolist() == [0.0, 1.0, 2.0]
            with pytest.raises(KeyError):
                fn(group, "missing")
            with pytest.raises(KeyError):
                fn({}, "0")  # Keras' store starts with an empty dict
            with pytest.raises(ValueError, match="SoftLink"):
                fn(group, "soft")
            with pytest.raises(ValueError, match="ExternalLink"):
                fn(group, "ext")
            with pytest.raises(ValueError, match="expected Dataset"):
                fn(group, "grp")
            with pytest.raises(ValueError, match="external Dataset"):
                fn(group, "outside")
        # Keras 3.15 resolves "group/name" too, and so does the fallback.
        assert compat._safe_get_h5_dataset_fallback(group, "sub/1")[()].tolist() == [1.0, 1.0]
        with pytest.raises(ValueError, match="SoftLink"):
            compat._safe_get_h5_dataset_fallback(f, "vars/soft")


def test_safe_get_h5_dataset_shim_refuses_a_shape_bomb(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "bomb.h5", "w") as f:
        f.create_dataset("big", shape=(1 << 31,), dtype="float32", chunks=(1 << 16,))
    with h5py.File(tmp_path / "bomb.h5", "r") as f:
        with pytest.raises(ValueError, match="bomb"):
            compat._safe_get_h5_dataset_fallback(f, "big")
        if KERAS >= (3, 15, 0):
            with pytest.raises(ValueError, match="bomb"):
                saving_lib.safe_get_h5_dataset(f, "big")


def test_h5_store_has_path_shim(tmp_path: Path) -> None:
    # H5IOStore.has_path appeared in Keras 3.15 (its loader asks it whether a
    # nested container was saved); RecordingH5Store answers on every release.
    assert hasattr(saving_lib.H5IOStore, "has_path") == (KERAS >= (3, 15, 0))
    with _h5_with_traps(tmp_path / "traps.h5") as f:
        f.close()
    with open(tmp_path / "traps.h5", "rb") as handle:
        store = _keras.RecordingH5Store(handle)
        try:
            for path, present in [("vars", True), ("vars/sub", True), ("nothing", False)]:
                assert store.has_path(path) is present
                assert compat.h5_store_has_path(store, path) is present
                if KERAS >= (3, 15, 0):
                    assert saving_lib.H5IOStore.has_path(store, path) is present
        finally:
            store.close()


class _Holder(keras.layers.Layer):
    """Layers in a list, one of them in a list nested in it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blocks = [keras.layers.Dense(2), [keras.layers.Dense(2)]]

    def build(self, input_shape: Any) -> None:
        self.blocks[0].build(input_shape)
        self.blocks[1][0].build(input_shape)

    def call(self, x: Any) -> Any:
        return self.blocks[0](x) + self.blocks[1][0](x)


def test_weight_path_renames_follows_the_installed_keras_walk(tmp_path: Path) -> None:
    # Keras 3.15 (PR #22362) saves a container nested in a container as a
    # "container" group; older releases skip it (its layer's weights are not
    # saved at all). weight_path_renames must name what this Keras writes.
    import h5py

    assert (KERAS >= (3, 15, 0)) == compat.NESTED_CONTAINERS
    assert (set in compat.WALKED_CONTAINERS) == (KERAS < (3, 15, 0))
    inputs = keras.Input((3,))
    model = keras.Model(inputs, _Holder()(inputs))
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5", "r") as f:
        groups: set[str] = set()
        f.visititems(lambda name, obj: groups.add(name) if "vars" in name else None)
    renames = _keras.weight_path_renames(model, {keras.layers.Dense: "OldDense"})
    assert all(f"{new}/vars" in groups for new in renames)
    expected = {"layers/__holder/blocks/dense": "layers/__holder/blocks/old_dense"}
    if KERAS >= (3, 15, 0):
        expected["layers/__holder/blocks/container/dense"] = (
            "layers/__holder/blocks/container/old_dense"
        )
    assert renames == expected


@keras.saving.register_keras_serializable(package="test_keras_compat")
class _SavedHolder(_Holder):
    pass


def _holder_model() -> Any:
    inputs = keras.Input((3,))
    return keras.Model(inputs, _SavedHolder(name="holder")(inputs), name="model")


def test_unsaved_nested_objects_lists_what_this_keras_leaves_out() -> None:
    model = _holder_model()
    if KERAS >= (3, 15, 0):
        assert compat.unsaved_nested_objects(model) == []
    else:
        assert compat.unsaved_nested_objects(model) == ["model.layers[1].blocks[1][0]"]
    # A Functional model's own nested containers (_operations_by_depth) repeat
    # its layers, which are saved: nothing to report on any Keras.
    inputs = keras.Input((3,))
    plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(2)(inputs)))
    assert compat.unsaved_nested_objects(plain) == []


@pytest.mark.skipif(KERAS >= (3, 15, 0), reason="Keras >= 3.15 saves nested containers")
def test_old_keras_refuses_to_save_layers_in_nested_containers(tmp_path: Path) -> None:
    with pytest.raises(keras_safe.CompatibilityError) as caught:
        keras_safe.save(_holder_model(), tmp_path / "m.keras", roundtrip=False)
    message = str(caught.value)
    assert message.startswith(
        "Saving layers kept in a list or dict nested inside another list or dict attribute "
        "(model.layers[1].blocks[1][0]) needs Keras >= 3.15: "
        f"Keras {keras.version()} does not save their weights"
    )
    assert 'Fix: pip install --upgrade "keras>=3.15"' in message
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.skipif(KERAS < (3, 15, 0), reason="Keras < 3.15 cannot save nested containers")
def test_new_keras_saves_layers_in_nested_containers(tmp_path: Path) -> None:
    model = _holder_model()
    x = np.ones((2, 3), dtype="float32")
    keras_safe.save(model, tmp_path / "m.keras", sample_input=x)
    loaded = keras_safe.load(tmp_path / "m.keras")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )


def test_nested_container_weights_explains_unread_container_groups() -> None:
    paths = [
        "layers/holder/blocks/container/dense/vars/0",
        "layers/holder/blocks/container/dense/vars/1",
    ]
    hint = compat.nested_container_weights(paths)
    assert compat.nested_container_weights(["layers/dense/vars/0"]) is None
    assert compat.nested_container_weights(["layers/container_x/vars/0"]) is None
    if KERAS >= (3, 15, 0):
        assert hint is None
    else:
        assert hint == (
            "weights of layers kept in a list or dict nested inside another list or dict "
            "(layers/holder/blocks/container/dense/vars/0 ...) were saved by Keras >= 3.15; "
            f"loading them needs Keras >= 3.15, and Keras {keras.version()} is installed. "
            'Fix: pip install --upgrade "keras>=3.15".'
        )
        assert compat.nested_container_weights(["a/container_2/dense/vars/0"]) is not None


# -- optimizers under their public names ---------------------------------------------

_TORCH_ADAM = {
    "module": "keras.src.backend.torch.optimizers.torch_adam",
    "class_name": "Adam",
    "config": {"name": "adam", "learning_rate": 0.001},
    "registered_name": "Adam",
}


def test_public_optimizer_names_rewrites_twins_at_any_depth() -> None:
    public = {**_TORCH_ADAM, "module": "keras.optimizers", "registered_name": None}
    scaled = {
        "module": "keras.optimizers",
        "class_name": "LossScaleOptimizer",
        "config": {"inner_optimizer": _TORCH_ADAM, "name": "loss_scale_optimizer"},
        "registered_name": None,
    }
    config = {"class_name": "Sequential", "config": {}, "compile_config": {"optimizer": scaled}}
    rewritten = _keras.public_optimizer_names(config)
    assert rewritten["compile_config"]["optimizer"]["config"]["inner_optimizer"] == public
    assert config["compile_config"]["optimizer"]["config"]["inner_optimizer"] is _TORCH_ADAM
    # What Keras writes for the public class under TensorFlow and JAX.
    assert public == {
        **keras.saving.serialize_keras_object(keras.optimizers.Adam(learning_rate=0.001)),
        "config": public["config"],
    }


def test_public_optimizer_names_leaves_everything_else_alone() -> None:
    untouched = [
        {"compile_config": {"optimizer": {**_TORCH_ADAM, "module": "keras.optimizers"}}},
        {"x": [{**_TORCH_ADAM, "class_name": "SGD"}]},
        {"x": [{**_TORCH_ADAM, "registered_name": "attacker>Adam"}]},
        {"x": {**_TORCH_ADAM, "module": "keras.src.backend.torch.optimizers.torch_optimizer"}},
        [1, "keras.src.backend.torch.optimizers.torch_adam", None],
    ]
    for config in untouched:
        assert _keras.public_optimizer_names(config) is config
    unregistered = {**_TORCH_ADAM}
    del unregistered["registered_name"]
    assert _keras.public_optimizer_names(unregistered)["module"] == "keras.optimizers"


def test_backend_optimizer_twins_are_none_on_this_backend() -> None:
    """Only torch swaps classes (pinned against the table in tests/test_backends.py)."""
    if keras.backend.backend() == "torch":
        found = {
            (made.__module__, made.__name__): _keras.public_keras_name(public)
            for public, made in _keras.backend_optimizer_twins().items()
        }
        assert found == _keras.BACKEND_OPTIMIZER_TWINS
    else:
        assert _keras.backend_optimizer_twins() == {}
