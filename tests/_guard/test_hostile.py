"""The hostile corpus (tests/hostile_corpus.py) through every entry point.

Each file is built once per session. The library's entry points run
in-process, one test per file; the ``keras-safe`` commands run in one child
process for all files (TensorFlow is imported once) and are checked one
test per file too. Wherever the checks an entry point runs should refuse a
file (tests/entry_points.py: ``inspect`` and ``diff`` build no model), it
must raise the file's keras_safe error with a message naming what is wrong;
everywhere, nothing the file holds may run, be imported, or change the
process' Keras settings.

Where a file carries a CVE, it reproduces what that advisory's proof of
concept did; "open in Keras 3.15.1" marks attacks Keras itself still
accepts with ``safe_mode=True``.
"""

from __future__ import annotations

import inspect
import json
import re
import resource
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import entry_points
import keras
import numpy as np
import pytest
from conftest import ROOT, run_python
from entry_points import BY_NAME, COMMANDS, ENTRY_POINTS, LIBRARY, Outcome
from hostile_corpus import (
    CORPUS,
    Bench,
    Hostile,
    build_corpus,
    h5_config_edited,
    lambda_file,
    legacy_lambda,
    register_victim,
    set_floatx_through_lambda,
    with_config,
)

import keras_safe
import keras_safe.errors
from keras_safe import ArchiveLimits, KerasSafeError, MissingObjectsError
from keras_safe.cli import build_parser

KERAS_SAFE_ERRORS = {
    name
    for name, value in vars(keras_safe.errors).items()
    if isinstance(value, type) and issubclass(value, KerasSafeError)
}
# Peak resident memory one file may add, through all library entry points.
MAX_GROWTH = 256 << 20
MAX_SECONDS = 30.0


# -- the entry points ------------------------------------------------------------------


def _takes_a_path(function: Any) -> bool:
    parameters = list(inspect.signature(function).parameters.values())
    return bool(parameters) and parameters[0].name in ("filepath", "directory", "a", "src")


def test_every_entry_point_is_covered() -> None:
    """A new public reader or command must be added to tests/entry_points.py."""
    readers = set()
    for name in keras_safe._EXPORTS:
        value = getattr(keras_safe, name)
        if inspect.isfunction(value) and name not in entry_points.NOT_READERS:
            assert _takes_a_path(value), f"{name}: not a reader? add it to NOT_READERS"
            readers.add(entry_points.ALIASES.get(name, name))
    assert readers == {e.name for e in LIBRARY}
    for alias, name in entry_points.ALIASES.items():
        assert getattr(keras_safe, alias) is getattr(keras_safe, name)
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {f"cli {c}" for c in commands.choices} == {e.name for e in COMMANDS}
    # The callback resumes through load_latest, the only reader in its module.
    from keras_safe import callbacks

    own = [
        name
        for name, value in vars(callbacks).items()
        if inspect.isfunction(value) and value.__module__ == callbacks.__name__
    ]
    assert [name for name in own if name.startswith("load")] == ["load_latest"]


# -- the corpus, built once --------------------------------------------------------------


@pytest.fixture(scope="session")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    bench = Bench(tmp_path_factory.mktemp("hostile"))
    sys.path.insert(0, str(bench.modules))  # payload modules: importable, never imported
    unregister = register_victim(bench.marker)
    try:
        yield bench
    finally:
        unregister()
        sys.path.remove(str(bench.modules))


@pytest.fixture(scope="session")
def corpus(bench: Bench) -> dict[str, Path]:
    return build_corpus(bench)


def _normalized(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _problems(case: Hostile, name: str, path: Path, outcome: Outcome, kwargs: Any) -> list[str]:
    """Why ``outcome`` is not what ``case`` requires of entry point ``name``."""
    entry = BY_NAME[name]
    where = (
        f"{name} on {case.name}: {outcome.error} exit={outcome.exit_code} {outcome.message[:600]}"
    )
    error, match = case.error, case.match
    must = entry.refuses(case.stage, kwargs)
    if "diff" in name and path.suffix == ".h5":
        must, error, match = True, "_UsageError", "diff compares .keras archives"
    if not entry.cli and outcome.error not in (None, *KERAS_SAFE_ERRORS):
        return [f"{where}: not a keras_safe error"]
    if not must:
        return []
    if not outcome.refused:
        return [f"{where}: not refused"]
    found = []
    if not entry.cli and outcome.error != error:
        found.append(f"{where}: expected {error}")
    # Command-line text is wrapped (words may be split): compare without whitespace.
    if not re.search(_normalized(match), _normalized(outcome.message)):
        found.append(f"{where}: message does not match {match!r}")
    return found


def _process_state() -> tuple[Any, ...]:
    from keras.src.saving import serialization_lib

    payloads = sorted(m for m in sys.modules if m.split(".")[0].startswith("hostile_payload"))
    return (keras.config.floatx(), serialization_lib.in_safe_mode(), payloads)


# -- the library, in this process --------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_refused_by_every_library_entry_point(
    case: Hostile, bench: Bench, corpus: dict[str, Path], tmp_path: Path
) -> None:
    path, kwargs = corpus[case.name], case.kwargs(bench)
    state = _process_state()
    problems = []
    for entry in LIBRARY:
        before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10, time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = entry_points.run(entry.name, path, kwargs, bench.good, tmp_path)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - before
        seconds = time.monotonic() - start
        problems += _problems(case, entry.name, path, outcome, kwargs)
        assert not bench.marker.exists(), f"{entry.name} on {case.name}: the payload ran"
        assert _process_state() == state, f"{entry.name} on {case.name} changed the process"
        assert grown < MAX_GROWTH, f"{entry.name} on {case.name}: peak RSS rose {grown} bytes"
        assert seconds < MAX_SECONDS, f"{entry.name} on {case.name}: took {seconds:.1f} s"
    assert not problems, "\n".join(problems)


# -- the command line, in one child process ----------------------------------------------

_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path

import entry_points
import hostile_corpus

tasks, good, marker = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
hostile_corpus.register_victim(marker)
scratch = Path(tempfile.mkdtemp())
results = {}
for entry, case, path, kwargs in tasks:
    if "signing_key" in kwargs:
        kwargs["signing_key"] = bytes.fromhex(kwargs["signing_key"])
    start = time.monotonic()
    outcome = entry_points.run(entry, Path(path), kwargs, good, scratch)
    results[f"{entry}|{case}"] = {
        "message": outcome.message[:4000],
        "exit_code": outcome.exit_code,
        "accepted_codes": outcome.accepted_codes,
        "seconds": time.monotonic() - start,
        "marker": marker.exists(),
    }
print("RESULTS" + json.dumps(results))
"""


def _for_the_command_line(kwargs: dict[str, Any]) -> dict[str, Any]:
    accepted = set().union(*(entry.accepts for entry in COMMANDS))
    given = {k: v for k, v in kwargs.items() if k in accepted}
    if "signing_key" in given:
        given["signing_key"] = given["signing_key"].hex()
    if "allow_imports" in given:
        given["allow_imports"] = list(given["allow_imports"])
    return given


@pytest.fixture(scope="session")
def command_outcomes(bench: Bench, corpus: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Every file through every command, in one fresh process."""
    tasks = [
        (entry.name, case.name, str(corpus[case.name]), _for_the_command_line(case.kwargs(bench)))
        for case in CORPUS
        for entry in COMMANDS
    ]
    proc = run_python(
        _CHILD,
        json.dumps(tasks),
        str(bench.good),
        str(bench.marker),
        path=[bench.modules, ROOT / "tests"],
        timeout=900,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS"))
    return json.loads(line[len("RESULTS") :])  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_refused_by_every_command(
    case: Hostile, bench: Bench, corpus: dict[str, Path], command_outcomes: dict[str, Any]
) -> None:
    problems = []
    for entry in COMMANDS:
        result = command_outcomes[f"{entry.name}|{case.name}"]
        assert not result["marker"], f"{entry.name} on {case.name}: the payload ran"
        assert result["seconds"] < MAX_SECONDS, f"{entry.name} on {case.name}: too slow"
        outcome = Outcome(
            None, result["message"], result["exit_code"], tuple(result["accepted_codes"])
        )
        problems += _problems(case, entry.name, corpus[case.name], outcome, case.kwargs(bench))
    assert not problems, "\n".join(problems)


# -- what the corpus alone does not show ---------------------------------------------------


def _case(name: str) -> Hostile:
    return next(case for case in CORPUS if case.name == name)


def test_missing_objects_are_listed_not_imported(bench: Bench, corpus: dict[str, Path]) -> None:
    path = corpus["arbitrary_module_function_cve_2025_1550"]
    with pytest.raises(MissingObjectsError) as caught:
        keras_safe.load(path)
    assert caught.value.missing == ("pwn",)
    assert "hostile_payload" not in sys.modules
    assert (bench.modules / "hostile_payload.py").exists()  # it was importable all along


def test_lambda_bytecode_payload_is_live(bench: Bench, tmp_path: Path) -> None:
    # Control: the same file runs its payload when Keras is told to trust it,
    # so the refusal is what stops it.
    live = tmp_path / "live-marker"
    path = lambda_file(bench.safe_members, tmp_path, live)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the "out" weights no longer fit
        keras.saving.load_model(path, safe_mode=False)
    assert live.exists()


@pytest.mark.slow
def test_keras_config_setter_runs_in_plain_keras(bench: Bench, tmp_path: Path) -> None:
    # Control, in a fresh process: plain Keras runs keras.config.set_floatx("float16").
    path = tmp_path / "setter.keras"
    path.write_bytes(b"")
    from hostile_kit import write_archive

    write_archive(path, with_config(bench.safe_members, set_floatx_through_lambda))
    result = run_python(
        """
        import sys, keras
        try:
            keras.saving.load_model(sys.argv[1])
        except Exception:
            pass
        print(keras.config.floatx())
        """,
        str(path),
    )
    assert result.stdout.strip().endswith("float16")


def test_h5_lambda_payload_is_live(bench: Bench, tmp_path: Path) -> None:
    live = tmp_path / "live-marker"
    path = h5_config_edited(lambda config, _: legacy_lambda(config, live))(bench, tmp_path)
    with warnings.catch_warnings(), pytest.raises(Exception):  # noqa: B017
        warnings.simplefilter("ignore")
        keras.saving.load_model(path, safe_mode=False)  # runs it, then fails on weights
    assert live.exists()


@pytest.mark.slow
def test_process_wide_unsafe_mode_does_not_reach_keras_safe(
    bench: Bench, corpus: dict[str, Path]
) -> None:
    # Even if the process (or a previous file) turned Keras' safe mode off,
    # keras_safe refuses code and pins safe mode while Keras builds.
    result = run_python(
        """
        import sys, keras, keras_safe
        keras.config.enable_unsafe_deserialization()
        try:
            keras_safe.load(sys.argv[1])
        except keras_safe.UnsafeModelError as error:
            print("refused:", str(error).splitlines()[1])
        """,
        str(corpus["lambda_bytecode_cve_2024_3660"]),
    )
    assert "refused:" in result.stdout and "Lambda" in result.stdout
    assert not bench.marker.exists()


def test_pinned_and_signed_files_load(bench: Bench) -> None:
    # The controls of the digest and signature cases: the right pin, the right key.
    pinned = keras_safe.inspect(bench.saved["safe"]).digest
    assert keras_safe.load(bench.saved["safe"], expected_digest=pinned) is not None
    assert keras_safe.load(bench.signed, signing_key=b"team key") is not None
    assert keras_safe.verify(bench.signed, signing_key=b"team key").ok


def test_sound_files_pass_every_entry_point(bench: Bench, tmp_path: Path) -> None:
    # The other side of every refusal: the files the corpus starts from.
    for name in ("safe", "plain", "h5"):
        path = bench.saved[name]
        for entry in ENTRY_POINTS:
            if entry.cli or ("diff" in entry.name and path.suffix == ".h5"):
                continue
            kwargs = {"compile": False} if path.suffix == ".h5" else {}
            outcome = entry_points.run(entry.name, path, kwargs, bench.good, tmp_path)
            assert not outcome.refused, (name, entry.name, outcome.message)


# -- and the guards let real models through ----------------------------------------------


def test_real_models_with_many_kinds_of_state_still_load(tmp_path):
    # keras_safe.save re-reads what it wrote through every guard (roundtrip=True),
    # then a plain load does it again.
    tokens = keras.Input((2,), dtype="int64", name="tokens")
    # IntegerLookup runs TensorFlow ops, which JAX cannot trace to train the model.
    with_lookup = keras.backend.backend() != "jax"
    if with_lookup:
        lookup = keras.layers.IntegerLookup(vocabulary=[7, 8, 9], name="lookup")(tokens)
    else:
        lookup = keras.layers.Identity(name="lookup")(tokens)
    embedded = keras.layers.Embedding(5, 4, name="embed")(lookup)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    inner = keras.Sequential(
        [
            keras.layers.Dense(8, dtype="bfloat16"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(1, dtype="float32"),
        ],
        name="head",
    )
    model = keras.Model(tokens, inner(pooled))
    model.compile(
        optimizer=keras.optimizers.AdamW(),
        loss="mse",
        metrics=["mae", keras.metrics.AUC(name="auc")],
    )
    data = np.array([[7, 8], [9, 3]] if with_lookup else [[1, 2], [3, 0]], dtype="int64")
    model.fit(data, np.array([[0.0], [1.0]]), verbose=0)
    path = tmp_path / "rich.keras"
    keras_safe.save(model, path, sample_input=data)
    restored = keras_safe.load(path)
    np.testing.assert_array_equal(restored.predict(data, verbose=0), model.predict(data, verbose=0))
    legacy = tmp_path / "rich.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(legacy)
    assert keras_safe.load(legacy, compile=False) is not None


def test_limits_are_validated_and_scale_with_the_file():
    with pytest.raises(KerasSafeError, match="max_json_bytes must be a positive number"):
        ArchiveLimits(max_json_bytes=0)
    with pytest.raises(KerasSafeError, match=r"limits must be a keras_safe\.ArchiveLimits"):
        keras_safe.load(__file__, limits={"max_members": 3})  # type: ignore[arg-type]
    limits = ArchiveLimits(max_compression_ratio=10, max_inflated_bytes=1 << 30)
    assert limits.inflated_budget(5 << 20) == 50 << 20  # a 5 MB file: 50 MB, not GBs
    assert limits.inflated_budget(1000) == 1 << 20  # never below 1 MiB
    assert limits.inflated_budget(1 << 40) == 1 << 30  # never above the absolute cap


def test_registered_functions_named_by_string_where_keras_writes_them(
    tmp_path: Path, scope: keras_safe.Registry
) -> None:
    # Keras 2 wrote a registered activation by name in .h5 files, and Keras'
    # legacy loader still reads the name back as the function: in a legacy
    # config that string is a reference, resolved through the allowlist.
    # (Keras 3 writes {"class_name": "function", ...}, in .h5 and .keras.)
    import h5py

    @keras_safe.register(package="legit_strings")
    def doubled(x: Any) -> Any:
        return 2.0 * x

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(3, activation=doubled, name="d")(inputs))
    legacy, modern = tmp_path / "model.h5", tmp_path / "model.keras"
    model.save(legacy)
    keras_safe.save(model, modern)
    with h5py.File(legacy, "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        dense = next(item for item in config["config"]["layers"] if item["config"]["name"] == "d")
        dense["config"]["activation"] = "legit_strings>doubled"
        handle.attrs["model_config"] = json.dumps(config)
    x = np.ones((2, 4), "float32")
    for path in (legacy, modern):
        loaded = keras_safe.load(path, compile=False)
        assert loaded.get_layer("d").activation is doubled
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_string_references_in_compile_configs_resolve(scope: keras_safe.Registry) -> None:
    # A compile config is deserialized whole: a string equal to a registered
    # key there is a reference (a legacy .h5's training config included).
    from keras_safe._guard.gate import check_configs

    @keras_safe.register(package="legit_strings")
    def halved(y_true: Any, y_pred: Any) -> Any:
        return 0.5 * keras.ops.mean(keras.ops.square(y_true - y_pred))

    key = "legit_strings>halved"
    model = {"class_name": "Sequential", "config": {"name": "s", "layers": []}}
    for training in ({"compile_config": {"loss": key}}, {"compile_config": {"loss": [key]}}):
        screened = check_configs([model, training], Path("m.h5"), ArchiveLimits())
        assert [r.obj for r in screened.resolved if r.reference.name == key] == [halved]
    elsewhere = {**model, "config": {"name": "s", "extra": key}}
    with pytest.raises(keras_safe.UnsafeModelError, match=r"s\.extra: the string 'legit_strings>"):
        check_configs([elsewhere], Path("m"), ArchiveLimits())
