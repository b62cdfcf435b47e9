"""The models Keras users actually train save with keras_safe and load in a fresh process.

keras-hub tasks (built from tiny explicit configs, never presets: nothing is
downloaded), a subclassed model without ``call()`` trained through its own
``train_step``, and a model compiled with registered loss and metric
functions. Each is saved here with ``keras_safe.save(roundtrip=True)`` and
loaded with ``keras_safe.load`` in a fresh process, which compares outputs
bit for bit and reports the training state it got back.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from conftest import run_python

import keras_safe
from keras_safe._guard.references import in_words

needs_keras_hub = pytest.mark.skipif(
    importlib.util.find_spec("keras_hub") is None, reason="keras-hub is not installed"
)

PACKAGE = "eco_project"
SOURCE = '''
"""A user's project: registered loss and metric functions, a VAE-style model."""

import keras
import keras_safe


@keras_safe.register(package="eco_project")
def half_squared_error(y_true, y_pred):
    return 0.5 * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


@keras_safe.register(package="eco_project")
def worst_error(y_true, y_pred):
    return keras.ops.max(keras.ops.abs(y_true - y_pred), axis=-1)


@keras_safe.register(package="eco_project")
class AutoEncoder(keras.Model):
    """The keras.io VAE's shape: parts as constructor arguments, no call()."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            reconstruction = self.decoder(self.encoder(data))
            loss = keras.ops.mean(keras.ops.square(data - reconstruction))
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
        }

    @classmethod
    def from_config(cls, config):
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)
'''

# Loads each file in a fresh process: [{path, kwargs, inputs?, outputs?, part?,
# optimizer?}] -> one JSON line per load.
LOADER = """
import json, sys, warnings
import numpy as np
import keras_safe

for job in json.loads(sys.argv[1]):
    report = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras_safe.load(job["path"], **job["kwargs"])
        except keras_safe.KerasSafeError as exc:
            report = {"ok": False, "type": type(exc).__name__, "message": str(exc)}
    report["warnings"] = [
        str(w.message) for w in caught if issubclass(w.category, keras_safe.TrainingStateWarning)
    ]
    if report.get("ok", True):
        report["ok"] = True
        report["class"] = type(model).__name__
        optimizer = getattr(model, "optimizer", None)
        report["compiled"] = bool(model.compiled)
        report["optimizer"] = type(optimizer).__name__ if optimizer is not None else None
        report["optimizer_variables"] = len(optimizer.variables) if optimizer is not None else 0
        report["iterations"] = int(optimizer.iterations.numpy()) if optimizer is not None else 0
        if job.get("inputs"):
            inputs = dict(np.load(job["inputs"]))
            inputs = inputs.pop("x") if list(inputs) == ["x"] else inputs
            part = getattr(model, job["part"]) if job.get("part") else model
            got = np.asarray(part.predict(inputs, verbose=0))
            report["outputs_equal"] = bool(np.array_equal(got, np.load(job["outputs"])))
        if job.get("optimizer_state"):
            saved = np.load(job["optimizer_state"])
            values = [np.asarray(v.numpy()) for v in optimizer.variables]
            report["optimizer_state_equal"] = len(values) == len(saved.files) and all(
                np.array_equal(values[i], saved[f"v{i}"]) for i in range(len(values))
            )
        loss = getattr(model, "loss", None)
        report["loss"] = getattr(loss, "__name__", type(loss).__name__)
        report["metrics"] = sorted(m.name for m in model.metrics)
    print("REPORT " + json.dumps(report))
"""


def load_fresh(jobs: list[dict[str, Any]], path: list[Path] | None = None) -> list[dict[str, Any]]:
    proc = run_python(LOADER, json.dumps(jobs, default=str), path=path)
    reports = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line[:7] == "REPORT "]
    assert len(reports) == len(jobs), proc.stdout + proc.stderr[-3000:]
    return reports


def io_job(tmp_path: Path, name: str, inputs: Any, outputs: Any, **job: Any) -> dict[str, Any]:
    arrays = inputs if isinstance(inputs, dict) else {"x": inputs}
    np.savez(tmp_path / f"{name}_in.npz", **arrays)
    np.save(tmp_path / f"{name}_out.npy", np.asarray(outputs))
    return {
        "inputs": str(tmp_path / f"{name}_in.npz"),
        "outputs": str(tmp_path / f"{name}_out.npy"),
        **job,
    }


def training_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message) for w in caught if issubclass(w.category, keras_safe.TrainingStateWarning)
    ]


# -- keras-hub tasks ------------------------------------------------------------------


def tiny_bert_classifier() -> tuple[Any, dict[str, np.ndarray]]:
    import keras_hub

    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    model = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    rng = np.random.default_rng(0)
    inputs = {
        "token_ids": rng.integers(0, 30, (2, 8)).astype("int32"),
        "segment_ids": np.zeros((2, 8), "int32"),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    return model, inputs


def tiny_image_classifier() -> tuple[Any, np.ndarray]:
    import keras_hub

    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        use_pre_activation=False,
        image_shape=(8, 8, 3),
    )
    model = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3, preprocessor=None)
    images = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32")
    return model, images


@pytest.mark.slow
@needs_keras_hub
def test_untrained_keras_hub_text_classifier_saves_and_loads(tmp_path: Path) -> None:
    model, inputs = tiny_bert_classifier()
    path = tmp_path / "bert.keras"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = keras_safe.save(model, path, roundtrip=True)
    assert training_warnings(caught) == []  # an optimizer that never stepped: nothing lost
    assert manifest.model.optimizer == "Adam"
    assert manifest.model.optimizer_state == "excluded"
    assert "BertTextClassifier overrides compile()" in (manifest.model.training_note or "")
    assert keras_safe.inspect(path).model == manifest.model
    job = io_job(
        tmp_path,
        "bert",
        inputs,
        model.predict(inputs, verbose=0),
        path=str(path),
        kwargs={"allow_imports": ["keras_hub"]},
    )
    [report] = load_fresh([job])
    assert report["ok"], report
    assert report["class"] == "BertTextClassifier" and report["outputs_equal"]
    assert report["compiled"] and report["optimizer"] == "Adam"
    assert report["warnings"] == []  # compiled as saved: by its constructor


@pytest.mark.slow
@needs_keras_hub
def test_keras_hub_image_classifier_after_a_training_step(tmp_path: Path) -> None:
    from keras_safe import cli

    model, images = tiny_image_classifier()
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))  # not the default
    model.fit(images, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    path = tmp_path / "resnet.keras"

    with pytest.raises(keras_safe.SerializationError, match="include_optimizer=False"):
        keras_safe.save(model, path, include_optimizer=True)
    assert not path.exists()

    with pytest.warns(keras_safe.TrainingStateWarning) as caught:
        manifest = keras_safe.save(model, path, roundtrip=True, sample_input=images)
    [message] = [str(w.message) for w in caught if w.category is keras_safe.TrainingStateWarning]
    assert "SGD state: " in message and "1 training step(s)" in message
    assert "ImageClassifier overrides compile()" in message
    assert ".tmp" not in message
    assert manifest.model.optimizer_state == "excluded"
    assert manifest.model.optimizer_params is None

    assert cli.main(["inspect", str(path)]) == 0  # prints the manifest

    job = io_job(
        tmp_path,
        "resnet",
        images,
        model.predict(images, verbose=0),
        path=str(path),
        kwargs={"allow_imports": ["keras_hub"]},
    )
    [report] = load_fresh([job])
    assert report["ok"], report
    assert report["outputs_equal"]
    # Keras does not apply a saved compile config to a class overriding compile():
    # the model has its constructor's, and the loader says so.
    assert report["optimizer"] == "Adam" and report["iterations"] == 0
    [warning] = report["warnings"]
    assert "optimizer SGD" in warning and "was not applied" in warning


@needs_keras_hub
def test_inspect_shows_what_the_file_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from keras_safe import cli

    model, _ = tiny_bert_classifier()
    path = tmp_path / "bert.keras"
    keras_safe.save(model, path, roundtrip=False)
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Adam, state not in the file" in out
    assert "overrides compile()" in out


@needs_keras_hub
def test_keras_hub_task_built_with_compile_false(tmp_path: Path) -> None:
    import keras_hub

    backbone, _ = tiny_bert_classifier()
    model = keras_hub.models.BertTextClassifier(
        backbone.backbone, num_classes=2, preprocessor=None, compile=False
    )
    path = tmp_path / "uncompiled.keras"
    manifest = keras_safe.save(model, path, roundtrip=True)
    assert manifest.model.optimizer_state == "none"
    loaded = keras_safe.load(path)  # keras_hub is imported here
    assert loaded.compiled  # by its own constructor, as Keras loads it too


@pytest.mark.slow
@needs_keras_hub
def test_plain_keras_file_of_a_keras_hub_task(tmp_path: Path) -> None:
    model, images = tiny_image_classifier()
    model.fit(images, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    path = tmp_path / "plain.keras"
    model.save(path)  # Keras writes the optimizer state it will not restore
    expected = model.predict(images, verbose=0)
    refused, dropped = load_fresh(
        [
            {"path": str(path), "kwargs": {"allow_imports": ["keras_hub"]}},
            io_job(
                tmp_path,
                "plain",
                images,
                expected,
                path=str(path),
                kwargs={"allow_imports": ["keras_hub"], "on_optimizer_mismatch": "warn"},
            ),
        ]
    )
    assert not refused["ok"] and refused["type"] == "CompatibilityError"
    message = refused["message"]
    assert "on_optimizer_mismatch='warn'" in message
    assert "24 variables of the saved optimizer Adam" in message
    assert "ImageClassifier overrides compile()" in message
    assert len(message.splitlines()) <= 3  # a summary, not one line per variable
    assert "build()" not in message and "aliases" not in message

    assert dropped["ok"], dropped
    assert dropped["outputs_equal"]
    [warning] = dropped["warnings"]
    assert "24 variables of the saved optimizer Adam" in warning
    assert "optimizer/vars/0" in warning and "It was not loaded" in warning


@pytest.mark.slow
@needs_keras_hub
def test_keras_hub_files_are_refused_with_a_public_fix(tmp_path: Path) -> None:
    model, _ = tiny_bert_classifier()
    path = tmp_path / "bert.keras"
    keras_safe.save(model, path, roundtrip=False)
    [report] = load_fresh([{"path": str(path), "kwargs": {}}])
    assert not report["ok"] and report["type"] == "MissingObjectsError"
    message = report["message"]
    fix = message[message.index("Fix:") :]
    assert "import keras_hub\n" in fix
    assert "keras_safe.load(path, allow_imports=('keras_hub',))" in fix
    assert ".src." not in fix
    assert "aliases" not in message
    assert "used as model 'bert_text_classifier" in message
    assert "keras_hub is a Keras-team package" in message


@needs_keras_hub
def test_a_keras_hub_tokenizer_told_to_read_a_path_is_refused(tmp_path: Path) -> None:
    import zipfile

    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=4)
    backbone, _ = tiny_bert_classifier()
    model = keras_hub.models.BertTextClassifier(
        backbone.backbone, num_classes=2, preprocessor=preprocessor
    )
    honest, hostile = tmp_path / "honest.keras", tmp_path / "hostile.keras"
    model.save(honest)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the model\n")
    with zipfile.ZipFile(honest) as source, zipfile.ZipFile(hostile, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                text = data.decode()
                assert text.count('"vocabulary": null') == 1
                data = text.replace(
                    '"vocabulary": null', json.dumps({"vocabulary": str(secret)})[1:-1]
                ).encode()
            target.writestr(name, data)
    with pytest.raises(
        keras_safe.UnsafeModelError, match=r"BertTokenizer\(vocabulary=.*secret\.txt"
    ):
        keras_safe.load(hostile, allow_imports=("keras_hub",))


@needs_keras_hub
def test_lora_enabled_after_construction_is_named_as_the_cause(tmp_path: Path) -> None:
    model, _ = tiny_bert_classifier()
    model.backbone.enable_lora(2)  # not in the backbone's config: Keras loses it too
    target = tmp_path / "lora.keras"
    with pytest.raises(keras_safe.VerificationError) as info:
        keras_safe.save(model, target)
    message = str(info.value)
    assert "have LoRA enabled" in message and "save_lora_weights" in message
    assert "create all weights in build()" not in message
    assert not target.exists()


# -- a subclassed model without call() ----------------------------------------------


@pytest.fixture
def project(tmp_path: Path, import_module_from: Any, scope: Any) -> Any:
    return import_module_from(PACKAGE, SOURCE)


@pytest.mark.slow
@pytest.mark.tensorflow_only(reason="its train_step uses tf.GradientTape, as on keras.io")
def test_trained_subclassed_model_without_call(tmp_path: Path, project: Any) -> None:
    keras.utils.set_random_seed(3)
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="encoder")
    decoder = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4)], name="decoder")
    model = project.AutoEncoder(encoder, decoder)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = np.random.default_rng(0).random((8, 4)).astype("float32")
    model.fit(data, epochs=2, batch_size=4, verbose=0)
    assert not model.built  # never called: Keras alone would not restore its optimizer

    path = tmp_path / "autoencoder.keras"
    manifest = keras_safe.save(model, path, roundtrip=True)
    assert manifest.model.optimizer_state == "included"
    assert manifest.model.training_note is None
    np.savez(
        tmp_path / "optimizer.npz",
        **{f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)},
    )
    job = io_job(
        tmp_path,
        "encoder",
        data,
        model.encoder.predict(data, verbose=0),
        path=str(path),
        part="encoder",
        optimizer_state=str(tmp_path / "optimizer.npz"),
        kwargs={"allow_imports": [PACKAGE]},
    )
    [report] = load_fresh([job], path=[tmp_path])
    assert report["ok"], report
    assert report["class"] == "AutoEncoder" and report["outputs_equal"]
    assert report["optimizer"] == "Adam" and report["iterations"] == 4
    assert report["optimizer_state_equal"]
    assert report["warnings"] == []


# -- registered functions in the compile settings --------------------------------------


@pytest.mark.slow
def test_registered_loss_and_metric_functions_load_through_allow_imports(
    tmp_path: Path, project: Any
) -> None:
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss=project.half_squared_error, metrics=[project.worst_error])
    x = np.random.default_rng(0).random((4, 3)).astype("float32")
    model.fit(x, np.ones((4, 2), "float32"), verbose=0)
    path = tmp_path / "functions.keras"
    keras_safe.save(model, path, roundtrip=True)

    expected = model.predict(x, verbose=0)
    missing, loaded = load_fresh(
        [
            {"path": str(path), "kwargs": {}},
            io_job(
                tmp_path, "fn", x, expected, path=str(path), kwargs={"allow_imports": [PACKAGE]}
            ),
        ],
        path=[tmp_path],
    )
    assert not missing["ok"] and missing["type"] == "MissingObjectsError"
    assert "eco_project>half_squared_error (function, module eco_project" in missing["message"]
    assert "used as the loss passed to compile()" in missing["message"]
    assert "used as a metric passed to compile()" in missing["message"]
    assert "allow_imports=('eco_project',)" in missing["message"]

    assert loaded["ok"], loaded
    assert loaded["outputs_equal"]
    assert loaded["loss"] == "half_squared_error"
    assert loaded["optimizer"] == "Adam" and loaded["iterations"] == 1


def test_a_repeated_allow_imports_call_is_not_the_fix(tmp_path: Path, project: Any) -> None:
    def gone(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

    gone.__module__ = PACKAGE  # as if defined there, and since removed
    path = tmp_path / "gone.keras"
    with keras_safe.registry.scope():
        keras_safe.register(package=PACKAGE)(gone)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer="adam", loss=gone)
        keras_safe.save(model, path, roundtrip=False)
    with pytest.raises(keras_safe.MissingObjectsError) as info:
        keras_safe.load(path, allow_imports=(PACKAGE,))
    message = str(info.value)
    assert "used as the loss passed to compile()" in message
    assert "allow_imports=('eco_project',) was given" in message
    assert "or let keras_safe import them" not in message


# -- include_optimizer ------------------------------------------------------------------


def test_include_optimizer_false_keeps_the_training_configuration(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    path = tmp_path / "no_optimizer.keras"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = keras_safe.save(model, path, include_optimizer=False)
    assert training_warnings(caught) == []  # asked for: recorded, not warned about
    assert manifest.model.optimizer_state == "excluded"
    assert "include_optimizer=False" in (manifest.model.training_note or "")
    loaded = keras_safe.load(path)
    assert loaded.compiled and type(loaded.optimizer).__name__ == "Adam"
    assert int(loaded.optimizer.iterations.numpy()) == 0
    assert float(loaded.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    np.testing.assert_array_equal(
        loaded.predict(np.ones((1, 3)), verbose=0), model.predict(np.ones((1, 3)), verbose=0)
    )

    with pytest.raises(ValueError, match="include_optimizer must be"):
        keras_safe.save(model, path, include_optimizer="yes")  # type: ignore[arg-type]


def test_included_optimizer_state_is_recorded(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    manifest = keras_safe.save(model, tmp_path / "m.keras", include_optimizer=True)
    assert (manifest.model.optimizer, manifest.model.optimizer_state) == ("Adam", "included")
    assert manifest.model.optimizer_params == 2 * (3 * 2 + 2) + 2
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert keras_safe.save(plain, tmp_path / "p.keras").model.optimizer_state == "none"


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("net.compile_config.loss", "the loss passed to compile()"),
        ("net.compile_config.loss.out", "a loss passed to compile() (loss.out)"),
        ("net.compile_config.metrics[0]", "a metric passed to compile() (metrics[0])"),
        ("net.compile_config.optimizer", "the optimizer passed to compile()"),
        (
            "net.compile_config.optimizer.config.learning_rate",
            "the learning-rate schedule of the optimizer passed to compile()",
        ),
        ("net", "model 'net'"),
        ("net > block", "layer 'block' (in net)"),
        (
            "net > block > dense.kernel_initializer",
            "the kernel_initializer of layer 'dense' (in net > block)",
        ),
    ],
)
def test_where_an_object_is_used_in_words(where: str, words: str) -> None:
    assert in_words(where) == words
