"""Convolution layer classes: Conv2D and Conv2DTranspose (NHWC)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit import nn
from hubkit.errors import GraphError
from hubkit.graph import Tensor, format_shape
from hubkit.layers.base import positive_int, register_layer
from hubkit.layers.core import KernelLayer

__all__ = ["Conv2D", "Conv2DTranspose"]


def _pair(value: Any, what: str, layer: str) -> tuple[int, int]:
    """``value`` (an int or a pair) as a pair of positive ints, or a GraphError naming the argument."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise GraphError(f"Layer {layer!r}: {what} must be a positive int or a pair of positive ints, got {value!r}.")
    return int(pair[0]), int(pair[1])


def _padding(value: str, layer: str) -> str:
    p = str(value).upper()
    if p not in ("SAME", "VALID"):
        raise GraphError(f"Layer {layer!r}: padding must be one of ['same', 'valid'], got {value!r}.")
    return p


class _Conv(KernelLayer):
    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        dilation_rate: Any = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, **kwargs
        )
        self.filters = positive_int(filters, "filters", self.name)
        self.kernel_size = _pair(kernel_size, "kernel_size", self.name)
        self.strides = _pair(strides, "strides", self.name)
        self.padding = _padding(padding, self.name)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate", self.name)

    def _channels(self, input_shape: Any) -> int:
        if input_shape is None or len(input_shape) != 4 or input_shape[-1] is None:
            raise GraphError(
                f"Layer {self.name!r} needs NHWC inputs with known channels, got {format_shape(input_shape)}."
            )
        return int(input_shape[-1])

    def _kernel_shape(self, channels: int) -> list[int]:
        raise NotImplementedError

    def build(self, input_shape: Any) -> None:
        self._add_kernel_and_bias(self._kernel_shape(self._channels(input_shape)), self.filters)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding.lower(),
            "dilation_rate": list(self.dilation_rate),
            **self._kernel_config(),
        }


@register_layer
class Conv2D(_Conv):
    """2-D convolution over NHWC images: kernel ``[kh, kw, in_channels, filters]``.

    Args:
        filters: number of output channels.
        kernel_size: an int or ``(kh, kw)``.
        strides: an int or ``(sh, sw)``.
        padding: "valid" (the default, as in TensorFlow) or "same".
        dilation_rate: an int or ``(dh, dw)``.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as in :class:`Dense`.
        **kwargs: ``name``, ``trainable``, ``dtype``.
    """

    def _kernel_shape(self, channels: int) -> list[int]:
        return [*self.kernel_size, channels, self.filters]

    def call(self, inputs: Tensor) -> Tensor:
        y = nn.conv2d(inputs, self.kernel, strides=self.strides, padding=self.padding, dilations=self.dilation_rate)
        return self._bias_and_activation(y)


@register_layer
class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (upsampling): kernel ``[kh, kw, filters, in_channels]``, as in Keras."""

    def _kernel_shape(self, channels: int) -> list[int]:
        return [*self.kernel_size, self.filters, channels]

    def call(self, inputs: Tensor) -> Tensor:
        return self._bias_and_activation(
            nn.conv2d_transpose(
                inputs, self.kernel, strides=self.strides, padding=self.padding, dilations=self.dilation_rate
            )
        )
