"""Gradient table of the nn and conv op families: every differentiable op against finite differences."""

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.registry import apply
from tests.helpers_fd import check_vjp, cover

RNG = np.random.default_rng(42)


def away_from(values, kinks, margin=0.1):
    """Random values at least ``margin`` away from each kink (finite differences break at kinks)."""
    out = np.array(values, dtype=np.float64)
    for k in kinks:
        close = np.abs(out - k) < margin
        out[close] = k + np.where(out[close] >= k, margin, -margin) * 2
    return out


def distinct(shape, scale=1.0):
    """Values with no ties, so a max-pool has one clear winner per window."""
    return RNG.permutation(np.prod(shape)).reshape(shape).astype(np.float64) * scale / np.prod(shape)


def normal(*shape):
    return RNG.standard_normal(shape)


X = normal(3, 4)
G = normal(3, 4)
LOGITS = normal(4, 5) * 3
IMG = normal(2, 6, 5, 3)

CASES = {
    # name: (op_fn, inputs, op types that must be built)
    "relu": (hk.nn.relu, [away_from(X, [0])], ["Relu"]),
    "relu_grad": (lambda g, y: apply("ReluGrad", g, y), [G, away_from(X, [0])], ["ReluGrad"]),
    "relu6": (hk.nn.relu6, [away_from(X * 5, [0, 6])], ["Relu6"]),
    "relu6_grad": (lambda g, y: apply("Relu6Grad", g, y), [G, away_from(X * 5, [0, 6])], ["Relu6Grad"]),
    "leaky_relu": (lambda x: hk.nn.leaky_relu(x, 0.3), [away_from(X, [0])], ["LeakyRelu"]),
    "leaky_relu_grad": (
        lambda g, x: apply("LeakyReluGrad", g, x, alpha=0.3), [G, away_from(X, [0])], ["LeakyReluGrad"]
    ),
    "elu": (hk.nn.elu, [away_from(X, [0])], ["Elu"]),
    "elu_grad": (lambda g, y: apply("EluGrad", g, y), [G, away_from(X * 0.5, [0])], ["EluGrad"]),
    "gelu": (hk.nn.gelu, [X], ["Erf"]),
    "gelu_tanh": (lambda x: hk.nn.gelu(x, approximate=True), [X], ["Tanh"]),
    "softmax": (hk.nn.softmax, [LOGITS], ["Softmax"]),
    "softmax_axis0": (lambda x: hk.nn.softmax(x, axis=0), [LOGITS], ["Softmax"]),
    "log_softmax": (hk.nn.log_softmax, [LOGITS], ["LogSoftmax"]),
    "log_softmax_axis0": (lambda x: hk.nn.log_softmax(x, axis=0), [LOGITS], ["LogSoftmax"]),
    "dropout_grad": (
        lambda g: apply("DropoutGrad", g, hk.constant(np.array([[2.0, 0.0, 2.0, 0.0]]), hk.float64)),
        [G],
        ["DropoutGrad"],
    ),
    "bias_add": (hk.nn.bias_add, [normal(2, 3, 4), normal(4)], ["BiasAdd"]),
    "bias_add_grad": (lambda g: apply("BiasAddGrad", g), [normal(2, 3, 4)], ["BiasAddGrad"]),
    "sparse_xent": (
        lambda logits: hk.nn.sparse_softmax_cross_entropy_with_logits(np.array([0, 4, 2, 1]), logits),
        [LOGITS],
        ["SparseSoftmaxCrossEntropyWithLogits"],
    ),
    "softmax_xent": (
        hk.nn.softmax_cross_entropy_with_logits,
        [RNG.dirichlet(np.ones(5), size=4), LOGITS],
        ["SoftmaxCrossEntropyWithLogits"],
    ),
    "sigmoid_xent": (
        hk.nn.sigmoid_cross_entropy_with_logits,
        [RNG.uniform(size=(4, 5)), LOGITS],
        ["SigmoidCrossEntropyWithLogits"],
    ),
    "moments_mean_and_variance": (lambda x: hk.nn.moments(x, [0, 1]), [normal(3, 2, 4)], ["Mean"]),
    "batch_normalization": (
        lambda x, m, v, b, s: hk.nn.batch_normalization(x, m, v, b, s, 1e-3),
        [normal(5, 3), normal(3), RNG.uniform(0.5, 2, 3), normal(3), normal(3)],
        ["Rsqrt"],
    ),
    "layer_norm": (lambda x, g, b: hk.nn.layer_norm(x, g, b), [normal(3, 5), normal(5), normal(5)], ["Rsqrt"]),
    "layer_norm_two_axes": (lambda x: hk.nn.layer_norm(x, axis=[1, 2]), [normal(2, 3, 4)], ["Rsqrt"]),
    "l2_normalize": (lambda x: hk.nn.l2_normalize(x, axis=1), [normal(3, 4)], ["Rsqrt"]),
    "embedding_lookup": (
        lambda p: hk.nn.embedding_lookup(p, np.array([[0, 2], [2, 3]])), [normal(5, 3)], []
    ),
    # conv family
    "conv2d_same_stride2": (
        lambda x, w: hk.nn.conv2d(x, w, strides=2, padding="SAME"), [IMG, normal(3, 2, 3, 4)], ["Conv2D"]
    ),
    "conv2d_valid_dilated": (
        lambda x, w: hk.nn.conv2d(x, w, padding="VALID", dilations=2), [IMG, normal(2, 2, 3, 2)], ["Conv2D"]
    ),
    "conv2d_explicit_many_channels": (
        lambda x, w: hk.nn.conv2d(x, w, strides=[1, 2], padding=[[1, 0], [0, 2]]),
        [normal(1, 4, 4, 17), normal(2, 3, 17, 2)],
        ["Conv2D"],
    ),
    "conv2d_transpose": (
        lambda x, w: hk.nn.conv2d_transpose(x, w, [2, 7, 5, 2], strides=2, padding="SAME"),
        [normal(2, 4, 3, 3), normal(3, 3, 2, 3)],
        ["Conv2DBackpropInput"],
    ),
    "conv2d_backprop_filter": (
        lambda x, g: apply(
            "Conv2DBackpropFilter", x, g, filter_hw=[3, 2], strides=(2, 1), dilations=(1, 1), padding="SAME"
        ),
        [IMG, normal(2, 3, 5, 2)],
        ["Conv2DBackpropFilter"],
    ),
    "max_pool_same": (lambda x: hk.nn.max_pool2d(x, 3, 2, "SAME"), [distinct((2, 6, 5, 2))], ["MaxPool"]),
    "max_pool_valid": (lambda x: hk.nn.max_pool2d(x, 2, 1, "VALID"), [distinct((1, 4, 4, 2))], ["MaxPool"]),
    "avg_pool_same": (lambda x: hk.nn.avg_pool2d(x, 3, 2, "SAME"), [IMG], ["AvgPool"]),
    "avg_pool_valid": (lambda x: hk.nn.avg_pool2d(x, [2, 3], [2, 1], "VALID"), [IMG], ["AvgPool"]),
    "avg_pool_grad": (
        lambda g: apply("AvgPoolGrad", g, input_hw=[6, 5], ksize=(3, 3), strides=(2, 2), padding="SAME"),
        [normal(2, 3, 3, 3)],
        ["AvgPoolGrad"],
    ),
}

cover(
    "hubkit.ops.nn",
    [
        "Relu", "ReluGrad", "Relu6", "Relu6Grad", "LeakyRelu", "LeakyReluGrad", "Elu", "EluGrad",
        "Softmax", "LogSoftmax", "Dropout", "DropoutGrad", "BiasAdd", "BiasAddGrad",
        "SparseSoftmaxCrossEntropyWithLogits", "SoftmaxCrossEntropyWithLogits", "SigmoidCrossEntropyWithLogits",
    ],
)
cover(
    "hubkit.ops.conv",
    ["Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "MaxPool", "AvgPool", "AvgPoolGrad"],
)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_finite_differences(name):
    op_fn, inputs, ops = CASES[name]
    check_vjp(op_fn, inputs, ops=ops, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("conv2d")))
def test_conv_gradients_on_the_per_tap_kernel_path(name, monkeypatch):
    from hubkit.ops import _conv_numpy as conv_numpy

    monkeypatch.setattr(conv_numpy, "_IM2COL_MAX_CHANNELS", 0)
    monkeypatch.setattr(conv_numpy, "_IM2COL_FILTER_GRAD_MAX_CHANNELS", 0)
    op_fn, inputs, ops = CASES[name]
    check_vjp(op_fn, inputs, ops=ops, rtol=1e-5, atol=1e-6)


def test_second_order_through_conv2d_transpose_and_filter_grad():
    # The gradient of a conv gradient is again a conv: differentiate hk.gradients itself.
    def grad_of_conv(x, w):
        y = hk.nn.conv2d(x, w, strides=2, padding="SAME")
        (dw,) = hk.gradients(hk.reduce_sum(hk.square(y)), [w])
        return dw

    check_vjp(grad_of_conv, [normal(1, 5, 4, 2), normal(3, 3, 2, 2)], ops=["Conv2DBackpropFilter"], rtol=1e-5)


def test_dropout_gradient_is_the_mask():
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float64, [50, 40])
        y = hk.nn.dropout(x, 0.4, seed=3)
        (dx,) = hk.gradients(hk.reduce_sum(y), [x])
    xv = RNG.uniform(1, 2, size=(50, 40))
    yv, dxv = hk.Session(g).run([y, dx], {x: xv})
    np.testing.assert_allclose(dxv, yv / xv, rtol=1e-12)
    assert set(np.round(np.unique(dxv), 12)) == {0.0, round(1 / 0.6, 12)}


def test_max_pool_grad_is_declared_non_differentiable():
    from hubkit.ops import get_op

    assert get_op("MaxPoolGrad").differentiable is False
