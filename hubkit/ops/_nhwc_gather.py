"""The channels-last im2col gather of :mod:`hubkit.ops.conv_nhwc`: rows of columns, a Numba kernel.

Rows ``r0 .. r0 + len(cols)`` of the ``(N*OH*OW, kh*kw*C)`` columns of NHWC ``x``, taps in ``(kh, kw, C)``
order, zeros for padding, an undilated kernel row inside the image copied as one run of ``kw * C`` values.
The copies go through flat arrays with unsigned offsets (:func:`_copy`), not a slice per run: Numba's slices
cost their construction (and wrap-around checks) on every run, which is most of the work when runs are
short (the RGB stems' 9- and 21-value runs, 16-channel 3x3 taps), and signed offsets kept LLVM from
vectorising the copies. Against a slice per run (same process, one thread, whole convolutions): the 3x3 RGB
stem 0.81x the time, the 7x7 stems 0.82-0.84x, 16 -> 64 3x3 on 55x55 0.92x, 3x3 stride-2 layers
0.90-0.94x; layers of 32+ channels within noise.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops import _numba

__all__ = ["gather_kernel"]


@_numba.helper
def _copy(dst, o, src, s, count):  # pragma: no cover - compiled by Numba
    """``dst[o : o + count] = src[s : s + count]`` with unsigned offsets (no negative-index checks: vectorises)."""
    uo = np.uint64(o)
    us = np.uint64(s)
    for j in range(np.uint64(count)):
        dst[uo + j] = src[us + j]


@_numba.helper
def _fill(dst, o, count, value):  # pragma: no cover - compiled by Numba
    uo = np.uint64(o)
    for j in range(np.uint64(count)):
        dst[uo + j] = value


def gather_kernel(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, r0, cols):  # pragma: no cover - compiled by Numba
    """Rows ``r0 .. r0 + len(cols)`` of the ``(N*OH*OW, kh*kw*C)`` columns of C-contiguous NHWC ``x`` (zeros for
    padding) into C-contiguous 2-D ``cols``. Every input index is checked against ``x``'s shape (rows past the
    last image are left as they are), so no geometry reads outside ``x``."""
    gather_range(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, r0, cols)


@_numba.helper
def gather_range(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, r0, cols):  # pragma: no cover - compiled by Numba
    """:func:`gather_kernel`'s body, inlined into the kernels that gather (here and :mod:`hubkit.ops._nhwc_gather_gemm`)."""
    n, h, w, c = x.shape
    src = x.reshape(n * h * w * c)
    rows, depth = cols.shape
    dst = cols.reshape(rows * depth)
    p = oh * ow
    span = kw * c
    zero = cols.dtype.type(0)
    for q in range(rows):
        r = r0 + q
        i = r // p
        if i >= n:
            break
        oy = (r - i * p) // ow
        ox = r - i * p - oy * ow
        base = i * h * w * c
        d = q * depth
        ix0 = ox * sw - left
        inside = dw == 1 and ix0 >= 0 and ix0 <= w - kw  # not ix0 + kw: no int64 wrap-around
        for a in range(kh):
            iy = oy * sh - top + a * dh
            o = d + a * span
            if iy < 0 or iy >= h:
                _fill(dst, o, span, zero)
            elif inside:
                _copy(dst, o, src, base + (iy * w + ix0) * c, span)
            else:
                row = base + iy * w * c
                for b in range(kw):
                    ix = ix0 + b * dw
                    if ix < 0 or ix >= w:
                        _fill(dst, o + b * c, c, zero)
                    else:
                        _copy(dst, o + b * c, src, row + ix * c, c)
