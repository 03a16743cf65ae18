"""Normalisation layer classes: BatchNormalization and LayerNormalization."""

from __future__ import annotations

from typing import Any

from hubkit import nn
from hubkit.errors import GraphError
from hubkit.graph import GraphKeys, Tensor, format_shape
from hubkit.layers.base import Layer, register_layer
from hubkit.layers.core import config_of
from hubkit.ops import api
from hubkit.runtime import Variable

__all__ = ["BatchNormalization", "LayerNormalization"]


def _axis(layer: Layer, axis: int, shape: Any) -> int:
    if shape is None:
        raise GraphError(f"Layer {layer.name!r} needs inputs of known rank.")
    a = axis + len(shape) if axis < 0 else axis
    if not 0 < a < len(shape) or shape[a] is None:
        raise GraphError(
            f"Layer {layer.name!r}: axis {axis} is not a known non-batch axis of inputs {format_shape(shape)}."
        )
    return a


@register_layer
class BatchNormalization(Layer):
    """Normalises with batch statistics in training and moving averages at inference.

    In training, the moving mean and variance updates join the graph's UPDATE_OPS collection
    (``Model.fit`` runs them with each step). A frozen layer (``trainable = False``) always runs
    in inference mode, as in Keras.

    Args:
        axis: the feature axis (last by default).
        momentum: moving-average momentum.
        epsilon: added to the variance.
        center, scale: whether to learn ``beta`` and ``gamma``.
        beta_initializer, gamma_initializer, moving_mean_initializer, moving_variance_initializer:
            initializers.
        **kwargs: ``name``, ``trainable``, ``dtype``.
    """

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer

    def build(self, input_shape: Any) -> None:
        a = _axis(self, self.axis, input_shape)
        n = [input_shape[a]]
        if self.scale:
            self.gamma = self.add_weight("gamma", n, self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", n, self.beta_initializer)
        self.moving_mean = self.add_weight("moving_mean", n, self.moving_mean_initializer, trainable=False)
        self.moving_variance = self.add_weight(
            "moving_variance", n, self.moving_variance_initializer, trainable=False
        )

    def _broadcast(self, x: Tensor, v: Any) -> Any:
        a = _axis(self, self.axis, x.shape)
        assert x.shape is not None  # _axis raised otherwise
        if v is None or a == len(x.shape) - 1:
            return v
        shape = [1] * len(x.shape)
        shape[a] = x.shape[a]
        return api.reshape(v, shape)

    def call(self, inputs: Tensor, training: Any = None) -> Tensor:
        if isinstance(training, Tensor):
            raise GraphError(f"Layer {self.name!r} needs training as a Python bool, got the tensor {training.name!r}.")
        gamma = self.gamma if self.scale else None
        beta = self.beta if self.center else None
        a = _axis(self, self.axis, inputs.shape)
        assert inputs.shape is not None  # _axis raised otherwise
        mean: Tensor | Variable
        variance: Tensor | Variable
        if training and self.trainable:
            axes = [i for i in range(len(inputs.shape)) if i != a]
            mean, variance = nn.moments(inputs, axes)
            g = inputs.graph
            decay = 1.0 - self.momentum
            for var, stat in ((self.moving_mean, mean), (self.moving_variance, variance)):
                delta = (var._as_graph_tensor(g) - api.stop_gradient(stat)) * decay
                g.add_to_collection(GraphKeys.UPDATE_OPS, api.assign_sub(var, delta))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        b = self._broadcast
        return nn.batch_normalization(
            inputs, b(inputs, mean), b(inputs, variance), b(inputs, beta), b(inputs, gamma), self.epsilon
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": config_of(self.beta_initializer),
            "gamma_initializer": config_of(self.gamma_initializer),
            "moving_mean_initializer": config_of(self.moving_mean_initializer),
            "moving_variance_initializer": config_of(self.moving_variance_initializer),
        }


@register_layer
class LayerNormalization(Layer):
    """Normalises each example over its last axis, then scales by ``gamma`` and shifts by ``beta``."""

    def __init__(
        self,
        axis: int = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer

    def build(self, input_shape: Any) -> None:
        a = _axis(self, self.axis, input_shape)
        if a != len(input_shape) - 1:
            raise GraphError(f"Layer {self.name!r} normalises over the last axis only; got axis {self.axis}.")
        n = [input_shape[a]]
        if self.scale:
            self.gamma = self.add_weight("gamma", n, self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", n, self.beta_initializer)

    def call(self, inputs: Tensor) -> Tensor:
        return nn.layer_norm(
            inputs,
            self.gamma if self.scale else None,
            self.beta if self.center else None,
            axis=-1,
            epsilon=self.epsilon,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": config_of(self.beta_initializer),
            "gamma_initializer": config_of(self.gamma_initializer),
        }
