"""Numba kernels for NHWC pooling, plugged into :data:`hubkit.ops._conv_numpy.kernels`.

Each wrapper has the signature of the NumPy kernel it stands for and falls back to it when Numba is
off. Pooling is chosen by measurement: the Numba loops beat NumPy's sliding-window reductions
(`scripts/bench_image.py` runs the network with both kernel sets side by side). The unfused
convolution op stays NumPy (blocked im2col or Winograd feeding BLAS); the fused steps' Numba
convolution kernels are in :mod:`hubkit.ops._winograd43` and :mod:`hubkit.ops._conv_small`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hubkit.ops import _numba


def max_pool_kernel(x, kh, kw, sh, sw, pt, pl, out):
    """``out[n, y, x, c]`` = max over the window's real pixels (padding never wins, as -inf)."""
    n, h, w, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for b in range(n):
        for y in range(oh):
            y0 = y * sh - pt
            for xx in range(ow):
                x0 = xx * sw - pl
                for ch in range(c):
                    out[b, y, xx, ch] = -np.inf
                for i in range(kh):
                    yi = y0 + i
                    if yi < 0 or yi >= h:
                        continue
                    for j in range(kw):
                        xj = x0 + j
                        if xj < 0 or xj >= w:
                            continue
                        for ch in range(c):
                            v = x[b, yi, xj, ch]
                            if v > out[b, y, xx, ch] or v != v:  # NaN wins, as with np.maximum
                                out[b, y, xx, ch] = v


def avg_pool_kernel(x, kh, kw, sh, sw, pt, pl, out):
    """``out[n, y, x, c]`` = mean over the window's real pixels (padding excluded from the count)."""
    n, h, w, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for b in range(n):
        for y in range(oh):
            y0 = y * sh - pt
            for xx in range(ow):
                x0 = xx * sw - pl
                for ch in range(c):
                    out[b, y, xx, ch] = 0.0
                count = 0
                for i in range(kh):
                    yi = y0 + i
                    if yi < 0 or yi >= h:
                        continue
                    for j in range(kw):
                        xj = x0 + j
                        if xj < 0 or xj >= w:
                            continue
                        count += 1
                        for ch in range(c):
                            out[b, y, xx, ch] += x[b, yi, xj, ch]
                if count > 0:
                    for ch in range(c):
                        out[b, y, xx, ch] /= count


def _pool_dispatch(fn: Callable, fallback: Callable) -> Callable:
    def run(x, ksize, strides, pads):
        fast = _numba.kernel(fn)
        if fast is None or x.dtype.kind != "f":
            return fallback(x, ksize, strides, pads)
        (pt, pb), (pl, pr) = pads
        oh = (x.shape[1] + pt + pb - ksize[0]) // strides[0] + 1
        ow = (x.shape[2] + pl + pr - ksize[1]) // strides[1] + 1
        out = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
        fast(np.ascontiguousarray(x), ksize[0], ksize[1], strides[0], strides[1], pt, pl, out)
        return out

    run.__name__ = f"{fallback.__name__}_numba"
    run.__doc__ = f"Numba variant of {fallback.__name__} (the NumPy kernel when Numba is off)."
    return run


def max_pool(fallback: Callable) -> Callable:
    """The Numba max-pool kernel, falling back to ``fallback`` (the NumPy kernel) when Numba is off."""
    return _pool_dispatch(max_pool_kernel, fallback)


def avg_pool(fallback: Callable) -> Callable:
    """The Numba average-pool kernel, falling back to ``fallback`` when Numba is off."""
    return _pool_dispatch(avg_pool_kernel, fallback)

