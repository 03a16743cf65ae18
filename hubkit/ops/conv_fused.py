"""Convolution + bias + activation in one kernel: the epilogue runs on each block while it is in cache.

Used by the fused linear steps of the plan optimiser (``hubkit/runtime/optimize.py``). The
convolution itself is the one :mod:`hubkit.ops._conv_numpy` runs (1x1 as one GEMM, Winograd F(2x2, 3x3),
blocked im2col, per-tap), or Winograd F(4x4, 3x3) with compiled transforms: the blocked lowerings
call the epilogue on each output block right after its GEMM (a few MB, still in L2), instead of a
``BiasAdd`` and a ``Relu`` step each reading and writing the whole output (tens of MB for early
layers) and allocating a new one. A few-channel (RGB) convolution followed by a 2x2 max pool runs the
direct Numba kernel of :mod:`hubkit.ops._conv_small`, which fuses the pool too; a Winograd F(4x4, 3x3)
convolution followed by a 2x2 stride-2 max pool pools inside its output transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.ops import _conv_numpy as conv_numpy
from hubkit.ops import _conv_small, _winograd, _winograd43
from hubkit.ops import conv as conv_ops
from hubkit.ops._epilogue import bias_act_
from hubkit.ops._small_linear import DerivedWeights

__all__ = ["WinogradFilters", "conv2d_bias_act", "conv2d_bias_act_max_pool"]

_POOL_CHUNK_BYTES = 4 << 20  # conv output per chunk of images pooled while it is in cache
# 3x3 stride-1 undilated convolutions with at least this many input channels and 4x4 tiles use
# Winograd F(4x4, 3x3) with compiled transforms when Numba is on. `python scripts/bench_image.py
# --per-layer` and `--thresholds` print it against F(2x2, 3x3) and im2col: 1.5-2.8x faster than
# im2col from 8 channels at batch 32, 48x48; the RGB layer (3 channels, 0.87x) stays im2col, and
# below ~256 tiles the filter transform and the small matmuls lose (16 7x7 images: 1.07x).
F43_MIN_CHANNELS = 8
F43_MIN_TILES = 256
# Convolutions followed by a 2x2 stride-2 max pool whose inputs have at most this many channels (RGB
# layers), and filters of more than one tap, run the direct Numba kernel of :mod:`hubkit.ops._conv_small`
# (bias, activation and pool fused) when their taps times channels fit its sum: 0.73x the blocked
# im2col's time for the image CNN's first layer (batch 32, 96x96, 3 -> 32; without the pool, a wash).
SMALL_MAX_CHANNELS = 4


class WinogradFilters(DerivedWeights):
    """The Winograd transform of a fused step's filters, kept while they do not change.

    ``get(w, (module, dtype))`` returns ``module.filter_transform(w, dtype)`` for
    :mod:`hubkit.ops._winograd` and a :class:`~hubkit.ops._winograd43.Filters` of it for
    :mod:`hubkit.ops._winograd43` (which also keeps the filters packed for the tile GEMM), made again
    only when ``w``, its variable's version or the key changes
    (:class:`~hubkit.ops._small_linear.DerivedWeights`). The transform costs 0.4-1.1 ms for the image
    CNN's 32-128 channel layers and 14 ms for 256 x 256 filters, against 1.3-20 ms for the convolution
    itself: made on every call it was 3% of the CNN.
    """

    __slots__ = ()

    def derive(self, w: np.ndarray, key: Any) -> Any:
        module, dtype = key
        u = module.filter_transform(w, dtype)
        return _winograd43.Filters(u) if module is _winograd43 else u


def _filters(cache: WinogradFilters | None, module: Any, w: np.ndarray, dtype: np.dtype) -> Any:
    """``module.filter_transform(w, dtype)`` for this call, or from ``cache`` (see :class:`WinogradFilters`)."""
    if cache is None:
        return module.filter_transform(w, dtype)
    return cache.get(w, (module, np.dtype(dtype)))


def conv2d_bias_act(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    act: int,
    strides,
    dilations,
    padding: Any,
    buffer: np.ndarray | None = None,
    filters: WinogradFilters | None = None,
) -> np.ndarray:
    """``act(conv2d(x, w) + bias)`` of NHWC ``x`` and HWIO ``w``, TensorFlow padding rules.

    Args:
        x: [n, h, w, C] input.
        w: [kh, kw, C, K] filters.
        bias: [K] bias, or None.
        act: the activation code of :mod:`hubkit.ops._epilogue`.
        strides, dilations, padding: as the ``Conv2D`` op's attributes.
        buffer: a flat array of the output's dtype to write the output into when it is large enough
            (a chunk's reused scratch); the result is then a view of it.
        filters: where a fused step keeps the Winograd transform of ``w`` between calls (None:
            computed for this call). The caller keeps it only for weights that change through
            their variable (or never): see :class:`WinogradFilters`.
    """
    if x.shape[3] != w.shape[2]:
        raise ValueError(f"input has {x.shape[3]} channels but the filters expect {w.shape[2]}.")
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != w.shape[3]):
        raise ValueError(f"bias of shape {bias.shape} does not match the {w.shape[3]} filters.")
    kh, kw, c, o = w.shape
    n, h, wd, _ = x.shape
    _, pads = conv_ops._runtime_geometry((h, wd), (kh, kw), strides, dilations, padding, n * max(c, o))
    if conv_numpy.kernels["conv2d"] is not conv_numpy._conv2d_nhwc:  # replaced: run it, then the epilogue
        return bias_act_(conv_numpy.kernels["conv2d"](x, w, strides, dilations, pads), bias, act)
    out_hw = conv_numpy._out_hw((h + sum(pads[0]), wd + sum(pads[1])), (kh, kw), strides, dilations)
    dtype = np.result_type(x, w)
    if bias is not None and bias.dtype != dtype:
        return bias_act_(conv_numpy._conv2d_nhwc(x, w, strides, dilations, pads), bias, act)
    size = n * out_hw[0] * out_hw[1] * o
    if buffer is not None and buffer.dtype == dtype and buffer.size >= size:
        out = buffer[:size].reshape(n, *out_hw, o)
    else:
        out = np.empty((n, *out_hw, o), dtype=dtype)
    if out.size == 0:
        return out

    def epilogue(block: np.ndarray) -> None:
        bias_act_(block, bias, act)

    if kh == kw == 1 and strides == (1, 1) and not any(pads[0] + pads[1]):
        np.matmul(x.reshape(-1, c), w.reshape(c, o), out=out.reshape(-1, o))
        return bias_act_(out, bias, act)
    if _use_f43(x, (kh, kw), strides, dilations, out_hw, dtype):
        u = _filters(filters, _winograd43, w, dtype)
        if _winograd43.conv3x3_bias_act(x, u, bias, act, pads, out):
            return out
    if conv_numpy._use_winograd(x, (kh, kw), strides, dilations, out_hw):
        _winograd.conv3x3(x, _filters(filters, _winograd, w, out.dtype), pads, out, epilogue)
        return out
    if conv_numpy._use_im2col(x, (kh, kw), out_hw, conv_numpy._IM2COL_MAX_CHANNELS):
        w2 = np.ascontiguousarray(w).reshape(kh * kw * c, o)
        for b0, b1, patches in conv_numpy._patch_blocks(x, (kh, kw), out_hw, strides, dilations, pads):
            block = out[b0:b1].reshape(-1, o)
            np.matmul(patches, w2, out=block)
            epilogue(block)
        return out
    return bias_act_(conv_numpy._conv2d_nhwc(x, w, strides, dilations, pads), bias, act)


def conv2d_bias_act_max_pool(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    act: int,
    strides,
    dilations,
    padding: Any,
    ksize,
    pool_strides,
    pool_padding: Any,
    filters: WinogradFilters | None = None,
) -> np.ndarray:
    """``max_pool(act(conv2d(x, w) + bias))``, a few images at a time.

    Each chunk of images is convolved into a reused buffer of about 4 MB and pooled from there, so the
    full-resolution activations are never written to memory: the pooled output is all that is.
    Exact: the same convolution kernels per image, and a maximum does not depend on the chunking.
    """
    n = x.shape[0]
    if _use_small(x, w) and tuple(ksize) == (2, 2) and tuple(pool_strides) == (2, 2):
        out = _small_pooled(x, w, bias, act, strides, dilations, padding, pool_padding)
        if out is not None:
            return out
    kh, kw, _, o = w.shape
    _, conv_pads = conv_ops._runtime_geometry(x.shape[1:3], (kh, kw), strides, dilations, padding,
                                              x.shape[0] * max(x.shape[3], o))
    out_hw = conv_numpy._out_hw(
        (x.shape[1] + sum(conv_pads[0]), x.shape[2] + sum(conv_pads[1])), (kh, kw), strides, dilations
    )
    dtype = np.result_type(x, w)
    if tuple(ksize) == (2, 2) and tuple(pool_strides) == (2, 2):
        out = _f43_pooled(x, w, bias, act, strides, dilations, conv_pads, out_hw, pool_padding, filters)
        if out is not None:
            return out
    # Whole chunks from the first image on: a one-image first call (to learn the output's shape) fell
    # below Winograd's tile threshold on the 24x24 and 48x48 layers and ran im2col.
    chunk = max(1, _POOL_CHUNK_BYTES // max(1, out_hw[0] * out_hw[1] * o * dtype.itemsize))
    buffer = np.empty(min(n, chunk) * out_hw[0] * out_hw[1] * o, dtype)  # reused: no page faults per chunk
    out = None
    for b0 in range(0, n, chunk):
        y = conv2d_bias_act(x[b0 : b0 + chunk], w, bias, act, strides, dilations, padding, buffer, filters)
        _, pads = conv_ops._runtime_geometry(y.shape[1:3], ksize, pool_strides, (1, 1), pool_padding)
        pooled = conv_numpy.kernels["max_pool"](y, ksize, pool_strides, pads)
        if out is None:
            if b0 + chunk >= n:
                return pooled
            out = np.empty((n, *pooled.shape[1:]), pooled.dtype)
        out[b0 : b0 + chunk] = pooled
    if out is None:  # no images
        y = conv2d_bias_act(x, w, bias, act, strides, dilations, padding, filters=filters)
        _, pads = conv_ops._runtime_geometry(y.shape[1:3], ksize, pool_strides, (1, 1), pool_padding)
        return conv_numpy.kernels["max_pool"](y, ksize, pool_strides, pads)
    return out


def _use_f43(x: np.ndarray, khw, strides, dilations, out_hw, dtype) -> bool:
    tiles = x.shape[0] * -(-out_hw[0] // 4) * -(-out_hw[1] // 4)
    return (
        tuple(khw) == (3, 3)
        and tuple(strides) == (1, 1)
        and tuple(dilations) == (1, 1)
        and x.shape[3] >= F43_MIN_CHANNELS
        and tiles >= F43_MIN_TILES
        and x.dtype == dtype
        and dtype in (np.float32, np.float64)
        and _winograd43.available()
    )


def _f43_pooled(x, w, bias, act, strides, dilations, pads, out_hw, pool_padding, filters) -> np.ndarray | None:
    """``max_pool(act(conv2d(x, w) + bias))`` for a 2x2 stride-2 unpadded pool by Winograd F(4x4, 3x3)
    with the pool in the output transform (the full-size output is never written); None when it cannot."""
    dtype = np.result_type(x, w)
    o = w.shape[3]
    if (
        x.shape[3] != w.shape[2]
        or (bias is not None and (bias.dtype != dtype or bias.shape != (o,)))
        or conv_numpy.kernels["conv2d"] is not conv_numpy._conv2d_nhwc
        or min(out_hw) < 2
        or not _use_f43(x, w.shape[:2], strides, dilations, out_hw, dtype)
    ):
        return None
    _, pool_pads = conv_ops._runtime_geometry(out_hw, (2, 2), (2, 2), (1, 1), pool_padding)
    if any(pool_pads[0] + pool_pads[1]):  # SAME on an odd size pads: the chunked path handles it
        return None
    out = np.empty((x.shape[0], out_hw[0] // 2, out_hw[1] // 2, o), dtype=dtype)
    u = _filters(filters, _winograd43, w, dtype)
    if not _winograd43.conv3x3_bias_act_max_pool2(x, u, bias, act, pads, out):
        return None
    return out


def _use_small(x: np.ndarray, w: np.ndarray) -> bool:
    kh, kw, c, _ = w.shape
    return c <= SMALL_MAX_CHANNELS and kh * kw > 1 and kh * kw * c <= _conv_small.MAX_TERMS


def _small_pooled(x, w, bias, act, strides, dilations, padding, pool_padding) -> np.ndarray | None:
    """``max_pool(act(conv2d(x, w) + bias))`` for a 2x2 stride-2 pool, by the direct kernel; None when it cannot."""
    kh, kw, c, o = w.shape
    n, h, wd, _ = x.shape
    dtype = np.result_type(x, w)
    if (
        x.shape[3] != c
        or x.dtype != dtype
        or (bias is not None and (bias.dtype != dtype or bias.shape != (o,)))
    ):
        return None  # the generic path runs (and raises what it raises)
    _, pads = conv_ops._runtime_geometry((h, wd), (kh, kw), strides, dilations, padding, n * max(c, o))
    if conv_numpy.kernels["conv2d"] is not conv_numpy._conv2d_nhwc:
        return None
    oh, ow = conv_numpy._out_hw((h + sum(pads[0]), wd + sum(pads[1])), (kh, kw), strides, dilations)
    if oh < 2 or ow < 2:
        return None
    _, pool_pads = conv_ops._runtime_geometry((oh, ow), (2, 2), (2, 2), (1, 1), pool_padding)
    if any(pool_pads[0] + pool_pads[1]):  # SAME on an odd size pads: the generic path handles it
        return None
    out = np.empty((n, oh // 2, ow // 2, o), dtype=dtype)
    if not _conv_small.conv_small_bias_act_max_pool(x, w, bias, act, strides, dilations, pads, out):
        return None
    return out
