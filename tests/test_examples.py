"""The examples run, each in its own process, and do what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, round_trip

import keras_safe

EXAMPLES = ROOT / "examples"


@pytest.mark.slow
def test_attention_example_reloads_with_matching_outputs() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "attention.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "reloaded in a fresh process: CustomAttention" in proc.stdout
    assert "outputs match: True" in proc.stdout


def test_custom_attention_config_round_trip(
    scope: keras_safe.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delitem(sys.modules, "custom_attention", raising=False)
    import custom_attention

    try:
        layer: Any = custom_attention.CustomAttention(16, name="attention")
        assert keras_safe.registry.get("examples>CustomAttention") is type(layer)
        x = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
        expected = layer(x)
        rebuilt, config = round_trip(layer)
        assert json.dumps(config).count('"units": 16') == 1
        assert config["kernel_initializer"] == "glorot_uniform"
        rebuilt(x)
        rebuilt.set_weights(layer.get_weights())
        np.testing.assert_array_equal(rebuilt(x), expected)
    finally:
        sys.modules.pop("custom_attention", None)
