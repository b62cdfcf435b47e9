"""The resource model of load: every entry point, every hostile file, bounded memory and time.

The files (tests/resource_kit.py) are the classes an independent review
found: memory amplification, time bombs, a call gadget, a file read outside
the archive through diff. One fresh process per entry point opens every
file and reports, for each, the error, the time taken and how far its peak
resident memory (``ru_maxrss``) rose above the level after a warm-up load.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import entry_points
import pytest
import resource_kit
from conftest import ROOT, run_python

import keras_safe

# Peak RSS growth allowed over a warm process: max_build_bytes (256 MiB) plus
# Keras' and TensorFlow's own working memory; every bomb here asks for 1-7 GiB.
MAX_GROWTH = 700 << 20
MAX_SECONDS = 20.0

LIBRARY_ENTRY_POINTS = [entry.name for entry in entry_points.LIBRARY]
CLI_ENTRY_POINTS = [entry.name for entry in entry_points.COMMANDS]
KERAS_SAFE_OUTCOMES = {
    "returned",
    "UnsafeModelError",
    "IntegrityError",
    "CompatibilityError",
    "MissingObjectsError",
    "_UsageError",
}
BUILDS_MODEL = {entry.name for entry in entry_points.ENTRY_POINTS if "build" in entry.stages}

_CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path

import keras
import keras_safe
import entry_points

files, entries = json.loads(sys.argv[1]), json.loads(sys.argv[2])
good, marker = Path(sys.argv[3]), Path(sys.argv[4])


@keras.saving.register_keras_serializable("victim", "payload")
def payload(*args, **kwargs):
    marker.write_text("the victim's registered function ran")
    return args[0] if args else None


scratch = Path(tempfile.mkdtemp())


def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


keras_safe.load(good)  # warm up: first-use costs of Keras and TensorFlow
for entry in entries:
    entry_points.run(entry, good, {}, good, scratch)
base = peak()
results = {}
for entry, (name, path) in [(e, item) for e in entries for item in files.items()]:
    start = time.monotonic()
    outcome = entry_points.run(entry, Path(path), {}, good, scratch)
    kind = outcome.error or ("refused" if outcome.refused else "returned")
    results[f"{entry}|{name}"] = {
        "outcome": kind,
        "message": outcome.message[:3000],
        "seconds": time.monotonic() - start,
        "growth": peak() - base,
        "marker": marker.exists(),
    }
print("RESULTS" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return resource_kit.build_all(tmp_path_factory.mktemp("resources"))


def _run_entry_points(entries: list[str], files: dict[str, Path], tmp_path: Path) -> dict[str, Any]:
    good = files["normalization_broadcast"].parent / "base.keras"
    proc = run_python(
        _CHILD,
        json.dumps({k: str(v) for k, v in files.items()}),
        json.dumps(entries),
        str(good),
        str(tmp_path / "marker"),
        path=[ROOT / "src", ROOT / "tests"],
        timeout=600,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS"))
    return json.loads(line[len("RESULTS") :])  # type: ignore[no-any-return]


@pytest.mark.parametrize("entries", [LIBRARY_ENTRY_POINTS, CLI_ENTRY_POINTS], ids=["api", "cli"])
def test_hostile_files_through_every_entry_point(
    entries: list[str], hostile_files: dict[str, Path], tmp_path: Path
) -> None:
    """One process per group of entry points (TensorFlow is imported once): every file through each.

    ``growth`` is how far the process' peak RSS rose above its level after
    the warm-up, up to the end of that file: a bound on every file before it.
    """
    results = _run_entry_points(entries, hostile_files, tmp_path)
    table = [
        f"{k.replace('|', ' '):44} {r['outcome']:18} {r['growth'] >> 20:5} MiB {r['seconds']:.2f} s"
        for k, r in results.items()
    ]
    print("\n".join(table), file=sys.stderr)
    cases = {case.name: case for case in resource_kit.CASES}
    for key, result in results.items():
        entry, name = key.split("|")
        where = f"{entry} on {name}: {result['outcome']} {result['message'][:500]}"
        assert not result["marker"], f"{where}: the victim's function ran"
        assert result["growth"] < MAX_GROWTH, f"{where}: peak RSS rose {result['growth']} bytes"
        assert result["seconds"] < MAX_SECONDS, f"{where}: took {result['seconds']:.1f} s"
        if not entry.startswith("cli"):
            # Only keras_safe errors (or a returned value) leave the library.
            assert result["outcome"] in KERAS_SAFE_OUTCOMES, where
        case = cases.get(name)
        if case is None:
            must_refuse, match = True, "external storage"
        else:
            must_refuse, match = case.static or entry in BUILDS_MODEL, case.match
        if not must_refuse:
            continue
        assert result["outcome"] != "returned", f"{where}: not refused"
        if "diff" in entry and name.startswith("legacy"):
            match = "diff compares .keras archives"  # refused before it is opened
        elif not entry.startswith("cli"):
            assert result["outcome"] in ("UnsafeModelError", "IntegrityError"), where
        # Command-line text is wrapped (words may be split): compare without whitespace.
        assert re.search(re.sub(r"\s+", "", match), re.sub(r"\s+", "", result["message"])), where


# -- what models need is not refused ------------------------------------------------


def _legit_models() -> list[Any]:
    import keras

    x = keras.Input((4,), name="x")
    a, b = keras.layers.Dense(4, name="A"), keras.layers.Dense(4, name="B")
    shared = keras.Model(x, a(b(a(x))), name="shared_at_two_depths")
    inner = keras.Model(x, keras.layers.Dense(4, name="inner_dense")(x), name="inner")
    y = keras.Input((4,), name="y")
    nested = keras.Model(y, inner(inner(y)), name="nested_twice")
    p, q = keras.Input((4,), name="p"), keras.Input((3,), name="q")
    joined = keras.layers.Concatenate(name="cat")([p, q])
    multi = keras.Model([p, q], [keras.layers.Dense(2, name="o1")(joined), joined + 1.0])
    n = keras.Input((8,), name="n")
    norm = keras.layers.Normalization(axis=-1, mean=0.5, variance=2.0, name="norm")
    normalized = keras.Model(n, norm(n), name="normalized")
    orth = keras.Model(
        x, keras.layers.Dense(64, kernel_initializer="orthogonal", name="orth")(x), name="orth"
    )
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="seq")
    return [shared, nested, multi, normalized, orth, sequential]


def test_models_keras_saves_pass_the_screen_and_load(tmp_path: Path) -> None:
    import keras
    import numpy as np

    from keras_safe._format.limits import ArchiveLimits
    from keras_safe._guard.resources import screen_resources

    for model in _legit_models():
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
        estimate = screen_resources(config, ArchiveLimits())
        assert estimate.problems == [], (model.name, estimate.problems)
        path = tmp_path / f"{model.name}.keras"
        keras_safe.save(model, path)
        loaded = keras_safe.load(path)
        for before, after in zip(model.weights, loaded.weights, strict=True):
            np.testing.assert_array_equal(before.numpy(), after.numpy())


def test_tf_idf_padding_is_charged_by_max_tokens() -> None:
    import keras

    from keras_safe._format.limits import ArchiveLimits
    from keras_safe._guard.resources import screen_resources

    s = keras.Input((2,), dtype="string", name="s")
    lookup = keras.layers.StringLookup(
        vocabulary=["a", "b"],
        idf_weights=[0.5, 0.25],
        output_mode="tf_idf",
        pad_to_max_tokens=True,
        max_tokens=1000,
        name="tf_idf",
    )
    model = keras.Model(s, lookup(s))
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    assert screen_resources(config, ArchiveLimits()).problems == []
    tight = screen_resources(config, ArchiveLimits(max_build_bytes=10_000))
    assert any("max_tokens=1000" in problem for problem in tight.problems), tight.problems


def test_rebuild_loop_is_counted_like_keras_runs_it() -> None:
    import keras

    from keras_safe._format.limits import ArchiveLimits
    from keras_safe._guard.resources import BuildEstimate, _Calls

    shared = _legit_models()[0]
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(shared)))
    layers = config["config"]["layers"]
    calls = _Calls(ArchiveLimits(), BuildEstimate())
    calls._rebuild_steps(layers, "m")
    assert calls.total == 2 * len(layers)  # A's second call waits for B, listed after it
    calls = _Calls(ArchiveLimits(), BuildEstimate())
    calls._rebuild_steps(list(reversed(layers)), "m")
    assert calls.total == 2 * len(layers)  # B waits a pass for A; A's second call follows
    chain = [layers[0]] + [dict(layers[1], name=f"d{i}") for i in range(50)]
    for i, layer in enumerate(chain[1:]):
        layer["inbound_nodes"] = [
            {
                "args": [
                    {
                        "class_name": "__keras_tensor__",
                        "config": {"keras_history": [chain[i]["name"], 0, 0]},
                    }
                ],
                "kwargs": {},
            }
        ]
    calls = _Calls(ArchiveLimits(), BuildEstimate())
    calls._rebuild_steps(list(reversed(chain)), "m")
    assert calls.total == 50 * len(chain)  # deepest first: one layer per pass


def test_orthogonal_is_not_computed_while_loading() -> None:
    import keras
    import numpy as np

    from keras_safe import _keras

    initializer = keras.initializers.Orthogonal(seed=1)
    with _keras.variable_budget(1 << 30, 1 << 20):
        skipped = initializer((4096, 4096))
    assert not np.any(keras.ops.convert_to_numpy(skipped))
    computed = keras.ops.convert_to_numpy(initializer((8, 8)))
    np.testing.assert_allclose(computed @ computed.T, np.eye(8), atol=1e-5)


def test_rebuild_is_stopped_at_max_build_seconds(tmp_path: Path) -> None:
    """A graph within every count whose rebuild still takes seconds: the wall clock stops it."""
    import time

    path = resource_kit.long_chain(tmp_path)
    limits = keras_safe.ArchiveLimits(max_build_seconds=1.0)
    start = time.monotonic()
    with pytest.raises(keras_safe.UnsafeModelError) as caught:
        keras_safe.load(path, limits=limits)
    elapsed = time.monotonic() - start
    message = " ".join(str(caught.value).split())
    assert "took longer than ArchiveLimits.max_build_seconds (1 s)" in message
    stopped = re.search(r"stopped before (calling|constructing) Activation 'a(\d+)'", message)
    assert stopped is not None, message
    assert int(stopped[2]) < 3_999  # within the graph, not at its end
    assert "max_build_seconds=..." in message  # the fix, for a file one trusts
    # Checked before every layer call: the overrun is one call, plus opening and
    # screening the file before the rebuild starts (slower on a loaded machine).
    assert elapsed < 1.0 + 10.0, elapsed
    with pytest.raises(keras_safe.KerasSafeError, match=r"ArchiveLimits\.max_build_seconds must"):
        keras_safe.ArchiveLimits(max_build_seconds=0)
