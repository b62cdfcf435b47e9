"""A loss, a metric and a learning-rate schedule, each a keras_safe.Serializable."""

from __future__ import annotations

import math

import keras
from keras import ops

import keras_safe


@keras_safe.register(package="tiny_transformer")
class SmoothedCrossentropy(keras_safe.Serializable, keras.losses.Loss):
    """Sparse categorical cross-entropy against label-smoothed targets."""

    def __init__(self, num_classes: int, smoothing: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.smoothing = smoothing

    def call(self, y_true, y_pred):
        one_hot = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), self.num_classes)
        target = one_hot * (1.0 - self.smoothing) + self.smoothing / self.num_classes
        return keras.losses.categorical_crossentropy(target, y_pred)


@keras_safe.register(package="tiny_transformer")
class ConfidentAccuracy(keras_safe.Serializable, keras.metrics.Metric):
    """Accuracy over the predictions whose top probability reaches ``threshold``."""

    def __init__(self, threshold: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.threshold = threshold
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen")

    def update_state(self, y_true, y_pred, sample_weight=None):
        confident = ops.cast(ops.max(y_pred, axis=-1) >= self.threshold, "float32")
        correct = ops.cast(
            ops.equal(
                ops.cast(ops.argmax(y_pred, axis=-1), "int32"),
                ops.cast(ops.reshape(y_true, (-1,)), "int32"),
            ),
            "float32",
        )
        self.hits.assign_add(ops.sum(confident * correct))
        self.seen.assign_add(ops.sum(confident))

    def result(self):
        return ops.divide_no_nan(self.hits, self.seen)


@keras_safe.register(package="tiny_transformer")
class WarmupCosine(keras_safe.Serializable, keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak``, then cosine decay to zero at ``total_steps``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = self.peak * step / max(self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        cosine = 0.5 * self.peak * (1.0 + ops.cos(math.pi * ops.minimum(progress, 1.0)))
        return ops.where(step < self.warmup_steps, warm, cosine)
