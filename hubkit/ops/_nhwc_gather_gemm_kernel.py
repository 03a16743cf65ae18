"""The compiled loop of :func:`hubkit.ops._nhwc_gather_gemm.gathered_tile_conv` (imports numba: loaded on first use)."""

from __future__ import annotations

from hubkit.ops._gemm_numba import gemm_rows
from hubkit.ops._nhwc_gather import gather_range

__all__ = ["gather_gemm_kernel"]


def gather_gemm_kernel(addr, mr, kc, mc, x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, chunk, cols, packed, y2, bias,
                       flags):  # pragma: no cover - compiled by Numba
    """Chunk by chunk of ``chunk`` output rows: gather the chunk's columns into ``cols``, then ``gemm_rows`` them
    by ``packed`` into the chunk's rows of ``y2`` with the epilogue ``flags`` (bias at ``bias`` when set); False
    (nothing written) when ``packed`` is not 64-byte aligned."""
    if packed.ctypes.data % 64 != 0:
        return False  # the tile's aligned vector loads would fault
    n, _, _, c = x.shape
    rows = n * oh * ow
    k = kh * kw * c
    m = y2.shape[1]
    ldc = y2.strides[0] // 4
    bias_addr = bias.ctypes.data if bias.shape[0] > 0 else 0
    for r0 in range(0, rows, chunk):
        count = min(chunk, rows - r0)
        block = cols[: count * k].reshape(count, k)
        gather_range(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, r0, block)
        gemm_rows(addr, mr, kc, mc, cols.ctypes.data, k, count, k, packed.ctypes.data, y2.ctypes.data + r0 * ldc * 4,
                  ldc, m, bias_addr, flags)
    return True
