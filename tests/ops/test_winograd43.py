"""Winograd F(4x4, 3x3) with compiled transforms, against a float64 direct convolution."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import _numba, _winograd43, conv_fused
from hubkit.ops._epilogue import NONE, RELU, RELU6
from tests.ops.test_conv_winograd import reference_conv3x3

pytestmark = pytest.mark.skipif(not _numba.numba_enabled(), reason="numba is not installed")


_direct = reference_conv3x3  # float64, 9 shifted products: an independent reference


@pytest.mark.parametrize(
    ("n", "h", "w", "c", "k", "pads"),
    [
        (1, 4, 4, 1, 1, ((1, 1), (1, 1))),
        (2, 9, 7, 3, 5, ((1, 1), (1, 1))),
        (3, 10, 13, 16, 8, ((0, 0), (0, 0))),
        (2, 8, 8, 32, 64, ((0, 1), (0, 1))),
        (5, 17, 6, 20, 12, ((2, 2), (1, 0))),
    ],
)
@pytest.mark.parametrize("act", [NONE, RELU, RELU6])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_a_float64_direct_convolution(n, h, w, c, k, pads, act, dtype, monkeypatch):
    rng = np.random.default_rng(h * 100 + c)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    filters = rng.standard_normal((3, 3, c, k)).astype(dtype)
    bias = rng.standard_normal(k).astype(dtype)
    ref = _direct(x, filters, pads) + bias
    ref = {NONE: ref, RELU: np.maximum(ref, 0), RELU6: np.clip(ref, 0, 6)}[act]
    bound = _direct(np.abs(x), np.abs(filters), pads) + np.abs(bias)  # sum |x| |w| per output
    eps = np.finfo(dtype).eps
    # one block; a tile row at a time; blocks as large as the transformed filters (a few tiles or images)
    for block_bytes, max_bytes in ((_winograd43.BLOCK_BYTES, _winograd43.MAX_BLOCK_BYTES), (1, 1), (1, 1 << 30)):
        monkeypatch.setattr(_winograd43, "BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(_winograd43, "MAX_BLOCK_BYTES", max_bytes)
        out = np.empty(ref.shape, dtype)
        u = _winograd43.filter_transform(filters, np.dtype(dtype))
        assert _winograd43.conv3x3_bias_act(x, u, bias, act, pads, out)
        assert np.all(np.abs(out - ref) <= 64 * eps * bound)


def test_nan_propagates_and_the_fused_kernel_uses_it():
    x = np.ones((16, 16, 16, 16), np.float32)  # 256 tiles
    x[0, 2, 2, 3] = np.nan
    filters = np.ones((3, 3, 16, 2), np.float32)
    assert conv_fused._use_f43(x, (3, 3), (1, 1), (1, 1), (16, 16), np.dtype(np.float32))
    out = conv_fused.conv2d_bias_act(x, filters, None, RELU, (1, 1), (1, 1), "SAME")
    got = np.isnan(out[0]).any(axis=-1)
    # Every output whose window holds the NaN is NaN; as with any Winograd kernel the transforms
    # spread it over the outputs of the 4x4 tiles whose 6x6 inputs hold it, and no further.
    assert got[1:4, 1:4].all()
    assert not got[4:].any() and not got[:, 4:].any()


def test_off_without_numba():
    _numba.set_numba_enabled(False)
    try:
        x = np.ones((1, 4, 4, 16), np.float32)
        u = _winograd43.filter_transform(np.ones((3, 3, 16, 2), np.float32), np.dtype(np.float32))
        assert not _winograd43.conv3x3_bias_act(
            x, u, None, NONE, ((1, 1), (1, 1)), np.empty((1, 4, 4, 2), np.float32)
        )
        assert not conv_fused._use_f43(x, (3, 3), (1, 1), (1, 1), (4, 4), np.dtype(np.float32))
    finally:
        _numba.set_numba_enabled(None)
