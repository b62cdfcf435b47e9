"""What the hostile-file guards cost when loading a large model.

Saves a model of about 100M parameters with keras_safe, then, in one run and
alternating, times ``keras_safe.load``, plain ``keras.saving.load_model`` on
the same file, and the guards alone (opening the archive with its layout
checks, the JSON guards and reference screening, the HDF5 metadata scan and
the per-dataset checker). Reports medians and the ratios.

Usage::

    python benchmarks/bench_load_guards.py [--params 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras

import keras_safe
from keras_safe import _keras
from keras_safe._format.integrity import parse_json
from keras_safe._format.reader import CONFIG, WEIGHTS, ArchiveReader
from keras_safe._guard.allowlist import iter_references
from keras_safe._guard.hdf5_bounds import DatasetChecker, dataset_shapes, scan_weights
from keras_safe._guard.screen import screen_references


def build(million_params: int) -> keras.Model:
    width = 5000
    layers = max(1, round(million_params * 1e6 / (width * width)))
    inputs = keras.Input((width,))
    x = inputs
    for _ in range(layers):
        x = keras.layers.Dense(width)(x)
    return keras.Model(inputs, x)


def guards_only(path: Path, model: keras.Model) -> None:
    with ArchiveReader(path) as reader:
        config = parse_json(reader.read(CONFIG), CONFIG, path, reader.limits)
        screen_references(list(iter_references(config, include_data=True)))
        store = _keras.RecordingH5Store(reader.window(WEIGHTS))
        try:
            scan_weights(store.h5_file, "weights", reader.limits, reader.size(WEIGHTS))
            checker = DatasetChecker(_keras.model_variables(model, False), "weights")
            for name in dataset_shapes(store.h5_file):
                checker(name, store.h5_file[name])
        finally:
            store.close()


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params",
        type=int,
        default=100,
        help="millions of parameters, in whole 5000x5000 Dense layers (25M each)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = build(args.params)
    print(f"model: {model.count_params() / 1e6:.1f}M parameters")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.keras"
        keras_safe.save(model, path, roundtrip=False)
        print(f"file: {path.stat().st_size / 1e6:.0f} MB")
        times: dict[str, list[float]] = {
            "keras_safe.load": [],
            "keras load_model": [],
            "guards alone": [],
        }
        for _ in range(args.repeats):
            times["keras_safe.load"].append(timed(keras_safe.load, path))
            times["keras load_model"].append(timed(keras.saving.load_model, path))
            times["guards alone"].append(timed(guards_only, path, model))
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:18s} median {value:7.3f}s  ({', '.join(f'{v:.3f}' for v in times[name])})")
    ratio = median["keras_safe.load"] / median["keras load_model"]
    print(f"keras_safe.load / keras load_model: {ratio:.2f}")
    print(
        f"guards / keras_safe.load: {100 * median['guards alone'] / median['keras_safe.load']:.2f}%"
    )


if __name__ == "__main__":
    main()
