"""What the guard accepts from files saved under another Keras backend, and what it refuses.

Files of other backends differ from this process's in two ways Keras
handles: the optimizer's step count is int64 under TensorFlow and int32
elsewhere (Keras casts it), and Keras under torch names its own subclass of
each public optimizer (read as the public class). Anything beyond those two
is refused as before. The files are real: a model saved here, then edited as
another backend (or an attacker) would have written it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import pytest
from hostile_kit import Members, read_members, small_model, with_config, with_weights, write_archive

import keras_safe
from keras_safe import UnsafeModelError
from keras_safe._guard.hdf5_bounds import DatasetChecker

STEPS = "optimizer/vars/0"
KERNEL = "layers/dense/vars/0"  # the "hidden" layer's kernel, shape (4, 3)
TORCH = "keras.src.backend.torch.optimizers"
TORCH_ADAM = f"{TORCH}.torch_adam"


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Members:
    path = tmp_path_factory.mktemp("saved") / "small.keras"
    keras_safe.save(small_model(), path)
    return read_members(path)


def _dataset(handle: Any, path: str, data: Any) -> None:
    group, name = path.rsplit("/", 1)
    del handle[path]
    handle[group].create_dataset(name, data=data)


def _archive(tmp_path: Path, members: Members) -> Path:
    return write_archive(tmp_path / "edited.keras", members)


def _steps(model: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model.optimizer.iterations))


# -- the step count: int64 under TensorFlow, int32 under JAX and torch ----------------


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_a_step_count_of_either_width_loads(tmp_path, members, dtype) -> None:
    edited = with_weights(members, lambda h: _dataset(h, STEPS, np.array(5, dtype)))
    model = keras_safe.load(_archive(tmp_path, edited))
    steps = _steps(model)
    assert int(steps) == 5
    assert str(steps.dtype) == str(keras.ops.convert_to_numpy(keras.Variable(0, dtype="int")).dtype)


def _checker(*variables: Any) -> DatasetChecker:
    return DatasetChecker(variables, "model.weights.h5 in test.keras")


def _h5_dataset(data: Any) -> Any:
    handle = h5py.File(io.BytesIO(), "w")
    handle["d"] = data
    return handle["d"]


@pytest.mark.parametrize("value", [0, 7, 2**31 - 1, -(2**31)])
def test_an_int64_step_count_narrows_to_int32_when_it_fits(value) -> None:
    checker = _checker(keras.Variable(0, dtype="int32"))
    checker("optimizer/vars/0", _h5_dataset(np.int64(value)))
    assert checker.refusals == []


@pytest.mark.parametrize("value", [2**31, 2**40, -(2**31) - 1])
def test_an_int64_step_count_that_does_not_fit_int32_is_refused(value) -> None:
    checker = _checker(keras.Variable(0, dtype="int32"))
    with pytest.raises(UnsafeModelError) as caught:
        checker("optimizer/vars/0", _h5_dataset(np.int64(value)))
    message = str(caught.value)
    assert f"dataset 'optimizer/vars/0' holds int64 values from {value} to {value}" in message
    assert "do not fit the int32 variable of the model rebuilt from the config" in message
    assert checker.refusals == [message]


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (np.int16(5), "shape () and dtype int16"),  # not a width any backend uses
        (np.uint32(5), "shape () and dtype uint32"),
        (np.float64(5), "shape () and dtype float64"),
        (np.ones((4, 3), "int64"), "shape (4, 3) and dtype int64"),  # no integer variable so
    ],
)
def test_other_dtype_changes_are_still_refused(tmp_path, members, data, shown) -> None:
    path = STEPS if data.shape == () else KERNEL
    edited = with_weights(members, lambda h: _dataset(h, path, data))
    with pytest.raises(UnsafeModelError) as caught:
        keras_safe.load(_archive(tmp_path, edited))
    assert f"dataset {path!r} has {shown}, unlike any variable" in str(caught.value)


def test_a_float_kernel_never_becomes_an_integer_one() -> None:
    checker = _checker(keras.Variable(np.zeros((4, 3)), dtype="float32"))
    with pytest.raises(UnsafeModelError, match="dtype int32, unlike any variable"):
        checker(KERNEL, _h5_dataset(np.ones((4, 3), "int32")))


# -- optimizers Keras names after the torch backend ------------------------------------


def _optimizer(config: dict[str, Any]) -> dict[str, Any]:
    return config["compile_config"]["optimizer"]  # type: ignore[no-any-return]


def test_a_torch_adam_is_read_as_keras_adam(tmp_path, members) -> None:
    """As plain Keras writes it under torch: loads under any backend, as this one's Adam."""

    def as_torch(config: dict[str, Any]) -> None:
        _optimizer(config).update(module=TORCH_ADAM, registered_name="Adam")

    model = keras_safe.load(_archive(tmp_path, with_config(members, as_torch)))
    assert type(model.optimizer) is type(keras.optimizers.Adam())
    assert int(_steps(model)) == 1
    model.fit(np.ones((4, 4), "float32"), np.zeros((4, 2), "float32"), verbose=0)
    assert int(_steps(model)) == 2


@pytest.mark.parametrize(
    ("module", "name", "registered"),
    [
        # A backend class that is not a twin of a public optimizer.
        (f"{TORCH}.torch_optimizer", "TorchOptimizer", None),
        (f"{TORCH}.torch_parallel_optimizer", "TorchParallelOptimizer", None),
        # A twin's module with another class, or under a key Keras would look up first.
        (TORCH_ADAM, "SGD", None),
        (f"{TORCH}.torch_sgd", "Adam", "Adam"),
        # Other backends' packages.
        ("keras.src.backend.tensorflow.optimizer", "TFOptimizer", None),
        ("keras.src.backend.jax.optimizer", "JaxOptimizer", None),
    ],
)
def test_other_backend_classes_are_refused(tmp_path, members, module, name, registered) -> None:
    def edit(config: dict[str, Any]) -> None:
        _optimizer(config).update(module=module, class_name=name, registered_name=registered)

    path = _archive(tmp_path, with_config(members, edit))
    backend = module.split(".")[3]
    with pytest.raises(UnsafeModelError) as caught:
        keras_safe.load(path)
    message = str(caught.value)
    assert f": the config refers to {module}.{name}, " in message
    assert f"a class of Keras' {backend} backend, which is not a model part" in message
    assert "only as the twin of a public Keras optimizer" in message
    # Not read at all without compiling: such a model never deserializes it.
    model = keras_safe.load(path, compile=False)
    assert getattr(model, "optimizer", None) is None


def test_a_twin_under_another_registered_key_is_not_rewritten(tmp_path, members) -> None:
    def edit(config: dict[str, Any]) -> None:
        _optimizer(config).update(module=TORCH_ADAM, registered_name="attacker>Adam")

    with pytest.raises(UnsafeModelError) as caught:
        keras_safe.load(_archive(tmp_path, with_config(members, edit)))
    assert (
        f": the config refers to {TORCH_ADAM}.Adam, the torch backend's twin of "
        "keras.optimizers.Adam, under registered_name 'attacker>Adam'"
    ) in str(caught.value)
