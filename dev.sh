#!/usr/bin/env bash
# Set up virtualenvs from pyproject.toml and run one task.
#
#   ./dev.sh demo           run the main example (examples/attention.py)
#   ./dev.sh test           lint and type-check; build the wheel and sdist and check them;
#                           install the wheel in a fresh virtualenv and run the whole
#                           test suite there, from outside the checkout
#   ./dev.sh test-keras     the same wheel against each older Keras release of the
#                           supported range (.ci/keras-versions), on a subset of the suite
#   ./dev.sh test-backends  the same wheel with JAX and with PyTorch as the Keras backend
#                           (.ci/backends), on a subset of the suite; and with JAX and
#                           without TensorFlow installed
#   ./dev.sh bench          run the save/load benchmark (extra arguments are passed on;
#                           installs the bench extra, matplotlib, for its chart)
#   ./dev.sh docs           build the documentation site into site/ with mkdocs build --strict
#                           (extra arguments are passed on, e.g. --site-dir DIR)
#   ./dev.sh shell          open a shell with the development virtualenv activated
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

PYTHON=${PYTHON:-python3}
VENV=${KERAS_SAFE_VENV:-.venv}
# Fresh virtualenvs for the installed-wheel runs live outside the checkout.
SCRATCH=${KERAS_SAFE_SCRATCH:-${TMPDIR:-/tmp}/keras_safe-ci}
# pip keeps downloaded wheels in its cache (~/.cache/pip): reused when the
# machine keeps it, downloaded again when it does not.
PIP=(python -m pip install --quiet --disable-pip-version-check)

setup() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "keras_safe needs Python >= 3.10; set PYTHON=/path/to/python3.x" >&2
        exit 2
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed" want
    want=$("$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
        "$VENV/bin/${PIP[0]}" "${PIP[@]:1}" -e ".[dev]"
        echo "$want" > "$stamp"
    fi
    export PATH="$ROOT/$VENV/bin:$PATH"
    export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
}

# Build the wheel and sdist into $SCRATCH/dist and check them against the tree.
build_dist() {
    rm -rf "$SCRATCH/dist"
    python -m build --sdist --wheel --outdir "$SCRATCH/dist" . > "$SCRATCH/build.log" 2>&1 \
        || { cat "$SCRATCH/build.log"; exit 1; }
    python tools/check_dist.py "$SCRATCH"/dist/*.whl "$SCRATCH"/dist/*.tar.gz
}

# The interpreter of Python version $1 (python3.10 on PATH, or pyenv's), or fail.
find_python() {
    local found=python$1
    if ! "$found" -c '' 2>/dev/null && command -v pyenv >/dev/null; then
        local version
        version=$(pyenv versions --bare | grep -E "^$1(\.|$)" | tail -n 1 || true)
        [ -n "$version" ] && found=$(PYENV_VERSION=$version pyenv which "python$1")
    fi
    "$found" -c '' 2>/dev/null || { echo "Python $1 is needed for this job and was not found" >&2; exit 1; }
    echo "$found"
}

# A fresh virtualenv at $1 with the built wheel, its test extra and any further
# requirements ("keras==3.13.2" ...), or with "--hub" the keras-hub and bench extras
# too (the main job: ecosystem models, and the benchmark's chart), or with
# "--no-deps" the wheel alone; nothing of the checkout is installed.
wheel_venv() {
    local where=$1; shift
    rm -rf "$where"
    "$PYTHON" -m venv "$where"
    local wheel
    wheel=$(ls "$SCRATCH"/dist/*.whl)
    if [ "${1:-}" = --no-deps ]; then
        "$where/bin/${PIP[0]}" "${PIP[@]:1}" --no-deps "$wheel"
    elif [ "${1:-}" = --hub ]; then
        "$where/bin/${PIP[0]}" "${PIP[@]:1}" "$wheel[test,hub,bench]"
    else
        "$where/bin/${PIP[0]}" "${PIP[@]:1}" "$wheel[test]" "$@"
    fi
}

# Run pytest with the virtualenv at $1 from an empty directory, so only the
# installed package can be imported; further arguments go to pytest.
pytest_installed() {
    local where=$1; shift
    local away="$SCRATCH/cwd"
    mkdir -p "$away"
    (cd "$away" && KERAS_SAFE_TEST_INSTALLED=1 "$where/bin/python" -m pytest \
        -c "$ROOT/pyproject.toml" --rootdir "$ROOT" -p no:cacheprovider "$@")
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
        mkdir -p "$SCRATCH"
        echo "== ruff check"; ruff check .
        echo "== mypy --strict src/keras_safe"; mypy --strict src/keras_safe
        echo "== build and check the wheel and sdist"; build_dist
        echo "== install the wheel in a fresh virtualenv"; wheel_venv "$SCRATCH/venv" --hub
        echo "== pytest (installed wheel, run from outside the checkout)"
        KERAS_SAFE_MAIN_JOB=1 pytest_installed "$SCRATCH/venv" -n 2 "$ROOT/tests" "$@"
        ;;
    test-keras)
        setup
        mkdir -p "$SCRATCH"
        build_dist
        # One line per job: the keras and tensorflow requirements, then the test files.
        mapfile -t jobs < <(grep -v '^[[:space:]]*\(#\|$\)' .ci/keras-versions)
        for job in "${jobs[@]}"; do
            read -r keras tf files options <<<"$job"
            # options: "python=3.10" runs the job on that interpreter; "below-range"
            # installs the wheel without its dependencies (pip would refuse the pair)
            local_python=$PYTHON
            if [[ " $options " =~ \ python=([0-9.]+)\  ]]; then
                local_python=$(find_python "${BASH_REMATCH[1]}")
            fi
            echo "== $keras $tf $($local_python -c 'import platform; print("python", platform.python_version())'): ${files//,/ }"
            if [[ " $options " == *" below-range "* ]]; then
                # pip refuses the wheel beside a Keras below its range: put it there by hand
                PYTHON=$local_python wheel_venv "$SCRATCH/venv-job" --no-deps
                mapfile -t reqs < <(python tools/requirements.py --without keras tensorflow --extra test)
                "$SCRATCH/venv-job/bin/${PIP[0]}" "${PIP[@]:1}" "$keras" "$tf" "${reqs[@]}"
            else
                PYTHON=$local_python wheel_venv "$SCRATCH/venv-job" "$keras" "$tf"
            fi
            "$SCRATCH/venv-job/bin/python" -c \
                'import keras, tensorflow as tf; print("keras", keras.version(), "tensorflow", tf.__version__)'
            read -r -a paths <<<"${files//,/ }"
            pytest_installed "$SCRATCH/venv-job" -n 2 -q "${paths[@]/#/$ROOT/tests/}" "$@" </dev/null
        done
        rm -rf "$SCRATCH/venv-job"
        ;;
    test-backends)
        setup
        mkdir -p "$SCRATCH"
        build_dist
        # One line per job: name, backend, its packages (comma-separated), the test files, options.
        mapfile -t jobs < <(grep -v '^[[:space:]]*\(#\|$\)' .ci/backends)
        for job in "${jobs[@]}"; do
            read -r name backend packages files options <<<"$job"
            read -r -a wanted <<<"${packages//,/ }"
            echo "== $name: KERAS_BACKEND=$backend, ${wanted[*]}: ${files//,/ }"
            started=$SECONDS
            if [[ " $options " == *" without-tensorflow "* ]]; then
                # How a JAX or PyTorch user installs keras_safe without TensorFlow
                # (docs/guides/backends.md): the wheel alone, then the rest.
                wheel_venv "$SCRATCH/venv-job" --no-deps
                mapfile -t reqs < <(python tools/requirements.py --without tensorflow --extra test)
                "$SCRATCH/venv-job/bin/${PIP[0]}" "${PIP[@]:1}" "${reqs[@]}" "${wanted[@]}"
                if "$SCRATCH/venv-job/bin/python" -c 'import tensorflow' 2>/dev/null; then
                    echo "TensorFlow is importable in the $name job" >&2
                    exit 1
                fi
            else
                wheel_venv "$SCRATCH/venv-job" "${wanted[@]}"
            fi
            KERAS_BACKEND=$backend "$SCRATCH/venv-job/bin/python" -c \
                'import keras; print("keras", keras.version(), "backend", keras.backend.backend())'
            required=""  # option all-backends: tests/test_backends.py demands all three
            [[ " $options " == *" all-backends "* ]] && required=tensorflow,jax,torch
            read -r -a paths <<<"${files//,/ }"
            KERAS_BACKEND=$backend KERAS_SAFE_REQUIRE_BACKENDS=$required \
                pytest_installed "$SCRATCH/venv-job" -n 2 -q "${paths[@]/#/$ROOT/tests/}" "$@" </dev/null
            echo "== $name: $((SECONDS - started)) s (virtualenv and tests)"
        done
        rm -rf "$SCRATCH/venv-job"
        ;;
    bench)
        setup
        # The bench extra (matplotlib, for the chart) goes into the same virtualenv.
        stamp="$VENV/.installed-bench"
        want=$(cat "$VENV/.installed")
        if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
            "${PIP[@]}" -e ".[bench]"
            echo "$want" > "$stamp"
        fi
        python benchmarks/bench_save_load.py "$@"
        ;;
    docs)
        setup
        # The docs extra (MkDocs, Material, mkdocstrings) goes into the same virtualenv.
        stamp="$VENV/.installed-docs"
        want=$(cat "$VENV/.installed")
        if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
            "${PIP[@]}" -e ".[docs]"
            echo "$want" > "$stamp"
        fi
        NO_MKDOCS_2_WARNING=1 mkdocs build --strict "$@"
        ;;
    shell)
        setup
        exec "${SHELL:-bash}"
        ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
