"""Gathered channels-last convolutions on the LLVM tile GEMM, all chunks in one compiled loop.

:func:`gathered_tile_conv` runs the gather (:func:`hubkit.ops._nhwc_gather.gather_range`) and
:func:`hubkit.ops._gemm_numba.gemm_rows` of every chunk of output rows back to back in one Numba call per
convolution, each chunk's columns still in cache for its GEMM, with no Python, ``ctypes`` lookups or kernel
dispatch per chunk (30-40 us per chunk, as much as the GEMM of a 7x7 map). Same products, same order of
operations (bias and activation in the tile's registers; ``accumulate`` adds the product to what the output
holds, as ``packed_matmul(..., accumulate=True)``). Against a Python loop of gather + ``packed_matmul`` per
chunk (same process, one thread, bit-identical): the 7x7 RGB stem 0.90x the time (0.86x at 16 images),
the 3x3 stem 0.92-0.97x, 16 -> 64 3x3 on 55x55 0.89-0.95x, 128 -> 32 3x3 on 7x7 0.91x; whole models
0.97-0.99x.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops import _numba, _packed_gemm

__all__ = ["gathered_tile_conv"]

_F32 = np.dtype(np.float32)


def gathered_tile_conv(x: np.ndarray, packed: np.ndarray, bias: np.ndarray | None, act: int, kernel, strides,
                       dilations, begin, out_hw, y2: np.ndarray, cols_buf: np.ndarray, chunk: int,
                       accumulate: bool = False) -> bool:
    """``y2 = act(conv(x) + bias)`` (``act(y2 + conv(x) + bias)`` with ``accumulate``) on the tile GEMM; False
    (nothing written) when it cannot run here.

    Args:
        x: C-contiguous ``(N, H, W, C)`` float32 input.
        packed: the filters packed with their depth in ``(kh, kw, C)`` order
            (:meth:`hubkit.ops.conv_nchw.PreparedConv.tile_packed`).
        bias: ``[M]`` float32 or None. act: 0 none, 1 ReLU, 2 ReLU6.
        kernel, strides, dilations, begin, out_hw: the window geometry (``begin``: pads at the top and left).
        y2: the ``(N*OH*OW, M)`` float32 output, unit column stride (a channel slice's rows may be longer).
        cols_buf: a flat float32 buffer of at least ``chunk * kh * kw * C`` values.
        chunk: output rows (pixels) gathered and multiplied at a time.
    """
    if x.ndim != 4:
        return False
    n, c = x.shape[0], x.shape[3]
    kh, kw = (int(v) for v in kernel)
    oh, ow = (int(v) for v in out_hw)
    m = y2.shape[1] if y2.ndim == 2 else -1
    k = kh * kw * c
    rows = n * oh * ow
    if bias is not None:
        bias = np.ascontiguousarray(bias)
    if (
        x.dtype != _F32 or cols_buf.dtype != _F32 or not x.flags.c_contiguous or y2.ndim != 2
        or not _packed_gemm.fits(packed, k, m, y2, rows, bias)
        or chunk < 1 or cols_buf.ndim != 1 or cols_buf.size < min(chunk, rows) * k
        or min(*strides, *dilations) < 1 or min(*begin, oh, ow) < 0
    ):
        return False
    if rows == 0 or m == 0:
        return True
    if not _packed_gemm.available():
        return False
    from hubkit.ops import _nhwc_gather_gemm_kernel

    fast = _numba.kernel(_nhwc_gather_gemm_kernel.gather_gemm_kernel)
    if fast is None:
        return False
    state = _packed_gemm._STATE
    flags = _packed_gemm.tile_flags(act, bias is not None, accumulate)
    b = _EMPTY if bias is None else bias
    return bool(fast(state.addr, state.mr, _packed_gemm.kc_for(k), _packed_gemm._mc(state.mr, k, m), x, kh, kw,
         int(strides[0]), int(strides[1]), int(dilations[0]), int(dilations[1]), int(begin[0]), int(begin[1]), oh, ow, min(chunk, rows),
         cols_buf, packed, y2, b, flags))


_EMPTY = np.empty(0, _F32)
