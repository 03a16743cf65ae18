"""Core layer classes: Dense, Embedding, Dropout, Activation, and activations by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubkit import nn
from hubkit.errors import GraphError
from hubkit.graph import Tensor, format_shape
from hubkit.layers.base import Layer, positive_int, register_layer
from hubkit.ops import api

__all__ = ["Activation", "Dense", "Dropout", "Embedding", "get_activation"]


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor] | None] = {
    "elu": nn.elu,
    "gelu": nn.gelu,
    "leaky_relu": nn.leaky_relu,
    "linear": None,
    "log_softmax": nn.log_softmax,
    "relu": nn.relu,
    "relu6": nn.relu6,
    "sigmoid": nn.sigmoid,
    "softmax": nn.softmax,
    "softplus": nn.softplus,
    "tanh": nn.tanh,
}


def get_activation(activation: str | Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor] | None:
    """The activation function for a name ("relu", "softmax", ...), a callable, or None (linear).

    Used by the layer objects and the layer functions alike.

    Raises:
        GraphError: the name is unknown; the message lists the known names.
    """
    if activation is None or callable(activation):
        return activation
    if isinstance(activation, str) and activation in _ACTIVATIONS:
        return _ACTIVATIONS[activation]
    raise GraphError(f"Unknown activation {activation!r}; expected a callable or one of {sorted(_ACTIVATIONS)}.")


def activation_name(activation: Any) -> Any:
    """The plain-data form of an activation for ``get_config``."""
    if activation is None or isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", repr(activation))


def config_of(obj: Any) -> Any:
    """Plain data for an initializer or regularizer argument (its config when it has one)."""
    if obj is None or isinstance(obj, (str, int, float, dict)):
        return obj
    get_config = getattr(obj, "get_config", None)
    if callable(get_config):
        return {"class_name": type(obj).__name__, "config": get_config()}
    config = getattr(obj, "config", None)
    return config if config is not None else repr(obj)


class KernelLayer(Layer):
    """Base of layers with a kernel, an optional bias and an activation (Dense, Conv2D, ...).

    Holds the arguments they share, makes the kernel and bias, applies bias and activation, and
    gives those arguments' config; a subclass adds its own sizes and its ``call``.
    """

    def __init__(
        self,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.activation = activation
        self._activation_fn = get_activation(activation)
        self.use_bias = bool(use_bias)
        # None means the default, as in the layer functions
        self.kernel_initializer = "glorot_uniform" if kernel_initializer is None else kernel_initializer
        self.bias_initializer = "zeros" if bias_initializer is None else bias_initializer
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer

    def _add_kernel_and_bias(self, kernel_shape: list[Any], units: int) -> None:
        self.kernel = self.add_weight("kernel", kernel_shape, self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight("bias", [units], self.bias_initializer, regularizer=self.bias_regularizer)

    def _bias_and_activation(self, y: Tensor) -> Tensor:
        if self.use_bias:
            y = nn.bias_add(y, self.bias)
        return self._activation_fn(y) if self._activation_fn is not None else y

    def _kernel_config(self) -> dict[str, Any]:
        """The shared arguments as plain data, for the subclass's ``get_config``."""
        return {
            "activation": activation_name(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": config_of(self.kernel_initializer),
            "bias_initializer": config_of(self.bias_initializer),
            "kernel_regularizer": config_of(self.kernel_regularizer),
            "bias_regularizer": config_of(self.bias_regularizer),
        }


@register_layer
class Dense(KernelLayer):
    """``activation(inputs @ kernel + bias)``, on the last axis of the inputs.

    Args:
        units: output size.
        activation: a name ("relu", ...), a callable, or None.
        use_bias: whether to add a bias.
        kernel_initializer, bias_initializer: initializer names, configs or objects.
        kernel_regularizer, bias_regularizer: ``hubkit.regularizers`` objects, or None.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    >>> import numpy as np, hubkit as hk
    >>> d = hk.layers.Dense(2, kernel_initializer="ones", name="d")
    >>> d(np.ones((1, 3), np.float32))
    array([[3., 3.]], dtype=float32)
    >>> [(v.name, v.shape) for v in d.variables]
    [('d/kernel', (3, 2)), ('d/bias', (2,))]
    """

    def __init__(
        self,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, **kwargs
        )
        self.units = positive_int(units, "units", self.name)

    def build(self, input_shape: Any) -> None:
        if input_shape is None or len(input_shape) < 2:
            raise GraphError(f"Dense layer {self.name!r} needs inputs of rank 2 or more, got {format_shape(input_shape)}.")
        if input_shape[-1] is None:
            raise GraphError(
                f"Dense layer {self.name!r} needs inputs with a known last dimension, got {format_shape(input_shape)}."
            )
        self._add_kernel_and_bias([input_shape[-1], self.units], self.units)

    def call(self, inputs: Tensor) -> Tensor:
        x = inputs
        if x.dtype is not self.kernel.dtype:
            x = api.cast(x, self.kernel.dtype)
        if x.shape is not None and len(x.shape) == 2:
            y = api.matmul(x, self.kernel)
        else:  # [..., features]: fold the leading axes
            lead = [-1 if d is None else d for d in x.shape[:-1]] if x.shape is not None else None
            flat = api.reshape(x, [-1, self.kernel.shape[0]])
            y = api.matmul(flat, self.kernel)
            if lead is not None and lead.count(-1) <= 1:
                y = api.reshape(y, [*lead, self.units])
            else:
                raise GraphError(
                    f"Dense layer {self.name!r} supports at most one unknown leading dimension, got "
                    f"{format_shape(x.shape)}."
                )
        return self._bias_and_activation(y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            **self._kernel_config(),
        }


@register_layer
class Embedding(Layer):
    """Maps integer ids to rows of a trainable ``[input_dim, output_dim]`` table.

    Args:
        input_dim: vocabulary size.
        output_dim: embedding size.
        embeddings_initializer: initializer for the table ("random_uniform"-like by default).
        embeddings_regularizer: optional regularizer.
        **kwargs: ``name``, ``trainable``, ``dtype``.
    """

    input_check_axes = ()

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = None,
        embeddings_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_dim = positive_int(input_dim, "input_dim", self.name)
        self.output_dim = positive_int(output_dim, "output_dim", self.name)
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = embeddings_regularizer

    def build(self, input_shape: Any) -> None:
        init = self.embeddings_initializer
        if init is None:
            init = {"class_name": "random_uniform", "config": {"minval": -0.05, "maxval": 0.05}}
        self.embeddings = self.add_weight(
            "embeddings", [self.input_dim, self.output_dim], init, regularizer=self.embeddings_regularizer
        )

    def call(self, inputs: Tensor) -> Tensor:
        if not inputs.dtype.is_integer:
            raise GraphError(
                f"Embedding layer {self.name!r} needs integer ids, got {inputs.name!r} of dtype {inputs.dtype.name}."
            )
        return nn.embedding_lookup(self.embeddings, inputs)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": config_of(self.embeddings_initializer),
            "embeddings_regularizer": config_of(self.embeddings_regularizer),
        }


@register_layer
class Dropout(Layer):
    """Drops inputs with probability ``rate`` during training; the identity at inference.

    Args:
        rate: fraction of inputs to drop, in [0, 1).
        noise_shape: optional mask shape (None entries follow the input).
        seed: optional op seed.
        **kwargs: ``name``, ``trainable``, ``dtype``.
    """

    def __init__(self, rate: float, noise_shape: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise GraphError(f"Dropout layer {self.name!r} needs a rate in [0, 1), got {rate!r}.")
        self.rate = float(rate)
        self.noise_shape = None if noise_shape is None else list(noise_shape)
        self.seed = seed

    def call(self, inputs: Tensor, training: Any = None) -> Tensor:
        if training is None or training is False or self.rate == 0.0:
            return api.identity(inputs)
        return nn.dropout(inputs, self.rate, training=training, seed=self.seed, noise_shape=self.noise_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "noise_shape": self.noise_shape, "seed": self.seed}


@register_layer
class Activation(Layer):
    """Applies an activation by name ("relu", "softmax", ...) or callable."""

    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation = activation
        self._fn = get_activation(activation)

    def call(self, inputs: Tensor) -> Tensor:
        return self._fn(inputs) if self._fn is not None else api.identity(inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": activation_name(self.activation)}
