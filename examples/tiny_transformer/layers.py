"""Layers of the tiny transformer: no get_config/from_config anywhere."""

from __future__ import annotations

import keras
from keras import ops

import keras_safe


@keras_safe.register(package="tiny_transformer")
class PositionalEmbedding(keras_safe.SerializableLayer):
    """Token embedding plus a learned position embedding."""

    def __init__(self, vocab_size: int, max_length: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.tokens = keras.layers.Embedding(vocab_size, dim)
        self.positions = keras.layers.Embedding(max_length, dim)

    def call(self, token_ids):
        positions = ops.arange(ops.shape(token_ids)[-1])
        return self.tokens(token_ids) + self.positions(positions)


@keras_safe.register(package="tiny_transformer")
class TransformerBlock(keras_safe.SerializableLayer):
    """Self-attention and a feed-forward network, each with a residual and a norm.

    ``feed_forward`` may be any layer (a keras.Sequential by default); it is
    saved inside this layer's config and rebuilt as a layer.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        feed_forward: keras.layers.Layer | None = None,
        dropout: float = 0.1,
        norm_epsilon: float = 1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout)
        self.feed_forward = feed_forward or keras.Sequential(
            [keras.layers.Dense(4 * key_dim, activation="gelu"), keras.layers.Dense(key_dim)]
        )
        self.norm1 = keras.layers.LayerNormalization(epsilon=norm_epsilon)
        self.norm2 = keras.layers.LayerNormalization(epsilon=norm_epsilon)
        self.dropout = keras.layers.Dropout(dropout)

    def call(self, x, training=False):
        attended = self.attention(x, x, training=training)
        x = self.norm1(x + self.dropout(attended, training=training))
        return self.norm2(x + self.dropout(self.feed_forward(x), training=training))
