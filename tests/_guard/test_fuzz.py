"""Fuzzing ``keras_safe.load`` with mutated archives: only keras_safe errors escape.

A few hundred cases here (see ``tools/fuzz_load.py`` for thousands): each
case must load or raise a :class:`keras_safe.KerasSafeError`, finish within
a time limit, and the process's memory must stay bounded.
"""

from __future__ import annotations

import faulthandler
import random
import resource
import time
import warnings
from pathlib import Path

import pytest
from fuzz_kit import Seeds, make_seeds, mutate, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CASES = 300
CASE_SECONDS = 60
RSS_GROWTH_LIMIT_KIB = 2 << 20  # 2 GiB


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    return make_seeds(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cases")


@pytest.mark.slow
@settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=st.integers(min_value=0, max_value=2**32 - 1))
def test_mutated_files_only_raise_keras_safe_errors(seeds, workdir, case):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = mutate(seeds, random.Random(case), workdir)
    # A case stuck (even inside C code) ends the process with its traceback.
    faulthandler.dump_traceback_later(CASE_SECONDS * 2, exit=True)
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = run_case(path)
    finally:
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - started
    assert not outcome.startswith("FAILED"), f"case {case} ({path.name}): {outcome}"
    assert elapsed < CASE_SECONDS, f"case {case} ({path.name}) took {elapsed:.0f}s"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < RSS_GROWTH_LIMIT_KIB, f"case {case}: RSS grew by {grown} KiB"
