"""Numba kernels for the non-convolution steps of imported ONNX CNNs on NCHW values: pools and LRN.

Each kernel reads an ``(N, C, H, W)`` (LRN: ``(N, C, P)``) C-contiguous array and writes a new
one in one pass, plane by plane, so it stays in cache; the plan rewrite of
:mod:`hubkit.runtime.optimize_pool` runs them in place of the NumPy ``forward`` of
:class:`~hubkit.ops.onnx_conv.OnnxMaxPool`, ``OnnxAveragePool`` and ``OnnxLRN`` (which pad a copy
of the input and make one pass per window tap). Equalities against those NumPy kernels:

- max pool: exact (the same maxima; NaN propagates as ``np.maximum`` does);
- average pool: exact (the same float additions, in the same tap order, divided by the same counts;
  0/0 is nan where a window holds no counted element, as in NumPy);
- LRN (beta 0.75): the channel-window sum is exact (same order); ``d ** 0.75`` is
  ``sqrt(d) * sqrt(sqrt(d))``, within 2 ulps of NumPy's power, so the result is within 4 ulps.
"""

from __future__ import annotations

import numpy as np

from hubkit.errors import OpError
from hubkit.ops import _numba
from hubkit.ops.conv_nchw import outputs as _outputs

# Outputs of 1 MB+ come from conv_nchw's RecycledOutputs, as the convolutions' do: a fresh mmapped array
# takes its page faults on every call (batch 16: 0.78x the time for Inception's first max pool and LRN).

__all__ = ["NUMBA_DTYPES", "avg_pool2d", "lrn", "max_pool2d"]

NUMBA_DTYPES = _numba.FLOAT_DTYPES


def max_pool2d_kernel(x, kh, kw, sh, sw, dh, dw, top, left, out):  # pragma: no cover - compiled by Numba
    """Max over each window of every ``(H, W)`` plane; padding (outside the plane) never wins.

    Separable: per output row, the max over the window's rows into a row buffer padded with -inf
    (contiguous, so it vectorises), then the max over the window's columns of that buffer. For
    stride 2 the buffer is first split into its even and odd columns, so the column taps read
    contiguous memory too (strided reads do not vectorise: 2x slower).
    """
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    width = max(left + w, (ow - 1) * sw + (kw - 1) * dw + 1)
    width += width % 2
    row = np.empty(width, x.dtype)
    half = width // 2
    even = np.empty(half, x.dtype)
    odd = np.empty(half, x.dtype)
    ninf = x.dtype.type(-np.inf)
    for j in range(width):
        row[j] = ninf
    inner = row[left : left + w]  # slices, not offset indices: Numba's negative-index checks stop vectorising
    for i in range(n):
        for k in range(c):
            plane = x[i, k]
            dst = out[i, k]
            for oy in range(oh):
                d = dst[oy]
                first = True
                for r in range(kh):
                    iy = oy * sh - top + r * dh
                    if iy < 0 or iy >= h:
                        continue
                    src = plane[iy]
                    if first:
                        for j in range(w):
                            inner[j] = src[j]
                        first = False
                    else:
                        for j in range(w):
                            a = inner[j]
                            b = src[j]
                            inner[j] = a if (a >= b) | (a != a) else b
                if first:  # the whole window is padding
                    for ox in range(ow):
                        d[ox] = ninf
                    continue
                if sw == 2:
                    for j in range(half):
                        even[j] = row[2 * j]
                        odd[j] = row[2 * j + 1]
                    for t in range(kw):
                        off = t * dw
                        part = (even if off % 2 == 0 else odd)[off // 2 : off // 2 + ow]
                        if t == 0:
                            for ox in range(ow):
                                d[ox] = part[ox]
                        else:
                            for ox in range(ow):
                                a = d[ox]
                                b = part[ox]
                                d[ox] = a if (a >= b) | (a != a) else b
                else:
                    for ox in range(ow):
                        d[ox] = row[ox * sw]
                    for t in range(1, kw):
                        tap = row[t * dw :: sw]
                        for ox in range(ow):
                            a = d[ox]
                            b = tap[ox]
                            d[ox] = a if (a >= b) | (a != a) else b


def max_pool2d_plane_kernel(x, kh, kw, sh, sw, dh, dw, top, left, out):  # pragma: no cover - compiled by Numba
    """:func:`max_pool2d_kernel` on whole planes at once: stride 1 (Inception's pools on 7x7 to 28x28 maps)
    and small strided planes (rows of 13 to 28 values: SqueezeNet's and Inception's later stride-2 pools).

    Each plane (copied into a buffer with -inf borders when it is padded) is flattened; the row taps
    and then the column taps are long contiguous loops over it (rows of a few dozen values are too
    short to vectorise one by one), computed at every position, and the outputs are read at the
    strided positions; the values computed across a row's end are never read.
    """
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    rows = max(top + h, (oh - 1) * sh + (kh - 1) * dh + 1)
    pitch = max(left + w, (ow - 1) * sw + (kw - 1) * dw + 1)
    direct = top == 0 and left == 0 and pitch == w and rows <= h  # read the plane itself
    span = ((oh - 1) * sh + 1) * pitch
    last = span - (kw - 1) * dw
    ninf = x.dtype.type(-np.inf)
    buf = np.full(1 if direct else rows * pitch, ninf, x.dtype)
    vert = np.empty(span, x.dtype)
    hor = np.empty(last, x.dtype)
    for i in range(n):
        for k in range(c):
            if direct:
                flat = x[i, k].reshape(h * w)
            else:
                plane = x[i, k]
                for y in range(h):
                    dst = buf[(top + y) * pitch + left : (top + y) * pitch + left + w]
                    src = plane[y]
                    for j in range(w):
                        dst[j] = src[j]
                flat = buf
            first = flat[0:span]
            for q in range(span):
                vert[q] = first[q]
            for r in range(1, kh):
                tap = flat[r * dh * pitch : r * dh * pitch + span]
                for q in range(span):
                    a = vert[q]
                    b = tap[q]
                    vert[q] = a if (a >= b) | (a != a) else b
            for q in range(last):
                hor[q] = vert[q]
            for t in range(1, kw):
                tap = vert[t * dw : t * dw + last]
                for q in range(last):
                    a = hor[q]
                    b = tap[q]
                    hor[q] = a if (a >= b) | (a != a) else b
            dst2 = out[i, k]
            for oy in range(oh):
                src = hor[oy * sh * pitch : oy * sh * pitch + (ow - 1) * sw + 1]
                d = dst2[oy]
                if sw == 1:
                    for ox in range(ow):
                        d[ox] = src[ox]
                else:
                    for ox in range(ow):
                        d[ox] = src[ox * sw]


@_numba.helper
def _add_tap(acc, tap, n, first):
    """``acc[:n]`` = ``tap[:n]`` for a window's first tap, else ``acc[:n] += tap[:n]``."""
    if first:
        for j in range(n):
            acc[j] = tap[j]
    else:
        for j in range(n):
            acc[j] += tap[j]


def avg_pool2d_kernel(x, kh, kw, sh, sw, top, left, bottom, right, include_pad, out):  # pragma: no cover
    """Mean of each window; the divisor counts padding (not the ceil-mode overhang) when ``include_pad``.

    Bit for bit the NumPy kernel: each plane is copied into a zero-padded buffer and the window's
    taps are added in the same order (row by row, column by column, the first one copied, padding
    adding +0.0), vectorised along each output row; stride-2 planes are split into their even and
    odd columns first so the taps read contiguous memory. The divisor is the window's rows times its
    columns inside the (padded, when ``include_pad``) input. Planes up to 16 wide whose windows are all
    inside are read directly, with no copy or split: 0.51-0.56x the time for DenseNet-121's 512 x 14x14
    2x2 pool (1 and 16 images), 0.53-0.61x for ResNet-50's global 7x7 pool; 28 wide was 0.8-1.2x, 56 wide
    1.0-1.4x (left to the copies).
    """
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    rows = max(top + h, (oh - 1) * sh + kh)
    pitch = max(left + w, (ow - 1) * sw + kw)
    pitch += pitch % 2
    half = pitch // 2
    buf = np.zeros((rows, pitch), x.dtype)
    even = np.empty((rows, half), x.dtype)
    odd = np.empty((rows, half), x.dtype)
    counts = np.empty((oh, ow), x.dtype)
    lo_y, hi_y = (-top, h + bottom) if include_pad else (0, h)
    lo_x, hi_x = (-left, w + right) if include_pad else (0, w)
    for oy in range(oh):
        y0 = oy * sh - top
        cy = min(y0 + kh, hi_y) - max(y0, lo_y)
        for ox in range(ow):
            x0 = ox * sw - left
            cx = min(x0 + kw, hi_x) - max(x0, lo_x)
            counts[oy, ox] = max(cy, 0) * max(cx, 0)
    acc = np.empty(ow, x.dtype)
    # windows all inside a plane up to 16 wide (DenseNet's 2x2 transitions, ResNet's global 7x7 pool): the
    # taps are read from the plane itself, with no padded copy or even/odd split (same additions, same order)
    direct = top == 0 and left == 0 and (oh - 1) * sh + kh <= h and (ow - 1) * sw + kw <= w and w <= 16
    for i in range(n):
        for k in range(c):
            plane = x[i, k]
            if direct and ow < 4:  # a global pool's one column: a loop per window
                dst2 = out[i, k]
                for oy in range(oh):
                    for ox in range(ow):
                        y0 = oy * sh
                        x0 = ox * sw
                        total = plane[y0, x0]
                        for r in range(kh):
                            row = plane[y0 + r]
                            for t in range(1 if r == 0 else 0, kw):
                                total += row[x0 + t]
                        dst2[oy, ox] = total / counts[oy, ox]
                continue
            if direct:
                dst2 = out[i, k]
                for oy in range(oh):
                    for r in range(kh):
                        row = plane[oy * sh + r]
                        for t in range(kw):
                            tap = row[t : t + (ow - 1) * sw + 1 : sw]
                            _add_tap(acc, tap, ow, r == 0 and t == 0)
                    d = dst2[oy]
                    cnt = counts[oy]
                    for ox in range(ow):
                        d[ox] = acc[ox] / cnt[ox]
                continue
            for y in range(h):
                dst = buf[top + y, left : left + w]
                src = plane[y]
                for j in range(w):
                    dst[j] = src[j]
            dst2 = out[i, k]
            if ow < 8:  # a global pool's one column: a loop per window, not per output row
                for oy in range(oh):
                    for ox in range(ow):
                        y0 = oy * sh
                        x0 = ox * sw
                        total = buf[y0, x0]
                        for r in range(kh):
                            row = buf[y0 + r]
                            for t in range(1 if r == 0 else 0, kw):
                                total += row[x0 + t]
                        dst2[oy, ox] = total / counts[oy, ox]
                continue
            if sw == 2:
                for y in range(rows):
                    b = buf[y]
                    e = even[y]
                    o = odd[y]
                    for j in range(half):
                        e[j] = b[2 * j]
                        o[j] = b[2 * j + 1]
            for oy in range(oh):
                for r in range(kh):
                    y = oy * sh + r
                    for t in range(kw):
                        if sw == 2:
                            tap = (even[y] if t % 2 == 0 else odd[y])[t // 2 : t // 2 + ow]
                        else:
                            tap = buf[y, t::sw]
                        _add_tap(acc, tap, ow, r == 0 and t == 0)
                d = dst2[oy]
                cnt = counts[oy]
                for ox in range(ow):
                    d[ox] = acc[ox] / cnt[ox]


def lrn_kernel(x, before, after, scale, bias, out):  # pragma: no cover - compiled by Numba
    """``out = x / (bias + scale * window sum of x^2) ** 0.75`` over ``(N, C, P)``.

    The window sum adds the squares in the NumPy kernel's order: the channel itself, then c-1,
    c-2, ..., then c+1, c+2, ... ``d ** 0.75`` is ``sqrt(d) * sqrt(sqrt(d))``, which vectorises
    (``powf`` runs one value at a time: 2x slower than NumPy's vectorised power, for any beta).
    """
    n, c, p = x.shape
    acc = np.empty(p, x.dtype)
    for i in range(n):
        for k in range(c):
            src = x[i, k]
            for j in range(p):
                acc[j] = src[j] * src[j]
            for d in range(1, before + 1):
                if k - d >= 0:
                    other = x[i, k - d]
                    for j in range(p):
                        acc[j] += other[j] * other[j]
            for d in range(1, after + 1):
                if k + d < c:
                    other = x[i, k + d]
                    for j in range(p):
                        acc[j] += other[j] * other[j]
            dst = out[i, k]
            for j in range(p):
                r = np.sqrt(bias + scale * acc[j])
                dst[j] = src[j] / (r * np.sqrt(r))


def _check_geometry(x: np.ndarray, kernel, strides, dilations, begin, out_hw) -> None:
    """Refuses a window the kernels above cannot run in bounds: Numba checks no index.

    Their buffers are sized from ``out_hw`` and the window, so every index stays inside them for any
    ``out_hw >= 0`` once ``x`` is 4-D, kernel, stride and dilation sizes are >= 1 and begin pads >= 0 (a kernel
    of -10**6 made the stride-1 max pool write 4 MB past its buffer).
    """
    parts = (kernel, strides, dilations, begin, out_hw)
    ok = x.ndim == 4 and all(len(p) == 2 and all(isinstance(v, (int, np.integer)) for v in p) for p in parts)
    if not ok or min(*kernel, *strides, *dilations) < 1 or min(*begin, *out_hw) < 0:
        raise OpError(
            f"pool window {list(kernel)} (strides {list(strides)}, dilations {list(dilations)}, begin pads "
            f"{list(begin)}, outputs {list(out_hw)}) does not fit an input of shape {list(x.shape)}."
        )


def max_pool2d(x: np.ndarray, kernel, strides, dilations, begin, out_hw) -> np.ndarray | None:
    """Max pool of a 4-D ``x`` into a new ``(N, C, *out_hw)`` array, or None when Numba is off."""
    _check_geometry(x, kernel, strides, dilations, begin, out_hw)
    if x.dtype not in NUMBA_DTYPES:
        return None
    whole = tuple(strides) == (1, 1) or x.shape[3] <= PLANE_KERNEL_MAX_WIDTH
    fast = _numba.kernel(max_pool2d_plane_kernel if whole else max_pool2d_kernel)
    if fast is None:
        return None
    out = _outputs.empty((*x.shape[:2], *out_hw), x.dtype)
    if out.size:
        fast(np.ascontiguousarray(x), *kernel, *strides, *dilations, *begin, out)
    return out


PLANE_KERNEL_MAX_WIDTH = 32
"""Strided max pools of planes up to this wide run :func:`max_pool2d_plane_kernel`, wider ones
:func:`max_pool2d_kernel`. Plane kernel / row kernel, same process, 3x3 stride 2 unless said: 256 x 27x27
0.55-0.58x (1 image) and 0.68-0.77x (16), 480 x 28x28 padded 0.72-0.74x, 832 x 14x14 padded 0.60x (16),
2x2 0.44-0.54x; 55-56 wide 0.85-1.37x, 111 wide 1.3-1.5x."""


def avg_pool2d(x: np.ndarray, kernel, strides, begin, end, include_pad: bool, out_hw) -> np.ndarray | None:
    """Average pool of a 4-D ``x`` (``end``: the declared end pads), or None when Numba is off."""
    _check_geometry(x, kernel, strides, (1, 1), begin, out_hw)
    fast = _numba.kernel(avg_pool2d_kernel, numpy_errors=True) if x.dtype in NUMBA_DTYPES else None
    if fast is None:
        return None
    out = _outputs.empty((*x.shape[:2], *out_hw), x.dtype)
    if out.size:
        fast(np.ascontiguousarray(x), *kernel, *strides, *begin, *end, bool(include_pad), out)
    return out


def lrn(x: np.ndarray, size: int, alpha: float, beta: float, bias: float) -> np.ndarray | None:
    """ONNX ``LRN`` of an ``(N, C, ...)`` ``x`` into a new array, or None when Numba is off or beta is not 0.75.

    0.75 is the beta of every LRN in the model zoo (AlexNet, GoogLeNet / Inception v1, CaffeNet).
    """
    ok = x.dtype in NUMBA_DTYPES and x.ndim >= 3 and beta == 0.75
    fast = _numba.kernel(lrn_kernel, numpy_errors=True) if ok else None
    if fast is None:
        return None
    out = _outputs.empty(x.shape, x.dtype)
    if out.size:
        t = x.dtype.type
        lo, hi = (size - 1) // 2, size // 2
        n, c = x.shape[:2]
        fast(np.ascontiguousarray(x).reshape(n, c, -1), lo, hi, t(alpha / size), t(bias), out.reshape(n, c, -1))
    return out
