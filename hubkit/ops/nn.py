"""Op family: activations, softmax, dropout, normalisation and the fused cross-entropies.

Ops whose gradient is worth fusing (ReLU and friends, softmax, the cross-entropies, dropout,
``bias_add``) are registered here with their rules side by side; everything else (GELU, moments,
batch and layer normalisation, ``l2_normalize``) is composed from primitives in the graph, so it
needs no gradient code of its own. Convolution and pooling live in :mod:`hubkit.ops.conv`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Tensor, bool_, convert_to_tensor, get_default_graph
from hubkit.graph.shapes import merge_shapes
from hubkit.ops import elementwise as _ew
from hubkit.ops import reduce as _rd
from hubkit.ops._helpers import as_tensor, normalize_axes, plain_axis
from hubkit.ops.fusion_forms import ADD, CHEAP, RELU, RELU6, FusedForm
from hubkit.ops.registry import apply, describe, infer_error, register_op
from hubkit.ops.shape import expand_dims, gather, squeeze

__all__ = [
    "batch_normalization",
    "bias_add",
    "dropout",
    "elu",
    "embedding_lookup",
    "gelu",
    "l2_normalize",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "moments",
    "relu",
    "relu6",
    "set_random_seed",
    "sigmoid_cross_entropy_with_logits",
    "softmax",
    "softmax_cross_entropy_with_logits",
    "sparse_softmax_cross_entropy_with_logits",
]


def _float_like(x: Tensor):
    if not x.dtype.is_floating:
        raise infer_error(f"input {describe(x)} must be float32 or float64.")
    return x.dtype, x.shape


# -- activations with fused gradients ------------------------------------------------------------------
class _GradOfActivation:
    """``grad(g, saved)``: linear in ``g``, so its own gradient is the same op applied to ``gg``."""

    def infer(g, saved, **attrs):
        return g.dtype, g.shape

    def vjp(gg, out, g, saved, **attrs):
        return apply(out.node.op, gg, saved, **attrs), None


@register_op
class Relu:
    """``max(x, 0)``."""

    fused = FusedForm(RELU, CHEAP)

    def infer(x):
        return _float_like(x)

    def forward(x):
        return np.maximum(x, 0)

    def vjp(g, out, x):
        return (apply("ReluGrad", g, out),)


@register_op
class ReluGrad(_GradOfActivation):
    """``g`` where the ReLU output is positive."""

    def forward(g, y):
        return g * (y > 0)


@register_op
class Relu6:
    """``min(max(x, 0), 6)``."""

    fused = FusedForm(RELU6, CHEAP)

    def infer(x):
        return _float_like(x)

    def forward(x):
        return np.clip(x, 0, 6)

    def vjp(g, out, x):
        return (apply("Relu6Grad", g, out),)


@register_op
class Relu6Grad(_GradOfActivation):
    def forward(g, y):
        return g * ((y > 0) & (y < 6))


@register_op
class LeakyRelu:
    """``x`` where positive, ``alpha * x`` elsewhere."""

    def infer(x, *, alpha):
        return _float_like(x)

    def forward(x, *, alpha):
        return np.where(x > 0, x, x * alpha)

    def vjp(g, out, x, *, alpha):
        return (apply("LeakyReluGrad", g, x, alpha=alpha),)


@register_op
class LeakyReluGrad(_GradOfActivation):
    def forward(g, x, *, alpha):
        return np.where(x > 0, g, g * alpha)


@register_op
class Elu:
    """``x`` where positive, ``exp(x) - 1`` elsewhere."""

    def infer(x):
        return _float_like(x)

    def forward(x):
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))

    def vjp(g, out, x):
        return (apply("EluGrad", g, out),)


@register_op
class EluGrad:
    """``g`` where the ELU output is positive, ``g * (y + 1)`` elsewhere."""

    def infer(g, y):
        return g.dtype, g.shape

    def forward(g, y):
        return np.where(y > 0, g, g * (y + 1))

    def vjp(gg, out, g, y):
        negative_part = _ew.cast(_ew.less_equal(y, 0.0), g.dtype)
        return apply("EluGrad", gg, y), _ew.multiply(_ew.multiply(gg, g), negative_part)


def relu(x: Any, name: str | None = None) -> Tensor:
    """Rectified linear unit, ``max(x, 0)``.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     y = hk.nn.relu(hk.constant([-1.0, 2.0]))
    >>> hk.Session(g).run(y)
    array([0., 2.], dtype=float32)
    """
    return apply("Relu", x, name=name or "Relu")


def relu6(x: Any, name: str | None = None) -> Tensor:
    """``min(max(x, 0), 6)``."""
    return apply("Relu6", x, name=name or "Relu6")


def leaky_relu(x: Any, alpha: float = 0.2, name: str | None = None) -> Tensor:
    """``x`` where positive, ``alpha * x`` elsewhere (TF's default ``alpha=0.2``)."""
    return apply("LeakyRelu", x, name=name or "LeakyRelu", alpha=float(alpha))


def elu(x: Any, name: str | None = None) -> Tensor:
    """Exponential linear unit: ``x`` where positive, ``exp(x) - 1`` elsewhere."""
    return apply("Elu", x, name=name or "Elu")


def gelu(x: Any, approximate: bool = False, name: str | None = None) -> Tensor:
    """Gaussian error linear unit, ``x * Phi(x)``, as ``tf.nn.gelu``.

    Args:
        x: float tensor.
        approximate: use the tanh approximation
            ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` instead of the exact erf form.
        name: name scope of the nodes.

    Returns:
        A tensor like ``x``.
    """
    xt = as_tensor(x)
    with xt.graph.name_scope(name or "Gelu"):
        if approximate:
            inner = _ew.multiply(
                _ew.add(xt, _ew.multiply(_ew.pow(xt, 3.0), 0.044715)), float(np.sqrt(2.0 / np.pi))
            )
            cdf = _ew.multiply(_ew.add(_ew.tanh(inner), 1.0), 0.5)
        else:
            cdf = _ew.multiply(_ew.add(_ew.erf(_ew.multiply(xt, float(1.0 / np.sqrt(2.0)))), 1.0), 0.5)
        return _ew.multiply(xt, cdf)


# -- softmax -----------------------------------------------------------------------------------------
@register_op
class Softmax:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed without overflow."""

    def infer(x, *, axis):
        normalize_axes(axis, x.ndim)
        return _float_like(x)

    def forward(x, *, axis):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        e /= e.sum(axis=axis, keepdims=True)
        return e

    def vjp(g, out, x, *, axis):
        inner = _rd.reduce_sum(_ew.multiply(g, out), axis=axis, keepdims=True)
        return (_ew.multiply(out, _ew.subtract(g, inner)),)


@register_op
class LogSoftmax:
    """``x - log(sum(exp(x)))`` along ``axis``, computed without overflow."""

    def infer(x, *, axis):
        normalize_axes(axis, x.ndim)
        return _float_like(x)

    def forward(x, *, axis):
        shifted = x - x.max(axis=axis, keepdims=True)
        shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return shifted

    def vjp(g, out, x, *, axis):
        total = _rd.reduce_sum(g, axis=axis, keepdims=True)
        return (_ew.subtract(g, _ew.multiply(_ew.exp(out), total)),)


def softmax(logits: Any, axis: int = -1, name: str | None = None) -> Tensor:
    """Softmax along ``axis`` (the last by default).

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     p = hk.nn.softmax(hk.constant([[0.0, 0.0]]))
    >>> hk.Session(g).run(p)
    array([[0.5, 0.5]], dtype=float32)
    """
    return apply("Softmax", logits, name=name or "Softmax", axis=int(axis))


def log_softmax(logits: Any, axis: int = -1, name: str | None = None) -> Tensor:
    """Logarithm of :func:`softmax`, computed stably."""
    return apply("LogSoftmax", logits, name=name or "LogSoftmax", axis=int(axis))


# -- dropout -----------------------------------------------------------------------------------------
_DEFAULT_GRAPH_SEED = 87654321  # used with an op seed when no graph seed is set, as TensorFlow does


def set_random_seed(seed: int | None) -> None:
    """Sets the default graph's seed; random ops created afterwards are reproducible.

    As in TF1, a random op's stream is fixed by (graph seed, op seed): with a graph seed and no op
    seed, ops get distinct seeds from their creation order, so rebuilding the same graph gives the
    same numbers. Each compiled plan starts its own stream, which successive runs continue.

    Args:
        seed: a non-negative int, or None to make later ops nondeterministic again.
    """
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise GraphError(f"set_random_seed: seed must be a non-negative int or None; got {seed!r}.")
    get_default_graph().seed = None if seed is None else int(seed)


def _seeds(graph, seed: int | None) -> tuple[int | None, int | None]:
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise GraphError(f"seed must be a non-negative int or None; got {seed!r}.")
    graph_seed = graph.seed
    if graph_seed is None and seed is None:
        return None, None
    if graph_seed is None:
        return _DEFAULT_GRAPH_SEED, int(seed)  # type: ignore[arg-type]
    return graph_seed, graph.version if seed is None else int(seed)


@register_op
class Dropout:
    """Outputs ``(x * mask, mask)``; ``mask`` holds 0 or ``1 / (1 - rate)``, or is 1 when not training."""

    aliases_input = True  # returns x itself when not training

    def infer(x, training, *, rate, noise_shape, seed, seed2):
        _float_like(x)
        if training.dtype is not bool_ or training.shape not in (None, ()):
            raise infer_error(f"training {describe(training)} must be a bool scalar.")
        mask_shape = None if x.shape is None else (None,) * len(x.shape)
        return [(x.dtype, x.shape), (x.dtype, mask_shape)]

    def prepare(node):
        seed, seed2 = node.attrs["seed"], node.attrs["seed2"]
        entropy = None if seed is None else [seed, seed2]
        return {"rng": np.random.default_rng(entropy)}

    def forward(x, training, *, rate, noise_shape, seed, seed2, rng):
        if not training or rate == 0.0:
            return x, np.ones((1,) * x.ndim, dtype=x.dtype)
        shape = x.shape
        if noise_shape is not None:
            shape = tuple(x.shape[i] if d is None else d for i, d in enumerate(noise_shape))
        draw_dtype = np.float64 if x.dtype == np.float64 else np.float32
        mask = (rng.random(shape, dtype=draw_dtype) >= rate).astype(x.dtype)
        mask *= x.dtype.type(1.0 / (1.0 - rate))
        return x * mask, mask

    def vjp(grads, outs, x, training, **attrs):
        g, g_mask = grads
        if g_mask is not None:
            raise GraphError(f"Dropout node {outs[1].node.name!r}: its mask output has no gradient.")
        return (None if g is None else apply("DropoutGrad", g, outs[1])), None


@register_op
class DropoutGrad(_GradOfActivation):
    """``g * mask`` (the mask broadcasts)."""

    def forward(g, mask):
        return g * mask


def dropout(
    x: Any,
    rate: float,
    training: Any = True,
    seed: int | None = None,
    noise_shape: Sequence[int | None] | None = None,
    name: str | None = None,
) -> Tensor:
    """Zeroes each element with probability ``rate`` and scales the rest by ``1 / (1 - rate)``.

    Args:
        x: float tensor.
        rate: probability of dropping an element, in [0, 1).
        training: Python bool or bool scalar tensor; when false the output is ``x`` unchanged.
        seed: op seed; with :func:`set_random_seed` it makes the masks reproducible.
        noise_shape: shape of the random mask, broadcast against ``x`` (e.g. ``[None, 1, 1, None]``
            drops whole feature maps); None entries take the size of ``x``.
        name: node name.

    Returns:
        A tensor like ``x``.

    Raises:
        GraphError: ``rate`` is outside [0, 1) or ``noise_shape`` does not fit ``x``.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     y = hk.nn.dropout(hk.constant(np.ones((2, 3), np.float32)), 0.5, seed=1)
    >>> sorted(set(hk.Session(g).run(y).ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0.0 <= rate < 1.0:
        raise GraphError(f"dropout: rate must be a number in [0, 1); got {rate!r}.")
    xt = as_tensor(x)
    if isinstance(training, (bool, np.bool_)) and not training:
        return xt
    if noise_shape is not None:
        noise = [None if d is None else int(d) for d in noise_shape]
        if xt.shape is not None and (
            len(noise) != len(xt.shape)
            or any(d is not None and d != 1 and s is not None and d != s for d, s in zip(noise, xt.shape))
        ):
            raise GraphError(
                f"dropout: noise_shape {list(noise_shape)} does not broadcast to input {describe(xt)}."
            )
    else:
        noise = None
    seed_pair = _seeds(xt.graph, seed)
    training_t = convert_to_tensor(training, dtype=bool_, graph=xt.graph)
    y, _ = apply(
        "Dropout", xt, training_t, name=name or "dropout",
        rate=float(rate), noise_shape=noise, seed=seed_pair[0], seed2=seed_pair[1],
    )
    return y


# -- bias, embeddings, normalisation -------------------------------------------------------------------
@register_op
class BiasAdd:
    """``value + bias`` with a 1-D ``bias`` along the last axis."""

    fused = FusedForm(ADD, CHEAP)

    def infer(value, bias):
        if value.shape is not None and len(value.shape) < 1:
            raise infer_error(f"value {describe(value)} must have rank 1 or more.")
        if bias.shape is not None and len(bias.shape) != 1:
            raise infer_error(f"bias {describe(bias)} must have rank 1.")
        if bias.dtype is not value.dtype:
            raise infer_error(f"bias {describe(bias)} must have the dtype of value {describe(value)}.")
        if value.shape is not None and bias.shape is not None:
            if merge_shapes(value.shape[-1:], bias.shape) is False:
                raise infer_error(
                    f"bias {describe(bias)} must match the last dimension of value {describe(value)}."
                )
            return value.dtype, value.shape[:-1] + (value.shape[-1] or bias.shape[0],)
        return value.dtype, value.shape

    def forward(value, bias):
        return value + bias

    def vjp(g, out, value, bias):
        return g, apply("BiasAddGrad", g)


@register_op
class BiasAddGrad:
    """Sum of ``g`` over every axis but the last."""

    def infer(g):
        return g.dtype, None if g.shape is None else g.shape[-1:]

    def forward(g):
        return g.reshape(-1, g.shape[-1]).sum(axis=0)

    def vjp(gb, out, g):
        return (apply("BiasAdd", _ew.zeros_like(g), gb),)


def bias_add(value: Any, bias: Any, name: str | None = None) -> Tensor:
    """Adds a 1-D ``bias`` along the last axis of ``value`` (channels-last)."""
    return apply("BiasAdd", value, bias, name=name or "BiasAdd")


def embedding_lookup(params: Any, ids: Any, partition_strategy: str = "mod", name: str | None = None,
                     validate_indices: bool = True, max_norm: Any = None) -> Tensor:
    """Rows ``params[ids]``; the gradient with respect to ``params`` is sparse (only those rows).

    Args:
        params: ``[vocab, dim...]`` tensor or Variable, or a list of them (a partitioned variable's
            parts) holding the rows split by ``partition_strategy``.
        ids: int tensor of any shape.
        partition_strategy: with several parts, ``"mod"`` (id ``i`` is row ``i // n`` of part ``i % n``)
            or ``"div"`` (contiguous ranges, the first ``vocab % n`` parts one row longer).
        name: node name.
        validate_indices, max_norm: accepted for TensorFlow 1 compatibility (``max_norm`` must be None).

    Returns:
        ``ids.shape + params.shape[1:]``.
    """
    if partition_strategy not in ("div", "mod"):
        raise GraphError(f"embedding_lookup: unknown partition_strategy {partition_strategy!r}; expected ['div', 'mod'].")
    if max_norm is not None:
        raise GraphError("embedding_lookup: max_norm is not supported; clip the rows with hubkit.clip_by_norm instead.")
    if isinstance(params, (list, tuple)) or hasattr(params, "_get_variable_list"):
        parts = list(params)
        if not parts:
            raise GraphError("embedding_lookup: params is an empty list.")
        if len(parts) > 1:
            from hubkit.ops.partitioned_lookup import partitioned_gather

            return partitioned_gather(parts, ids, partition_strategy, name or "embedding_lookup")
        params = parts[0]
    return gather(params, ids, name=name or "embedding_lookup")


def _axes(axes: Any) -> list[Any]:
    axes = plain_axis(axes)
    return list(axes) if isinstance(axes, (list, tuple)) else [axes]


def moments(x: Any, axes: Any, keepdims: bool = False, name: str | None = None) -> tuple[Tensor, Tensor]:
    """Mean and variance of ``x`` over ``axes``, as ``tf.nn.moments``.

    Args:
        x: float tensor.
        axes: an axis or a list of axes to reduce.
        keepdims: keep the reduced axes with size 1.
        name: name scope of the nodes.

    Returns:
        ``(mean, variance)``.
    """
    xt = as_tensor(x)
    ax = _axes(axes)
    with xt.graph.name_scope(name or "moments"):
        mean = _rd.reduce_mean(xt, axis=ax, keepdims=True)
        # As in TF: the variance's gradient ignores the mean's, which is exact (it sums to zero).
        sq = _ew.square(_ew.subtract(xt, _ew.stop_gradient(mean)))
        variance = _rd.reduce_mean(sq, axis=ax, keepdims=keepdims)
        if not keepdims:
            mean = squeeze(mean, axis=ax)
    return mean, variance


def batch_normalization(
    x: Any,
    mean: Any,
    variance: Any,
    offset: Any,
    scale: Any,
    variance_epsilon: float,
    name: str | None = None,
) -> Tensor:
    """``scale * (x - mean) / sqrt(variance + epsilon) + offset``, as ``tf.nn.batch_normalization``.

    Args:
        x: float tensor.
        mean, variance: statistics broadcastable to ``x`` (e.g. from :func:`moments`).
        offset: beta, or None.
        scale: gamma, or None.
        variance_epsilon: small float added to the variance.
        name: name scope of the nodes.

    Returns:
        A tensor like ``x``.
    """
    xt = as_tensor(x)
    with xt.graph.name_scope(name or "batchnorm"):
        inv = _ew.rsqrt(_ew.add(variance, float(variance_epsilon)))
        if scale is not None:
            inv = _ew.multiply(inv, scale)
        shift = _ew.negative(_ew.multiply(mean, inv))
        if offset is not None:
            shift = _ew.add(shift, offset)
        return _ew.add(_ew.multiply(xt, inv), shift)


def layer_norm(
    x: Any,
    gamma: Any = None,
    beta: Any = None,
    axis: Any = -1,
    epsilon: float = 1e-5,
    name: str | None = None,
) -> Tensor:
    """Normalises ``x`` to zero mean and unit variance over ``axis``, then scales and shifts.

    Args:
        x: float tensor.
        gamma: scale broadcastable to ``x`` (e.g. ``[features]``), or None.
        beta: offset broadcastable to ``x``, or None.
        axis: an axis or a list of axes to normalise over.
        epsilon: small float added to the variance.
        name: name scope of the nodes.

    Returns:
        A tensor like ``x``.
    """
    xt = as_tensor(x)
    with xt.graph.name_scope(name or "layer_norm"):
        mean, variance = moments(xt, axis, keepdims=True)
        y = _ew.multiply(_ew.subtract(xt, mean), _ew.rsqrt(_ew.add(variance, float(epsilon))))
        if gamma is not None:
            y = _ew.multiply(y, gamma)
        if beta is not None:
            y = _ew.add(y, beta)
        return y


def l2_normalize(x: Any, axis: Any = None, epsilon: float = 1e-12, name: str | None = None) -> Tensor:
    """``x / sqrt(max(sum(x**2, axis), epsilon))``, as ``tf.math.l2_normalize``."""
    xt = as_tensor(x)
    ax = None if axis is None else _axes(axis)
    with xt.graph.name_scope(name or "l2_normalize"):
        square_sum = _rd.reduce_sum(_ew.square(xt), axis=ax, keepdims=True)
        return _ew.multiply(xt, _ew.rsqrt(_ew.maximum(square_sum, float(epsilon))))


# -- fused cross-entropies -----------------------------------------------------------------------------
def _check_logits(logits: Tensor) -> None:
    _float_like(logits)
    if logits.shape is not None and len(logits.shape) < 1:
        raise infer_error(f"logits {describe(logits)} must have rank 1 or more.")


def _labels_like_logits(labels: Tensor, logits: Tensor):
    """The merged static shape of dense ``labels`` that must match ``logits`` in dtype and shape."""
    if labels.dtype is not logits.dtype:
        raise infer_error(f"labels {describe(labels)} must have the dtype of logits {describe(logits)}.")
    shape = merge_shapes(labels.shape, logits.shape)
    if shape is False:
        raise infer_error(f"labels {describe(labels)} must have the shape of logits {describe(logits)}.")
    return shape


def _no_backprop_grad(outs, g_backprop) -> None:
    if g_backprop is not None:
        raise GraphError(f"Node {outs[1].node.name!r}: the backprop output of a cross-entropy has no gradient.")


@register_op
class SparseSoftmaxCrossEntropyWithLogits:
    """Outputs ``(loss, backprop)``: ``-log softmax(logits)[label]`` and its gradient in the logits."""

    def infer(labels, logits):
        _check_logits(logits)
        if not labels.dtype.is_integer:
            raise infer_error(f"labels {describe(labels)} must be int32 or int64.")
        batch = None if logits.shape is None else logits.shape[:-1]
        if merge_shapes(labels.shape, batch) is False:
            raise infer_error(
                f"labels {describe(labels)} must have the shape of logits {describe(logits)} "
                "without its last dimension."
            )
        return [(logits.dtype, merge_shapes(labels.shape, batch)), (logits.dtype, logits.shape)]

    def forward(labels, logits):
        k = logits.shape[-1]
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            bad = labels[(labels < 0) | (labels >= k)].ravel()[0]
            raise ValueError(f"received a label value of {bad} which is outside the valid range of [0, {k}).")
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(shifted)
        total = probs.sum(axis=-1, keepdims=True)
        picked = np.take_along_axis(shifted, labels[..., None].astype(np.intp), axis=-1)
        loss = (np.log(total) - picked)[..., 0]
        probs /= total
        flat = probs.reshape(-1, k)
        flat[np.arange(flat.shape[0]), labels.ravel()] -= 1
        return loss, probs

    def vjp(grads, outs, labels, logits):
        g, g_backprop = grads
        _no_backprop_grad(outs, g_backprop)
        if g is None:
            return None, None
        return None, _ew.multiply(expand_dims(g, -1), outs[1])


@register_op
class SoftmaxCrossEntropyWithLogits:
    """Outputs ``(loss, backprop)``: ``-sum(labels * log softmax(logits))`` over the last axis."""

    def infer(labels, logits):
        _check_logits(logits)
        shape = _labels_like_logits(labels, logits)
        return [(logits.dtype, None if shape is None else shape[:-1]), (logits.dtype, shape)]

    def forward(labels, logits):
        shifted = logits - logits.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=-1, keepdims=True)
        log_probs = shifted - np.log(total)
        loss = -(labels * log_probs).sum(axis=-1)
        exp /= total
        # The exact gradient also when the labels do not sum to one.
        backprop = exp * labels.sum(axis=-1, keepdims=True) - labels
        return loss, backprop

    def vjp(grads, outs, labels, logits):
        g, g_backprop = grads
        _no_backprop_grad(outs, g_backprop)
        if g is None:
            return None, None
        g1 = expand_dims(g, -1)
        return (
            _ew.multiply(g1, _ew.negative(log_softmax(logits))),
            _ew.multiply(g1, outs[1]),
        )


@register_op
class SigmoidCrossEntropyWithLogits:
    """``max(x, 0) - x * z + log(1 + exp(-|x|))``: logistic loss of logits ``x`` for labels ``z``."""

    def infer(labels, logits):
        _float_like(logits)
        shape = _labels_like_logits(labels, logits)
        return logits.dtype, shape

    def forward(labels, logits):
        return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))

    def vjp(g, out, labels, logits):
        return (
            _ew.multiply(g, _ew.negative(logits)),
            _ew.multiply(g, _ew.subtract(_ew.sigmoid(logits), labels)),
        )


def _labels_logits(labels: Any, logits: Any, fn: str, float_labels: bool = True) -> tuple[Tensor, Tensor]:
    """Both as tensors; labels given as data take the logits' float dtype (or stay integers)."""
    if labels is None or logits is None:
        raise GraphError(f"{fn} needs both labels and logits.")
    g = next((t.graph for t in (logits, labels) if isinstance(t, Tensor)), None) or get_default_graph()
    logits_t = convert_to_tensor(logits, graph=g)
    dtype = logits_t.dtype if float_labels and not isinstance(labels, Tensor) else None
    return convert_to_tensor(labels, dtype=dtype, graph=g), logits_t


def sparse_softmax_cross_entropy_with_logits(
    labels: Any = None, logits: Any = None, name: str | None = None
) -> Tensor:
    """Per-example ``-log softmax(logits)[labels]``, fused and numerically stable.

    Args:
        labels: int tensor of class ids, shaped like ``logits`` without its last axis.
        logits: float tensor ``[..., num_classes]``.
        name: node name.

    Returns:
        The loss per example, shaped like ``labels``. A label outside ``[0, num_classes)`` fails
        when the graph runs.
    """
    labels, logits = _labels_logits(labels, logits, "sparse_softmax_cross_entropy_with_logits", False)
    loss, _ = apply("SparseSoftmaxCrossEntropyWithLogits", labels, logits, name=name or "SparseSoftmaxCrossEntropy")
    return loss


def softmax_cross_entropy_with_logits(labels: Any = None, logits: Any = None, name: str | None = None) -> Tensor:
    """Per-example ``-sum(labels * log softmax(logits))`` over the last axis, fused and stable.

    Args:
        labels: float tensor of class probabilities, shaped like ``logits``; it gets a gradient too.
        logits: float tensor ``[..., num_classes]``.
        name: node name.

    Returns:
        The loss per example (``logits`` without its last axis).
    """
    labels, logits = _labels_logits(labels, logits, "softmax_cross_entropy_with_logits")
    loss, _ = apply("SoftmaxCrossEntropyWithLogits", labels, logits, name=name or "SoftmaxCrossEntropy")
    return loss


def sigmoid_cross_entropy_with_logits(labels: Any = None, logits: Any = None, name: str | None = None) -> Tensor:
    """Elementwise logistic loss of ``logits`` for ``labels`` in [0, 1], stable for large logits.

    Args:
        labels: float tensor shaped like ``logits``.
        logits: float tensor.
        name: node name.

    Returns:
        The loss per element.
    """
    labels, logits = _labels_logits(labels, logits, "sigmoid_cross_entropy_with_logits")
    return apply("SigmoidCrossEntropyWithLogits", labels, logits, name=name or "SigmoidCrossEntropy")
