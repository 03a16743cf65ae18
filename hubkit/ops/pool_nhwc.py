"""Numba kernels for pools of channels-last (NHWC) values, in the channels-last regions of imported ONNX CNNs.

The regions of :mod:`hubkit.runtime.optimize_layout` run their max and average pools here. Each
window's taps are whole rows of contiguous channels, so every kernel's inner loop runs along the
channels (vectorised), once per tap. Equalities against the NCHW kernels of
:mod:`hubkit.ops.pool_nchw` (and so against the ONNX ops):

- max pool: the same maxima, NaN propagated the same way (only the sign of a zero maximum may differ,
  the taps being compared in another order); a window all in padding gives ``-inf``;
- average pool: exact (each output is the same float additions in the same tap order, row by row and
  column by column, the first tap copied and padding adding +0.0, divided by the same count);
- :func:`global_avg_pool_nhwc` (the spatial mean of ``GlobalAveragePool`` / ``Mean`` over H and W):
  a float64 sum in pixel order, then one division and a rounding to the input's dtype; NumPy's float32
  mean sums pairwise in float32, so results differ by its rounding (within a few ulps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import OpError
from hubkit.ops import _numba
from hubkit.ops.conv_nchw import outputs as _outputs
from hubkit.ops.pool_nchw import NUMBA_DTYPES, _check_geometry

__all__ = ["MaxPoolCall", "avg_pool2d_nhwc", "global_avg_pool_nhwc", "max_pool2d_nhwc", "prepare_max_pool"]


def max_pool_nhwc_kernel(x, kh, kw, sh, sw, dh, dw, top, left, out):  # pragma: no cover - compiled by Numba
    """Max over each window of NHWC ``x``, channel by channel; padding never wins."""
    n, h, w, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    ninf = x.dtype.type(-np.inf)
    for i in range(n):
        for oy in range(oh):
            for ox in range(ow):
                dst = out[i, oy, ox]
                first = True
                for r in range(kh):
                    iy = oy * sh - top + r * dh
                    if iy < 0 or iy >= h:
                        continue
                    for t in range(kw):
                        ix = ox * sw - left + t * dw
                        if ix < 0 or ix >= w:
                            continue
                        src = x[i, iy, ix]
                        if first:
                            for k in range(c):
                                dst[k] = src[k]
                            first = False
                        else:
                            for k in range(c):
                                a = dst[k]
                                b = src[k]
                                dst[k] = a if (a >= b) | (a != a) else b
                if first:
                    for k in range(c):
                        dst[k] = ninf


def avg_pool_nhwc_kernel(x, kh, kw, sh, sw, top, left, bottom, right, include_pad, out):  # pragma: no cover
    """Mean of each window of NHWC ``x``: every tap of the window in order (padding adds +0.0), over its count."""
    n, h, w, c = x.shape
    oh, ow = out.shape[1], out.shape[2]
    lo_y, hi_y = (-top, h + bottom) if include_pad else (0, h)
    lo_x, hi_x = (-left, w + right) if include_pad else (0, w)
    zero = x.dtype.type(0)
    for i in range(n):
        for oy in range(oh):
            y0 = oy * sh - top
            cy = max(min(y0 + kh, hi_y) - max(y0, lo_y), 0)
            for ox in range(ow):
                x0 = ox * sw - left
                cx = max(min(x0 + kw, hi_x) - max(x0, lo_x), 0)
                count = x.dtype.type(cy * cx)
                dst = out[i, oy, ox]
                for r in range(kh):
                    iy = y0 + r
                    inside_y = 0 <= iy < h
                    for t in range(kw):
                        ix = x0 + t
                        first = r == 0 and t == 0
                        if inside_y and 0 <= ix < w:
                            src = x[i, iy, ix]
                            if first:
                                for k in range(c):
                                    dst[k] = src[k]
                            else:
                                for k in range(c):
                                    dst[k] += src[k]
                        elif first:
                            for k in range(c):
                                dst[k] = zero
                        else:
                            for k in range(c):
                                dst[k] += zero
                for k in range(c):
                    dst[k] = dst[k] / count


def global_avg_kernel(x, out):  # pragma: no cover - compiled by Numba
    """``out[i, k]`` = the mean of ``x[i, :, :, k]``: a float64 sum in pixel order, then one division."""
    n, h, w, c = x.shape
    acc = np.empty(c, np.float64)
    for i in range(n):
        acc[:] = 0.0
        for y in range(h):
            for j in range(w):
                src = x[i, y, j]
                for k in range(c):
                    acc[k] += src[k]
        dst = out[i]
        for k in range(c):
            dst[k] = acc[k] / (h * w)


def _nchw_geometry_check(x: np.ndarray, kernel, strides, dilations, begin, out_hw) -> None:
    """:func:`hubkit.ops.pool_nchw._check_geometry` on the NCHW shape of NHWC ``x``."""
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise OpError(f"a 2-D pool needs a 4-D input, got shape {list(getattr(x, 'shape', ()))}.")
    _check_geometry(x.transpose(0, 3, 1, 2), kernel, strides, dilations, begin, out_hw)


def max_pool2d_nhwc(x: np.ndarray, kernel, strides, dilations, begin, out_hw) -> np.ndarray | None:
    """Max pool of a 4-D NHWC ``x`` into a new ``(N, *out_hw, C)`` array, or None when Numba is off.

    float32 runs on the vectorised LLVM kernel of :mod:`hubkit.ops._pool_kernel` where the tile kernels compiled
    (the same maxima as :func:`max_pool_nhwc_kernel`'s, value for value), other dtypes on the Numba kernel."""
    _nchw_geometry_check(x, kernel, strides, dilations, begin, out_hw)
    fast = _numba.kernel(max_pool_nhwc_kernel) if x.dtype in NUMBA_DTYPES else None
    if fast is None:
        return None
    out = _outputs.empty((x.shape[0], *out_hw, x.shape[3]), x.dtype)
    if out.size:
        x = np.ascontiguousarray(x)
        if not (x.dtype == np.float32 and _max_pool_llvm(x, kernel, strides, dilations, begin, out)):
            fast(x, *kernel, *strides, *dilations, *begin, out)
    return out


def _max_pool_llvm(x: np.ndarray, kernel, strides, dilations, begin, out: np.ndarray) -> bool:
    """``hk_maxpool_f32`` over C-contiguous float32 ``x`` into ``out`` (checked geometry); False when it is not here."""
    from hubkit.ops import _packed_gemm

    if not _packed_gemm.available() or max(*kernel, *strides, *dilations, *begin) >= _LLVM_MAX_GEOMETRY:
        return False
    _run_pool(_pool_blocks(x.shape, out.shape, kernel, strides, dilations, begin), x, out)
    return True


SPLIT_MIN_OUTPUTS = 16384
"""Outputs from which a float32 max pool runs half of its rows on the worker thread (with two or more BLAS threads,
as the convolutions split). SqueezeNet's three pools at one image (3x3, stride 2), Zen 3, fastest of 150 calls, one
thread / split: 111x111x64 212 / 127 us, 55x55x128 109 / 77 us, 27x27x256 (43,264 outputs) 62 / 51 us."""


def _pool_blocks(shape: tuple[int, ...], out_shape: tuple[int, ...], kernel, strides, dilations, begin) -> np.ndarray:
    """``hk_maxpool_job``'s two argument blocks (``hk_maxpool_f32``'s arguments) for output rows ``[0, rows / 2)``
    and the rest, the input's and output's addresses left 0 (:func:`_run_pool` fills them)."""
    n, h, w, c = shape
    oh, ow = out_shape[1], out_shape[2]
    rows = n * oh
    half = (rows + 1) // 2
    args = [0, h, w, c, *(int(v) for v in (*kernel, *strides, *dilations, *begin)), oh, ow, 0]
    return np.array([[*args, 0, half], [*args, half, rows]], np.int64)


def _run_pool(template: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    """``hk_maxpool_job`` on :func:`_pool_blocks`' ``template`` for ``x`` and ``out``: half of the rows on the pool's
    worker from :data:`SPLIT_MIN_OUTPUTS` outputs with two or more BLAS threads (when the worker is free), else
    every row here."""
    from hubkit.ops import _gemm_kernel, _packed_gemm, _worker_pool

    blocks = template.copy()  # alive until both halves are done
    blocks[:, 0] = x.ctypes.data
    blocks[:, 14] = out.ctypes.data
    job = _gemm_kernel.pool_kernel_address(job=True)
    addr = blocks.ctypes.data
    if (
        blocks[1, 16] >= 2 and out.size >= SPLIT_MIN_OUTPUTS and _packed_gemm.blas_threads() >= 2
        and _worker_pool.available() and _worker_pool.run_halves(job, addr, blocks.strides[0])
    ):
        return
    blocks[0, 16] = blocks[1, 16]  # one block over every row
    fn = _LLVM.job
    if fn is None:
        import ctypes

        fn = _LLVM.job = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(job)
    fn(addr)


class MaxPoolCall:
    """:func:`max_pool2d_nhwc` of C-contiguous float32 inputs of one shape on the LLVM kernel, its checks made once
    (:func:`prepare_max_pool`): a call checks the input and runs the kernel's blocks (split over the worker as
    :func:`max_pool2d_nhwc` would, :func:`_run_pool`). 5x5x8 3x3 stride 2: 22 us a call through the plan step
    before, most of it checks; SqueezeNet's three pools at one image are 50-170 us in all. Calling it gives the
    pooled array, or None (nothing written) for an input it was not prepared for."""

    __slots__ = ("_blocks", "out_shape", "shape")

    def __init__(self, shape: tuple[int, ...], blocks: np.ndarray, out_shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.out_shape = out_shape
        self._blocks = blocks

    def __call__(self, x: np.ndarray) -> np.ndarray | None:
        from hubkit.ops import _packed_gemm

        if (
            type(x) is not np.ndarray or x.shape != self.shape or x.dtype != _F32 or not x.flags.c_contiguous
            or not _packed_gemm.available()
        ):
            return None
        out = _outputs.empty(self.out_shape, _F32)
        _run_pool(self._blocks, x, out)
        return out


def prepare_max_pool(x: np.ndarray, kernel, strides, dilations, begin, out_hw) -> MaxPoolCall | None:
    """The :class:`MaxPoolCall` for NHWC inputs of ``x``'s shape and dtype, or None where :func:`max_pool2d_nhwc`
    would not run the LLVM kernel (another dtype, no kernel here, an empty output, a huge geometry). The
    geometry is checked as :func:`max_pool2d_nhwc` checks it (:class:`~hubkit.errors.OpError`)."""
    from hubkit.ops import _packed_gemm

    _nchw_geometry_check(x, kernel, strides, dilations, begin, out_hw)
    out_shape = (x.shape[0], *(int(v) for v in out_hw), x.shape[3])
    if (
        x.dtype != _F32 or not _packed_gemm.available() or 0 in out_shape or x.size == 0
        or max(*kernel, *strides, *dilations, *begin) >= _LLVM_MAX_GEOMETRY
    ):
        return None
    return MaxPoolCall(x.shape, _pool_blocks(x.shape, out_shape, kernel, strides, dilations, begin), out_shape)


_F32 = np.dtype(np.float32)

_LLVM_MAX_GEOMETRY = 1 << 24
"""Kernel sizes, strides, dilations and pads from here up go to the Numba kernel, which checks each tap's index: the
LLVM kernel computes each window's valid taps in 64-bit arithmetic, exact only while the products stay far from
overflowing."""


class _Llvm:
    job: Any = None  # hk_maxpool_job through ctypes


_LLVM = _Llvm()


def avg_pool2d_nhwc(x: np.ndarray, kernel, strides, begin, end, include_pad: bool, out_hw) -> np.ndarray | None:
    """Average pool of a 4-D NHWC ``x`` (``end``: the declared end pads), or None when Numba is off."""
    _nchw_geometry_check(x, kernel, strides, (1, 1), begin, out_hw)
    if len(end) != 2 or min(end) < 0:
        raise OpError(f"end pads {list(end)} must be two values >= 0.")
    fast = _numba.kernel(avg_pool_nhwc_kernel, numpy_errors=True) if x.dtype in NUMBA_DTYPES else None
    if fast is None:
        return None
    out = _outputs.empty((x.shape[0], *out_hw, x.shape[3]), x.dtype)
    if out.size:
        fast(np.ascontiguousarray(x), *kernel, *strides, *begin, *end, bool(include_pad), out)
    return out


def global_avg_pool_nhwc(x: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` to ``(N, C)``: the mean over H and W (NumPy's mean when Numba is off or for other dtypes)."""
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise OpError(f"a spatial mean needs a 4-D input, got shape {list(getattr(x, 'shape', ()))}.")
    fast = _numba.kernel(global_avg_kernel, numpy_errors=True) if x.dtype in NUMBA_DTYPES else None
    if fast is None or x.shape[1] * x.shape[2] == 0:
        return x.mean(axis=(1, 2))
    out = np.empty((x.shape[0], x.shape[3]), x.dtype)
    fast(np.ascontiguousarray(x), out)
    return out
