"""The blocked im2col conv kernels agree with the per-tap kernels across blocks, fill paths and layouts."""

import numpy as np
import pytest

from hubkit.ops import _conv_numpy as conv_numpy

CASES = [
    # (x shape, filter shape, strides, dilations, pads): 3 channels use the kw*c row runs at unit
    # width stride and dilation, the others the per-tap copies with zeroed borders.
    ((5, 7, 6, 3), (3, 3, 3, 4), (1, 1), (1, 1), ((1, 1), (1, 1))),
    ((5, 7, 6, 3), (3, 3, 3, 4), (2, 1), (2, 1), ((2, 1), (0, 2))),
    ((5, 7, 6, 3), (3, 2, 3, 4), (1, 2), (1, 1), ((1, 1), (1, 0))),
    ((3, 8, 9, 20), (3, 2, 20, 5), (2, 3), (1, 2), ((0, 3), (2, 2))),
    ((4, 6, 5, 7), (1, 1, 7, 3), (1, 1), (1, 1), ((0, 0), (0, 0))),
]


def _per_tap(monkeypatch, fn, *args):
    with monkeypatch.context() as mp:
        mp.setattr(conv_numpy, "_IM2COL_MAX_CHANNELS", 0)
        mp.setattr(conv_numpy, "_IM2COL_FILTER_GRAD_MAX_CHANNELS", 0)
        return fn(*args)


@pytest.mark.parametrize("xs, ws, strides, dil, pads", CASES)
@pytest.mark.parametrize("block_bytes", [1, 1 << 30])  # one image per block, or all in one
def test_blocked_im2col_matches_per_tap(monkeypatch, xs, ws, strides, dil, pads, block_bytes):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws)
    want = _per_tap(monkeypatch, conv_numpy._conv2d_nhwc, x, w, strides, dil, pads)
    g = rng.standard_normal(want.shape)
    want_dw = _per_tap(monkeypatch, conv_numpy._conv2d_backprop_filter_nhwc, x, g, ws[:2], strides, dil, pads)
    monkeypatch.setattr(conv_numpy, "_PATCH_BLOCK_BYTES", block_bytes)
    for layout in (x, np.asfortranarray(x), x[:, :, ::-1][:, :, ::-1]):  # contiguous or not
        got = conv_numpy._conv2d_nhwc(layout, w, strides, dil, pads)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        got_dw = conv_numpy._conv2d_backprop_filter_nhwc(layout, g, ws[:2], strides, dil, pads)
        np.testing.assert_allclose(got_dw, want_dw, rtol=1e-12, atol=1e-12)


def test_float32_output_and_scratch_reuse_do_not_leak_between_calls():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 9, 9, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
    pads = ((1, 1), (1, 1))
    first = conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads)
    conv_numpy._conv2d_nhwc(2 * x, w, (1, 1), (1, 1), pads)  # overwrites the shared patch buffer
    assert first.dtype == np.float32
    np.testing.assert_allclose(first, conv_numpy._conv2d_nhwc(x, w, (1, 1), (1, 1), pads), rtol=0, atol=0)
