"""Channels-last convolutions as an implicit GEMM: the tile kernel reads the (padded) input in place.

A gathered convolution (:mod:`hubkit.ops._nhwc_gather_gemm`) first copies each output pixel's window into a
row of columns, ``kh * kw * C`` values, then multiplies the rows. With ``dw == 1`` each kernel row of a window
is already one run of ``kw * C`` values of the NHWC input, and the runs of consecutive pixels of an output row
are ``sw * C`` values apart: a tile of pixels of one output row is ``kh`` such runs per pixel, a fixed
``dh * WP * C`` apart. ``hk_swrap_tile`` (:mod:`hubkit.ops._gemm_kernel`) multiplies exactly that, its
accumulators in registers across the ``kh`` runs, so no column is ever written. What it costs instead: the
input copied once into a zero-bordered buffer (only when the layer pads).

A tile's pixels may pass the end of an output row into the next: the kernel adds a fixed jump to the rows of
``A`` from there on (its ``wrap``). Tiles cut at row ends had been 5, 4 and 4 rows on a 13-pixel row with
6-row tiles (AVX2), 7 rows on a 7-pixel row with 13-row tiles (AVX-512). Against those (with the filter groups
of :data:`GROUP_BYTES`), one thread / split over two, Zen 3, alternating processes: 13x13 64 -> 256 3x3 613-617 /
325-329 -> 524-531 / 293-296 us, 7x7 128 -> 128 203-207 / 117-118 -> 157-159 / 101-104 us; 27x27 and 55x55
layers (tiles of 5-6 rows before) within 3%.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.ops import _gemm_kernel, _numba, _packed_gemm, _worker_pool
from hubkit.ops._gemm_kernel import NR

__all__ = ["GROUP_BYTES", "MAX_TILE_BYTES", "fits", "run", "tap_conv"]

_F32 = np.dtype(np.float32)

GROUP_BYTES = _packed_gemm.NC_BYTES
"""Bytes of packed filters whose column panels run together over every tile (they stay in L2): half the L2, as
the packed GEMM's blocks of ``B``. On the Zen 3 (512 KB of L2) 256 KB instead of 512 ran 13x13 64 -> 256 in
528 instead of 559 us on one thread (292 / 307 split), 7x7 128 -> 128 157 / 165; 27x27, 55x55 and 14x14 layers
within 1% (same process)."""


MAX_TILE_BYTES = 32 * 1024
"""Most bytes of input one tile reads (its ``kh`` kernel rows over its pixels' windows); wider layers gather.

A tile takes its whole depth in one pass, so its input has to stay in L1 while the tile runs. Against the
gathered convolution (same process, one thread): the 3x3 and 7x7 RGB stems 0.52x / 0.64x the time (batch 1),
0.75x for the 7x7 at 16 images, 16 -> 64 3x3 on 55x55 0.77-0.79x, 48 -> 192 on 13x13 0.91x (8.6 KB a tile);
128 -> 128 3x3 stride 2 at 16 images 1.07x (41 KB), 256 -> 256 stride 2 1.22x (83 KB), 512 -> 512 on 7x7
1.01-1.03x (55 KB)."""


def fits(c: int, kernel, sw: int) -> bool:
    """Whether a tile's input (its ``kh`` kernel rows over a whole tile of pixels) is within :data:`MAX_TILE_BYTES`
    (and the tile kernel runs here)."""
    return _packed_gemm.available() and kernel[0] * ((_packed_gemm._STATE.mr - 1) * sw + kernel[1]) * c * 4 <= (
        MAX_TILE_BYTES
    )


def tap_conv(x: np.ndarray, packed: np.ndarray, bias: np.ndarray | None, act: int, kernel, strides, dh: int,
             begin, out_hw, y2: np.ndarray, pad_buf, accumulate: bool = False, split: bool = False) -> bool:
    """``y2 = act(conv(x) + bias)`` (``act(y2 + conv(x) + bias)`` with ``accumulate``) of an undilated-width
    convolution on ``hk_sconv_tile``; False (nothing written) when it cannot run here.

    Args:
        x: C-contiguous ``(N, H, W, C)`` float32 input.
        packed: the filters packed with their depth in ``(kh, kw, C)`` order
            (:meth:`hubkit.ops.conv_nchw.PreparedConv.tile_packed`).
        bias: ``[M]`` float32 or None. act: 0 none, 1 ReLU, 2 ReLU6.
        kernel, strides, dh, begin, out_hw: the window geometry (``begin``: pads at the top and left; the
            width dilation is 1).
        y2: the ``(N*OH*OW, M)`` float32 output, unit column stride (a channel slice's rows may be longer).
        pad_buf: ``pad_buf(size)`` gives a flat float32 buffer of at least ``size`` values for the padded input.
        split: the second half of the tiles on the worker thread (the same bits, see :func:`run`).
    """
    if x.ndim != 4 or y2.ndim != 2:
        return False
    n, _, _, c = x.shape
    kh, kw = (int(v) for v in kernel)
    sh, sw = (int(v) for v in strides)
    top, left = (int(v) for v in begin)
    oh, ow = (int(v) for v in out_hw)
    m = y2.shape[1]
    depth = kh * kw * c
    if (
        x.dtype != _F32 or not x.flags.c_contiguous or not _packed_gemm.fits(packed, depth, m, y2, n * oh * ow, bias)
        or act not in (0, 1, 2)
        or min(kh, kw, sh, sw, dh) < 1 or min(top, left, oh, ow) < 0 or depth == 0
        or np.may_share_memory(x, y2)  # the tiles read x while they write y2
    ):
        return False
    if not fits(c, (kh, kw), sw):
        return False
    return run(x, packed, bias, act, kh, kw, sh, sw, dh, top, left, oh, ow, y2, pad_buf, accumulate, split)


COLUMNS_MIN_PANELS = 4
COLUMNS_MIN_RATIO = 4
"""Split, each thread runs every tile over half of the column panels (instead of half of the tiles over every
panel) when there are at least :data:`COLUMNS_MIN_PANELS` panels and the filters are at least
:data:`COLUMNS_MIN_RATIO` times the (padded) input: each core then reads half of the filters, not all. Zen 3,
two threads, same process, rows / columns: 13x13 64 -> 256 3x3 (filters 10x the input) 294 / 276 us, 48 -> 192
169 / 160, 7x7 512 -> 512 1568 / 1415, 14x14 256 -> 256 1298 / 1261; 27x27 32 -> 128 (1.4x) 297 / 303, 55x55
16 -> 64 323 / 338, 16 images of 13x13 64 -> 256 4276 / 4353, the 3x3 RGB stem 317 / 452, and with one panel
(32 filters) 0.53-0.68x."""


class _Kernels:
    tile: int = 0  # hk_swrap_tile's address
    taps: Any = None
    pad: Any = None
    blocks: Any = None  # taps_blocks, compiled for the first split
    job: int = -1  # taps_job's address (0: none; -1: not compiled yet)
    words: int = 0  # int64 words of its argument block


_KERNELS = _Kernels()


def run(x: np.ndarray, packed: np.ndarray, bias: np.ndarray | None, act: int, kh: int, kw: int, sh: int, sw: int,
        dh: int, top: int, left: int, oh: int, ow: int, y2: np.ndarray, pad_buf, accumulate: bool,
        split: bool = False) -> bool:
    """:func:`tap_conv` for a caller that has checked its arguments as :func:`tap_conv` does (and :func:`fits`):
    :func:`hubkit.ops.conv_nhwc.conv_nhwc_fused`, which validates the same things for every path, calls this
    directly (the checks cost 8-9 us a call, as much as a small layer's kernels).

    ``split``: the second half of the tiles runs on the pool's worker thread (:mod:`hubkit.ops._worker_pool`)
    when it is free; each output is computed by the same tile either way, so the bits are the same."""
    n, h, w, c = x.shape
    m = y2.shape[1]
    if y2.shape[0] == 0 or m == 0:
        return True
    if _KERNELS.taps is None and not compiled():
        return False
    hp, wp = reach(kh, kw, sh, sw, dh, oh, ow)
    if not pads(h, w, top, left, hp, wp):
        xp = x  # no pad: the windows read the input itself
    else:
        size = n * hp * wp * c
        flat = pad_buf(size)
        if flat.dtype != _F32 or flat.ndim != 1 or flat.size < size:
            return False
        xp = flat[:size].reshape(n, hp, wp, c)
        _KERNELS.pad(x, top, left, xp)
    flags = _packed_gemm.tile_flags(act, bias is not None, accumulate)
    b = _packed_gemm._EMPTY if bias is None else bias
    state = _packed_gemm._STATE
    if split and n * -(-(oh * ow) // state.mr) >= 2:
        made = split_blocks(xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, b, flags)
        if made is not None and _worker_pool.run_halves(_KERNELS.job, made[1], made[0].strides[0]):
            return True
    return bool(_KERNELS.taps(_KERNELS.tile, state.mr, xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, b, flags,
                              _group(kh, kw, c)))


def reach(kh: int, kw: int, sh: int, sw: int, dh: int, oh: int, ow: int) -> tuple[int, int]:
    """The rows and columns of the (padded) input the windows reach: the padded input's ``(HP, WP)``."""
    return (oh - 1) * sh + (kh - 1) * dh + 1, (ow - 1) * sw + kw


def pads(h: int, w: int, top: int, left: int, hp: int, wp: int) -> bool:
    """Whether the windows need a zero-bordered copy of the ``h x w`` input (else they read it in place)."""
    return not (top == left == 0 and hp <= h and wp <= w)


def _group(kh: int, kw: int, c: int) -> int:
    """Column panels that run together over every tile (:data:`GROUP_BYTES` of their filters)."""
    return max(1, GROUP_BYTES // (kh * kw * c * 128))


def compiled() -> bool:
    """Whether the tap kernels are compiled here (compiling them on the first call): the pad, the tile loop and
    the tile's address in :data:`_KERNELS`."""
    if _KERNELS.taps is None:
        from hubkit.ops import _conv_taps_kernel

        pad = _numba.kernel(_conv_taps_kernel.pad_kernel)
        taps = _numba.kernel(_conv_taps_kernel.taps_kernel)
        if pad is None or taps is None:
            return False
        _KERNELS.pad = pad
        _KERNELS.tile = _gemm_kernel.wrap_kernel_address()
        _KERNELS.taps = taps  # last: the test above reads it
    return True


def pad_kernel() -> Any:
    """The compiled pad (``pad_kernel(x, top, left, xp)`` of :mod:`hubkit.ops._conv_taps_kernel`), or None."""
    return _KERNELS.pad if compiled() else None


def split_blocks(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, dh: int, oh: int, ow: int, packed: np.ndarray,
                 y2: np.ndarray, b: np.ndarray, flags: int) -> tuple[np.ndarray, int] | None:
    """The two halves' argument blocks of :func:`run`'s work (of its tiles, or of its column panels:
    :data:`COLUMNS_MIN_RATIO`) for the pool's worker, and their address; None when the job or the worker cannot run
    here or ``packed`` is not 64-byte aligned. The caller keeps the blocks alive until both halves are done."""
    if not compiled() or not _worker_pool.available():
        return None
    if _KERNELS.job < 0:
        from hubkit.ops import _conv_taps_kernel

        _KERNELS.words = _conv_taps_kernel.TAPS_JOB_ARGS
        _KERNELS.blocks = _numba.kernel(_conv_taps_kernel.taps_blocks)
        _KERNELS.job = _numba.job(_conv_taps_kernel.taps_job) if _KERNELS.blocks is not None else 0
    if not _KERNELS.job:
        return None
    c, m = xp.shape[3], y2.shape[1]
    columns = -(-m // NR) >= COLUMNS_MIN_PANELS and kh * kw * c * m >= COLUMNS_MIN_RATIO * xp.size
    blocks = np.empty((2, _KERNELS.words), np.int64)
    addr = _KERNELS.blocks(blocks, _KERNELS.tile, _packed_gemm._STATE.mr, xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, b,
                           flags, _group(kh, kw, c), columns)
    return (blocks, int(addr)) if addr else None
