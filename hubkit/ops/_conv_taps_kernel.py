"""The compiled loops of :mod:`hubkit.ops._conv_taps` (imports numba: loaded on first use)."""

from __future__ import annotations

from hubkit.ops._gemm_kernel import NR
from hubkit.ops._gemm_numba import conv_tile
from hubkit.ops._nhwc_gather import _copy, _fill

__all__ = ["pad_kernel", "taps_kernel"]


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
    """``y2 (=|+=) conv(xp) @ W`` then the epilogue ``flags``, tile by tile on ``hk_sconv_tile``.

    ``xp`` is the padded ``(N, HP, WP, C)`` input (window ``(oy, ox)`` starts at ``xp[:, oy * sh, ox * sw]``);
    ``packed`` the filters packed with their depth in ``(kh, kw, C)`` order; ``y2`` the ``(N*OH*OW, M)`` output
    (unit column stride); ``bias`` ``M`` floats (read with ``BIAS_COLS``). Each tile is up to ``mr_max``
    pixels of one output row: its ``A`` is ``kh`` runs of ``kw * C`` values (one per kernel row, ``dh`` input
    rows apart), each read in place with a row stride of ``sw * C``. Column panels go ``group`` at a time
    (their filters stay in L2 while every row passes). False (nothing written) when ``packed`` is not 64-byte
    aligned.
    """
    if packed.ctypes.data % 64 != 0:
        return False  # the tile's aligned vector loads would fault
    n, hp, wp, c = xp.shape
    k = kw * c
    depth = kh * k
    m = y2.shape[1]
    ldc = y2.strides[0] // 4
    tstride = dh * wp * c
    lda = sw * c
    panels = (m + NR - 1) // NR
    bias_addr = bias.ctypes.data if bias.shape[0] > 0 else 0
    ntiles = (ow + mr_max - 1) // mr_max
    base_r = ow // ntiles  # balanced heights: 55 pixels as 11 x 5, not 13 x 4 + 3
    extra = ow - base_r * ntiles
    x_addr = xp.ctypes.data
    y_addr = y2.ctypes.data
    b_addr = packed.ctypes.data
    for g0 in range(0, panels, group):
        g1 = min(panels, g0 + group)
        for i in range(n):
            for oy in range(oh):
                arow = x_addr + (i * hp + oy * sh) * wp * c * 4
                crow = y_addr + (i * oh + oy) * ow * ldc * 4
                ox = 0
                for t in range(ntiles):
                    r = base_r + (1 if t < extra else 0)
                    a = arow + ox * lda * 4
                    cp = crow + ox * ldc * 4
                    j0 = g0 * NR
                    bp = b_addr + g0 * depth * NR * 4
                    conv_tile(addr, r, kh, tstride, k, a, lda, bp, depth * NR, cp + j0 * 4, ldc, min(g1 * NR, m) - j0,
                              flags, bias_addr + j0 * 4 if bias_addr != 0 else 0, bp)
                    ox += r
    return True
