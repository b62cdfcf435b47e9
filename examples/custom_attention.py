"""The attention layer from the classic "Keras fails to save my custom layer" report.

Written with keras_safe: no get_config, no from_config, and it still saves
and loads in a fresh process.
"""

from __future__ import annotations

import keras
from keras import ops

import keras_safe


@keras_safe.register(package="examples")
class CustomAttention(keras_safe.SerializableLayer):
    """Additive attention pooling over the time axis.

    Scores every time step with ``tanh(x @ W + b) @ v``, turns the scores
    into weights with a softmax over time, and returns the weighted sum of
    the steps: ``(batch, time, features) -> (batch, features)``.
    """

    def __init__(self, units: int, kernel_initializer: str = "glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        features = input_shape[-1]
        self.W = self.add_weight(
            name="W", shape=(features, self.units), initializer=self.kernel_initializer
        )
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(
            name="v", shape=(self.units, 1), initializer=self.kernel_initializer
        )

    def call(self, x):
        scores = ops.matmul(ops.tanh(ops.matmul(x, self.W) + self.b), self.v)  # (b, t, 1)
        weights = ops.softmax(scores, axis=1)
        return ops.sum(x * weights, axis=1)


def build_model(timesteps: int = 12, features: int = 8, units: int = 16) -> keras.Model:
    """A small sequence classifier ending in CustomAttention."""
    inputs = keras.Input((timesteps, features))
    x = keras.layers.LSTM(32, return_sequences=True)(inputs)
    x = CustomAttention(units, name="attention")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model
