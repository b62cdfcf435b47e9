"""Fine-tune a keras-hub task one step, save it with keras_safe, reload it in a fresh process.

Run: python examples/keras_hub_finetune.py   (needs: pip install keras-hub)

A tiny BERT text classifier, built from an explicit config (a preset would be
downloaded; this one fits on a page), with its tokenizer and preprocessor, so
it takes raw strings. keras-hub tasks compile themselves in their
constructor and override compile(), so Keras never restores a saved
optimizer into them: the file is saved without the optimizer state
(include_optimizer=False says so explicitly; by default keras_safe leaves it
out with a warning) and its manifest records that.

The reloading process imports nothing by hand: allow_imports=("keras_hub",)
lets keras_safe import keras-hub, a package keras_safe does not import on a
file's say-so. Exits 1 if the reloaded model's predictions differ.
"""

# example-requires: keras_hub

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np

import keras_safe

RELOAD = """
import sys
import numpy as np
import keras_safe

model = keras_safe.load(sys.argv[1], allow_imports=("keras_hub",))
texts = np.array(open(sys.argv[2]).read().splitlines())
np.save(sys.argv[3], model.predict(texts, verbose=0))
print("reloaded:", type(model).__name__, "with", type(model.preprocessor).__name__)
"""

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great",
              "bad", "fun", "boring", "plot", "acting"]  # fmt: skip


def main() -> int:
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    classifier = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, preprocessor=preprocessor
    )
    texts = ["the movie was great", "the plot was boring", "fun acting", "bad movie"]
    labels = np.array([1, 0, 1, 0])
    classifier.fit(np.array(texts), labels, batch_size=4, epochs=1, verbose=0)  # one step

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "classifier.keras")
        manifest = keras_safe.save(classifier, path, include_optimizer=False)
        print("saved", [record.key for record in manifest.objects])
        print("optimizer state:", manifest.model.optimizer_state, "-", manifest.model.training_note)
        with open(os.path.join(tmp, "texts.txt"), "w") as handle:
            handle.write("\n".join(texts))
        subprocess.run(
            [sys.executable, "-c", RELOAD, path, os.path.join(tmp, "texts.txt"),
             os.path.join(tmp, "out.npy")],
            check=True,
        )  # fmt: skip
        reloaded = np.load(os.path.join(tmp, "out.npy"))

    same = np.array_equal(classifier.predict(np.array(texts), verbose=0), reloaded)
    print(f"predictions of the reloaded classifier match: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
