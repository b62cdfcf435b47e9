"""Archives with zip64 end records: over 4 GB, or over 65,535 members.

A model of 1B parameters in float32 has a 4 GB weights member, so its
archive ends with zip64 records, which every check of the layout must read
right. Writing 4 GB in a test is slow, so the archives here get their zip64
records the other two ways ``zipfile`` writes them: more members than the
classic end record can count, and a lower threshold for offsets (the one
``zipfile`` itself exposes), which makes the same records as a large file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import run_python

import keras_safe
from keras_safe._format.ziplayout import count_central_entries, read_end_record

_ZIP64_END = b"PK\x06\x06"


def _end_record_of(path: Path) -> tuple[int, int, int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        end = read_end_record(fd, os.fstat(fd).st_size, path)
        return end.entries, count_central_entries(fd, end, 100_000, path), end.cd_offset
    finally:
        os.close(fd)


def test_an_archive_of_more_members_than_the_classic_end_record_counts(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(70_000):
            archive.writestr(f"m{i}", b"")
    assert _ZIP64_END in path.read_bytes()[-200:]
    entries, counted, offset = _end_record_of(path)
    assert entries == counted == 70_000
    with zipfile.ZipFile(path) as archive:
        assert offset == archive.infolist()[-1].header_offset + 30 + len("m69999")


@pytest.fixture
def zip64_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``zipfile`` write zip64 records for offsets and sizes over 16 KB.

    Every member but the weights is smaller, so ``zipfile`` writes them
    as usual (it refuses to grow a member past the limit without zip64).
    """
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 16 * 1024)


def _model() -> keras.Model:
    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(64)(keras.layers.Dense(64)(inputs)))
    model.compile(optimizer="adam", loss="mse")
    return model


def test_a_model_archive_with_zip64_records_saves_verifies_and_loads(
    tmp_path: Path, zip64_threshold: None
) -> None:
    model = _model()
    path = tmp_path / "large.keras"
    keras_safe.save(model, path)  # roundtrip=True reads the written archive back
    assert _ZIP64_END in path.read_bytes()[-200:]
    entries, counted, _ = _end_record_of(path)
    assert entries == counted == 3
    assert keras_safe.verify(path).ok
    x = np.ones((2, 16), "float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(model(x)))
    # Elsewhere, with zipfile's usual threshold: keras_safe and Keras read it alike.
    run_python(
        """
        import sys
        import keras
        import numpy as np
        import keras_safe

        path, x, y = sys.argv[1:4]
        for model in (keras_safe.load(path), keras.models.load_model(path)):
            out = keras.ops.convert_to_numpy(model(np.load(x)))
            np.testing.assert_array_equal(out, np.load(y))
        """,
        str(path),
        str(tmp_path / "x.npy"),
        str(tmp_path / "y.npy"),
    )


def test_a_plain_keras_archive_with_zip64_records_loads(
    tmp_path: Path, zip64_threshold: None
) -> None:
    model = _model()
    path = tmp_path / "plain.keras"
    model.save(path)
    assert _ZIP64_END in path.read_bytes()[-200:]
    loaded = keras_safe.load(path)
    for a, b in zip(loaded.weights, model.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
