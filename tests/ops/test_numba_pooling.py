"""Max and average pooling give the same values with the NumPy and the Numba kernels."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import _conv_numpy


@pytest.mark.parametrize(
    ("ksize", "strides", "pads"),
    [((2, 2), (2, 2), ((0, 0), (0, 0))), ((3, 3), (2, 2), ((0, 1), (0, 1))), ((3, 2), (1, 1), ((1, 1), (0, 1)))],
)
@pytest.mark.parametrize("kind", ["max_pool", "avg_pool"])
def test_pooling_parity(kernels, kind, ksize, strides, pads):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 7, 6, 5)).astype(np.float32)
    x[0, 1, 1, 0] = np.nan  # NaN propagates through max like np.maximum
    numpy_kernel = _conv_numpy._max_pool_nhwc if kind == "max_pool" else _conv_numpy._avg_pool_nhwc
    got = _conv_numpy.kernels[kind](x, ksize, strides, pads)
    want = numpy_kernel(x, ksize, strides, pads)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
