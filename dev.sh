#!/usr/bin/env bash
# Set up a virtualenv in .venv (from pyproject.toml) and run one task in it.
#
#   ./dev.sh demo    run the main example (examples/attention.py)
#   ./dev.sh test    lint, type-check and run the whole test suite
#   ./dev.sh bench   run the save/load benchmark (extra arguments are passed on)
#   ./dev.sh shell   open a shell with the virtualenv activated
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${KERAS_SAFE_VENV:-.venv}

setup() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "keras_safe needs Python >= 3.10; set PYTHON=/path/to/python3.x" >&2
        exit 2
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed" want
    want=$(cat pyproject.toml | "$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
        echo "$want" > "$stamp"
    fi
    export PATH="$PWD/$VENV/bin:$PATH"
    export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
}

task=${1:-}
[ $# -gt 0 ] && shift
case "$task" in
    demo)
        setup
        python examples/attention.py "$@"
        ;;
    test)
        setup
        echo "== ruff check"; ruff check .
        echo "== mypy --strict src/keras_safe"; mypy --strict src/keras_safe
        echo "== pytest"; python -m pytest -n 2 "$@"
        ;;
    bench)
        setup
        python benchmarks/bench_save_load.py "$@"
        ;;
    shell)
        setup
        exec "${SHELL:-bash}"
        ;;
    *)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
