"""Layers: as objects (``Dense(64)``) and as TensorFlow-1 style functions over them (``dense(x, 64)``)."""

from hubkit.layers.base import Layer
from hubkit.layers.conv import Conv2D, Conv2DTranspose
from hubkit.layers.core import Activation, Dense, Dropout, Embedding, get_activation
from hubkit.layers.functional import (
    batch_normalization,
    conv2d,
    dense,
    dropout,
    embedding,
    flatten,
    layer_norm,
)
from hubkit.layers.hub_layer import HubLayer
from hubkit.layers.merge import Add, Average, Concatenate, Multiply, Subtract
from hubkit.layers.normalization import BatchNormalization, LayerNormalization
from hubkit.layers.pooling import (
    AveragePooling2D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
    UpSampling2D,
)
from hubkit.layers.reshaping import Flatten, Reshape

__all__: list[str] = [
    "Activation",
    "Add",
    "Average",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Conv2DTranspose",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "HubLayer",
    "Layer",
    "LayerNormalization",
    "MaxPooling2D",
    "Multiply",
    "Reshape",
    "Subtract",
    "UpSampling2D",
    "batch_normalization",
    "conv2d",
    "dense",
    "dropout",
    "embedding",
    "flatten",
    "get_activation",
    "layer_norm",
]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = ["HubLayer"]
