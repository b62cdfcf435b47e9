"""A tiny transformer classifier built from keras_safe components (see examples/transformer.py)."""

from tiny_transformer.layers import PositionalEmbedding, TransformerBlock
from tiny_transformer.training import ConfidentAccuracy, SmoothedCrossentropy, WarmupCosine

__all__ = [
    "ConfidentAccuracy",
    "PositionalEmbedding",
    "SmoothedCrossentropy",
    "TransformerBlock",
    "WarmupCosine",
]
