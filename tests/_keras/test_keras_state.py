"""The Keras internals keras_safe's fast save and verify rely on (see keras_safe._keras)."""

from __future__ import annotations

from pathlib import Path

import keras
from keras.src.backend.common import global_state
from keras.src.saving import saving_lib

from keras_safe import _keras


def test_keras_reads_the_skipsets_keras_safe_caches() -> None:
    # Keras stores its cache under another key than it reads; keras_safe
    # stores it where Keras reads. If Keras fixes its cache, this fails and
    # cache_attr_skipsets can go.
    keras.backend.clear_session()
    written = {"written"}
    global_state.set_global_attribute("saving_attr_skipset_Loss", written)
    assert saving_lib.get_attr_skipset("Loss") is not written  # the key Keras writes: unread

    _keras.cache_attr_skipsets()
    cached = global_state.get_global_attribute("saving_attr_skiplist_Optimizer")
    assert "variables" not in cached  # Keras' own set, computed once
    assert saving_lib.get_attr_skipset("Optimizer") is cached  # and read from now on


def test_deferred_variables_give_no_values_and_leave_nothing_behind(tmp_path: Path) -> None:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="ones")(inputs))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    config = _keras.serialize_model(model)
    before = list(global_state.get_global_attribute("uninitialized_variables") or [])

    scope = keras.StatelessScope(initialize_variables=False)
    with _keras.deferred_variables(scope):
        rebuilt = _keras.deserialize_model(config, {})
    kernel = rebuilt.layers[1].kernel
    # A scalar placeholder, not the initializer's ones: no initializer ran and
    # no weight-sized memory was allocated; Keras still sees the real shape.
    assert kernel.shape == (4, 3)
    assert kernel.numpy().shape == ()
    assert rebuilt.optimizer.variables  # built: Adam's slots exist ...
    momentum = rebuilt.optimizer.variables[2]
    assert momentum._value is None  # ... without values of their own
    assert (global_state.get_global_attribute("uninitialized_variables") or []) == before
