"""The ``keras-safe`` command line (also ``python -m keras_safe``).

Subcommands ``inspect``, ``verify``, ``diff`` and ``upgrade`` are thin
layers over the library functions of the same names. Output is plain text
within 100 columns; results go to stdout, problems to stderr. TensorFlow is
imported only by the subcommands that need it, so ``--help`` and usage
errors answer at once.

Exit status: 0 when all is well, 1 when the file has a problem (with a
one-paragraph reason on stderr), 2 for usage errors. ``diff`` follows
``diff(1)``: 0 same model, 1 different, 2 could not compare.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from keras_safe import __version__
from keras_safe._cli.terminal import WIDTH, Progress, escape, progress_for, wrap
from keras_safe._ops.options import ON_MISMATCH
from keras_safe.errors import KerasSafeError, MissingObjectsError, _UsageError

__all__ = ["EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
_EXIT_PIPE = 141  # what a shell reports for a process killed by SIGPIPE

_DESCRIPTION = """\
Inspect, verify, compare and upgrade Keras models saved with keras_safe
(and plain .keras / .h5 files). Nothing in a file is run or imported unless
you allow it with --allow-imports."""

_EPILOG = """\
examples:
  keras-safe inspect model.keras              versions, custom objects, members, digest
  keras-safe inspect model.keras --json       the manifest as JSON
  keras-safe verify model.keras --allow-imports my_project
  keras-safe verify model.keras --expected-digest 939fe2...
  keras-safe diff before.keras after.keras    what retraining changed
  keras-safe upgrade old_model.h5 model.keras

exit status:
  0  clean        1  the file has a problem (reason on stderr)        2  usage error
  diff: 0 same model, 1 the models differ, 2 could not compare

run 'keras-safe COMMAND --help' for the options of a command."""


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors that also point at ``--help``."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        text = f"{self.prog}: error: {message}\n(see '{self.prog} --help')"
        self.exit(EXIT_USAGE, wrap(text) + "\n")


def _formatter() -> Any:
    """Help text wrapped to the terminal, at most 100 columns."""
    columns = min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    return functools.partial(argparse.RawDescriptionHelpFormatter, width=columns)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``keras-safe`` (exposed for documentation tools)."""
    parser = _Parser(
        prog="keras-safe",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=_formatter(),
    )
    parser.add_argument("--version", action="version", version=f"keras-safe {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    inspect = _command(
        commands,
        "inspect",
        "show what a file holds, without building the model",
        "Show the versions a model was saved with, the custom objects it needs (key, module,\n"
        "distribution, version), its members with sizes and SHA-256 digests, and a summary\n"
        "(layers, parameters). Neither the model nor its weights are loaded.",
    )
    inspect.add_argument("file", metavar="FILE", help="a .keras or legacy .h5 model file")
    inspect.add_argument("--json", action="store_true", help="print the manifest as JSON")
    inspect.set_defaults(run=_run_inspect)

    verify = _command(
        commands,
        "verify",
        "run every load-time check; exit 1 if one fails",
        "Run every check keras_safe.load runs: member digests, the allowlist of classes and\n"
        "functions the file names, missing custom objects, changes since saving; then rebuild\n"
        "the model and load every weight. Prints OK, or the reason on stderr (exit 1).",
    )
    verify.add_argument("file", metavar="FILE", help="the model file to check")
    _load_options(verify)
    verify.add_argument(
        "--expected-digest",
        metavar="DIGEST",
        help="refuse the file unless its content digest is DIGEST (see 'inspect')",
    )
    verify.add_argument(
        "--signing-key-file",
        metavar="PATH",
        type=Path,
        help="refuse the file unless it is signed with the key stored in PATH",
    )
    verify.add_argument(  # the former name, for one release
        "--verify-key-file", dest="old_key_file", type=Path, help=argparse.SUPPRESS
    )
    verify.set_defaults(run=_run_verify)

    diff = _command(
        commands,
        "diff",
        "show what differs between two saved models",
        "Compare two saved models: versions, custom objects, the config layer by layer and\n"
        "which weights changed (how many values, by how much). Nothing is built or imported.\n"
        "Exit status as diff(1): 0 same model, 1 different, 2 could not compare.",
    )
    diff.add_argument("a", metavar="A", help="the first .keras file (e.g. before retraining)")
    diff.add_argument("b", metavar="B", help="the second .keras file")
    diff.set_defaults(run=_run_diff)

    upgrade = _command(
        commands,
        "upgrade",
        "re-save an old file as a current, verified keras_safe archive",
        "Load SRC (a legacy .h5, a .keras without manifest, or older config versions) with\n"
        "every check, and save it to DST as a current keras_safe archive, verified.",
    )
    upgrade.add_argument("src", metavar="SRC", help="the file to upgrade")
    upgrade.add_argument("dst", metavar="DST", help="where to write the .keras archive")
    _load_options(upgrade)
    upgrade.set_defaults(run=_run_upgrade)
    return parser


def _command(commands: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description, formatter_class=_formatter()
    )
    return parser


def _load_options(parser: argparse.ArgumentParser) -> None:
    # One value per option (repeat it, or separate with commas): a list-taking
    # option would swallow FILE in 'verify --allow-imports my_project model.keras'.
    parser.add_argument(
        "--allow-imports",
        metavar="PKG",
        type=_packages,
        action="extend",
        default=[],
        help="a package whose modules may be imported to find custom objects "
        "(repeat the option, or separate packages with commas)",
    )
    parser.add_argument(
        "--on-mismatch",
        choices=ON_MISMATCH,
        default="warn",
        help="changes since saving (versions, code): report (default), fail, or ignore",
    )


def _packages(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``keras-safe`` with ``argv`` (default: the process arguments); return the exit status."""
    command = "keras-safe"
    try:
        try:
            args = build_parser().parse_args(argv)
        finally:
            sys.stdout.flush()  # --help and --version print, then exit: a closed pipe shows here
        command = f"keras-safe {args.run.__name__.removeprefix('_run_')}"
        status: int = args.run(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and keep Python's final
        # flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _EXIT_PIPE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except _UsageError as exc:
        _problem(command, str(exc))
        return EXIT_USAGE
    except (KerasSafeError, OSError) as exc:
        _problem(command, str(exc))
        return EXIT_PROBLEM


def _problem(command: str, reason: str) -> None:
    print(wrap(escape(f"{command}: {reason}")), file=sys.stderr)


def _out(text: str) -> None:
    print(wrap(escape(text)), file=sys.stdout)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 while TensorFlow's native code announces itself.

    TensorFlow logs from C++ on import (CUDA probing, CPU features) straight
    to the descriptor, past ``sys.stderr``; if the import fails, what it
    wrote is shown after all.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _library() -> Any:
    """keras_safe with Keras imported (quietly)."""
    import keras_safe

    with _quiet_stderr():
        import keras  # noqa: F401  (pay TensorFlow's import here, with its chatter hidden)
    return keras_safe


# -- inspect --------------------------------------------------------------------------


def _run_inspect(args: argparse.Namespace) -> int:
    manifest = _library().inspect(args.file)
    from keras_safe._cli import text as cli_text

    if args.json:
        data = manifest.to_json()
        if manifest.written_by != "keras_safe":
            data["written_by"] = manifest.written_by
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        _out(cli_text.manifest_text(Path(args.file), manifest))
    return EXIT_OK


# -- verify ---------------------------------------------------------------------------


def _load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"allow_imports": tuple(args.allow_imports), "on_mismatch": args.on_mismatch}


def _run_verify(args: argparse.Namespace) -> int:
    keras_safe = _library()
    from keras_safe._cli import text as cli_text

    kwargs = _load_kwargs(args)
    if args.expected_digest:
        kwargs["expected_digest"] = args.expected_digest
    key_file = args.signing_key_file
    if args.old_key_file is not None:
        if key_file is not None:
            raise _UsageError(
                "got both --signing-key-file and --verify-key-file; --verify-key-file is the "
                "deprecated name of --signing-key-file (same meaning). Pass only "
                "--signing-key-file."
            )
        print(
            "keras-safe verify: --verify-key-file is deprecated; use --signing-key-file "
            "(same meaning).",
            file=sys.stderr,
        )
        key_file = args.old_key_file
    if key_file is not None:
        kwargs["signing_key"] = _read_key(key_file)
    with _digest_progress(args.file, "loading the model..."):
        report = keras_safe.verify(args.file, **kwargs)
    if not report.ok:
        reason = report.problems[0] if report.problems else "verification failed"
        if isinstance(report.error, MissingObjectsError):
            reason += cli_text.allow_imports_hint(
                report.manifest,
                report.error.missing,
                "verify",
                args.file,
                tuple(args.allow_imports),
            )
        _problem("keras-safe verify", f"FAILED: {reason}")
        return EXIT_PROBLEM
    _out(cli_text.verify_text(report))
    return EXIT_OK


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise _UsageError(f"cannot read the key file {path}: {exc.strerror or exc}") from None
    if not key:
        raise _UsageError(f"the key file {path} is empty")
    return key


@contextlib.contextmanager
def _digest_progress(filepath: str, note: str) -> Iterator[None]:
    """On a terminal, for a big file: ``note``, then a bar over the library's digest pass.

    ``verify`` and ``upgrade`` hash every member once, while the model is
    being built; the bar follows that pass rather than hashing the file
    again beforehand.
    """
    progress: Progress | None = progress_for([filepath])
    if progress is None:
        yield
        return
    from keras_safe._format.integrity import hashing_progress

    progress.note(note)
    try:
        with hashing_progress(Path(filepath), progress):
            yield
    finally:
        progress.close()


# -- diff -----------------------------------------------------------------------------


def _run_diff(args: argparse.Namespace) -> int:
    _library()
    from keras_safe._ops.diff import compare_files

    progress = progress_for([args.a, args.b])
    try:
        report = compare_files(args.a, args.b, progress)
    except (KerasSafeError, OSError) as exc:
        _problem("keras-safe diff", f"cannot compare: {exc}")
        return EXIT_USAGE
    finally:
        if progress is not None:
            progress.close()
    _out(str(report).rstrip("\n"))
    return EXIT_OK if report.same else EXIT_PROBLEM


# -- upgrade --------------------------------------------------------------------------


def _run_upgrade(args: argparse.Namespace) -> int:
    upgrade = _library().upgrade
    with _digest_progress(args.src, f"upgrading {args.src}..."):
        manifest = upgrade(args.src, args.dst, **_load_kwargs(args))
    _out(
        f"upgraded {args.src} -> {args.dst}\n"
        f"  content digest  {manifest.digest}\n"
        f"  custom objects  {len(manifest.objects)}"
    )
    return EXIT_OK
