"""The package's public names: all present, imported on first use."""

from __future__ import annotations

import pytest
from conftest import run_python

import keras_safe


def test_lazy_imports_in_a_fresh_process() -> None:
    run_python(
        """
        import sys
        import keras_safe
        assert keras_safe.__version__
        assert keras_safe.KerasSafeError.__name__ == "KerasSafeError"
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules

        # the registry object is not hidden by the module that defines it
        import keras_safe._config.registry
        from keras_safe._config.registry import Registry
        assert isinstance(keras_safe.registry, Registry), type(keras_safe.registry)
        from keras_safe import registry
        assert registry is keras_safe.registry
        import keras_safe.callbacks, keras_safe.testing
        assert keras_safe.callbacks.SafeCheckpoint and keras_safe.testing.assert_roundtrip
        from keras_safe import *
        assert callable(load_latest) and callable(diff) and save is safe_save
        """
    )


@pytest.mark.parametrize("name", keras_safe.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(keras_safe, name) is not None
    assert name in dir(keras_safe)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        keras_safe.nothing_here  # noqa: B018
    assert not hasattr(keras_safe, "upgrade") or callable(keras_safe.upgrade)
