"""The implicit-GEMM channels-last convolution (hubkit/ops/_conv_taps.py) against a float64 direct convolution.

``tap_conv`` runs the tile kernel over each window's kernel rows read in place from the zero-bordered input:
every geometry it takes (kernels up to 7x7, strides, height dilation, uneven pads, windows that leave the
input's last rows and columns unread) must give the direct convolution's sums within
``16 * eps * (|x| * |w| + |bias| + |res| + 1)``, into a channel slice, with a residual accumulated in place,
and with the column panels in several groups. What it cannot take it refuses, writing nothing.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from hubkit.ops import _conv_taps, _gemm_kernel, _numba, _packed_gemm
from hubkit.ops.conv_nchw import PreparedConv
from hubkit.ops.onnx_conv import window_geometry
from tests.ops.test_conv_nchw_blocks import _reference

pytestmark = pytest.mark.skipif(not _packed_gemm.available(), reason="the LLVM tile kernel does not compile here")

# (batch, channels, size, kernel, strides, height dilation, pads: top, left, bottom, right, filters)
CASES = [
    (1, 3, (23, 29), (3, 3), (2, 2), 1, (0, 0, 0, 0), 64),  # an RGB stem without pads
    (2, 3, (17, 16), (7, 7), (2, 2), 1, (3, 3, 3, 3), 40),  # a 7x7 stem: 2 column panels, the last one partial
    (1, 16, (13, 31), (3, 3), (1, 1), 1, (1, 1, 1, 1), 70),  # 31 pixels a row: tiles pass from row to row
    (2, 5, (9, 8), (5, 3), (1, 2), 2, (2, 0, 1, 1), 7),  # dilated rows, uneven pads
    (1, 8, (6, 6), (1, 3), (1, 1), 1, (0, 1, 0, 1), 33),  # one kernel row
    (1, 4, (12, 10), (3, 2), (3, 2), 1, (0, 0, 0, 0), 5),  # windows leave the last rows and columns unread
    (1, 1, (5, 40), (2, 2), (1, 1), 1, (1, 1, 0, 0), 1),  # one channel in, one out
]


def _pad_buf(size: int) -> np.ndarray:
    return np.full(size + 7, np.nan, np.float32)  # NaN: a value the pad kernel does not write shows in the output


@pytest.mark.parametrize(("n", "c", "hw", "kernel", "strides", "dh", "pads", "m"), CASES)
@pytest.mark.parametrize(("act", "with_bias", "accumulate"), [(0, True, False), (1, False, True), (2, True, True)])
@pytest.mark.parametrize("group_bytes", [1, _conv_taps.GROUP_BYTES], ids=["panel-groups", "one-group"])
def test_tap_conv_matches_a_direct_convolution(monkeypatch, n, c, hw, kernel, strides, dh, pads, m, act, with_bias,
                                               accumulate, group_bytes):
    _numba.set_numba_enabled(None)
    monkeypatch.setattr(_conv_taps, "GROUP_BYTES", group_bytes)  # 1: every column panel its own group
    rng = np.random.default_rng(c * hw[1] + m)
    w = rng.standard_normal((m, c, *kernel)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    prep = PreparedConv(w, bias)
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    out_hw, begin, end = window_geometry(hw, kernel, strides, (dh, 1), pads, "NOTSET")
    res = rng.standard_normal((n, m, *out_hw)).astype(np.float32)
    # the output: channels 3 .. 3 + m of a wider buffer, holding the residual when accumulating
    wide = np.full((n, *out_hw, m + 5), 7.0, np.float32)
    dst = wide[..., 3 : 3 + m]
    if accumulate:
        dst[...] = res.transpose(0, 2, 3, 1)
    y2 = dst.reshape(-1, m)
    assert _conv_taps.tap_conv(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), prep.tile_packed(c),
                               bias if with_bias else None, act, kernel, strides, dh, begin, out_hw, y2, _pad_buf,
                               accumulate)
    b = bias if with_bias else np.zeros(m, np.float32)
    r = res if accumulate else None
    geometry = (strides, (dh, 1), begin, end, out_hw)
    want = _reference(x, w, b.astype(np.float64), r, act, *geometry).transpose(0, 2, 3, 1)
    scale = _reference(np.abs(x.astype(np.float64)), np.abs(w.astype(np.float64)), np.abs(b.astype(np.float64)),
                       None if r is None else np.abs(r), 0, *geometry).transpose(0, 2, 3, 1)
    np.testing.assert_array_less(np.abs(dst - want), 16 * np.finfo(np.float32).eps * (scale + 1))
    assert (wide[..., :3] == 7).all() and (wide[..., 3 + m :] == 7).all()  # nothing outside the slice


@pytest.mark.parametrize(("n", "c", "hw", "kernel", "strides", "dh", "pads", "m"), CASES)
@pytest.mark.parametrize(("with_bias", "accumulate", "group_bytes"), [(True, False, 1), (False, True, _conv_taps.GROUP_BYTES)])
@pytest.mark.parametrize("halves", ["tiles", "columns"])
def test_split_over_the_worker_gives_the_same_bits(monkeypatch, n, c, hw, kernel, strides, dh, pads, m, with_bias,
                                                  accumulate, group_bytes, halves):
    """Half of the tiles (or of the column panels) on the worker thread: each output by the same tile as on one
    thread, so the same bits; the worker takes its half at least once in a few calls, and a busy pool leaves it
    all to the caller."""
    from hubkit.ops import _worker_pool

    if not _worker_pool.available() or not _numba.job(_conv_taps_kernel().taps_job):
        pytest.skip("needs the worker pool and Numba's C callbacks")
    _numba.set_numba_enabled(None)
    monkeypatch.setattr(_conv_taps, "GROUP_BYTES", group_bytes)
    monkeypatch.setattr(_conv_taps, "COLUMNS_MIN_PANELS", 1 if halves == "columns" else 10**6)
    monkeypatch.setattr(_conv_taps, "COLUMNS_MIN_RATIO", 0)
    rng = np.random.default_rng(c * hw[0] + m)
    prep = PreparedConv(rng.standard_normal((m, c, *kernel)).astype(np.float32), rng.standard_normal(m).astype(np.float32))
    x = np.ascontiguousarray(rng.standard_normal((n, *hw, c)).astype(np.float32))
    out_hw, begin, _ = window_geometry(hw, kernel, strides, (dh, 1), pads, "NOTSET")
    start = rng.standard_normal((n * out_hw[0] * out_hw[1], m)).astype(np.float32)
    bias = prep.bias if with_bias else None

    def conv(split: bool) -> np.ndarray:
        y2 = start.copy()
        assert _conv_taps.tap_conv(x, prep.tile_packed(c), bias, 1, kernel, strides, dh, begin, out_hw, y2, _pad_buf,
                                   accumulate, split)
        return y2

    want = conv(False)
    for _ in range(3):  # the worker's half, or the caller's when the worker was late and it stole the job
        assert conv(True).tobytes() == want.tobytes()
    pool = _worker_pool.get_pool()
    assert pool.acquire()  # another caller holds the pool: this one runs every tile itself
    try:
        assert conv(True).tobytes() == want.tobytes()
    finally:
        pool.release()


def test_the_worker_takes_its_half_of_the_tiles():
    from hubkit.ops import _worker_pool

    if not _worker_pool.available() or not _numba.job(_conv_taps_kernel().taps_job):
        pytest.skip("needs the worker pool and Numba's C callbacks")
    rng = np.random.default_rng(3)
    prep = PreparedConv(rng.standard_normal((64, 16, 3, 3)).astype(np.float32), None)
    x = rng.standard_normal((1, 40, 40, 16)).astype(np.float32)
    y2 = np.empty((38 * 38, 64), np.float32)
    pool = _worker_pool.get_pool()
    jobs = pool.jobs
    deadline = time.monotonic() + 5
    for _ in range(200):  # bounded in count and time: a call whose worker was late is done by the caller alone
        assert _conv_taps.tap_conv(x, prep.tile_packed(16), None, 0, (3, 3), (1, 1), 1, (0, 0), (38, 38), y2, _pad_buf,
                                   False, True)
        if pool.jobs > jobs or time.monotonic() > deadline:
            break
    assert pool.jobs > jobs


@pytest.mark.parametrize(("hw", "c", "m", "columns"), [((13, 13), 64, 256, True), ((55, 55), 16, 64, False),
                                                      ((7, 7), 128, 32, False)])
def test_filters_much_larger_than_the_input_are_split_by_columns(monkeypatch, hw, c, m, columns):
    """SqueezeNet's 13x13 64 -> 256 (filters 10x its input) by column panels; 55x55 16 -> 64 and one panel by tiles."""
    from hubkit.ops import _worker_pool

    if not _worker_pool.available() or not _numba.job(_conv_taps_kernel().taps_job):
        pytest.skip("needs the worker pool and Numba's C callbacks")
    _numba.set_numba_enabled(None)
    seen = []
    _conv_taps.tap_conv(np.zeros((1, 4, 4, 4), np.float32), PreparedConv(np.zeros((32, 4, 3, 3), np.float32),
                        None).tile_packed(4), None, 0, (3, 3), (1, 1), 1, (0, 0), (2, 2), np.empty((4, 32), np.float32),
                        _pad_buf, False, True)  # compiles the blocks' kernel
    blocks = _conv_taps._KERNELS.blocks
    monkeypatch.setattr(_conv_taps._KERNELS, "blocks", lambda *a: seen.append(a[-1]) or blocks(*a))
    rng = np.random.default_rng(5)
    prep = PreparedConv(rng.standard_normal((m, c, 3, 3)).astype(np.float32), None)
    x = rng.standard_normal((1, *hw, c)).astype(np.float32)
    y2 = np.empty((hw[0] * hw[1], m), np.float32)
    assert _conv_taps.tap_conv(x, prep.tile_packed(c), None, 0, (3, 3), (1, 1), 1, (1, 1), hw, y2, _pad_buf, False, True)
    assert seen == [columns]


def _conv_taps_kernel():
    from hubkit.ops import _conv_taps_kernel

    return _conv_taps_kernel


@pytest.mark.parametrize(("hw", "strides", "kernel"), [((5, 7), (1, 1), (3, 3)), ((9, 5), (2, 2), (3, 3)),
                                                       ((4, 9), (1, 3), (1, 1))])
def test_tiles_passing_row_ends_give_each_pixel_the_same_bits(hw, strides, kernel):
    """Tiles cut an image's pixels as one sequence, so a tile passes from the end of an output row into the next
    (twice or more where a row is shorter than the tile; with 1x1 stride 3 the jump is back, not forward): at
    every tile height each output has the bits of 1-row tiles, which never pass a row end."""
    kernels = _conv_taps_kernel()
    taps = _numba.kernel(kernels.taps_kernel)
    if taps is None:
        pytest.skip("needs Numba")
    rng = np.random.default_rng(hw[0] * 10 + hw[1])
    c, m = 5, 40
    prep = PreparedConv(rng.standard_normal((m, c, *kernel)).astype(np.float32), rng.standard_normal(m).astype(np.float32))
    xp = np.ascontiguousarray(rng.standard_normal((2, *hw, c)).astype(np.float32))
    oh = (hw[0] - kernel[0]) // strides[0] + 1
    ow = (hw[1] - kernel[1]) // strides[1] + 1
    state = _packed_gemm._STATE

    def conv(mr: int) -> np.ndarray:
        y2 = np.full((2 * oh * ow, m + 3), np.nan, np.float32)[:, :m]
        assert taps(_gemm_kernel.wrap_kernel_address(), mr, xp, *kernel, *strides, 1, oh, ow, prep.tile_packed(c), y2, prep.bias,
                    2 | 8, 1)  # bias and ReLU; every column panel its own group
        return y2

    want = conv(1)
    assert np.isfinite(want).all()
    for mr in range(2, state.mr + 1):
        assert conv(mr).tobytes() == want.tobytes(), mr


def test_pad_kernel_borders_with_zeros_and_crops():
    from hubkit.ops import _conv_taps_kernel

    pad = _numba.kernel(_conv_taps_kernel.pad_kernel)
    if pad is None:
        pytest.skip("numba is off")
    x = np.arange(2 * 4 * 5 * 3, dtype=np.float32).reshape(2, 4, 5, 3) + 1
    for top, left, hp, wp in ((1, 2, 6, 9), (0, 0, 3, 4), (2, 1, 4, 4), (0, 6, 4, 5)):
        xp = np.full((2, hp, wp, 3), np.nan, np.float32)
        pad(x, top, left, xp)
        want = np.zeros((2, top + 4 + hp, left + 5 + wp, 3), np.float32)
        want[:, top : top + 4, left : left + 5] = x
        np.testing.assert_array_equal(xp, want[:, :hp, :wp])


def test_what_it_cannot_take_is_refused_unwritten():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    prep = PreparedConv(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), None)
    packed = prep.tile_packed(4)
    y2 = np.full((36, 6), 5.0, np.float32)
    geometry = ((3, 3), (1, 1), 1, (0, 0), (6, 6))

    def refused(x=x, packed=packed, y2=y2, bias=None, geometry=geometry, act=0, pad_buf=_pad_buf):
        before = y2.copy()
        ok = _conv_taps.tap_conv(x, packed, bias, act, *geometry, y2, pad_buf)
        np.testing.assert_array_equal(y2, before)
        return not ok

    assert refused(x=x.astype(np.float64))
    assert refused(x=np.asfortranarray(x))
    assert refused(packed=packed[:, :-1])  # depth not kh * kw * C
    assert refused(y2=y2[:-1])  # rows not N * OH * OW
    assert refused(y2=np.full((36, 6), 5.0, np.float32)[:, ::-1])
    assert refused(bias=np.zeros(5, np.float32))
    ro = y2.copy()
    ro.flags.writeable = False
    assert refused(y2=ro)
    assert refused(geometry=((3, 3), (0, 1), 1, (0, 0), (6, 6)))  # a zero stride
    assert refused(bias=np.zeros(12, np.float32)[::2])  # a strided bias
    assert refused(act=3)
    shared = np.zeros(1 * 8 * 8 * 4, np.float32)  # y2 over the input's own memory
    assert refused(x=shared.reshape(1, 8, 8, 4), y2=shared[: 36 * 4].reshape(36, 4),
                   packed=PreparedConv(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), None).tile_packed(4))
    padded = ((3, 3), (1, 1), 1, (1, 1), (8, 8))  # pads: the input is copied into pad_buf's buffer
    y2p = np.full((64, 6), 5.0, np.float32)
    assert refused(y2=y2p, geometry=padded, pad_buf=lambda size: np.zeros(size, np.float64))
    assert refused(y2=y2p, geometry=padded, pad_buf=lambda size: np.zeros(size - 1, np.float32))
    assert _conv_taps.tap_conv(x, packed, None, 0, *padded, y2p, _pad_buf)  # the same call with a good buffer runs
    # a tile's input past MAX_TILE_BYTES: enough channels of 3x3 windows for this host's tile rows
    wc = _conv_taps.MAX_TILE_BYTES // (3 * (_packed_gemm._STATE.mr + 2) * 4) + 1
    assert not _conv_taps.fits(wc, (3, 3), 1) and _conv_taps.fits(wc - 1, (3, 3), 1)
    wide = rng.standard_normal((1, 5, 5, wc)).astype(np.float32)
    wprep = PreparedConv(rng.standard_normal((2, wc, 3, 3)).astype(np.float32), None)
    assert refused(x=wide, packed=wprep.tile_packed(wc), y2=np.zeros((9, 2), np.float32),
                   geometry=((3, 3), (1, 1), 1, (0, 0), (3, 3)))


def test_packed_filters_off_64_byte_alignment_are_refused_not_loaded():
    """The tile loads its panels with aligned vector loads: every entry that takes packed filters refuses others."""
    from hubkit.ops._nhwc_gather_gemm import gathered_tile_conv
    from hubkit.ops._split_rows import split_rows

    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    good = PreparedConv(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), None).tile_packed(4)
    bad = np.empty(good.size + 1, np.float32)[1:].reshape(good.shape)  # 4 bytes past an aligned start
    bad[...] = good
    y2 = np.full((36, 6), 5.0, np.float32)
    geometry = ((3, 3), (1, 1), 1, (0, 0), (6, 6))
    assert not _conv_taps.tap_conv(x, bad, None, 0, *geometry, y2, _pad_buf)
    cols = np.empty(36 * 36, np.float32)
    assert not gathered_tile_conv(x, bad, None, 0, (3, 3), (1, 1), (1, 1), (0, 0), (6, 6), y2, cols, 36)
    a = rng.standard_normal((36, 36)).astype(np.float32)
    assert _packed_gemm.packed_matmul(a, bad, 6, None, 0, y2) is None
    assert split_rows(a, bad, 6, None, 0, y2) is None
    assert (y2 == 5).all()


def test_an_empty_or_short_bias_is_refused_not_read():
    from hubkit.ops._split_rows import split_rows

    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 24)).astype(np.float32)
    packed = _packed_gemm.pack_weights(rng.standard_normal((24, 32)).astype(np.float32))
    out = np.full((40, 32), 5.0, np.float32)
    for bias in (np.zeros(0, np.float32), np.zeros(3, np.float32)):
        assert _packed_gemm.packed_matmul(a, packed, 32, bias, 0, out) is None
        assert split_rows(a, packed, 32, bias, 0, out) is None
    assert (out == 5).all()
