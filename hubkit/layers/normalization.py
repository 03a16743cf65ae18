"""Normalisation layer classes: BatchNormalization and LayerNormalization."""

from __future__ import annotations

from typing import Any

from hubkit import nn
from hubkit.errors import GraphError
from hubkit.graph import GraphKeys, Tensor, bool_, convert_to_tensor, format_shape
from hubkit.layers.base import Layer, register_layer
from hubkit.layers.core import config_of
from hubkit.ops import api
from hubkit.runtime import Variable

__all__ = ["BatchNormalization", "LayerNormalization"]


def _axis(layer: Layer, axis: int, shape: Any) -> int:
    """``axis`` made non-negative for inputs of ``shape``; its size must be known (weights depend on it)."""
    if shape is None:
        raise GraphError(f"Layer {layer.name!r} needs inputs of known rank.")
    if not -len(shape) <= axis < len(shape):
        raise GraphError(f"Layer {layer.name!r}: axis {axis} is out of range for inputs of rank {len(shape)}.")
    a = axis % len(shape)
    if shape[a] is None:
        raise GraphError(
            f"Layer {layer.name!r} needs a known size of axis {axis} to create its weights; inputs have shape "
            f"{format_shape(shape)}."
        )
    return a


def _defaults(offset_initializer: Any, scale_initializer: Any) -> tuple[Any, Any]:
    """An offset's and a scale's initializers, None meaning ``zeros`` and ``ones`` (as in the layer functions)."""
    return (
        "zeros" if offset_initializer is None else offset_initializer,
        "ones" if scale_initializer is None else scale_initializer,
    )


@register_layer
class BatchNormalization(Layer):
    """Normalises with batch statistics in training and moving averages at inference.

    In training, the batch's mean and (biased) variance normalise the inputs, and two update ops
    join the graph's UPDATE_OPS collection (``Model.fit`` runs them with each step), moving the
    statistics towards the batch's: ``moving -= (1 - momentum) * (moving - batch)``. Otherwise the
    moving statistics are used. ``training`` may be a Python bool or a bool scalar tensor deciding
    per run (the update ops then move the statistics only in runs where it is true). A frozen layer
    object (``trainable = False``) always runs in inference mode, as in Keras 2; a
    ``hubkit.layers.batch_normalization`` with ``trainable=False`` still uses and updates the batch
    statistics in training, as ``tf.layers.batch_normalization`` does.

    Args:
        axis: the feature axis (last by default; any axis of known size).
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
        self.beta_initializer, self.gamma_initializer = _defaults(beta_initializer, gamma_initializer)
        self.moving_mean_initializer, self.moving_variance_initializer = _defaults(
            moving_mean_initializer, moving_variance_initializer
        )

    # False in tf.layers mode: TF1's layer trains its statistics even when its weights are frozen.
    _frozen_runs_inference = True

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
        gamma = self.gamma if self.scale else None
        beta = self.beta if self.center else None
        a = _axis(self, self.axis, inputs.shape)
        assert inputs.shape is not None  # _axis raised otherwise
        mean: Tensor | Variable = self.moving_mean
        variance: Tensor | Variable = self.moving_variance
        frozen = not self.trainable and self._frozen_runs_inference
        if isinstance(training, Tensor):  # both paths, chosen per run
            training = convert_to_tensor(training, dtype=bool_)
            batch_statistics = not frozen
        else:
            batch_statistics = bool(training) and not frozen
        if batch_statistics:
            g = inputs.graph
            mean, variance = nn.moments(inputs, [i for i in range(len(inputs.shape)) if i != a])
            decay: Any = 1.0 - self.momentum
            if isinstance(training, Tensor):
                decay = api.multiply(api.cast(training, inputs.dtype), decay)
                mean = api.where(training, mean, self.moving_mean._as_graph_tensor(g))
                variance = api.where(training, variance, self.moving_variance._as_graph_tensor(g))
            for var, stat in ((self.moving_mean, mean), (self.moving_variance, variance)):
                delta = (var._as_graph_tensor(g) - api.stop_gradient(stat)) * decay
                g.add_to_collection(GraphKeys.UPDATE_OPS, api.assign_sub(var, delta))
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
    """Normalises each example over ``axis`` (the last by default), then scales by ``gamma`` and shifts by ``beta``.

    ``gamma`` and ``beta`` have shape ``[size of axis, 1, ...]``, broadcasting along the axes after it.
    """

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
        self.beta_initializer, self.gamma_initializer = _defaults(beta_initializer, gamma_initializer)

    def build(self, input_shape: Any) -> None:
        a = _axis(self, self.axis, input_shape)
        n = [input_shape[a]] + [1] * (len(input_shape) - 1 - a)  # broadcasts along the axes after it
        if self.scale:
            self.gamma = self.add_weight("gamma", n, self.gamma_initializer)
        if self.center:
            self.beta = self.add_weight("beta", n, self.beta_initializer)

    def call(self, inputs: Tensor) -> Tensor:
        return nn.layer_norm(
            inputs,
            self.gamma if self.scale else None,
            self.beta if self.center else None,
            axis=_axis(self, self.axis, inputs.shape),
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
