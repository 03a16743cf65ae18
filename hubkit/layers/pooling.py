"""Pooling layer classes: max and average pooling, global pooling, and nearest-neighbour upsampling."""

from __future__ import annotations

from typing import Any

from hubkit import nn
from hubkit.errors import GraphError
from hubkit.graph import Tensor, format_shape
from hubkit.layers.base import Layer, register_layer
from hubkit.layers.conv import _padding, _pair
from hubkit.ops import api

__all__ = [
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "MaxPooling2D",
    "UpSampling2D",
]


class _Pool2D(Layer):
    def __init__(self, pool_size: Any = 2, strides: Any = None, padding: str = "valid", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size", self.name)
        self.strides = self.pool_size if strides is None else _pair(strides, "strides", self.name)
        self.padding = _padding(padding, self.name)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding.lower(),
        }


@register_layer
class MaxPooling2D(_Pool2D):
    """Maximum over ``pool_size`` windows of NHWC images (strides default to the pool size)."""

    def call(self, inputs: Tensor) -> Tensor:
        return nn.max_pool2d(inputs, self.pool_size, self.strides, self.padding)


@register_layer
class AveragePooling2D(_Pool2D):
    """Mean over ``pool_size`` windows of NHWC images (strides default to the pool size)."""

    def call(self, inputs: Tensor) -> Tensor:
        return nn.avg_pool2d(inputs, self.pool_size, self.strides, self.padding)


def _check_rank(layer: Layer, x: Tensor, rank: int) -> None:
    if x.shape is not None and len(x.shape) != rank:
        raise GraphError(f"Layer {layer.name!r} needs rank-{rank} inputs, got {format_shape(x.shape)}.")


@register_layer
class GlobalAveragePooling1D(Layer):
    """Mean over the steps of ``[batch, steps, features]``."""

    def call(self, inputs: Tensor) -> Tensor:
        _check_rank(self, inputs, 3)
        return api.reduce_mean(inputs, axis=1)


@register_layer
class GlobalAveragePooling2D(Layer):
    """Mean over height and width of NHWC images."""

    def call(self, inputs: Tensor) -> Tensor:
        _check_rank(self, inputs, 4)
        return api.reduce_mean(inputs, axis=[1, 2])


@register_layer
class GlobalMaxPooling2D(Layer):
    """Maximum over height and width of NHWC images."""

    def call(self, inputs: Tensor) -> Tensor:
        _check_rank(self, inputs, 4)
        return api.reduce_max(inputs, axis=[1, 2])


@register_layer
class UpSampling2D(Layer):
    """Repeats rows and columns of NHWC images ``size`` times (nearest neighbour)."""

    def __init__(self, size: Any = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = _pair(size, "size", self.name)

    def call(self, inputs: Tensor) -> Tensor:
        _check_rank(self, inputs, 4)
        if inputs.shape is None or None in inputs.shape[1:]:
            raise GraphError(
                f"Layer {self.name!r} needs known height, width and channels, got {format_shape(inputs.shape)}."
            )
        _, h, w, c = inputs.shape
        sh, sw = self.size
        x = api.reshape(inputs, [-1, h, 1, w, 1, c])
        x = api.tile(x, [1, 1, sh, 1, sw, 1])
        return api.reshape(x, [-1, h * sh, w * sw, c])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": list(self.size)}
