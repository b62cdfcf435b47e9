"""A subclassed classifier written with keras_safe: no get_config, no from_config.

Used by examples/subclassed_model.py; a training script and a serving
process would both import this module.
"""

from __future__ import annotations

import keras

import keras_safe


@keras_safe.register(package="examples")
class ResidualBlock(keras_safe.SerializableLayer):
    """``x + Dropout(Dense(Dense(x)))``, then layer normalization."""

    def __init__(self, units: int, dropout: float = 0.1, activation: str = "gelu", **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.activation = activation
        self.expand = keras.layers.Dense(units, activation=activation)
        self.project = keras.layers.Dense(units)
        self.drop = keras.layers.Dropout(dropout)
        self.norm = keras.layers.LayerNormalization()

    def call(self, x, training=False):
        return self.norm(x + self.drop(self.project(self.expand(x)), training=training))


@keras_safe.register(package="examples")
class ResidualMLP(keras_safe.SerializableModel):
    """A subclassed model: a stem, ``depth`` residual blocks and a classification head."""

    def __init__(self, classes: int, width: int = 32, depth: int = 2, dropout: float = 0.1,
                 **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.stem = keras.layers.Dense(width)
        self.blocks = [ResidualBlock(width, dropout, name=f"block_{i}") for i in range(depth)]
        self.head = keras.layers.Dense(classes)

    def call(self, x, training=False):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, training=training)
        return self.head(x)
