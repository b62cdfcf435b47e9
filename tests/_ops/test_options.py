"""Arguments of load, inspect, verify and load_latest are checked before any file is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import keras_safe
from keras_safe.errors import KerasSafeError


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: keras_safe.load(3), "filepath must be a str or os.PathLike, got int"),
        (lambda: keras_safe.inspect(None), "filepath must be a str or os.PathLike, got NoneType"),
        (lambda: keras_safe.verify(b"x"[0]), "filepath must be a str or os.PathLike, got int"),
        (lambda: keras_safe.load_latest(3.5), "directory must be a str or os.PathLike, got float"),
    ],
)
def test_paths_of_the_wrong_type_are_usage_errors(call: Any, message: str) -> None:
    with pytest.raises(KerasSafeError, match=message) as caught:
        call()
    assert isinstance(caught.value, ValueError)


def test_missing_files_and_directories_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.keras"
    with pytest.raises(KerasSafeError, match=f"No such file: {missing}"):
        keras_safe.load(missing)
    with pytest.raises(KerasSafeError, match="is not a file"):
        keras_safe.inspect(tmp_path)
    assert keras_safe.load_latest(tmp_path / "not-yet") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"on_mismatch": "explode"},
            "on_mismatch must be one of 'warn', 'error', 'ignore', got 'explode'",
        ),
        ({"expected_digest": "abc"}, "expected_digest must be 64 hex digits"),
        ({"custom_objects": {1: object}}, "custom_objects keys must be strings"),
    ],
)
def test_bad_load_options_are_refused_before_reading(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    path = tmp_path / "not-even-a-zip.keras"
    path.write_bytes(b"junk")
    with pytest.raises(KerasSafeError, match=message):
        keras_safe.load(path, **kwargs)
