"""Channels-last convolutions (hubkit/ops/conv_nhwc.py) against a float64 direct convolution.

Every path runs: the tile GEMM (one BLAS thread, float32, where the kernel compiles) and np.matmul (two
BLAS threads, float64), gathered columns from the Numba kernel and from NumPy (Numba off), 1x1 convolutions
with no copy and subsampled, windows read in place (hubkit/ops/_conv_taps.py, one thread), Winograd for 3x3
stride-1 layers with enough tiles, outputs into a channel
slice, and a residual added in the tile's registers when the output takes the residual's memory.
Tolerance: the sums run in another order, so ``|got - exact| <= 16 * eps * (|x| * |w| + |bias| + |res|)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.errors import OpError
from hubkit.ops import _packed_gemm, conv_nhwc
from hubkit.ops.conv_nchw import PreparedConv
from hubkit.ops.conv_nhwc import conv_nhwc_fused
from hubkit.ops.onnx_conv import window_geometry
from tests.ops.test_conv_nchw_blocks import _reference

# (channels, size, kernel, strides, dilations, pads: top, left, bottom, right)
CASES = [
    (5, (6, 7), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
    (6, (9, 8), (1, 1), (2, 2), (1, 1), (0, 0, 0, 0)),
    (4, (7, 7), (1, 1), (2, 1), (1, 1), (0, 0, 1, 1)),  # end pads: a 1x1 kernel that still gathers
    (3, (11, 10), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # an RGB stem
    (16, (9, 9), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    (32, (15, 14), (3, 3), (1, 1), (1, 1), (1, 0, 1, 2)),  # 4 x 4 tiles per image: too few for Winograd
    (48, (28, 27), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # Winograd (enough tiles, more than F43_TAPS_MAX_C)
    (4, (10, 9), (5, 3), (1, 2), (2, 1), (2, 0, 1, 1)),
    (3, (15, 14), (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),
    (5, (12, 11), (3, 3), (1, 1), (1, 2), (1, 2, 1, 2)),  # a dilated width: gathered, not read in place
    (144, (5, 5), (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # a tile's input past _conv_taps.MAX_TILE_BYTES: gathered
]


def _bound(x, w, bias, res, dtype, geometry, winograd):
    """``16 * eps * (|x| * |w| + |bias| + |res| + 1)`` per output, NHWC (Winograd's transforms: 16 times that)."""
    scale = _reference(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), np.abs(bias),
                       None if res is None else np.abs(res), 0, *geometry)
    return ((256 if winograd else 16) * np.finfo(dtype).eps * (scale + 1)).transpose(0, 2, 3, 1)


@pytest.fixture(params=[1, 2], ids=["tile", "split"])
def threads(request, monkeypatch):
    """1: the tile GEMM (skipped where it does not compile); 2: its rows split over the worker thread
    (float32), np.matmul (float64)."""
    if request.param == 1 and not _packed_gemm.available():
        pytest.skip("the LLVM tile kernel does not compile here")
    monkeypatch.setattr(_packed_gemm, "blas_threads", lambda: request.param)
    if request.param == 1:
        monkeypatch.setattr(_packed_gemm._STATE, "wide", True)  # 3-row tiles elsewhere: the same code
    return request.param


@pytest.mark.parametrize(("c", "hw", "kernel", "strides", "dilations", "pads"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_nhwc_matches_a_direct_convolution(kernels, threads, c, hw, kernel, strides, dilations, pads, dtype):
    rng = np.random.default_rng(c * hw[0] + kernel[0])
    m, n = 7, 2
    w = rng.standard_normal((m, c, *kernel)).astype(dtype)
    bias = rng.standard_normal(m).astype(dtype)
    prep = PreparedConv(w, bias)
    x = rng.standard_normal((n, c, *hw)).astype(dtype)
    out_hw, begin, end = window_geometry(hw, kernel, strides, dilations, pads, "NOTSET")
    geometry = (strides, dilations, begin, end, out_hw)
    res = rng.standard_normal((n, m, *out_hw)).astype(dtype)
    winograd = kernel == (3, 3) and strides == (1, 1) and kernels == "numba" and conv_nhwc._winograd_wins(
        n, c, m, *out_hw, begin, np.dtype(dtype))
    assert winograd == (kernels == "numba" and hw == (28, 27))
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    res_nhwc = np.ascontiguousarray(res.transpose(0, 2, 3, 1))
    for r, act in ((None, 0), (res, 1), (None, 2), (res, 2)):
        want = _reference(x, w, bias, r, act, *geometry).transpose(0, 2, 3, 1)
        bound = _bound(x, w, bias, r, dtype, geometry, winograd)
        got = conv_nhwc_fused(x_nhwc, prep, None if r is None else res_nhwc, act, *geometry)
        assert got.shape == (n, *out_hw, m) and got.dtype == dtype
        assert (np.abs(got - want) <= bound).all()
        big = np.full((n, *out_hw, m + 5), 7.0, dtype)  # into a concatenation's channel slice
        into = conv_nhwc_fused(x_nhwc, prep, None if r is None else res_nhwc, act, *geometry, out=big[..., 2 : 2 + m])
        assert np.shares_memory(into, big) and (big[..., :2] == 7).all() and (big[..., 2 + m :] == 7).all()
        assert (np.abs(big[..., 2 : 2 + m] - want) <= bound).all()
    donated = res_nhwc.copy()
    got = conv_nhwc_fused(x_nhwc, prep, donated, 1, *geometry, out=donated)
    assert (np.abs(got - _reference(x, w, bias, res, 1, *geometry).transpose(0, 2, 3, 1)) <= bound).all()
    in_tile = dtype == np.float32 and kernels == "numba" and _packed_gemm.available() and (
        threads == 1 or _packed_gemm._tile_host())  # on 1 thread (the fixture marks the host wide) or split
    # the tile adds its product to the residual in place; elsewhere the result is a new array
    assert np.shares_memory(got, donated) == (in_tile and not winograd)


def test_a_residual_that_is_also_the_input_is_not_overwritten(threads):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 8, 1, 1)).astype(np.float32)
    prep = PreparedConv(w, None)
    x = rng.standard_normal((1, 5, 5, 8)).astype(np.float32)
    geometry = ((1, 1), (1, 1), [0, 0], [0, 0], [5, 5])
    want = np.maximum(x @ w[:, :, 0, 0].T.astype(np.float64) + x, 0)
    got = conv_nhwc_fused(x, prep, x, 1, *geometry, out=x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not np.shares_memory(got, x)


@pytest.mark.parametrize(("kernel", "pads", "out_hw"), [((1, 1), 0, (6, 7)), ((3, 3), 0, (4, 5))])
def test_an_out_that_overlaps_the_input_gets_the_convolution_of_the_input(threads, kernel, pads, out_hw):
    rng = np.random.default_rng(4)
    c = 40  # two column panels: the second tile of a row reads its input rows after the first wrote them
    w = rng.standard_normal((c, c, *kernel)).astype(np.float32)
    prep = PreparedConv(w, None)
    buf = rng.standard_normal((1, 6, 7, c)).astype(np.float32)
    x = buf.copy()
    geometry = ((1, 1), (1, 1), [pads, pads], [pads, pads], list(out_hw))
    want = conv_nhwc_fused(x.copy(), prep, None, 1, *geometry)
    out = x[:, : out_hw[0], : out_hw[1]]  # the input's own memory
    got = conv_nhwc_fused(x, prep, None, 1, *geometry, out=out)
    assert got is out
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3)])
def test_an_out_over_the_residual_but_not_the_residual_itself_still_adds_it(threads, kernel):
    rng = np.random.default_rng(5)
    c = 40
    prep = PreparedConv(rng.standard_normal((c, c, *kernel)).astype(np.float32), None)
    x = rng.standard_normal((1, 6, 6, c)).astype(np.float32)
    p = kernel[0] // 2
    geometry = ((1, 1), (1, 1), [p, p], [p, p], [6, 6])
    res = rng.standard_normal((1, 6, 6, c)).astype(np.float32)
    want = conv_nhwc_fused(x, prep, res.copy(), 1, *geometry)
    got = conv_nhwc_fused(x, prep, res, 1, *geometry, out=res[...])  # a view of the residual: added, not lost
    np.testing.assert_array_equal(got, want)


def test_gather_chunks_cover_every_row(monkeypatch, threads):
    monkeypatch.setattr(conv_nhwc, "CHUNK_BYTES", 200)  # chunks of a few pixels, across image boundaries
    rng = np.random.default_rng(4)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    prep = PreparedConv(w, np.zeros(6, np.float32))
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    out_hw, begin, end = window_geometry((5, 6), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET")
    want = _reference(x, w, np.zeros(6), None, 0, (1, 1), (1, 1), begin, end, out_hw).transpose(0, 2, 3, 1)
    got = conv_nhwc_fused(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), prep, None, 0, (1, 1), (1, 1), begin, end, out_hw)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3)])
def test_no_input_channels_gives_bias_plus_residual(threads, kernel):
    prep = PreparedConv(np.ones((4, 0, *kernel), np.float32), np.arange(4, dtype=np.float32) - 1)
    x = np.ones((2, 5, 5, 0), np.float32)
    pad = kernel[0] // 2
    geometry = ((1, 1), (1, 1), [pad, pad], [pad, pad], [5, 5])
    res = np.full((2, 5, 5, 4), 0.5, np.float32)
    want = np.maximum(np.arange(4, dtype=np.float32) - 1 + 0.5, 0) * np.ones((2, 5, 5, 1), np.float32)
    donated = res.copy()
    np.testing.assert_array_equal(conv_nhwc_fused(x, prep, donated, 1, *geometry, out=donated), want)
    np.testing.assert_array_equal(conv_nhwc_fused(x, prep, res, 1, *geometry), want)


def test_bad_arguments_are_refused():
    prep = PreparedConv(np.ones((4, 3, 3, 3), np.float32), None)
    x = np.ones((1, 5, 5, 3), np.float32)
    geometry = ((1, 1), (1, 1), [1, 1], [1, 1], [5, 5])
    with pytest.raises(OpError, match="filters expect 3"):
        conv_nhwc_fused(np.ones((1, 5, 5, 2), np.float32), prep, None, 0, *geometry)
    with pytest.raises(OpError, match="4-D input"):
        conv_nhwc_fused(np.ones((5, 5, 3), np.float32), prep, None, 0, *geometry)
    with pytest.raises(OpError, match="residual of shape"):
        conv_nhwc_fused(x, prep, np.ones((1, 5, 5, 3), np.float32), 0, *geometry)
    with pytest.raises(OpError, match="out of shape"):
        conv_nhwc_fused(x, prep, None, 0, *geometry, out=np.ones((1, 5, 5, 8), np.float32)[..., ::2])
    read_only = np.ones((1, 5, 5, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(OpError, match="out of shape"):
        conv_nhwc_fused(x, prep, None, 0, *geometry, out=read_only)
    with pytest.raises(OpError, match="geometry out of range"):
        conv_nhwc_fused(x, prep, None, 0, (0, 1), (1, 1), [1, 1], [1, 1], [5, 5])
    for strides, out_hw in (((1, 2**63 - 2), [1, 2]), ((1, 1), [5, 6]), ((2, 2), [4, 3])):  # windows past the input
        with pytest.raises(OpError, match="geometry out of range"):
            conv_nhwc_fused(x, prep, None, 0, strides, (1, 1), [1, 1], [1, 1], out_hw)


@pytest.mark.parametrize("shape", [(1, 3, 7, 9), (2, 3, 33, 35), (2, 4, 5, 19), (1, 1, 4, 4), (2, 16, 5, 4), (2, 17, 3, 3), (1, 64, 4, 6)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_to_nhwc_is_an_exact_transposed_copy(kernels, shape, dtype):
    x = (np.random.default_rng(0).standard_normal(shape) * 100).astype(dtype)
    got = conv_nhwc.to_nhwc(x)
    assert got.flags.c_contiguous and got.dtype == dtype
    np.testing.assert_array_equal(got, x.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("act", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_affine_matches_numpy(kernels, act, dtype):
    rng = np.random.default_rng(act)
    big = (rng.standard_normal((2, 3, 4, 9)) * 4).astype(dtype)
    scale, shift = rng.standard_normal(6).astype(dtype), rng.standard_normal(6).astype(dtype)
    # whole, channel slices (first, middle and last channels), one pixel, a slice along H (rows not evenly spaced)
    for x in (np.ascontiguousarray(big[..., :6]), big[..., :6], big[..., 2:8], big[..., 3:], big[:1, :1, 2:3, 3:],
              big[:, 1:3, :, :6], big[:, :, ::2, :6]):
        want = x * scale + shift
        want = np.maximum(want, 0) if act == 1 else np.clip(want, 0, 6) if act == 2 else want
        np.testing.assert_array_equal(conv_nhwc.channel_affine_nhwc(x, scale, shift, act), want)


@pytest.mark.parametrize("mr", [6, 13])
def test_winograd_leaves_narrow_or_small_layers_to_the_in_place_form(monkeypatch, mr):
    """With 13-row tiles, or split over two threads; with 6-row tiles on one thread Winograd keeps them."""
    from hubkit.ops import _packed_gemm

    monkeypatch.setattr(_packed_gemm._STATE, "mr", mr)
    f32 = np.dtype(np.float32)
    for split in (False, True):
        rule = split or mr == 13
        assert conv_nhwc._winograd_wins(1, 48, 128, 27, 27, (1, 1), f32, True, split)  # 49 tiles, 48 channels
        assert conv_nhwc._winograd_wins(1, 32, 128, 27, 27, (1, 1), f32, True, split) != rule  # 32 channels
        assert conv_nhwc._winograd_wins(1, 64, 256, 13, 13, (1, 1), f32, True, split) != rule  # 16 tiles
        assert conv_nhwc._winograd_wins(1, 64, 256, 13, 13, (1, 1), f32, False, split)  # windows gathered


def test_an_out_whose_pixels_are_not_rows_of_one_stride_gets_the_result_through_a_new_array():
    rng = np.random.default_rng(6)
    prep = PreparedConv(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), None)
    x = rng.standard_normal((1, 3, 5, 4)).astype(np.float32)
    want = conv_nhwc_fused(x, prep, None, 0, (1, 1), (1, 1), (0, 0), (0, 0), (3, 5))
    guard = np.full(40, 7.0, np.float32)
    outs = {
        "reversed": guard[20:35].reshape(1, 3, 5, 1)[:, :, ::-1],  # its rows would run below its start
        "transposed": np.zeros((1, 5, 3, 1), np.float32).transpose(0, 2, 1, 3),
        "unaligned": np.frombuffer(bytearray(64), np.float32, 15, 2).reshape(1, 3, 5, 1),
    }
    for out in outs.values():
        got = conv_nhwc_fused(x, prep, None, 0, (1, 1), (1, 1), (0, 0), (0, 0), (3, 5), out=out)
        assert got is out
        np.testing.assert_array_equal(got, want)
    assert (guard[:20] == 7).all() and (guard[35:] == 7).all()  # nothing written outside the reversed view
