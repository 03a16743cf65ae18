"""The NCHW im2col convolution in blocks of output rows (parity planes at stride 2) and 1x1 convolutions as one
GEMM over all images, against the whole-image / per-image forms and a float64 reference (hubkit/ops/conv_nchw.py)."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops import conv_nchw
from hubkit.ops.conv_nchw import PreparedConv, conv_nchw_fused
from hubkit.ops.onnx_conv import window_geometry

# (channels, (H, W), kernel, strides, dilations, pads)
CASES = [
    (3, (23, 21), (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),  # a 7x7 RGB stem, parity planes
    (3, (20, 17), (3, 3), (2, 2), (1, 1), (0, 0, 0, 0)),  # 3x3 stride 2, no padding, odd width
    (4, (19, 22), (5, 3), (2, 2), (1, 1), (2, 0, 1, 1)),  # uneven pads
    (16, (15, 15), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # stride 1
    (2, (18, 16), (3, 2), (1, 2), (2, 1), (1, 0, 2, 1)),  # mixed strides, dilation: no parity planes
]


def _reference(x, w, bias, res, act, strides, dilations, begin, end, out_hw):
    """Direct convolution in float64, then bias, residual and activation."""
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + begin[0] + end[0], wd + begin[1] + end[1]))
    xp[:, :, begin[0] : begin[0] + h, begin[1] : begin[1] + wd] = x
    y = np.zeros((n, m, *out_hw))
    for a in range(kh):
        for b in range(kw):
            r0, c0 = a * dilations[0], b * dilations[1]
            tap = xp[:, :, r0 : r0 + (out_hw[0] - 1) * strides[0] + 1 : strides[0],
                     c0 : c0 + (out_hw[1] - 1) * strides[1] + 1 : strides[1]]
            y += np.einsum("nchw,mc->nmhw", tap, w[:, :, a, b].astype(np.float64))
    y += bias.reshape(1, m, 1, 1)
    if res is not None:
        y += res
    return np.maximum(y, 0) if act == 1 else np.clip(y, 0, 6) if act == 2 else y


@pytest.mark.parametrize(("c", "hw", "kernel", "strides", "dilations", "pads"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blocks_match_whole_image_and_reference(kernels, monkeypatch, c, hw, kernel, strides, dilations, pads, dtype):
    rng = np.random.default_rng(c * hw[0])
    m, n = 5, 2
    w = rng.standard_normal((m, c, *kernel)).astype(dtype)
    prep = PreparedConv(w, rng.standard_normal(m).astype(dtype))
    x = rng.standard_normal((n, c, *hw)).astype(dtype)
    out_hw, begin, end = window_geometry(hw, kernel, strides, dilations, pads, "NOTSET")
    res = rng.standard_normal((n, m, *out_hw)).astype(dtype)
    geometry = (strides, dilations, begin, end, out_hw)
    for r, act in ((None, 0), (res, 1), (None, 2)):
        monkeypatch.setattr(conv_nchw, "IM2COL_BLOCK_MAX_CHANNELS", 0)  # whole images
        whole = conv_nchw_fused(x, prep, r, act, *geometry).copy()
        monkeypatch.setattr(conv_nchw, "IM2COL_BLOCK_MAX_CHANNELS", 16)
        monkeypatch.setattr(conv_nchw, "IM2COL_BLOCK_BYTES", 4 * (c * kernel[0] * kernel[1] + m) * out_hw[1] * 2)
        assert conv_nchw._block_rows(c, c * kernel[0] * kernel[1], m, *out_hw) == 2  # two output rows a block
        big = np.full((n, m + 3, *out_hw), 7.0, dtype)
        got = conv_nchw_fused(x, prep, r, act, *geometry, out=big[:, 1 : 1 + m])
        assert got.shape == whole.shape and got.dtype == whole.dtype
        assert (big[:, :1] == 7).all() and (big[:, 1 + m :] == 7).all()
        want = _reference(x, w, prep.bias, r, act, strides, dilations, begin, end, out_hw)
        scale = _reference(np.abs(x), np.abs(w), np.abs(prep.bias), None if r is None else np.abs(r), 0,
                           strides, dilations, begin, end, out_hw)
        eps = np.finfo(dtype).eps
        assert np.all(np.abs(got - want) <= 8 * eps * scale + eps)
        np.testing.assert_allclose(got, whole, rtol=0, atol=float(8 * eps * scale.max()))


def test_large_rgb_stem_takes_blocks_and_small_layers_do_not():
    assert conv_nchw._block_rows(3, 147, 64, 112, 112) < 112  # 7x7 stem: 7.4 MB of columns
    assert conv_nchw._block_rows(3, 27, 64, 111, 111) == 111  # 3x3 stem: 1.3 MB
    assert conv_nchw._block_rows(128, 1152, 128, 28, 28) == 28  # wide inputs stay whole


@pytest.mark.parametrize(("c", "hw", "strides"), [(6, (7, 7), (1, 1)), (5, (13, 11), (2, 2)), (3, (8, 5), (1, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_one_gemm_over_images_matches_per_image_and_reference(kernels, monkeypatch, c, hw, strides, dtype):
    rng = np.random.default_rng(c)
    m, n = 7, 3
    w = rng.standard_normal((m, c, 1, 1)).astype(dtype)
    prep = PreparedConv(w, rng.standard_normal(m).astype(dtype))
    x = rng.standard_normal((n, c, *hw)).astype(dtype)
    out_hw, begin, end = window_geometry(hw, (1, 1), strides, (1, 1), (0, 0, 0, 0), "NOTSET")
    assert out_hw[0] * out_hw[1] <= conv_nchw.BATCH_GEMM_MAX_PIXELS
    monkeypatch.setattr(conv_nchw, "BATCH_GEMM_MIN_OUTPUTS", 1)
    res = rng.standard_normal((n, m, *out_hw)).astype(dtype)
    geometry = (strides, (1, 1), begin, end, out_hw)
    for r, act in ((None, 0), (res, 1), (None, 2)):
        monkeypatch.setattr(conv_nchw, "BATCH_GEMM_MAX_PIXELS", 0)  # one GEMM per image
        monkeypatch.setattr(conv_nchw, "BATCH_GEMM_MAX_PIXELS_STRIDED", 0)
        per_image = conv_nchw_fused(x, prep, r, act, *geometry).copy()
        monkeypatch.setattr(conv_nchw, "BATCH_GEMM_MAX_PIXELS", 64)
        monkeypatch.setattr(conv_nchw, "BATCH_GEMM_MAX_PIXELS_STRIDED", 64)
        big = np.full((n, m + 3, *out_hw), 7.0, dtype)
        got = conv_nchw_fused(x, prep, r, act, *geometry, out=big[:, 2 : 2 + m])
        assert (big[:, :2] == 7).all() and (big[:, 2 + m :] == 7).all()
        want = _reference(x, w, prep.bias, r, act, strides, (1, 1), begin, end, out_hw)
        scale = _reference(np.abs(x), np.abs(w), np.abs(prep.bias), None if r is None else np.abs(r), 0,
                           strides, (1, 1), begin, end, out_hw)
        eps = np.finfo(dtype).eps
        assert np.all(np.abs(got - want) <= 8 * eps * scale + eps)
        np.testing.assert_allclose(got, per_image, rtol=0, atol=float(8 * eps * scale.max()))
