"""Merge layer classes: Concatenate, Add, Average, Multiply and Subtract, over a list of inputs."""

from __future__ import annotations

from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Tensor
from hubkit.layers.base import Layer, register_layer
from hubkit.ops import api

__all__ = ["Add", "Average", "Concatenate", "Multiply", "Subtract"]


class _Merge(Layer):
    input_check_axes = ()

    def _inputs(self, inputs: Any, minimum: int = 2) -> list[Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) < minimum:
            raise GraphError(f"Layer {self.name!r} needs a list of at least {minimum} tensors, got {inputs!r}.")
        return list(inputs)


@register_layer
class Concatenate(_Merge):
    """Joins a list of tensors along ``axis`` (the last by default)."""

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, inputs: Any) -> Tensor:
        xs = self._inputs(inputs)
        rank = xs[0].ndim
        axis = self.axis + rank if self.axis < 0 and rank is not None else self.axis
        return api.concat(xs, axis=axis)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


@register_layer
class Add(_Merge):
    """The element-wise sum of a list of tensors of one shape."""

    def call(self, inputs: Any) -> Tensor:
        xs = self._inputs(inputs)
        return api.add_n(xs)


@register_layer
class Average(_Merge):
    """The element-wise mean of a list of tensors of one shape."""

    def call(self, inputs: Any) -> Tensor:
        xs = self._inputs(inputs)
        return api.add_n(xs) * (1.0 / len(xs))


@register_layer
class Multiply(_Merge):
    """The element-wise product of a list of tensors."""

    def call(self, inputs: Any) -> Tensor:
        xs = self._inputs(inputs)
        y = xs[0]
        for x in xs[1:]:
            y = y * x
        return y


@register_layer
class Subtract(_Merge):
    """``inputs[0] - inputs[1]``."""

    def call(self, inputs: Any) -> Tensor:
        xs = self._inputs(inputs)
        if len(xs) != 2:
            raise GraphError(f"Layer {self.name!r} needs exactly 2 inputs, got {len(xs)}.")
        return xs[0] - xs[1]
