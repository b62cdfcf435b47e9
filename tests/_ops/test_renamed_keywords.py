"""The renamed keywords: save/SafeCheckpoint(verify=) is roundtrip=, verify_key= is signing_key=.

Each old name still works for a release: it warns (a DeprecationWarning
pointing at the caller's line and naming the new keyword) and behaves as the
new one; passing both is a usage error naming both.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import keras_safe
from keras_safe.callbacks import SafeCheckpoint
from keras_safe.errors import _UsageError

KEY = b"team key"


def _model() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("signed") / "m.keras"
    keras_safe.save(_model(), path, signing_key=KEY)
    return path


def _one_deprecation(caught: list[warnings.WarningMessage], function: str, old: str, new: str):
    # Only the library's own: TensorFlow and numpy add theirs.
    found = [
        w
        for w in caught
        if issubclass(w.category, DeprecationWarning) and f"({old}=...)" in str(w.message)
    ]
    assert len(found) == 1, [str(w.message) for w in found]
    warning = found[0]
    assert str(warning.message) == (
        f"{function}({old}=...) is deprecated; use {function}({new}=...) — same meaning."
    )
    # It points at the line that passed the old keyword: this file.
    assert os.path.samefile(warning.filename, __file__), warning.filename
    return warning


def _call_warned(call: Callable[[], Any]) -> tuple[Any, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, caught


# -- verify_key= -> signing_key= ---------------------------------------------------


def _weights(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


def test_load_verify_key_warns_and_checks_the_signature(signed: Path) -> None:
    model, caught = _call_warned(lambda: keras_safe.load(signed, verify_key=KEY))
    _one_deprecation(caught, "load", "verify_key", "signing_key")
    new = keras_safe.load(signed, signing_key=KEY)
    for old_w, new_w in zip(_weights(model), _weights(new), strict=True):
        np.testing.assert_array_equal(old_w, new_w)
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(keras_safe.IntegrityError, match="does not match signing_key"),
    ):
        keras_safe.load(signed, verify_key=b"guess")


def test_verify_verify_key_warns_and_reports_as_signing_key(signed: Path) -> None:
    report, caught = _call_warned(lambda: keras_safe.verify(signed, verify_key=b"guess"))
    _one_deprecation(caught, "verify", "verify_key", "signing_key")
    new = keras_safe.verify(signed, signing_key=b"guess")
    assert not report.ok and report.problems == new.problems
    good, caught = _call_warned(lambda: keras_safe.verify(signed, verify_key=KEY))
    _one_deprecation(caught, "verify", "verify_key", "signing_key")
    assert good.ok


def test_upgrade_verify_key_warns(signed: Path, tmp_path: Path) -> None:
    manifest, caught = _call_warned(
        lambda: keras_safe.upgrade(signed, tmp_path / "up.keras", verify_key=KEY)
    )
    _one_deprecation(caught, "upgrade", "verify_key", "signing_key")
    assert manifest.digest == keras_safe.inspect(tmp_path / "up.keras").digest
    with pytest.warns(DeprecationWarning), pytest.raises(keras_safe.IntegrityError):
        keras_safe.upgrade(signed, tmp_path / "bad.keras", verify_key=b"guess")
    assert not (tmp_path / "bad.keras").exists()


def test_load_latest_verify_key_warns_once(signed: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "a.keras").write_bytes(signed.read_bytes())
    model, caught = _call_warned(lambda: keras_safe.load_latest(folder, verify_key=KEY))
    _one_deprecation(caught, "load_latest", "verify_key", "signing_key")
    assert model is not None
    with pytest.warns(DeprecationWarning), pytest.raises(keras_safe.IntegrityError):
        keras_safe.load_latest(folder, verify_key=b"guess")


@pytest.mark.parametrize(
    "call",
    [
        lambda path: keras_safe.load(path, signing_key=KEY, verify_key=KEY),
        lambda path: keras_safe.verify(path, signing_key=KEY, verify_key=KEY),
        lambda path: keras_safe.upgrade(path, path, signing_key=KEY, verify_key=KEY),
        lambda path: keras_safe.load_latest(path.parent, signing_key=KEY, verify_key=KEY),
    ],
    ids=["load", "verify", "upgrade", "load_latest"],
)
def test_signing_key_and_verify_key_together_is_a_usage_error(signed: Path, call) -> None:
    with pytest.raises(_UsageError) as caught:
        call(signed)
    message = str(caught.value)
    assert "signing_key=" in message and "verify_key=" in message
    assert "Pass only signing_key=" in message
    assert isinstance(caught.value, ValueError)


# -- save(verify=) -> save(roundtrip=) ----------------------------------------------


def _drifting_model(scope: Any) -> keras.Model:
    @keras_safe.register(package="renamed")
    class Drifting(keras_safe.SerializableLayer):
        """Loads its weights wrong: what the round trip catches."""

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones", name="w")

        def load_own_variables(self, store):
            self.w.assign(np.asarray(store["0"]) + 1.0)

        def call(self, x):
            return x * self.w

    inputs = keras.Input((3,))
    return keras.Model(inputs, Drifting(name="drifting")(inputs))


def test_save_verify_warns_and_means_roundtrip(tmp_path: Path, scope) -> None:
    model = _drifting_model(scope)
    # verify=True runs the round trip, as roundtrip=True does: the bad model is refused.
    with pytest.raises(keras_safe.VerificationError) as new:
        keras_safe.save(model, tmp_path / "new.keras", roundtrip=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(keras_safe.VerificationError) as old:
            keras_safe.save(model, tmp_path / "old.keras", verify=True)
    _one_deprecation(caught, "save", "verify", "roundtrip")
    assert str(old.value).replace("old.keras", "new.keras") == str(new.value)
    assert not (tmp_path / "old.keras").exists()
    # verify=False skips it, as roundtrip=False does.
    manifest, caught = _call_warned(
        lambda: keras_safe.save(model, tmp_path / "old.keras", verify=False)
    )
    _one_deprecation(caught, "save", "verify", "roundtrip")
    skipped = keras_safe.save(model, tmp_path / "new.keras", roundtrip=False)
    assert manifest.members == skipped.members


def test_save_verify_and_roundtrip_together_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(_UsageError) as caught:
        keras_safe.save(_model(), tmp_path / "m.keras", roundtrip=True, verify=True)
    message = str(caught.value)
    assert "save() got both roundtrip= and verify=" in message and "Pass only roundtrip=" in message
    assert not (tmp_path / "m.keras").exists()


# -- SafeCheckpoint(verify=) -> SafeCheckpoint(roundtrip=) ---------------------------


def test_safe_checkpoint_verify_warns_and_sets_roundtrip(tmp_path: Path) -> None:
    target = str(tmp_path / "e{epoch}.keras")
    checkpoint, caught = _call_warned(lambda: SafeCheckpoint(target, verify=False))
    _one_deprecation(caught, "SafeCheckpoint", "verify", "roundtrip")
    assert checkpoint.roundtrip is False
    assert SafeCheckpoint(target, roundtrip=False).roundtrip is False
    assert SafeCheckpoint(target).roundtrip is True  # as keras_safe.save's
    with pytest.raises(_UsageError, match=r"SafeCheckpoint\(\) got both roundtrip= and verify="):
        SafeCheckpoint(target, roundtrip=True, verify=False)


def test_safe_checkpoint_verify_attribute_is_roundtrip(tmp_path: Path) -> None:
    checkpoint = SafeCheckpoint(str(tmp_path / "e{epoch}.keras"), roundtrip=True)
    with pytest.warns(DeprecationWarning, match="use SafeCheckpoint.roundtrip") as caught:
        assert checkpoint.verify is True
    assert os.path.samefile(caught[0].filename, __file__)
    with pytest.warns(DeprecationWarning, match="use SafeCheckpoint.roundtrip"):
        checkpoint.verify = False
    assert checkpoint.roundtrip is False


def test_safe_checkpoint_verify_runs_the_round_trip(tmp_path: Path, scope) -> None:
    model = _drifting_model(scope)
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((4, 3), "float32")
    with pytest.warns(DeprecationWarning):
        checkpoint = SafeCheckpoint(str(tmp_path / "e{epoch}.keras"), verify=True)
    with pytest.raises(keras_safe.VerificationError):
        model.fit(x, x, epochs=1, callbacks=[checkpoint], verbose=0)
    assert not list(tmp_path.glob("*.keras"))


def test_public_signatures_show_the_new_names() -> None:
    import inspect

    save = inspect.signature(keras_safe.save).parameters
    load = inspect.signature(keras_safe.load).parameters
    init = inspect.signature(SafeCheckpoint.__init__).parameters
    assert list(save).index("roundtrip") < list(save).index("verify")  # the old one comes last
    assert list(load).index("signing_key") < list(load).index("verify_key")
    assert list(init).index("roundtrip") < list(init).index("verify")
    assert save["roundtrip"].default is True and save["verify"].default is None
    from keras_safe._ops.options import LoadKwargs

    assert "signing_key" in LoadKwargs.__annotations__
