"""The small-batch linear kernel (ops/_small_linear.py) against float64 and against the unoptimised plan.

Stated tolerance: the dot products are summed in another order than NumPy's, so each output may
differ by ``4 * K * eps * sum_k |x_k w_k|`` (plus the same bound for the plan's own float32 sums);
bias, activation, NaN and the signs of zeros follow the epilogue exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops import _small_linear
from hubkit.ops._epilogue import NONE, RELU, RELU6
from hubkit.ops._small_linear import TransposedWeights, small_linear
from hubkit.runtime.optimize import FusedLinear
from tests.helpers_plans import dense_reference, plain_and_optimised


def _check_close(got, want, scale, depth, dtype):
    eps = np.finfo(dtype).eps
    bound = 4 * depth * eps * scale + 4 * eps * np.abs(want)
    finite = np.isfinite(want)
    assert np.all(np.abs(got[finite] - want[finite]) <= bound[finite])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
@pytest.mark.parametrize("seed", range(6))
def test_kernel_within_tolerance_of_float64(seed, act, dtype, kernels):
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, _small_linear.MAX_ROWS + 1))
    depth = int(rng.choice([129, 257, 784]))
    cols = int(rng.choice([127, 255, 301]))
    x = rng.standard_normal((rows, depth)).astype(dtype) * 3
    w = rng.standard_normal((depth, cols)).astype(dtype)
    bias = None if seed % 3 == 0 else rng.standard_normal(cols).astype(dtype)
    got = small_linear(x, w, bias, act, TransposedWeights(None))
    if kernels == "numpy" or w.size < _small_linear.MIN_WORK or rows < _small_linear.MIN_ROWS_ONE_THREAD:
        assert got is None  # NumPy's GEMM runs instead
        return
    assert got is not None and got.dtype == dtype and got.shape == (rows, cols)
    want, scale = dense_reference(x, w, bias, act)
    _check_close(got, want, scale, depth, dtype)
    # Already-transposed weights (MatMul with transpose_b) give the same values.
    same = small_linear(x, np.ascontiguousarray(w.T), bias, act, None)
    np.testing.assert_array_equal(same, got)


def test_epilogue_nan_and_signed_zeros_as_numpy(kernels):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    w = np.zeros((256, 128), np.float32)
    w[:, 1] = rng.standard_normal(256)
    x[2, 5] = np.nan
    bias = np.zeros(128, np.float32)
    bias[3] = -0.0
    for act in (NONE, RELU, RELU6):
        got = small_linear(x, w, bias, act, TransposedWeights(None))
        if got is None:
            continue
        want = np.matmul(x, w) + bias
        if act == RELU:
            want = np.maximum(want, 0)
        elif act == RELU6:
            want = np.clip(want, 0, 6)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.signbit(got[:, [0, 3]]), np.signbit(want[:, [0, 3]]))


def test_transposed_weights_follow_variable_writes(kernels):
    v = hk.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
    cache = TransposedWeights(v)
    first = cache.get(v.value)
    assert cache.get(v.value) is first  # same array, same version: reused
    v.assign(np.ones((2, 3), np.float32))  # written in place: same array object, new version
    np.testing.assert_array_equal(cache.get(v.value), np.ones((3, 2), np.float32))


def test_not_taken_for_small_or_unsupported_products(kernels):
    x = np.ones((4, 8), np.float32)
    assert small_linear(x, np.ones((8, 8), np.float32), None, NONE, TransposedWeights(None)) is None
    big = np.ones((300, 300), np.float32)
    assert small_linear(np.ones((9, 300), np.float32), big, None, NONE, TransposedWeights(None)) is None
    assert small_linear(np.ones((4, 300), np.float64), big, None, NONE, TransposedWeights(None)) is None
    assert small_linear(np.ones((4, 300), np.int32), big.astype(np.int32), None, NONE, None) is None


def _dense_chain(rng, dtype, transpose_b):
    g = hk.Graph()
    with g.as_default():
        width = int(rng.choice([200, 784]))
        x = hk.placeholder(dtype, [None, width], name="x")
        h = x
        for layer in range(int(rng.integers(1, 4))):
            out = int(rng.choice([129, 300, 512]))
            shape = (out, width) if transpose_b else (width, out)
            value = rng.standard_normal(shape).astype(dtype) / np.sqrt(width)
            w = (
                hk.Variable(value, name=f"w{layer}", dtype=dtype)
                if layer % 2 == 0
                else hk.constant(value, dtype=dtype)
            )
            h = hk.matmul(h, w, transpose_b=transpose_b)
            if rng.integers(3):
                h = hk.nn.bias_add(
                    h, hk.Variable(rng.standard_normal(out).astype(dtype), name=f"b{layer}", dtype=dtype)
                )
            act = [hk.nn.relu, hk.nn.relu6, None][int(rng.integers(3))]
            h = act(h) if act is not None else hk.identity(h)
            width = out
    return g, x, h


@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(6))
def test_optimised_plan_within_tolerance_of_unoptimised(seed, dtype, transpose_b, kernels):
    rng = np.random.default_rng(seed)
    g, x, y = _dense_chain(rng, dtype, transpose_b)
    plain, optimised = plain_and_optimised(g, [y], [x])
    assert any(isinstance(s[0], FusedLinear) for s in optimised.steps)
    eps = np.finfo(dtype).eps
    for rows in (1, 2, 3, 5, 8, 9):
        value = rng.standard_normal((rows, x.shape[1])).astype(dtype)
        (want,) = plain.run([value])
        (got,) = optimised.run([value])
        assert got.dtype == want.dtype and got.shape == want.shape
        # Layers of depth <= 784 with weights ~ 1/sqrt(K): a relative bound per layer, summed.
        np.testing.assert_allclose(got, want, rtol=3000 * eps, atol=3000 * eps * max(1.0, np.abs(want).max()))
        if kernels == "numpy" or (rows > _small_linear.MAX_ROWS and dtype != np.float32):
            np.testing.assert_array_equal(got, want)  # NumPy's GEMM: bit for bit (float32: see test_packed_gemm)
