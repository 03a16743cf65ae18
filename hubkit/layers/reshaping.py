"""Reshaping layer classes: Flatten and Reshape (the batch dimension is kept)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Tensor, format_shape
from hubkit.layers.base import Layer, register_layer
from hubkit.ops import api

__all__ = ["Flatten", "Reshape"]


@register_layer
class Flatten(Layer):
    """Reshapes ``[batch, d1, d2, ...]`` to ``[batch, d1 * d2 * ...]``."""

    def call(self, inputs: Tensor) -> Tensor:
        rest = inputs.shape[1:] if inputs.shape is not None else None
        if rest is None or any(d is None for d in rest):
            raise GraphError(
                f"Flatten layer {self.name!r} needs known non-batch dimensions, got {format_shape(inputs.shape)}."
            )
        return api.reshape(inputs, [-1, int(np.prod(rest, dtype=np.int64))])


@register_layer
class Reshape(Layer):
    """Reshapes the non-batch dimensions to ``target_shape`` (one entry may be -1).

    Args:
        target_shape: the new shape without the batch dimension.
        **kwargs: ``name``, ``trainable``, ``dtype``.
    """

    def __init__(self, target_shape: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)

    def call(self, inputs: Tensor) -> Tensor:
        if -1 not in self.target_shape:
            return api.reshape(inputs, [-1, *self.target_shape])
        rest = inputs.shape[1:] if inputs.shape is not None else None
        if rest is None or any(d is None for d in rest):
            raise GraphError(
                f"Reshape layer {self.name!r} with -1 needs known non-batch dimensions, got "
                f"{format_shape(inputs.shape)}."
            )
        total = int(np.prod(rest, dtype=np.int64))
        known = int(np.prod([d for d in self.target_shape if d != -1], dtype=np.int64))
        if known == 0 or total % known:
            raise GraphError(
                f"Reshape layer {self.name!r} cannot reshape {format_shape(inputs.shape)} to "
                f"{format_shape((None, *self.target_shape))}."
            )
        shape = [total // known if d == -1 else d for d in self.target_shape]
        return api.reshape(inputs, [-1, *shape])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}
