"""A channels-last convolution's call prepared for one input shape: :func:`~hubkit.ops.conv_nhwc.conv_nhwc_fused`'s
checks and decisions made once instead of on every call.

On every call ``conv_nhwc_fused`` checks its geometry, picks a form (Winograd, pointwise, taps, gathered) and
checks each array, and the GEMM below it checks them again: 15-20 us a call beyond the kernels, against a
1x1 layer of SqueezeNet at one image taking 40-90 us in all. A plan step calls it with one input shape every
time. :func:`prepare` makes those checks and decisions once for the shape and the BLAS thread count; the
:class:`NhwcCall` it returns checks on each call only what can change: the input's shape, dtype and layout,
the output's, their overlap, and the thread count. It covers the forms small layers take at batch 1, the
1x1 stride-1 convolution (the input multiplied in place) and the tap form, without a residual or adding it in
place; for anything else :func:`prepare` gives None and the caller keeps ``conv_nhwc_fused``. The kernels and their arguments are
``conv_nhwc_fused``'s, so the results are the same bits.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops import _conv_taps, _gemm_kernel, _packed_gemm, _split_rows, _worker_pool
from hubkit.ops.conv_nchw import PreparedConv, _scratch, outputs
from hubkit.ops.conv_nhwc import _rows_of_one_stride, _rows_view, _tile_runs, checked_geometry, form

__all__ = ["NhwcCall", "mode", "prepare"]

_F32 = np.dtype(np.float32)


class NhwcCall:
    """``conv_nhwc_fused(x, prep, None, act, *geometry, out=out)`` for inputs of one shape (see the module
    docstring). Calling it returns the result, or None (nothing written) when this call is not the one it was
    prepared for: the caller then calls ``conv_nhwc_fused``."""

    __slots__ = ("_args", "_bias", "_flags", "_pad", "_split", "act", "kc_mc", "out_shape", "packed", "pointwise",
                 "prep", "shape", "tile")

    def __init__(self, shape: tuple[int, ...], prep: PreparedConv, act: int, geometry: tuple[int, ...],
                 pointwise: bool, tile: int) -> None:
        n, h, w, c = shape
        oh, ow, sh, sw, dh, _, top, left = geometry
        kh, kw = prep.kernel
        m = prep.w2.shape[0]
        self.shape = shape
        self.prep = prep
        self.act = act
        self.tile = tile
        self.pointwise = pointwise
        self.out_shape = (n, oh, ow, m)
        self.packed = prep.tile_packed(c)
        self._bias = _packed_gemm._EMPTY if prep.bias is None else prep.bias
        self._flags = _packed_gemm.tile_flags(act, prep.bias is not None)
        depth = kh * kw * c
        self.kc_mc = (_packed_gemm.kc_for(depth), _packed_gemm._mc(_packed_gemm._STATE.mr, depth, m))
        self._split = tile == 2 and (not pointwise or (n * h * w >= _split_rows.MIN_ROWS and _worker_pool.available()))
        self._args = (kh, kw, sh, sw, dh, top, left, oh, ow)
        self._pad = lambda size: _scratch.get("nhwc_pad", size, _F32)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None, accumulate: bool = False) -> np.ndarray | None:
        """The result (in ``out`` when given); with ``accumulate``, ``out`` holds a residual the convolution adds
        to in place (``act(out + conv(x) + bias)``, as ``conv_nhwc_fused(x, prep, out, act, ..., out=out)``)."""
        if (
            type(x) is not np.ndarray or x.shape != self.shape or x.dtype != _F32 or not x.flags.c_contiguous
            or _tile_runs(_F32) != self.tile or (accumulate and out is None)
        ):
            return None
        if out is None:
            y = outputs.empty(self.out_shape, _F32)
        elif (
            type(out) is not np.ndarray or out.shape != self.out_shape or out.dtype != _F32 or not out.flags.writeable
            or out.strides[3] != 4 or not _rows_of_one_stride(out) or np.may_share_memory(x, out)
            or (accumulate and not out.flags.c_contiguous)  # as conv_nhwc_fused adds a residual in place
        ):
            return None
        else:
            y = out
        y2 = _rows_view(y)
        if self.pointwise:
            a = x.reshape(-1, self.shape[3])
            kc, mc = self.kc_mc
            flags = self._flags | (_gemm_kernel.ACCUMULATE if accumulate else 0)
            if self._split and _split_rows.run_split(a, self.packed, self._bias, flags, y2, kc, mc):
                return y
            return y if _packed_gemm.run_tiles(a, self.packed, self._bias, flags, y2, kc, mc) else None
        ok = _conv_taps.run(x, self.packed, self.prep.bias, self.act, *self._args, y2, self._pad, accumulate,
                            self._split)
        return y if ok else None


def mode() -> int:
    """The thread mode a prepared call is for: 0 (no tile kernel), 1 (this thread) or 2 (split over the worker)."""
    return _tile_runs(_F32)


def prepare(shape: tuple[int, ...], prep: PreparedConv, act: int, strides, dilations, begin, end,
            out_hw) -> NhwcCall | None:
    """The call of ``conv_nhwc_fused`` for NHWC inputs of ``shape`` at the current thread count, or None when
    it would take another form than the two prepared ones (or the tile kernel does not run here). The geometry
    is checked as ``conv_nhwc_fused`` checks it (:class:`~hubkit.errors.OpError`)."""
    if len(shape) != 4 or prep.w2.dtype != _F32 or act not in (0, 1, 2):
        return None
    geometry = checked_geometry(shape, prep, strides, dilations, begin, end, out_hw)
    tile = _tile_runs(_F32)
    n, h, w, c = shape
    oh, ow, sh, sw = geometry[:4]
    if not tile or min(n, c, oh, ow, prep.w2.shape[0]) == 0:
        return None
    taps, f43, pointwise = form(shape, prep, geometry, tile)
    if f43:
        return None
    if pointwise:
        if (sh, sw, oh, ow) != (1, 1, h, w):  # a strided 1x1 multiplies a subsampled copy
            return None
    elif not taps:
        return None
    return NhwcCall(shape, prep, act, geometry, pointwise, tile)
