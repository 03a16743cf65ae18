"""Layers as functions, TensorFlow-1 style: thin wrappers over the ``Layer`` classes.

Each function makes the layer object (``dense`` a :class:`Dense`, ``batch_normalization`` a
:class:`BatchNormalization`, ...) in ``tf.layers`` mode (:meth:`Layer.in_variable_scope`) and calls
it once, as ``tf.layers.dense`` did with ``Dense``. The layer opens
``variable_scope(name, default_name=<layer>)`` and makes its weights with ``get_variable``, so
unnamed layers get TF's unique names: two ``dense`` calls make ``dense/kernel, dense/bias,
dense_1/kernel, dense_1/bias``. Pass ``name=`` and ``reuse=True`` (or ``hubkit.AUTO_REUSE``) to
share a layer's variables. Argument checks, naming and the computation are the classes'.

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     x = hk.placeholder(hk.float32, [None, 4])
...     y = dense(dense(x, 8, activation="relu"), 2)
>>> [v.name for v in g.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)]
['dense/kernel', 'dense/bias', 'dense_1/kernel', 'dense_1/bias']
"""

from __future__ import annotations

from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Tensor, convert_to_tensor
from hubkit.layers.base import Layer
from hubkit.layers.conv import Conv2D
from hubkit.layers.core import Dense, Dropout, Embedding
from hubkit.layers.normalization import BatchNormalization, LayerNormalization
from hubkit.layers.reshaping import Flatten

__all__ = ["batch_normalization", "conv2d", "dense", "dropout", "embedding", "flatten", "layer_norm"]


def _apply(layer: Layer, inputs: Any, name: str | None, reuse: Any, float_inputs: bool = True, **call: Any) -> Tensor:
    """Calls ``layer`` once in ``tf.layers`` mode on ``inputs`` made a tensor of the default graph."""
    x = convert_to_tensor(inputs)
    if float_inputs and not x.dtype.is_floating:
        # the weights take the inputs' dtype, as in TF1; an int kernel cannot be initialised or trained
        raise GraphError(f"{layer.name} needs float inputs; {x.name!r} has dtype {x.dtype.name}.")
    return layer.in_variable_scope(name, layer.name, reuse)(x, **call)


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
    """``activation(inputs @ kernel + bias)`` over the last axis of ``inputs`` (a :class:`Dense` layer).

    Args:
        inputs: float tensor ``[..., in]`` of rank 2 or more with a known last dimension; the
            variables take its dtype.
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
    kernel_and_bias = (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    layer = Dense(units, activation, use_bias, *kernel_and_bias, trainable=trainable, name="dense")
    return _apply(layer, inputs, name, reuse)


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
    """Rows of an ``[vocab_size, dim]`` float32 table for integer ``ids`` (an :class:`Embedding` layer).

    The table's gradient is sparse.

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
    layer = Embedding(
        vocab_size,
        dim,
        initializer,
        regularizer,
        trainable=trainable,
        name="embedding",
    )
    return _apply(layer, ids, name, reuse, float_inputs=False)


def conv2d(
    inputs: Any,
    filters: int,
    kernel_size: Any,
    strides: Any = 1,
    padding: str = "valid",
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

    A :class:`Conv2D` layer. The default padding is "valid", as in ``tf.layers.conv2d``.

    Args:
        inputs: float tensor ``[batch, height, width, channels]`` with known channels.
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: "valid" or "same" (any case).
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
    kernel_and_bias = (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    layer = Conv2D(
        filters, kernel_size, strides, padding, activation, use_bias, *kernel_and_bias,
        dilation_rate=dilation_rate, trainable=trainable, name="conv2d",
    )
    return _apply(layer, inputs, name, reuse)


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
    """Batch normalization over every axis but ``axis``, as ``tf.layers.batch_normalization``.

    A :class:`BatchNormalization` layer: in training the batch's statistics normalise the inputs and
    two update ops, added to ``GraphKeys.UPDATE_OPS``, move ``moving_mean`` and ``moving_variance``
    towards them. Run them with the training op, e.g.
    ``hubkit.group(train_op, *hubkit.get_collection(hubkit.GraphKeys.UPDATE_OPS))``. As in TF1,
    ``trainable=False`` freezes ``beta`` and ``gamma`` only: training still uses and updates the
    batch statistics.

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
    layer = BatchNormalization(
        axis,
        momentum,
        epsilon,
        center,
        scale,
        beta_initializer,
        gamma_initializer,
        moving_mean_initializer,
        moving_variance_initializer,
        trainable=trainable,
        name="batch_normalization",
    )
    layer._frozen_runs_inference = False  # TF1's tf.layers behaviour
    return _apply(layer, inputs, name, reuse, training=training)


def dropout(inputs: Any, rate: float = 0.5, training: Any = False, seed: int | None = None, name: str | None = None) -> Tensor:
    """Drops each element with probability ``rate`` when ``training`` (a :class:`Dropout` layer).

    Kept elements are scaled by ``1 / (1 - rate)``.

    Args:
        inputs: float tensor.
        rate: drop probability in [0, 1).
        training: Python bool or bool scalar tensor; when false the result is an identity of ``inputs``.
        seed: op seed, for reproducible masks.
        name: name scope (default ``dropout``, ``dropout_1``, ...).

    Returns:
        A tensor like ``inputs``.
    """
    return _apply(Dropout(rate, seed=seed, name="dropout"), inputs, name, None, training=training)


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
    """Layer normalization over ``axis`` with a learned scale ``gamma`` and offset ``beta``.

    A :class:`LayerNormalization` layer.

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
    layer = LayerNormalization(
        axis,
        epsilon,
        center,
        scale,
        beta_initializer,
        gamma_initializer,
        trainable=trainable,
        name="layer_norm",
    )
    return _apply(layer, inputs, name, reuse)


def flatten(inputs: Any, name: str | None = None) -> Tensor:
    """Reshapes ``[batch, d1, d2, ...]`` to ``[batch, d1 * d2 * ...]`` (a :class:`Flatten` layer).

    Args:
        inputs: tensor of rank 1 or more with known non-batch sizes.
        name: name scope (default ``flatten``, ``flatten_1``, ...).

    Returns:
        A rank-2 tensor.
    """
    return _apply(Flatten(name="flatten"), inputs, name, None, float_inputs=False)
