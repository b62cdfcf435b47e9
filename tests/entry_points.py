"""Every way a model file gets into keras_safe: one list, and one way to run each.

The hostile suites (tests/_guard/test_hostile.py, test_resources.py) run
their files through each entry point listed here, and
``test_every_entry_point_is_covered`` fails when a public function or
command that reads a file is missing from the list. :func:`run` is
imported by child processes too (the command line runs in one, and the
resource suite measures peak memory in one), so it depends on nothing but
keras_safe and the standard library.

What each entry point checks differs by design: ``inspect`` and ``diff``
build no model, so they refuse what the file itself shows (its archive,
its config through the gate, its HDF5 metadata; ``diff`` its digests too),
not what only building tells. :attr:`EntryPoint.stages` says which; a
file refused at a stage an entry point runs must be refused there, with
the same error naming the same thing.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where a hostile file is refused, in the order load runs the checks:
# "archive" (zip layout, sizes, JSON members), "config" (the gate: allowlist,
# resource screen), "weights" (HDF5 metadata), "digest" (manifest digests,
# pins, signatures), "build" (only building the model tells).
STAGES = ("archive", "config", "weights", "digest", "build")
ALL = frozenset(STAGES)
NO_BUILD = frozenset({"archive", "config", "weights"})

# load's keyword arguments that make a check stricter: a file refused only
# because of one of them need not be refused where it cannot be passed.
RESTRICTIONS = frozenset({"limits", "expected_digest", "signing_key"})


@dataclass(frozen=True)
class EntryPoint:
    """A public function or command that reads a model file.

    ``accepts``: the keyword arguments of load it can be given.
    ``stages``: the checks it runs (see :data:`STAGES`).
    ``cli``: a command of ``keras-safe`` (run as ``cli.main(argv)``).
    """

    name: str
    accepts: frozenset[str]
    stages: frozenset[str]
    cli: bool = False

    def refuses(self, stage: str, kwargs: Mapping[str, Any]) -> bool:
        """Whether a file refused at ``stage`` with ``kwargs`` must be refused here."""
        dropped = set(kwargs) - self.accepts
        return stage in self.stages and not (dropped & RESTRICTIONS)


_LOAD_KWARGS = frozenset(
    {
        "custom_objects",
        "compile",
        "allow_imports",
        "on_mismatch",
        "expected_digest",
        "signing_key",
        "limits",
        "on_optimizer_mismatch",
    }
)

ENTRY_POINTS: tuple[EntryPoint, ...] = (
    EntryPoint("load", _LOAD_KWARGS, ALL),
    EntryPoint("verify", _LOAD_KWARGS, ALL),
    EntryPoint("inspect", frozenset({"limits"}), NO_BUILD),
    EntryPoint("diff", frozenset(), NO_BUILD | {"digest"}),
    EntryPoint("upgrade", _LOAD_KWARGS, ALL),
    EntryPoint("load_latest", _LOAD_KWARGS, ALL),
    EntryPoint("cli inspect", frozenset(), NO_BUILD, cli=True),
    EntryPoint(
        "cli verify",
        frozenset({"allow_imports", "expected_digest", "signing_key", "on_mismatch"}),
        ALL,
        cli=True,
    ),
    EntryPoint("cli diff", frozenset(), NO_BUILD | {"digest"}, cli=True),
    EntryPoint("cli upgrade", frozenset({"allow_imports", "on_mismatch"}), ALL, cli=True),
)
BY_NAME = {entry.name: entry for entry in ENTRY_POINTS}
LIBRARY = tuple(entry for entry in ENTRY_POINTS if not entry.cli)
COMMANDS = tuple(entry for entry in ENTRY_POINTS if entry.cli)

# Public functions that never read a model file (they write one).
NOT_READERS = frozenset({"register", "save", "safe_save"})
# Public aliases of an entry point above.
ALIASES = {"safe_load": "load"}


@dataclass
class Outcome:
    """What one entry point did with one file."""

    error: str | None  # the exception's class name; None when it returned
    message: str
    exit_code: int | None = None  # commands only
    accepted_codes: tuple[int, ...] = (0,)  # diff: 1 means "the models differ"

    @property
    def refused(self) -> bool:
        """An exception, or an exit status that means the file has a problem."""
        if self.exit_code is None:
            return self.error is not None
        return self.exit_code not in self.accepted_codes


def run(name: str, path: Path, kwargs: Mapping[str, Any], good: Path, scratch: Path) -> Outcome:
    """Run entry point ``name`` on ``path``, passing what it accepts of ``kwargs``.

    ``good`` is a sound archive (the other side of ``diff``); ``scratch`` a
    folder for what ``upgrade`` writes and ``load_latest`` reads. A verify
    report that is not ok counts as its error.
    """
    import keras_safe

    entry = BY_NAME[name]
    given = {k: v for k, v in kwargs.items() if k in entry.accepts}
    try:
        if entry.cli:
            return _run_command(name, path, given, good, scratch)
        if name == "load":
            keras_safe.load(path, **given)
        elif name == "verify":
            report = keras_safe.verify(path, **given)
            if not report.ok:
                assert report.error is not None
                return Outcome(type(report.error).__name__, str(report.error))
        elif name == "inspect":
            keras_safe.inspect(path, **given)
        elif name == "diff":
            keras_safe.diff(path, good)
        elif name == "upgrade":
            keras_safe.upgrade(path, scratch / "upgraded.keras", **given)
        elif name == "load_latest":
            folder = Path(tempfile.mkdtemp(dir=scratch))
            shutil.copy(path, folder / "model.keras")
            if keras_safe.load_latest(folder, **given) is None:
                return Outcome("NoneReturned", "load_latest found no loadable file")
        else:
            raise ValueError(f"unknown entry point {name!r}")
    except Exception as exc:
        return Outcome(type(exc).__name__, str(exc))
    return Outcome(None, "")


def _run_command(
    name: str, path: Path, given: Mapping[str, Any], good: Path, scratch: Path
) -> Outcome:
    from keras_safe import cli

    command = name.split()[1]
    argv = [command, str(path)]
    if command == "diff":
        argv.append(str(good))
    if command == "upgrade":
        argv.append(str(scratch / "upgraded.keras"))
    for package in given.get("allow_imports", ()):
        argv += ["--allow-imports", package]
    if given.get("on_mismatch"):
        argv += ["--on-mismatch", given["on_mismatch"]]
    if given.get("expected_digest"):
        argv += ["--expected-digest", given["expected_digest"]]
    if given.get("signing_key") is not None:
        key = Path(tempfile.mkdtemp(dir=scratch)) / "key"
        key.write_bytes(given["signing_key"])
        argv += ["--signing-key-file", str(key)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    return Outcome(None, err.getvalue(), code, (0, 1) if command == "diff" else (0,))
