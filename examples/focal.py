"""A custom loss and a custom metric written with keras_safe.

Used by examples/custom_loss_metric.py. Both take their configuration from
``__init__`` (the ``keras_safe.Serializable`` mixin comes first in the
bases), so they save and load with the model's training configuration.
"""

from __future__ import annotations

import keras
from keras import ops

import keras_safe


@keras_safe.register(package="examples")
class BinaryFocalLoss(keras_safe.Serializable, keras.losses.Loss):
    """Binary cross-entropy that down-weights easy examples by ``(1 - p_t) ** gamma``."""

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.gamma = gamma
        self.alpha = alpha

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
        p_t = y_true * p + (1 - y_true) * (1 - p)
        alpha_t = y_true * self.alpha + (1 - y_true) * (1 - self.alpha)
        return ops.mean(-alpha_t * (1 - p_t) ** self.gamma * ops.log(p_t), axis=-1)


@keras_safe.register(package="examples")
class RecallAtThreshold(keras_safe.Serializable, keras.metrics.Metric):
    """The share of positives predicted above ``threshold`` (state: two counters)."""

    def __init__(self, threshold: float = 0.5, name: str = "recall_at_threshold", **kwargs):
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.positives = self.add_variable(shape=(), initializer="zeros", name="positives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        positive = ops.cast(ops.reshape(y_true, (-1,)) > 0.5, "float32")
        predicted = ops.cast(ops.reshape(y_pred, (-1,)) >= self.threshold, "float32")
        self.hits.assign_add(ops.sum(positive * predicted))
        self.positives.assign_add(ops.sum(positive))

    def result(self):
        return ops.divide_no_nan(self.hits, self.positives)

    def reset_state(self):
        self.hits.assign(0.0)
        self.positives.assign(0.0)
