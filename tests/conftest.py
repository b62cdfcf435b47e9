"""Shared test helpers: fresh Python processes and throwaway modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keras_safe

ROOT = Path(__file__).resolve().parent.parent
# Where this process imported keras_safe from (the installed wheel, or a checkout's
# src/): fresh processes import the same package, whatever else is on their path.
SRC = Path(keras_safe.__file__).resolve().parent.parent

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.tensorflow_only(reason=...)`` tests under another backend."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tensorflow_only")
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            reason = f"needs the TensorFlow backend, not {backend}: {why}"
            item.add_marker(pytest.mark.skip(reason=reason))


def tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported here (it need not be with JAX or PyTorch)."""
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def run_python(
    code: str,
    *args: str,
    path: list[Path] | None = None,
    check: bool = True,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; ``path`` entries go on its sys.path.

    With ``check=True`` a non-zero exit fails the test with the child's output.
    """
    paths = [str(p) for p in (path or [])] + [str(SRC), str(ROOT)]
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"child process exited with {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def write_module(directory: Path, name: str, source: str) -> Path:
    """Write ``source`` as module ``name`` (dots make packages) under ``directory``."""
    parts = name.split(".")
    folder = directory
    for package in parts[:-1]:
        folder = folder / package
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").touch()
    target = folder / f"{parts[-1]}.py"
    target.write_text(textwrap.dedent(source))
    return target


@pytest.fixture
def scope() -> Iterator[keras_safe.Registry]:
    """A registry scope: whatever the test registers is undone afterwards."""
    with keras_safe.registry.scope() as registry:
        yield registry


def assert_strict_equal(actual: object, expected: object, path: str = "$") -> None:
    """Equal values AND types, recursively: ``1 != 1.0 != True``, ``(1,) != [1]``.

    NaNs compare equal to NaNs, ``-0.0`` differs from ``0.0``, and numpy
    arrays and scalars must have the same dtype (and shape) as well as the
    same values. ``path`` names the first difference in the failure message.
    """
    import math

    import numpy as np

    assert type(actual) is type(expected), (
        f"at {path}: type {type(actual).__name__} != {type(expected).__name__} "
        f"({actual!r} vs {expected!r})"
    )
    if isinstance(expected, dict):
        assert isinstance(actual, dict)
        assert_strict_equal(list(actual), list(expected), f"{path}.keys()")
        for key in expected:
            assert_strict_equal(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple))
        assert len(actual) == len(expected), f"at {path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_strict_equal(a, e, f"{path}[{i}]")
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray)
        assert actual.dtype == expected.dtype, f"at {path}: {actual.dtype} != {expected.dtype}"
        assert actual.shape == expected.shape, f"at {path}: {actual.shape} != {expected.shape}"
        assert _same_bits(actual, expected), f"at {path}: {actual!r} != {expected!r}"
    elif isinstance(expected, np.generic):
        assert isinstance(actual, np.generic)
        assert actual.dtype == expected.dtype, f"at {path}: {actual.dtype} != {expected.dtype}"
        assert _same_bits(np.asarray(actual), np.asarray(expected)), f"at {path}: {actual!r}"
    elif isinstance(expected, float):
        assert isinstance(actual, float)
        if math.isnan(expected):
            assert math.isnan(actual), f"at {path}: {actual!r} is not NaN"
        else:
            assert actual == expected, f"at {path}: {actual!r} != {expected!r}"
            assert math.copysign(1, actual) == math.copysign(1, expected), f"at {path}: sign"
    else:
        assert actual == expected, f"at {path}: {actual!r} != {expected!r}"


def round_trip(obj: Any) -> tuple[Any, dict[str, Any]]:
    """Config -> JSON text -> config -> ``from_config``; returns (rebuilt, config).

    Checks that the config survives JSON unchanged (it is plain JSON) and that
    the rebuilt object's config is strictly equal to the original's.
    """
    import json

    config = obj.get_config()
    loaded = json.loads(json.dumps(config))
    assert_strict_equal(loaded, config)
    rebuilt = type(obj).from_config(loaded)
    assert type(rebuilt) is type(obj)
    assert rebuilt is not obj
    assert_strict_equal(rebuilt.get_config(), config)
    return rebuilt, config


def _same_bits(actual: Any, expected: Any) -> bool:
    """Bit-identical arrays, except that any NaN equals any NaN.

    JSON has one NaN, so NaN sign and payload bits cannot survive a config;
    everything else, -0.0 included, must.
    """
    import numpy as np

    if actual.tobytes() == expected.tobytes():
        return True
    if not (actual.dtype.kind == "f" or actual.dtype.name.startswith(("bfloat", "float8"))):
        return False
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    nan = np.isnan(e)
    if not np.array_equal(np.isnan(a), nan):
        return False
    a, e = a[~nan], e[~nan]
    return bool(np.array_equal(a, e) and np.array_equal(np.signbit(a), np.signbit(e)))


@pytest.fixture
def import_module_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``load(name, source)``: write a module under ``tmp_path`` and import it.

    The modules are dropped from ``sys.modules`` afterwards; use together with
    the ``scope`` fixture so their registrations are undone too.
    """
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))
    loaded: list[str] = []

    def load(name: str, source: str) -> object:
        write_module(tmp_path, name, source)
        importlib.invalidate_caches()
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[module]
