"""The channels-last column gather (hubkit/ops/_nhwc_gather.py) and the gathered tile-GEMM loop
(hubkit/ops/_nhwc_gather_gemm.py), against NumPy references.

The gather is exact (copies and zeros). The GEMM's sums run in another order than NumPy's (FMA, blocked depth):
per output ``|got - want| <= 8 * eps * (|cols| @ |W| + |bias| + |prior|)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import _numba, _packed_gemm
from hubkit.ops._nhwc_gather import gather_kernel
from hubkit.ops._nhwc_gather_gemm import gathered_tile_conv
from hubkit.ops.conv_nchw import PreparedConv
from hubkit.ops.onnx_conv import window_geometry

# (channels, (H, W), kernel, strides, dilations, pads, images)
CASES = [
    (3, (23, 21), (7, 7), (2, 2), (1, 1), (3, 3, 3, 3), 2),  # an RGB stem: runs of kw*C values
    (3, (17, 17), (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), 1),  # SqueezeNet's stem, no padding
    (16, (9, 11), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 3),
    (5, (8, 9), (3, 2), (1, 2), (2, 1), (1, 0, 2, 1), 2),  # dilation, mixed strides, asymmetric pads
    (4, (6, 9), (5, 5), (1, 1), (1, 1), (2, 2, 2, 2), 3),
    (7, (9, 7), (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 2),  # strided 1x1
    (2, (5, 5), (3, 3), (1, 1), (3, 3), (3, 3, 3, 3), 1),  # dilated beyond the input
]


def _columns(x, kernel, strides, dilations, begin, end, out_hw):
    """NumPy's ``(N*OH*OW, kh*kw*C)`` columns of NHWC ``x``, taps in ``(kh, kw, C)`` order."""
    n, h, w, c = x.shape
    kh, kw = kernel
    oh, ow = out_hw
    xp = np.zeros((n, h + begin[0] + end[0], w + begin[1] + end[1], c), x.dtype)
    xp[:, begin[0] : begin[0] + h, begin[1] : begin[1] + w] = x
    cols = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for a in range(kh):
        for b in range(kw):
            ra, cb = a * dilations[0], b * dilations[1]
            cols[:, :, :, a, b] = xp[:, ra : ra + (oh - 1) * strides[0] + 1 : strides[0],
                                     cb : cb + (ow - 1) * strides[1] + 1 : strides[1]]
    return cols.reshape(n * oh * ow, kh * kw * c)


def _geometry(hw, kernel, strides, dilations, pads):
    out_hw, begin, end = window_geometry(hw, kernel, strides, dilations, pads, "NOTSET")
    return out_hw, begin, end


@pytest.mark.skipif(not _numba.numba_enabled(), reason="numba not available")
@pytest.mark.parametrize(("c", "hw", "kernel", "strides", "dilations", "pads", "n"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_matches_numpy_in_any_row_range(c, hw, kernel, strides, dilations, pads, n, dtype):
    rng = np.random.default_rng(c + n)
    x = rng.standard_normal((n, *hw, c)).astype(dtype)
    out_hw, begin, end = _geometry(hw, kernel, strides, dilations, pads)
    want = _columns(x, kernel, strides, dilations, begin, end, out_hw)
    fast = _numba.kernel(gather_kernel)
    rows, depth = want.shape
    for r0, count in ((0, rows), (1, rows - 1), (rows // 3, rows // 2 + 1), (rows - 1, 1)):  # ranges across images
        cols = np.full((count, depth), 7.0, dtype)
        fast(x, *kernel, *strides, *dilations, begin[0], begin[1], *out_hw, r0, cols)
        np.testing.assert_array_equal(cols, want[r0 : r0 + count])
    past = np.full((3, depth), 7.0, dtype)  # rows past the last image: left as they are, nothing read
    fast(x, *kernel, *strides, *dilations, begin[0], begin[1], *out_hw, rows - 1, past)
    np.testing.assert_array_equal(past[0], want[-1])
    assert np.all(past[1:] == 7.0)


@pytest.fixture
def tile():
    if not _packed_gemm.available():
        pytest.skip("the LLVM tile kernel does not compile here")


@pytest.mark.parametrize(("c", "hw", "kernel", "strides", "dilations", "pads", "n"), CASES)
def test_gathered_tile_conv_matches_the_columns_product(tile, c, hw, kernel, strides, dilations, pads, n):
    rng = np.random.default_rng(c * n)
    m = 37
    x = rng.standard_normal((n, *hw, c)).astype(np.float32)
    w = rng.standard_normal((m, c, *kernel)).astype(np.float32)
    out_hw, begin, end = _geometry(hw, kernel, strides, dilations, pads)
    cols = _columns(x, kernel, strides, dilations, begin, end, out_hw).astype(np.float64)
    wk = w.transpose(2, 3, 1, 0).reshape(-1, m).astype(np.float64)
    rows, depth = cols.shape
    prior = rng.standard_normal((rows, m)).astype(np.float32)
    eps = np.finfo(np.float32).eps
    for bias in (None, rng.standard_normal(m).astype(np.float32)):
        prep = PreparedConv(w, bias)
        b = np.zeros(m) if bias is None else bias.astype(np.float64)
        for act, accumulate, chunk in ((0, False, rows), (1, False, 5), (2, True, 7), (1, True, rows + 3)):
            big = np.full((rows, m + 6), 9.0, np.float32)
            y2 = big[:, 3 : 3 + m]  # a channel slice: rows longer than m
            if accumulate:
                y2[...] = prior
            cols_buf = np.empty(min(chunk, rows) * depth, np.float32)
            assert gathered_tile_conv(x, prep.tile_packed(c), bias, act, kernel, strides, dilations, begin, out_hw,
                                      y2, cols_buf, chunk, accumulate)
            exact = cols @ wk + b + (prior if accumulate else 0)
            exact = np.maximum(exact, 0) if act == 1 else np.clip(exact, 0, 6) if act == 2 else exact
            bound = 8 * eps * (np.abs(cols) @ np.abs(wk) + np.abs(b) + (np.abs(prior) if accumulate else 0)) + 1e-30
            assert np.all(np.abs(y2 - exact) <= bound)
            assert np.all(big[:, :3] == 9.0) and np.all(big[:, 3 + m :] == 9.0)


def test_gathered_tile_conv_refuses_what_it_cannot_run():
    prep = PreparedConv(np.ones((4, 3, 3, 3), np.float32), None)
    x = np.ones((1, 5, 5, 3), np.float32)
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1), (5, 5))
    y2 = np.empty((25, 4), np.float32)
    cols = np.empty(25 * 27, np.float32)
    packed = prep.tile_packed(3) if _packed_gemm.available() else np.empty((1, 27, 32), np.float32)
    assert not gathered_tile_conv(x.astype(np.float64), packed, None, 0, *geometry, y2, cols, 25)
    wide = np.empty((25, 40), np.float32)  # more outputs than the packed filters' one panel holds
    assert not gathered_tile_conv(x, packed, None, 0, *geometry, wide, cols, 25)
    assert not gathered_tile_conv(x, packed, None, 0, *geometry, y2[:24], cols, 25)  # not N*OH*OW rows
    assert not gathered_tile_conv(x, packed, None, 0, *geometry, y2, cols[:10], 25)  # buffer too small
    assert not gathered_tile_conv(x, packed, None, 0, (3, 3), (0, 1), (1, 1), (1, 1), (5, 5), y2, cols, 25)
    assert not gathered_tile_conv(x, packed, np.ones(3, np.float32), 0, *geometry, y2, cols, 25)
    assert not gathered_tile_conv(x.transpose(0, 2, 1, 3), packed, None, 0, *geometry, y2, cols, 25)
