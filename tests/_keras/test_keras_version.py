"""The Keras releases keras_safe runs on, and the error on older ones.

Kept apart from test_keras_compat.py (which imports ``keras_safe._keras`` at
module level): on a Keras older than the minimum that import is what raises,
and this file must still collect there.
"""

from __future__ import annotations

import re

import keras
import pytest
from conftest import run_python

from keras_safe.errors import CompatibilityError


def _version() -> tuple[int, ...]:
    return tuple(int(re.match(r"\d+", p).group()) for p in keras.version().split(".")[:3])  # type: ignore[union-attr]


MIN = (3, 11, 0)
MESSAGE = (
    r"keras_safe needs Keras >= 3\.11\.0; Keras .* is installed\. "
    r'Fix: pip install --upgrade "keras>=3\.11\.0"\.'
)


@pytest.mark.skipif(_version() >= MIN, reason="only Keras older than 3.11 is refused")
def test_old_keras_is_refused_with_a_clear_error() -> None:
    proc = run_python(
        """
        import keras, keras_safe
        from keras_safe.errors import CompatibilityError
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        for call in (lambda: keras_safe.save(model, "unused.keras"),
                     lambda: keras_safe.load("unused.keras"),
                     lambda: keras_safe.verify("unused.keras")):
            try:
                call()
            except CompatibilityError as exc:
                print("refused:", exc)
            else:
                raise SystemExit("not refused")
        """
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("refused:")]
    assert len(lines) == 3
    for line in lines:
        assert re.fullmatch("refused: " + MESSAGE, line), line


@pytest.mark.skipif(_version() < MIN, reason="Keras older than 3.11 is refused")
def test_supported_keras_is_accepted_and_older_would_be_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from keras_safe._keras import compat

    assert compat.MIN_KERAS == MIN
    compat.check_keras_version()
    monkeypatch.setattr(keras, "version", lambda: "3.10.0")
    with pytest.raises(CompatibilityError, match=MESSAGE):
        compat.check_keras_version()
    monkeypatch.setattr(keras, "version", lambda: "3.11.0rc1")
    compat.check_keras_version()
