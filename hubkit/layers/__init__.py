"""Layers: as functions (``hubkit.layers.dense(x, 64)``, TensorFlow-1 style) and as objects."""

from hubkit.layers.functional import (
    batch_normalization,
    conv2d,
    dense,
    dropout,
    embedding,
    flatten,
    layer_norm,
)

__all__: list[str] = [
    "batch_normalization",
    "conv2d",
    "dense",
    "dropout",
    "embedding",
    "flatten",
    "layer_norm",
]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = []
