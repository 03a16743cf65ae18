"""The compiled loops of :mod:`hubkit.ops._conv_taps` (imports numba: loaded on first use)."""

from __future__ import annotations

import numpy as np
from numba import carray

from hubkit.ops import _numba
from hubkit.ops._gemm_kernel import NR
from hubkit.ops._gemm_numba import conv_tile
from hubkit.ops._nhwc_gather import _copy, _fill

__all__ = ["TAPS_JOB_ARGS", "pad_kernel", "parts_job", "parts_patch", "taps_blocks", "taps_job", "taps_kernel", "tiles"]


def pad_kernel(x, top, left, xp):  # pragma: no cover - compiled by Numba
    """``xp[:, top + y, left + x] = x[:, y, x]`` where that lands inside ``xp``; zeros everywhere else
    (both NHWC, C-contiguous, one channel count)."""
    n, h, w, c = x.shape
    _, hp, wp, _ = xp.shape
    src = x.reshape(n * h * w * c)
    dst = xp.reshape(n * hp * wp * c)
    zero = xp.dtype.type(0)
    x0 = max(0, -left)  # first and last + 1 input columns that land inside xp
    x1 = min(w, wp - left)
    for i in range(n):
        for yy in range(hp):
            y = yy - top
            row = (i * hp + yy) * wp * c
            if y < 0 or y >= h or x1 <= x0:
                _fill(dst, row, wp * c, zero)
                continue
            lead = (left + x0) * c
            _fill(dst, row, lead, zero)
            _copy(dst, row + lead, src, ((i * h + y) * w + x0) * c, (x1 - x0) * c)
            done = lead + (x1 - x0) * c
            _fill(dst, row + done, wp * c - done, zero)


def taps_kernel(addr, mr_max, xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, bias, flags, group):  # pragma: no cover
    """``y2 (=|+=) conv(xp) @ W`` then the epilogue ``flags``, tile by tile on ``hk_swrap_tile`` (at ``addr``).

    ``xp`` is the padded ``(N, HP, WP, C)`` input (window ``(oy, ox)`` starts at ``xp[:, oy * sh, ox * sw]``);
    ``packed`` the filters packed with their depth in ``(kh, kw, C)`` order; ``y2`` the ``(N*OH*OW, M)`` output
    (unit column stride); ``bias`` ``M`` floats (read with ``BIAS_COLS``). Each tile is up to ``mr_max``
    consecutive pixels of one image: its ``A`` is ``kh`` runs of ``kw * C`` values (one per kernel row, ``dh``
    input rows apart), each read in place with a row stride of ``sw * C`` (and a jump to the next output row's
    windows where the tile passes the end of one). Column panels go ``group`` at a time
    (their filters stay in L2 while every row passes). False (nothing written) when ``packed`` is not 64-byte
    aligned.
    """
    if packed.ctypes.data % 64 != 0:
        return False  # the tile's aligned vector loads would fault
    blk = np.empty(TAPS_JOB_ARGS, np.int64)
    _fill_block(blk, addr, mr_max, xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, bias, flags, group)
    blk[21] = tiles(mr_max, xp.shape[0], oh, ow)
    _run_block(blk)
    return True


TAPS_JOB_ARGS = 24
"""int64 words of :func:`taps_job`'s argument block (see :func:`_fill_block`)."""


@_numba.helper
def tiles(mr_max, n, oh, ow):  # pragma: no cover - compiled by Numba
    """How many tiles cover the output: ``ceil(oh * ow / mr_max)`` per image (a tile may pass the end of an
    output row into the next, never into the next image)."""
    return n * ((oh * ow + mr_max - 1) // mr_max)


@_numba.helper
def _fill_block(blk, addr, mr_max, xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, bias, flags, group):  # pragma: no cover
    """:func:`taps_kernel`'s arguments as the words of a job block, every array as its address; words 20 and 21
    (the first tile and the end) are left to the caller, words 22 and 23 (the first column panel and the end)
    set to every panel."""
    _, hp, wp, c = xp.shape
    blk[0] = addr
    blk[1] = mr_max
    blk[2] = xp.ctypes.data
    blk[3] = hp
    blk[4] = wp
    blk[5] = c
    blk[6] = kh
    blk[7] = kw
    blk[8] = sh
    blk[9] = sw
    blk[10] = dh
    blk[11] = oh
    blk[12] = ow
    blk[13] = packed.ctypes.data
    blk[14] = y2.ctypes.data
    blk[15] = y2.strides[0] // 4
    blk[16] = y2.shape[1]
    blk[17] = bias.ctypes.data if bias.shape[0] > 0 else 0
    blk[18] = flags
    blk[19] = group
    blk[20] = 0
    blk[22] = 0
    blk[23] = (y2.shape[1] + NR - 1) // NR


def taps_blocks(blocks, addr, mr_max, xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, bias, flags, group,
                columns):  # pragma: no cover
    """Fills ``blocks[0]`` and ``blocks[1]`` with :func:`taps_job`'s arguments for two halves of
    :func:`taps_kernel`'s work: the first and second half of its tiles, or with ``columns`` every tile over the
    first and second half of the column panels (each output computed by the same tile either way, so the
    same bits); returns ``blocks``' address (0, nothing filled, when ``packed`` is not 64-byte aligned)."""
    if packed.ctypes.data % 64 != 0:
        return np.int64(0)
    total = tiles(mr_max, xp.shape[0], oh, ow)
    panels = (y2.shape[1] + NR - 1) // NR
    for b in range(2):
        _fill_block(blocks[b], addr, mr_max, xp, kh, kw, sh, sw, dh, oh, ow, packed, y2, bias, flags, group)
        if columns:
            half = (panels + 1) // 2
            blocks[b, 21] = total
            blocks[b, 22] = 0 if b == 0 else half
            blocks[b, 23] = half if b == 0 else panels
        else:
            half = (total + 1) // 2
            blocks[b, 20] = 0 if b == 0 else half
            blocks[b, 21] = half if b == 0 else total
    return np.int64(blocks.ctypes.data)


def taps_job(args):  # pragma: no cover - compiled by Numba as a C callback (hubkit/ops/_conv_taps.py)
    """The tiles ``[args[20], args[21])`` over the column panels ``[args[22], args[23])`` of the convolution whose
    :data:`TAPS_JOB_ARGS` words are at ``args``."""
    _run_block(carray(args, (TAPS_JOB_ARGS,)))


def parts_job(args):  # pragma: no cover - compiled by Numba as a C callback (hubkit/ops/conv_nhwc_concat.py)
    """Several convolutions' halves one after the other: the word at ``args`` counts them, and each one's
    :data:`TAPS_JOB_ARGS` words follow (:func:`_run_block`'s)."""
    head = carray(args, (1,))
    a = carray(args, (1 + head[0] * TAPS_JOB_ARGS,))
    for p in range(head[0]):
        _run_block(a[1 + p * TAPS_JOB_ARGS : 1 + (p + 1) * TAPS_JOB_ARGS])


def parts_patch(blocks, kinds, x, xp, out):  # pragma: no cover - compiled by Numba
    """Writes this call's addresses into :func:`parts_job`'s two argument blocks (``blocks[0]`` and ``blocks[1]``,
    every other word filled once): part ``p`` reads ``xp`` (``kinds[p, 0]`` set: its padded input) or ``x``, and
    writes from byte ``kinds[p, 1]`` of ``out``. Returns ``blocks``' address."""
    for h in range(2):
        for p in range(kinds.shape[0]):
            base = 1 + p * TAPS_JOB_ARGS
            blocks[h, base + 2] = xp.ctypes.data if kinds[p, 0] else x.ctypes.data
            blocks[h, base + 14] = out.ctypes.data + kinds[p, 1]
    return np.int64(blocks.ctypes.data)


@_numba.helper
def _run_block(a):  # pragma: no cover - compiled by Numba
    """The tiles ``[a[20], a[21])`` in order (image by image, its pixels row by row), for each group of ``a[19]``
    column panels of ``[a[22], a[23])``. An image's ``OH * OW`` pixels are cut into tiles of balanced heights
    (169 pixels as 24 x 6 + 5 x 5); a tile that passes the end of an output row goes on in the next (the
    kernel's ``wrap``), so the tiles of a 13-pixel row are not 5, 4 and 4 rows."""
    addr, mr_max, x_addr, hp, wp, c, kh, kw = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    sh, sw, dh, oh, ow, b_addr, y_addr, ldc = a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]
    m, bias_addr, flags, group, u0, u1, p0, p1 = a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23]
    k = kw * c
    depth = kh * k
    tstride = dh * wp * c
    lda = sw * c
    wrap = sh * wp * c - ow * lda  # from past the end of output row oy to the start of row oy + 1
    pixels = oh * ow
    ntiles = (pixels + mr_max - 1) // mr_max
    base_r = pixels // ntiles
    extra = pixels - base_r * ntiles
    for g0 in range(p0, p1, group):
        j0 = g0 * NR
        ncols = min(min(g0 + group, p1) * NR, m) - j0
        bp = b_addr + g0 * depth * NR * 4
        bias = bias_addr + j0 * 4 if bias_addr != 0 else 0
        for u in range(u0, u1):
            i = u // ntiles  # image i, its tile t: pixels q .. q + rows - 1
            t = u - i * ntiles
            q = t * base_r + min(t, extra)
            oy = q // ow
            ox = q - oy * ow
            a_tile = x_addr + ((i * hp + oy * sh) * wp * c + ox * lda) * 4
            c_tile = y_addr + ((i * pixels + q) * ldc + j0) * 4
            conv_tile(addr, base_r + (1 if t < extra else 0), kh, tstride, k, a_tile, lda, bp, depth * NR, c_tile, ldc,
                      ncols, flags, bias, 0, ox, ow, wrap)
