"""Finite-difference checks of the gradients of the ONNX-exact ops (hubkit/ops/onnx_*.py)."""

import numpy as np
import pytest

from hubkit.ops.registry import apply
from tests.helpers_fd import check_vjp, cover

cover("hubkit.ops.onnx_conv", ["OnnxConv", "OnnxConvTranspose", "OnnxLRN", "OnnxMaxPool", "OnnxAveragePool"])
cover("hubkit.ops.onnx_tensor", ["OnnxReshape", "OnnxFlatten", "OnnxExpand", "OnnxCumSum", "OnnxEinsum", "OnnxTrilu"])

rng = np.random.default_rng(0)


def _r(*shape):
    return rng.standard_normal(shape)


WINDOW = {"strides": [2, 1], "pads": [1, 0, 0, 1], "auto_pad": "NOTSET"}


@pytest.mark.parametrize("group,dil", [(1, [1, 1]), (2, [2, 1])])
def test_conv_gradients(group, dil):
    check_vjp(lambda x, w, b: apply("OnnxConv", x, w, b, dilations=dil, group=group, **WINDOW),
              [_r(2, 4, 6, 5), _r(6, 4 // group, 3, 2), _r(6)], ops=["OnnxConv"])


def test_pointwise_conv_gradient():
    check_vjp(lambda x, w: apply("OnnxConv", x, w, strides=[1, 1], pads=[0] * 4, dilations=[1, 1], group=1),
              [_r(2, 3, 4, 4), _r(5, 3, 1, 1)], ops=["OnnxConv"])


@pytest.mark.parametrize("attrs", [
    {"strides": [2, 1], "pads": [1, 0, 0, 1], "dilations": [1, 2], "group": 1},
    {"strides": [2, 2], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 2, "output_padding": [1, 0]},
    {"strides": [2, 2], "pads": [0] * 4, "dilations": [1, 1], "group": 1, "auto_pad": "SAME_UPPER"},
])
def test_conv_transpose_gradients(attrs):
    check_vjp(lambda x, w, b: apply("OnnxConvTranspose", x, w, b, **attrs),
              [_r(2, 4, 4, 3), _r(4, 3, 3, 2), _r(3 * attrs["group"])], ops=["OnnxConvTranspose"])


@pytest.mark.parametrize("ceil", [False, True])
def test_pool_gradients(ceil):
    attrs = {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 0], "ceil_mode": ceil}
    x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0  # distinct values: the max is unique
    check_vjp(lambda t: apply("OnnxMaxPool", t, **attrs), [x], ops=["OnnxMaxPool"])
    for include in (False, True):
        check_vjp(lambda t, include=include: apply("OnnxAveragePool", t, count_include_pad=include, **attrs), [x],
                  ops=["OnnxAveragePool"])


@pytest.mark.parametrize("size", [3, 4])
def test_lrn_gradient(size):
    check_vjp(lambda x: apply("OnnxLRN", x, size=size, alpha=0.3, beta=0.75, bias=1.5), [_r(2, 6, 3, 2)],
              ops=["OnnxLRN"])


def test_tensor_op_gradients():
    check_vjp(lambda x: apply("OnnxReshape", x, np.array([0, -1], np.int64)), [_r(2, 3, 4)], ops=["OnnxReshape"])
    check_vjp(lambda x: apply("OnnxFlatten", x, axis=2), [_r(2, 3, 4)], ops=["OnnxFlatten"])
    check_vjp(lambda x: apply("OnnxExpand", x, np.array([2, 1, 3], np.int64)), [_r(3, 1)], ops=["OnnxExpand"])
    for exclusive in (False, True):
        for reverse in (False, True):
            check_vjp(lambda x, e=exclusive, r=reverse: apply("OnnxCumSum", x, axis=1, exclusive=e, reverse=r),
                      [_r(2, 4)], ops=["OnnxCumSum"])
    check_vjp(lambda a, b: apply("OnnxEinsum", a, b, equation="bij,bjk->bik"), [_r(2, 3, 4), _r(2, 4, 5)],
              ops=["OnnxEinsum"])
    check_vjp(lambda a, b: apply("OnnxEinsum", a, b, equation="ij,kj->ik"), [_r(3, 4), _r(5, 4)], ops=["OnnxEinsum"])
    check_vjp(lambda x: apply("OnnxTrilu", x, np.array(1, np.int64), upper=False), [_r(3, 4)], ops=["OnnxTrilu"])
