"""NCHW convolutions with few output pixels as a pixel-major GEMM on the LLVM tile kernel.

For a map of a few dozen to a few hundred output pixels, ``W[M, K] @ cols[K, P]`` is a GEMM of few
columns, which OpenBLAS runs at 55-75 GFLOP/s (ResNet-50's 3x3 layers on 7x7 maps, its stride-2
layers). Here the same product runs the other way round: ``cols^T[P, K] @ W^T[K, M]`` on the tile
kernel of :mod:`hubkit.ops._packed_gemm` (13-row tiles of pixels, 32-column panels of output
channels, the filters packed once per :class:`~hubkit.ops.conv_nchw.PreparedConv`, so a changed
weight gets a new packing with its new ``PreparedConv``). ``cols^T`` is gathered pixel-major from an
NHWC copy of the (padded) images, its depth ordered ``(kh, kw, C)`` so that every tap is one slice
copy of contiguous channel runs; the GEMM runs over the pixels of several images at once (rows
``image * P + pixel``), in chunks of about :data:`CHUNK_BYTES` of columns, with bias and activation applied
in the tile's registers, and a transposed copy (``np.copyto`` of a transposed view) moves each chunk's
``(P, M)`` product into the NCHW output, which may be a channel slice of a ``Concat``'s. A residual is
added afterwards by the caller (:func:`hubkit.ops.conv_nchw.conv_nchw_fused`), then the activation.

It runs only for float32, on hosts with the tile kernel (``_packed_gemm.TILE_MIN_MR``) and one BLAS thread (as the fused dense step,
:func:`hubkit.ops._packed_gemm.dense`), and only where :func:`wanted` says it measured faster;
otherwise the NCHW path runs unchanged. Results differ from ``np.matmul``'s by summation order only.
Measured and not kept: the transposed copies in a Numba kernel with bias, residual and activation
(1.0-2.5x NumPy's copy), or by an LLVM IR kernel of 16x16 register-block transposes (1.6-3x faster than
NumPy's copy alone; whole models unchanged within noise: ResNet-50 at batch 1 ran 0.950x the NCHW path's
time with it, 0.954x without).
"""

from __future__ import annotations

import numpy as np

from hubkit.errors import OpError
from hubkit.ops import _packed_gemm

__all__ = ["CHUNK_BYTES", "MAX_PIXELS", "MAX_PIXELS_POINTWISE", "MAX_PIXELS_STRIDED", "conv_tile", "pack_filters", "wanted"]

_F32 = np.dtype(np.float32)

MAX_PIXELS = 196
MAX_PIXELS_STRIDED = 784
MAX_PIXELS_POINTWISE = 64
"""Most output pixels per image the tile form takes: ``MAX_PIXELS`` for gathered stride-1 kernels,
``MAX_PIXELS_STRIDED`` for gathered strided ones, ``MAX_PIXELS_POINTWISE`` for unpadded 1x1 kernels (any
stride: their only extra work is a transposed copy of the input). Same process, one thread, CPU time, the
contenders' order rotated, tile form / NCHW path by min and median, one image (16 images):

- 3x3 512 -> 512 on 7x7 maps 0.56-0.61; 3x3 stride 2 to 7x7 0.49-0.62 (0.62-0.66), to 14x14 0.69-0.75
  (0.74-0.76), to 28x28 0.83-0.86 (0.91-0.92); 5x5 on 6x6 to 14x14 maps 0.63-0.90 (0.60-0.89), 16 -> 48
  channels on 13x13 0.98-1.01. Stride-1 3x3 layers that run Winograd F(4x4, 3x3) stay there (the tile form
  1.3-1.8x Winograd's time on 13x13 to 28x28 maps).
- 1x1 on 7x7 maps: 512 -> 2048 (+ residual) 0.80-0.81, 2048 -> 512 0.69-0.75, 1024 -> 2048 stride 2
  0.74-0.85; on 13x13 and 14x14 maps 1.10-1.17 (the transposed copies cost more than the GEMM gains),
  stride 2 to 14x14 0.97-1.01, to 28x28 1.52-1.57. Several images of 7x7 maps keep the one-GEMM form
  (:data:`hubkit.ops.conv_nchw.BATCH_GEMM_MAX_PIXELS`; the tile form 0.98-1.01 of it).

Whole models, the tile form on and off in one process: ``scripts/bench_onnx.py --tile-ab``."""

MIN_PIXELS = 16
MIN_OUTPUTS = 32
MIN_OUTPUTS_POINTWISE = 192
MIN_DEPTH = 64
"""Fewest output pixels per image (a 1x1 map, a classifier as a convolution, is a matrix-vector product:
1.27x the time of ``np.matmul`` for 1024 -> 1000 channels), output channels (a tile is 32 wide; for 1x1
convolutions, DenseNet-121's 512-992 -> 128 on 7x7 maps ran 1.0-1.09x in the model, 0.99 at 16 images)
and depth (``C * kh * kw``) the tile form takes."""

CHUNK_BYTES = 1 << 20
"""Bytes of gathered columns per GEMM (at least one image): a chunk's columns stay in L2 for its GEMM."""


def wanted(c: int, m: int, kh: int, kw: int, strides, pointwise: bool, p: int, dtype) -> bool:
    """Whether the tile form should run this convolution (float32, small maps, the kernel usable here)."""
    if pointwise:
        limit = MAX_PIXELS_POINTWISE
    else:
        limit = MAX_PIXELS if strides[0] == strides[1] == 1 else MAX_PIXELS_STRIDED
    return (
        dtype == _F32
        and MIN_PIXELS <= p <= limit
        and m >= (MIN_OUTPUTS_POINTWISE if pointwise else MIN_OUTPUTS)
        and c * kh * kw >= MIN_DEPTH
        and _packed_gemm._tile_host()
        and _packed_gemm.blas_threads() == 1
        and _packed_gemm.available()
    )


def pack_filters(w2: np.ndarray, c: int, kh: int, kw: int) -> np.ndarray:
    """``W^T`` with its depth in ``(kh, kw, C)`` order, packed for the tile kernel, from ``w2`` ``[M, C*kh*kw]``."""
    m = w2.shape[0]
    wk = w2.reshape(m, c, kh, kw).transpose(2, 3, 1, 0).reshape(kh * kw * c, m)
    return _packed_gemm.pack_weights(np.asarray(wk, _F32))


def conv_tile(x, packed, bias, act: int, kernel, strides, dilations, begin, end, out_hw, y, scratch) -> np.ndarray:
    """``y = act(conv2d(x) + bias)`` through the pixel-major tile GEMM (see the module docstring).

    ``x`` is a C-contiguous float32 ``(N, C, H, W)``, ``packed`` is :func:`pack_filters`' result, ``y`` the
    ``(N, M, OH, OW)`` output (any strides, e.g. a channel slice), ``scratch`` a
    :class:`~hubkit.ops._scratch.ScratchBuffers`. Bias and activation are applied in the tile's
    registers; a caller with a residual passes ``act=0`` and adds it afterwards.
    """
    n, c, h, wd = x.shape
    kh, kw = kernel
    sh, sw = strides
    dh, dw = dilations
    oh, ow = out_hw
    m = y.shape[1]
    p = oh * ow
    k = kh * kw * c
    chunk = max(1, min(n, CHUNK_BYTES // (4 * p * k)))
    pointwise = kh == kw == 1 and not any(begin) and not any(end)
    hp, wp = h + begin[0] + end[0], wd + begin[1] + end[1]
    cols_buf = scratch.get("tile_cols", chunk * p * k, _F32)
    prod_buf = scratch.get("tile_prod", chunk * p * m, _F32)
    padded = None if pointwise else scratch.get("tile_padded", chunk * hp * wp * c, _F32)
    y3 = y.view()
    y3.shape = (n, m, p)  # raises rather than copying
    for i0 in range(0, n, chunk):
        i1 = min(n, i0 + chunk)
        q = i1 - i0
        cols = cols_buf[: q * p * k]
        if padded is None:
            xs = x[i0:i1, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]
            np.copyto(cols.reshape(q, oh, ow, c), xs.transpose(0, 2, 3, 1))
        else:
            xp = padded[: q * hp * wp * c].reshape(q, hp, wp, c)
            if any(begin) or any(end):
                xp[:, : begin[0]] = 0
                xp[:, hp - end[0] :] = 0
                xp[:, :, : begin[1]] = 0
                xp[:, :, wp - end[1] :] = 0
            np.copyto(xp[:, begin[0] : begin[0] + h, begin[1] : begin[1] + wd], x[i0:i1].transpose(0, 2, 3, 1))
            c6 = cols.reshape(q, oh, ow, kh, kw, c)
            for ta in range(kh):
                for tb in range(kw):
                    ra, cb = ta * dh, tb * dw
                    c6[:, :, :, ta, tb] = xp[:, ra : ra + (oh - 1) * sh + 1 : sh, cb : cb + (ow - 1) * sw + 1 : sw]
        prod = prod_buf[: q * p * m].reshape(q * p, m)
        if _packed_gemm.packed_matmul(cols.reshape(q * p, k), packed, m, bias, act, prod) is None:
            raise OpError("the tile GEMM refused a convolution's packed filters (not pack_filters' own).")
        np.copyto(y3[i0:i1], prod.reshape(q, p, m).transpose(0, 2, 1))
    return y
