"""The package's public names: all present, imported on first use."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_python

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


INSTALLED = bool(os.environ.get("KERAS_SAFE_TEST_INSTALLED"))


@pytest.mark.skipif(not INSTALLED, reason="run by ./dev.sh test against the installed wheel")
def test_the_suite_runs_against_the_installed_wheel() -> None:
    # Here and in every fresh process the tests start, keras_safe comes from
    # the virtualenv's site-packages, never from the checkout.
    child = run_python("import keras_safe; print(keras_safe.__file__)").stdout
    for where in (keras_safe.__file__, child):
        location = Path(where.strip()).resolve()
        assert ROOT not in location.parents, location
        assert Path(sys.prefix).resolve() in location.parents, location
        assert "site-packages" in location.parts, location
    installed, tree = Path(keras_safe.__file__).parent, ROOT / "src" / "keras_safe"
    modules = [{p.relative_to(d).as_posix() for p in d.rglob("*.py")} for d in (installed, tree)]
    assert modules[0] == modules[1]
    assert (installed / "py.typed").is_file()


@pytest.mark.skipif(not os.environ.get("KERAS_SAFE_MAIN_JOB"), reason="run by ./dev.sh test")
def test_the_main_job_runs_the_keras_hub_tests() -> None:
    # tests/test_ecosystem.py and the keras-hub example skip without keras-hub;
    # the main job installs it (the "hub" extra), so there they run.
    import keras_hub

    assert keras_hub.__version__
