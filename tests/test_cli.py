"""The ``keras-safe`` command line, run as the installed console script and as
``python -m keras_safe`` in fresh processes (plus in-process runs of ``main``
for the details, which are quicker)."""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import pty
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import ROOT, SRC, run_python, write_module

import keras_safe
from keras_safe import cli
from keras_safe._cli.terminal import WIDTH, Progress, human_size, progress_for, wrap
from keras_safe._cli.text import allow_imports_hint, manifest_text
from keras_safe._format.manifest import Manifest, MemberRecord, ModelSummary, ObjectRecord
from keras_safe._format.reader import ArchiveReader

LAYERS = """
import keras
import keras_safe


@keras_safe.register(package="cli_test")
class Gain(keras_safe.SerializableLayer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gain")

    def call(self, x):
        return x * self.gain * self.factor
"""


@dataclass(frozen=True)
class Files:
    root: Path
    model: Path
    retrained: Path
    wider: Path
    plain: Path
    digest: str


def _build(module: object, units: int) -> keras.Model:
    inputs = keras.Input((6,))
    x = keras.layers.Dense(units, name="hidden")(inputs)
    x = module.Gain(factor=3.0, name="gain")(x)  # type: ignore[attr-defined]
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x), name="scorer")
    model.compile(optimizer="adam", loss="mse")
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    root = tmp_path_factory.mktemp("cli")
    write_module(root, "cli_layers", LAYERS)
    sys.path.insert(0, str(root))
    x = np.random.default_rng(0).random((32, 6)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    try:
        with keras_safe.registry.scope():
            module = importlib.import_module("cli_layers")
            model = _build(module, 4)
            model.fit(x, y, epochs=1, verbose=0)
            manifest = keras_safe.save(model, root / "model.keras")
            model.fit(x, y, epochs=1, verbose=0)
            keras_safe.save(model, root / "retrained.keras")
            wider = _build(module, 5)
            wider.fit(x, y, epochs=1, verbose=0)
            keras_safe.save(wider, root / "wider.keras")
            model.save(root / "plain.keras")
            yield Files(
                root,
                root / "model.keras",
                root / "retrained.keras",
                root / "wider.keras",
                root / "plain.keras",
                str(manifest.digest),
            )
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("cli_layers", None)


def console_script() -> str:
    found = shutil.which("keras-safe", path=str(Path(sys.executable).parent))
    found = found or shutil.which("keras-safe")
    assert found, "the keras-safe console script is not installed (pip install -e .)"
    return found


def _env(files: Files | None = None, **extra: str) -> dict[str, str]:
    paths = ([str(files.root)] if files else []) + [str(SRC), str(ROOT)]
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(paths),
        "COLUMNS": "200",  # the output must fit 100 columns whatever the terminal says
        **extra,
    }


def keras_safe_cli(*args: str, files: Files | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``keras-safe`` script; its stdout/stderr are pipes."""
    return subprocess.run(
        [console_script(), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(files),
    )


def _unwrap(text: str) -> str:
    """Undo the CLI's wrapping at 100 columns (long temporary paths wrap)."""
    return text.replace("\n    ", " ")


def assert_fits(text: str) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, f"lines wider than {WIDTH} columns: {too_wide}"


def _flip_byte(path: Path, member: str) -> None:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    # local header (30 bytes + name + extra), then the stored bytes; flip one in the middle
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- help and usage ------------------------------------------------------------------


def test_help_lists_commands_and_exit_statuses_without_importing_tensorflow() -> None:
    proc = run_python(
        """
        import contextlib, io, sys
        from keras_safe.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                main(["--help"])
            except SystemExit as exit:
                assert exit.code == 0, exit.code
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "imported TF"
        print(out.getvalue())
        """
    )
    for word in ("inspect", "verify", "diff", "upgrade", "exit status", "--allow-imports"):
        assert word in proc.stdout
    assert_fits(proc.stdout)


@pytest.mark.slow
def test_console_script_and_python_m_give_the_same_help() -> None:
    script = subprocess.run(
        [console_script(), "--help"], capture_output=True, text=True, env=_env(), timeout=120
    )
    module = subprocess.run(
        [sys.executable, "-m", "keras_safe", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert script.returncode == module.returncode == 0
    assert script.stdout.replace("keras-safe", "X") == module.stdout.replace("keras-safe", "X")
    assert script.stderr == "" and module.stderr == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["inspect"], "the following arguments are required: FILE"),
        (["verify", "x.keras", "--on-mismatch", "sometimes"], "invalid choice: 'sometimes'"),
    ],
)
def test_usage_errors_exit_2_and_point_at_help(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert expected in err.replace("\n", " ") and "--help')" in err
    assert_fits(err)


def test_allow_imports_before_or_after_the_file() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["verify", "--allow-imports", "a,b", "--allow-imports", "c", "m.keras"]
    )
    assert (args.file, args.allow_imports) == ("m.keras", ["a", "b", "c"])
    args = parser.parse_args(["upgrade", "old.h5", "new.keras", "--allow-imports", "pkg"])
    assert (args.src, args.dst, args.allow_imports) == ("old.h5", "new.keras", ["pkg"])


def test_missing_file_and_bad_digest_are_usage_errors(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["inspect", str(tmp_path / "nothing.keras")]) == cli.EXIT_USAGE
    assert "No such file" in capsys.readouterr().err
    assert cli.main(["verify", str(files.model), "--expected-digest", "abc"]) == cli.EXIT_USAGE
    assert "expected_digest must be 64 hex digits" in capsys.readouterr().err


# -- inspect -------------------------------------------------------------------------


@pytest.mark.slow
def test_inspect_shows_versions_objects_members_and_summary(files: Files) -> None:
    proc = keras_safe_cli("inspect", str(files.model))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    manifest = keras_safe.inspect(files.model)
    assert f"Keras {keras.__version__}" in out and "TensorFlow" in out and "Python" in out
    assert f"backend {keras.backend.backend()}" in out  # the backend it was saved under
    assert "cli_test>Gain  (layer)" in out and "defined in cli_layers.Gain" in out
    assert f"{manifest.model.layers} layers" in out
    assert f"{manifest.model.params:,} parameters" in out
    for name, member in manifest.members.items():
        assert member.sha256 in out and name in out
    assert f"content digest  {files.digest}" in out
    assert proc.stderr == ""  # TensorFlow's start-up chatter is kept out
    assert_fits(out)


@pytest.mark.slow
def test_inspect_json_prints_the_manifest(files: Files) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "keras_safe", "inspect", str(files.model), "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == keras_safe.inspect(files.model).to_json()


def test_inspect_plain_keras_file_says_there_is_no_manifest(
    files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["inspect", str(files.plain)]) == 0
    out = capsys.readouterr().out
    assert "without a keras_safe manifest" in out and "(no digest recorded)" in out
    assert_fits(out)
    assert cli.main(["inspect", str(files.plain), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written_by"] == "keras"


def test_manifest_text_shows_distribution_and_fits() -> None:
    record = ObjectRecord(
        key="a_rather_long_package_name>AnExtremelyLongCustomLayerClassName",
        kind="layer",
        module="a_rather_long_package_name.layers.attention.multi_head",
        qualname="AnExtremelyLongCustomLayerClassName",
        distribution="a-rather-long-package-name",
        version="1.2.0",
        config_version=3,
    )
    manifest = Manifest(
        format_version=1,
        environment={"keras_safe": "0.1.0", "keras": "3.15.1", "python": "3.11.7"},
        saved_at="2026-01-01T00:00:00+00:00",
        model=ModelSummary("Functional", "m", 7, 1000, 24, 2048),
        objects=(record,),
        members={"assets/" + "x" * 60 + "/vocabulary.txt": MemberRecord("ab" * 32, 123456)},
        digest="cd" * 32,
    )
    text = wrap(manifest_text(Path("m.keras"), manifest))
    assert "distribution a-rather-long-package-name 1.2.0" in text
    assert "config version 3" in text and "1,024 parameters (1,000 trainable)" in text
    assert "120.6 KiB" in text
    assert_fits(text)


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 5 << 20, 3 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


# -- verify --------------------------------------------------------------------------


@pytest.mark.slow
def test_verify_needs_allow_imports_in_a_fresh_process_and_says_so(files: Files) -> None:
    missing = keras_safe_cli("verify", str(files.model), files=files)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "FAILED" in missing.stderr and "cli_test>Gain" in missing.stderr
    hint = f"keras-safe verify {files.model} --allow-imports cli_layers"
    assert hint in _unwrap(missing.stderr)
    assert_fits(missing.stderr)

    clean = keras_safe_cli(
        "verify", str(files.model), "--allow-imports", "cli_layers", "--expected-digest",
        files.digest, files=files,
    )  # fmt: skip
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith(f"OK: {files.model}")
    assert "every member matches its SHA-256" in clean.stdout
    assert_fits(clean.stdout)


@pytest.mark.slow
def test_verify_tampered_file_exits_1_naming_the_member(files: Files, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.keras"
    shutil.copy(files.model, tampered)
    _flip_byte(tampered, "model.weights.h5")
    proc = keras_safe_cli("verify", str(tampered), "--allow-imports", "cli_layers", files=files)
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr and "'model.weights.h5'" in proc.stderr
    assert "SHA-256" in proc.stderr and "Traceback" not in proc.stderr
    assert_fits(proc.stderr)


def test_missing_objects_hint_for_the_command_line(files: Files) -> None:
    manifest = keras_safe.inspect(files.model)
    keys = ("cli_test>Gain",)
    hint = allow_imports_hint(manifest, keys, "verify", "m.keras", ())
    assert "keras-safe verify m.keras --allow-imports cli_layers" in hint
    # allowed but not importable (not installed, not on sys.path): say so
    hint = allow_imports_hint(manifest, keys, "verify", "m.keras", ("cli_layers",))
    if importlib.util.find_spec("cli_layers") is None:
        assert "cli_layers cannot be imported by this process" in hint
        assert "PYTHONPATH=. keras-safe verify m.keras --allow-imports cli_layers" in hint
    assert allow_imports_hint(None, keys, "verify", "m.keras", ()) == ""


def test_verify_wrong_digest_and_key_file(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with keras_safe.registry.scope():
        importlib.import_module("cli_layers")
        assert cli.main(["verify", str(files.model), "--expected-digest", "0" * 64]) == 1
        assert "not the expected" in capsys.readouterr().err
        key = tmp_path / "key"
        key.write_bytes(b"secret\n")
        assert cli.main(["verify", str(files.model), "--signing-key-file", str(key)]) == 1
        assert "is not signed" in capsys.readouterr().err
        assert cli.main(["verify", str(files.plain)]) == 0
        assert "no keras_safe manifest" in capsys.readouterr().out


def test_verify_key_file_is_a_hidden_deprecated_alias(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_bytes(b"secret\n")
    with keras_safe.registry.scope():
        importlib.import_module("cli_layers")
        assert cli.main(["verify", str(files.model), "--verify-key-file", str(key)]) == 1
    err = capsys.readouterr().err
    assert "--verify-key-file is deprecated; use --signing-key-file (same meaning)" in err
    assert "is not signed" in err  # and it did what --signing-key-file does
    both = ["--signing-key-file", str(key), "--verify-key-file", str(key)]
    assert cli.main(["verify", str(files.model), *both]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "both --signing-key-file and --verify-key-file" in err
    assert "verify-key" not in cli.build_parser().format_help()
    with pytest.raises(SystemExit):
        cli.main(["verify", "--help"])
    help_text = capsys.readouterr().out
    assert "--signing-key-file" in help_text and "--verify-key-file" not in help_text


def test_signing_key_file_must_exist(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["verify", str(files.model), "--signing-key-file", str(files.root / "no-key")]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "cannot read the key file" in capsys.readouterr().err


# -- diff ----------------------------------------------------------------------------


@pytest.mark.slow
def test_diff_after_retraining_lists_changed_weights(files: Files) -> None:
    proc = keras_safe_cli("diff", str(files.model), str(files.retrained))
    assert proc.returncode == 1, proc.stderr  # like diff(1): 1 means "they differ"
    out = _unwrap(proc.stdout)
    assert "layers/hidden/vars/0 float32[6, 4]: " in out
    assert "values differ (max abs difference" in out
    assert "optimizer variable(s) differ" in out
    assert "config (" not in out  # same architecture
    assert_fits(proc.stdout)


def test_diff_identical_config_changes_and_damage(
    files: Files, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["diff", str(files.model), str(files.model)]) == 0
    assert "identical: same content digest" in capsys.readouterr().out

    assert cli.main(["diff", str(files.model), str(files.wider)]) == 1
    out = capsys.readouterr().out
    assert_fits(out)
    out = _unwrap(out)
    assert "hidden (Dense).units: a 4, b 5" in out
    assert "layers/hidden/vars/0: a float32[6, 4], b float32[6, 5]" in out

    damaged = tmp_path / "damaged.keras"
    shutil.copy(files.retrained, damaged)
    _flip_byte(damaged, "config.json")
    assert cli.main(["diff", str(files.model), str(damaged)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "cannot compare" in err and "'config.json'" in err


# -- upgrade -------------------------------------------------------------------------


def test_upgrade_writes_a_verified_archive(
    files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "upgraded.keras"
    argv = ["upgrade", str(files.plain), str(target), "--allow-imports", "cli_layers"]
    with keras_safe.registry.scope():
        assert cli.main(argv) == 0
        out = _unwrap(capsys.readouterr().out)
        manifest = keras_safe.inspect(target)
        assert manifest.written_by == "keras_safe"
        assert f"upgraded {files.plain} -> {target}" in out and manifest.digest in out
        assert keras_safe.verify(target, allow_imports=("cli_layers",)).ok
    assert cli.main(["upgrade", str(tmp_path / "missing.keras"), str(target)]) == cli.EXIT_USAGE
    assert "No such file" in capsys.readouterr().err


# -- pipes and terminals -------------------------------------------------------------


def test_closed_pipe_ends_quietly() -> None:
    proc = run_python(
        """
        import os, sys
        from keras_safe.cli import main
        read, write = os.pipe()
        os.close(read)                  # the reader (| head) is gone
        os.dup2(write, sys.stdout.fileno())
        sys.exit(main(["--help"]))
        """,
        check=False,
    )
    assert proc.returncode in (0, 141), proc.stderr  # argparse drops the failed write itself
    assert proc.stderr == ""  # no traceback, no "Exception ignored" at exit


def test_closed_pipe_while_printing_a_result(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert cli.main(["inspect", str(files.model)]) == 141
        monkeypatch.undo()


def _run_with_tty_stderr(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [console_script(), *args], stdout=subprocess.PIPE, stderr=follower, env=env, text=True
    )
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO once the child closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    out, _ = proc.communicate(timeout=300)
    reader.join(timeout=30)
    os.close(leader)
    return proc.returncode, out, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_progress_on_a_terminal_only(files: Files) -> None:
    env = _env(files, KERAS_SAFE_PROGRESS_MIN_BYTES="0")
    args = ["verify", str(files.model), "--allow-imports", "cli_layers"]
    status, out, terminal = _run_with_tty_stderr(args, env)
    assert status == 0, terminal
    assert "checking digests..." in terminal and "MiB" in terminal
    assert "loading the model..." in terminal
    assert out.startswith("OK:")  # the result itself stays on stdout


def test_progress_only_for_big_files_on_a_terminal(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader, follower = pty.openpty()
    read, write = os.pipe()
    with os.fdopen(follower, "w") as terminal, os.fdopen(write, "w") as pipe:
        monkeypatch.setenv("KERAS_SAFE_PROGRESS_MIN_BYTES", "0")
        assert progress_for([files.model], terminal) is not None
        assert progress_for([files.model], pipe) is None
        monkeypatch.delenv("KERAS_SAFE_PROGRESS_MIN_BYTES")
        assert progress_for([files.model], terminal) is None  # far below 100 MB
    os.close(leader)
    os.close(read)


def test_verify_and_upgrade_on_a_terminal_hash_each_member_once(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The progress bar follows the library's digest pass; the file is not hashed twice."""
    terminal = io.StringIO()
    monkeypatch.setattr(cli, "progress_for", lambda paths: Progress(terminal))
    hashed: list[tuple[Path, str]] = []
    sha256 = ArchiveReader.sha256

    def counting(self: ArchiveReader, name: str, progress: Any = None) -> str:
        hashed.append((self.path, name))
        return sha256(self, name, progress)

    monkeypatch.setattr(ArchiveReader, "sha256", counting)
    with keras_safe.registry.scope():
        importlib.import_module("cli_layers")
        assert cli.main(["verify", str(files.model), "--allow-imports", "cli_layers"]) == 0
        assert "model.weights.h5" in [name for _, name in hashed]
        assert len(hashed) == len(set(hashed)), hashed
        assert "loading the model..." in terminal.getvalue()
        assert "checking digests..." in terminal.getvalue()

        hashed.clear()
        target = tmp_path / "upgraded.keras"
        argv = ["upgrade", str(files.model), str(target), "--allow-imports", "cli_layers"]
        assert cli.main(argv) == 0
        source = [name for path, name in hashed if path == files.model]
        assert "model.weights.h5" in source
        assert len(source) == len(set(source)), source
