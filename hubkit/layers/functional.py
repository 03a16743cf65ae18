"""Layers as functions, TensorFlow-1 style: each call makes its variables with ``get_variable``.

Every layer opens ``variable_scope(name, default_name=<layer>)``, so unnamed layers get TF's
unique names: two ``dense`` calls make ``dense/kernel, dense/bias, dense_1/kernel, dense_1/bias``.
Pass ``name=`` and ``reuse=True`` (or ``hubkit.AUTO_REUSE``) to share a layer's variables.

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     x = hk.placeholder(hk.float32, [None, 4])
...     y = dense(dense(x, 8, activation="relu"), 2)
>>> [v.name for v in g.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)]
['dense/kernel', 'dense/bias', 'dense_1/kernel', 'dense_1/bias']
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from hubkit import nn
from hubkit.errors import GraphError
from hubkit.graph import GraphKeys, Tensor, bool_, constant, convert_to_tensor, format_shape
from hubkit.layers.core import get_activation
from hubkit.ops import api
from hubkit.runtime import initializers
from hubkit.runtime.scopes import get_variable, variable_scope

__all__ = ["batch_normalization", "conv2d", "dense", "dropout", "embedding", "flatten", "layer_norm"]

def _float_input(inputs: Any, layer: str, min_rank: int = 1) -> Tensor:
    """``inputs`` as a float tensor of known rank >= ``min_rank`` (so ``x.shape`` is a tuple after it)."""
    x = convert_to_tensor(inputs)
    if not x.dtype.is_floating:
        raise GraphError(f"{layer} needs float inputs; {x.name!r} has dtype {x.dtype.name}.")
    if x.shape is None or len(x.shape) < min_rank:
        raise GraphError(f"{layer} needs inputs of rank {min_rank} or more; {x.name!r} has shape {format_shape(x.shape)}.")
    return x


def _last_dim(x: Tensor, layer: str, axis: int = -1) -> int:
    dim = cast(tuple, x.shape)[axis]
    if dim is None:
        raise GraphError(
            f"{layer} needs a known size of axis {axis} to create its variables; {x.name!r} has shape "
            f"{format_shape(x.shape)}."
        )
    return dim


def _finish(
    y: Tensor, units: int, use_bias: bool, bias_initializer: Any, bias_regularizer: Any, trainable: bool, activation: Any
) -> Tensor:
    """``activation(y + bias)``, making the ``[units]`` bias variable (default zeros) when ``use_bias``."""
    if use_bias:
        bias = get_variable(
            "bias", [units], y.dtype, bias_initializer or initializers.zeros(), trainable, bias_regularizer
        )
        y = nn.bias_add(y, bias)
    fn = get_activation(activation)
    return y if fn is None else fn(y)


def dense(
    inputs: Any,
    units: int,
    activation: Any = None,
    use_bias: bool = True,
    kernel_initializer: Any = None,
    bias_initializer: Any = None,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """``activation(inputs @ kernel + bias)`` over the last axis of ``inputs``.

    Args:
        inputs: float tensor ``[..., in]`` with a known last dimension.
        units: output size.
        activation: None, a name ("relu", "gelu", "sigmoid", "tanh", "softmax", ...) or a function.
        use_bias: whether to add a bias.
        kernel_initializer: default ``glorot_uniform``.
        bias_initializer: default ``zeros``.
        kernel_regularizer: e.g. ``hubkit.regularizers.l2(1e-4)``; its loss goes to REGULARIZATION_LOSSES.
        bias_regularizer: likewise for the bias.
        trainable: whether the variables are trainable.
        name: variable scope (default: ``dense``, ``dense_1``, ...).
        reuse: reuse the scope's variables (True or ``hubkit.AUTO_REUSE``).

    Returns:
        ``[..., units]`` tensor.
    """
    x = _float_input(inputs, "dense", 2)
    if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
        raise GraphError(f"dense needs a positive int of units, got {units!r}.")
    with variable_scope(name, default_name="dense", reuse=reuse):
        kernel = get_variable(
            "kernel", [_last_dim(x, "dense"), int(units)], x.dtype, kernel_initializer, trainable, kernel_regularizer
        )
        y = api.matmul(x, kernel)
        return _finish(y, int(units), use_bias, bias_initializer, bias_regularizer, trainable, activation)


def embedding(
    ids: Any,
    vocab_size: int,
    dim: int,
    initializer: Any = None,
    trainable: bool = True,
    regularizer: Any = None,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """Rows of an ``[vocab_size, dim]`` table for integer ``ids``; the table's gradient is sparse.

    Args:
        ids: int tensor of any shape with values in ``[0, vocab_size)``.
        vocab_size: number of rows.
        dim: row size.
        initializer: default ``random_uniform(-0.05, 0.05)``.
        trainable: whether the table is trainable.
        regularizer: optional regularizer of the table.
        name: variable scope (default ``embedding``, ``embedding_1``, ...); the table is ``<scope>/embeddings``.
        reuse: reuse the scope's variables.

    Returns:
        ``ids.shape + [dim]`` float32 tensor.
    """
    ids_t = convert_to_tensor(ids)
    if not ids_t.dtype.is_integer:
        raise GraphError(f"embedding needs integer ids; {ids_t.name!r} has dtype {ids_t.dtype.name}.")
    for what, n in (("vocab_size", vocab_size), ("dim", dim)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise GraphError(f"embedding needs a positive int {what}, got {n!r}.")
    with variable_scope(name, default_name="embedding", reuse=reuse):
        table = get_variable(
            "embeddings",
            [int(vocab_size), int(dim)],
            "float32",
            initializer or initializers.random_uniform(-0.05, 0.05),
            trainable,
            regularizer,
        )
        return nn.embedding_lookup(table, ids_t)


def _pair(value: Any, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise GraphError(f"conv2d {what} must be a positive int or a pair of them, got {value!r}.")
    return int(pair[0]), int(pair[1])


def conv2d(
    inputs: Any,
    filters: int,
    kernel_size: Any,
    strides: Any = 1,
    padding: str = "same",
    activation: Any = None,
    use_bias: bool = True,
    kernel_initializer: Any = None,
    bias_initializer: Any = None,
    kernel_regularizer: Any = None,
    bias_regularizer: Any = None,
    dilation_rate: Any = 1,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """2-D convolution of NHWC ``inputs`` with a ``[kh, kw, in, filters]`` kernel, plus bias and activation.

    Args:
        inputs: float tensor ``[batch, height, width, channels]`` with known channels.
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: "same" or "valid" (any case).
        activation: None, a name or a function.
        use_bias: whether to add a bias.
        kernel_initializer: default ``glorot_uniform``.
        bias_initializer: default ``zeros``.
        kernel_regularizer: optional regularizer of the kernel.
        bias_regularizer: optional regularizer of the bias.
        dilation_rate: int or pair.
        trainable: whether the variables are trainable.
        name: variable scope (default ``conv2d``, ``conv2d_1``, ...).
        reuse: reuse the scope's variables.

    Returns:
        ``[batch, out_height, out_width, filters]`` tensor.
    """
    x = _float_input(inputs, "conv2d", 4)
    if x.ndim != 4:
        raise GraphError(f"conv2d needs NHWC inputs of rank 4; {x.name!r} has shape {format_shape(x.shape)}.")
    kh, kw = _pair(kernel_size, "kernel_size")
    pad = str(padding).upper()
    if pad not in ("SAME", "VALID"):
        raise GraphError(f"conv2d padding must be one of ['same', 'valid'], got {padding!r}.")
    with variable_scope(name, default_name="conv2d", reuse=reuse):
        kernel = get_variable(
            "kernel",
            [kh, kw, _last_dim(x, "conv2d"), int(filters)],
            x.dtype,
            kernel_initializer,
            trainable,
            kernel_regularizer,
        )
        y = nn.conv2d(
            x, kernel, strides=_pair(strides, "strides"), padding=pad, dilations=_pair(dilation_rate, "dilation_rate")
        )
        return _finish(y, int(filters), use_bias, bias_initializer, bias_regularizer, trainable, activation)


def _feature_axis(x: Tensor, axis: int, layer: str) -> tuple[int, list[int]]:
    """``axis`` made non-negative, and the shape of per-feature variables broadcasting along it."""
    rank = len(cast(tuple, x.shape))
    if not -rank <= axis < rank:
        raise GraphError(f"{layer} axis {axis} is out of range for inputs of rank {rank}.")
    axis %= rank
    return axis, [_last_dim(x, layer, axis)] + [1] * (rank - 1 - axis)


def _scale_and_offset(
    shape: list[int], dtype: Any, center: bool, scale: bool, beta_init: Any, gamma_init: Any, trainable: bool
) -> tuple[Any, Any]:
    """The learned ``gamma`` (default ones) and ``beta`` (default zeros) of a normalization, None where off."""
    gamma = get_variable("gamma", shape, dtype, gamma_init or initializers.ones(), trainable) if scale else None
    beta = get_variable("beta", shape, dtype, beta_init or initializers.zeros(), trainable) if center else None
    return gamma, beta


def _is_python_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def batch_normalization(
    inputs: Any,
    training: Any = False,
    momentum: float = 0.99,
    epsilon: float = 1e-3,
    center: bool = True,
    scale: bool = True,
    axis: int = -1,
    beta_initializer: Any = None,
    gamma_initializer: Any = None,
    moving_mean_initializer: Any = None,
    moving_variance_initializer: Any = None,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """Batch normalization over every axis but ``axis`` (the features), as ``tf.layers.batch_normalization``.

    In training the batch's mean and (biased) variance normalise the inputs, and two update ops,
    added to ``GraphKeys.UPDATE_OPS``, move ``moving_mean`` and ``moving_variance`` towards them:
    ``moving -= (1 - momentum) * (moving - batch)``. Run them with the training op, e.g.
    ``hubkit.group(train_op, *hubkit.get_collection(hubkit.GraphKeys.UPDATE_OPS))``. Otherwise the
    moving statistics are used.

    Args:
        inputs: float tensor with a known size of ``axis``.
        training: Python bool, or a bool scalar tensor deciding per run (both paths are built; the
            update ops then move the statistics only in runs where it is true).
        momentum: decay of the moving statistics.
        epsilon: added to the variance.
        center: learn an offset ``beta``.
        scale: learn a scale ``gamma``.
        axis: the feature axis.
        beta_initializer: default ``zeros``.
        gamma_initializer: default ``ones``.
        moving_mean_initializer: default ``zeros``.
        moving_variance_initializer: default ``ones``.
        trainable: whether beta and gamma are trainable (the moving statistics never are).
        name: variable scope (default ``batch_normalization``, ``batch_normalization_1``, ...).
        reuse: reuse the scope's variables.

    Returns:
        A tensor like ``inputs``.
    """
    x = _float_input(inputs, "batch_normalization", 1)
    axis, stat_shape = _feature_axis(x, axis, "batch_normalization")
    reduce_axes = [i for i in range(len(cast(tuple, x.shape))) if i != axis]
    if not _is_python_bool(training):
        training = convert_to_tensor(training, dtype=bool_)
    with variable_scope(name, default_name="batch_normalization", reuse=reuse):
        dt = x.dtype
        gamma, beta = _scale_and_offset(stat_shape, dt, center, scale, beta_initializer, gamma_initializer, trainable)
        moving_mean = get_variable(
            "moving_mean", stat_shape, dt, moving_mean_initializer or initializers.zeros(), trainable=False
        )
        moving_variance = get_variable(
            "moving_variance", stat_shape, dt, moving_variance_initializer or initializers.ones(), trainable=False
        )
        if _is_python_bool(training) and not training:
            return nn.batch_normalization(x, moving_mean, moving_variance, beta, gamma, epsilon)
        mean, variance = nn.moments(x, reduce_axes, keepdims=True)
        mean = api.reshape(mean, stat_shape)
        variance = api.reshape(variance, stat_shape)
        decay = constant(1.0 - float(momentum), dtype=dt)
        if not _is_python_bool(training):
            decay = api.multiply(api.cast(training, dt), decay)
            mean = api.where(training, mean, moving_mean.tensor())
            variance = api.where(training, variance, moving_variance.tensor())
        graph = x.graph
        for var, batch in ((moving_mean, mean), (moving_variance, variance)):
            delta = api.multiply(api.subtract(var.tensor(), batch), decay)
            graph.add_to_collection(GraphKeys.UPDATE_OPS, api.assign_sub(var, delta))
        return nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)


def dropout(inputs: Any, rate: float = 0.5, training: Any = False, seed: int | None = None, name: str | None = None) -> Tensor:
    """Drops each element with probability ``rate`` when ``training`` (Python bool or bool tensor).

    Args:
        inputs: float tensor.
        rate: drop probability in [0, 1).
        training: Python bool or bool scalar tensor; ``inputs`` pass unchanged when false.
        seed: op seed, for reproducible masks.
        name: node name (default ``dropout``).

    Returns:
        A tensor like ``inputs``.
    """
    return nn.dropout(inputs, rate, training=training, seed=seed, name=name or "dropout")


def layer_norm(
    inputs: Any,
    axis: int = -1,
    epsilon: float = 1e-3,
    center: bool = True,
    scale: bool = True,
    beta_initializer: Any = None,
    gamma_initializer: Any = None,
    trainable: bool = True,
    name: str | None = None,
    reuse: Any = None,
) -> Tensor:
    """Layer normalization over ``axis`` with a learned per-feature scale ``gamma`` and offset ``beta``.

    Args:
        inputs: float tensor with a known size of ``axis``.
        axis: the normalised (feature) axis.
        epsilon: added to the variance.
        center: learn ``beta``.
        scale: learn ``gamma``.
        beta_initializer: default ``zeros``.
        gamma_initializer: default ``ones``.
        trainable: whether the variables are trainable.
        name: variable scope (default ``layer_norm``, ``layer_norm_1``, ...).
        reuse: reuse the scope's variables.

    Returns:
        A tensor like ``inputs``.
    """
    x = _float_input(inputs, "layer_norm", 1)
    axis, shape = _feature_axis(x, axis, "layer_norm")
    with variable_scope(name, default_name="layer_norm", reuse=reuse):
        gamma, beta = _scale_and_offset(shape, x.dtype, center, scale, beta_initializer, gamma_initializer, trainable)
        return nn.layer_norm(x, gamma, beta, axis=axis, epsilon=epsilon)


def flatten(inputs: Any, name: str | None = None) -> Tensor:
    """Reshapes ``[batch, d1, d2, ...]`` to ``[batch, d1 * d2 * ...]`` (the non-batch sizes must be known).

    Args:
        inputs: tensor of rank 1 or more.
        name: node name (default ``flatten``).

    Returns:
        A rank-2 tensor.
    """
    x = convert_to_tensor(inputs)
    if x.shape is None or len(x.shape) < 1 or any(d is None for d in x.shape[1:]):
        raise GraphError(
            f"flatten needs inputs of known rank and known non-batch sizes; {x.name!r} has shape {format_shape(x.shape)}."
        )
    return api.reshape(x, [-1, math.prod(x.shape[1:])], name=name or "flatten")
