"""NumPy kernels of the convolution and pooling ops (NHWC), and ``kernels``, their one dispatch table.

The ops in :mod:`hubkit.ops.conv` compute geometry and concrete paddings ``((top, bottom), (left,
right))`` and call ``kernels[name]``; replacing an entry swaps an implementation (Numba pooling does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from hubkit.ops import _numba_conv, _winograd
from hubkit.ops._scratch import ScratchBuffers

__all__ = ["Pads", "kernels"]

Pads = tuple[tuple[int, int], tuple[int, int]]

# Forward and filter gradient build the im2col patch matrix a block of images at a time into a
# reused per-thread buffer (written sequentially by kh*kw slice copies, or kh copies of kw*c-long
# runs when the rows are contiguous), then one BLAS matmul per block writes straight into the
# output; blocks of 4 MB let the copy and the matmul share the cache. Per-layer times of the
# blocked path against the others: `python scripts/bench_image.py --per-layer` (figures in
# docs/performance.md).
# The per-tap path (kh*kw matmuls accumulated, no patch copy) is kept for very wide inputs, where
# each tap's matmul is already large, and for one image's patches too big to buffer.
_IM2COL_MAX_CHANNELS = 512
_IM2COL_FILTER_GRAD_MAX_CHANNELS = 512
_IM2COL_MAX_BYTES = 256 << 20
_PATCH_BLOCK_BYTES = 4 << 20
_ROW_RUN_MAX_CHANNELS = 16  # below this, copy whole kw*c runs from a padded copy (fewer, longer copies)
_scratch = ScratchBuffers(keep_bytes=2 * _PATCH_BLOCK_BYTES)  # keep small buffers only; a huge one is freed

# 3x3 stride-1 undilated forward convolutions with enough channels and tiles use Winograd F(2x2,
# 3x3) (hubkit/ops/_winograd.py): 2.25x fewer matmul FLOPs, paid for by transforms that are
# elementwise passes. The thresholds below come from `python scripts/bench_image.py --thresholds`
# (Winograd against the blocked im2col by input channels and by tile count) and `--per-layer`:
# few channels (the RGB layer) or few tiles lose to the transforms and small matmuls.
_WINOGRAD_MIN_CHANNELS = 32
_WINOGRAD_MIN_TILES = 64


def _use_im2col(x: np.ndarray, khw, out_hw, max_channels: int) -> bool:
    c = x.shape[3]
    per_image = out_hw[0] * out_hw[1] * khw[0] * khw[1] * c * x.itemsize
    return c < max_channels and per_image <= _IM2COL_MAX_BYTES


# -- NumPy kernels (replaceable through `kernels`) -----------------------------------------------------
def _pad_hw(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    (pt, pb), (pl, pr) = pads
    if not (pt or pb or pl or pr):
        return x
    n, h, w, c = x.shape
    out = np.full((n, h + pt + pb, w + pl + pr, c), value, dtype=x.dtype)
    out[:, pt : pt + h, pl : pl + w] = x
    return out


def _window(xp: np.ndarray, i: int, j: int, out_hw, strides, dilations) -> np.ndarray:
    """The strided view of ``xp`` that filter tap (i, j) reads for every output pixel."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, strides, dilations
    return xp[:, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw, :]


def _out_hw(padded_hw, khw, strides, dilations) -> tuple[int, int]:
    return tuple(
        (padded_hw[a] - (khw[a] - 1) * dilations[a] - 1) // strides[a] + 1 for a in range(2)
    )  # type: ignore[return-value]


def _tap_range(size: int, out: int, offset: int, stride: int, pad: int) -> tuple[int, int]:
    """Outputs ``[lo, hi)`` whose input index ``o * stride + offset - pad`` lies inside ``[0, size)``."""
    first = offset - pad
    lo = min(out, max(0, -(first // stride)))  # ceil(-first / stride) for first < 0
    hi = max(lo, min(out, (size - 1 - first) // stride + 1)) if size - 1 - first >= 0 else lo
    return lo, hi


def _fill_taps(x: np.ndarray, patches: np.ndarray, strides, dilations, pads: Pads) -> None:
    """Writes ``patches[b, y, x, i, j, :]`` = the (zero-padded) input pixel tap (i, j) of output (y, x) reads."""
    _, oh, ow, kh, kw, _ = patches.shape
    h, wd = x.shape[1:3]
    (sh, sw), (dh, dw), ((pt, _), (pl, _)) = strides, dilations, pads
    for i in range(kh):
        y0, y1 = _tap_range(h, oh, i * dh, sh, pt)
        for j in range(kw):
            x0, x1 = _tap_range(wd, ow, j * dw, sw, pl)
            dst = patches[:, :, :, i, j, :]
            dst[:, :y0] = 0
            dst[:, y1:] = 0
            dst[:, y0:y1, :x0] = 0
            dst[:, y0:y1, x1:] = 0
            if y1 > y0 and x1 > x0:
                r, q = y0 * sh + i * dh - pt, x0 * sw + j * dw - pl
                src = x[:, r : r + (y1 - y0 - 1) * sh + 1 : sh, q : q + (x1 - x0 - 1) * sw + 1 : sw, :]
                np.copyto(dst[:, y0:y1, x0:x1], src)


def _fill_rows(xp: np.ndarray, patches: np.ndarray, strides, dh: int) -> None:
    """Like :func:`_fill_taps` for a padded ``xp`` and unit width stride and dilation: each filter
    row's kw taps are one contiguous run of kw*c values, so kh copies do the work of kh*kw."""
    nb, oh, ow, kh, kw, c = patches.shape
    sn, sy, sx, sc = xp.strides
    dst = patches.reshape(nb, oh, ow, kh, kw * c)
    for i in range(kh):
        src = as_strided(
            xp[:, i * dh :], shape=(nb, oh, ow, kw * c), strides=(sn, sy * strides[0], sx, sc), writeable=False
        )
        np.copyto(dst[:, :, :, i, :], src)


def _patch_blocks(x: np.ndarray, khw, out_hw, strides, dilations, pads: Pads) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yields ``(b0, b1, patches)``: the [(b1-b0)*oh*ow, kh*kw*c] im2col matrix of images b0..b1-1.

    The matrix lives in a per-thread buffer reused by the next block and the next call, so it is
    only valid until the generator advances; its rows are ordered like HWIO filters flattened.
    """
    n, c = x.shape[0], x.shape[3]
    (kh, kw), (oh, ow) = khw, out_hw
    k = kh * kw * c
    per_image = oh * ow * k
    nb = max(1, min(n, _PATCH_BLOCK_BYTES // (per_image * x.itemsize)))
    buf = _scratch.get("patches", nb * per_image, x.dtype)
    rows = c < _ROW_RUN_MAX_CHANNELS and strides[1] == 1 and dilations[1] == 1
    xp = np.ascontiguousarray(_pad_hw(x, pads)) if rows else x  # runs need contiguous rows
    for b0 in range(0, n, nb):
        b1 = min(n, b0 + nb)
        patches = buf[: (b1 - b0) * per_image].reshape(b1 - b0, oh, ow, kh, kw, c)
        if rows:
            _fill_rows(xp[b0:b1], patches, strides, dilations[0])
        else:
            _fill_taps(x[b0:b1], patches, strides, dilations, pads)
        yield b0, b1, patches.reshape((b1 - b0) * oh * ow, k)


def _use_winograd(x: np.ndarray, khw, strides, dilations, out_hw) -> bool:
    tiles = x.shape[0] * -(-out_hw[0] // 2) * -(-out_hw[1] // 2)
    return (
        tuple(khw) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilations) == (1, 1)
        and x.shape[3] >= _WINOGRAD_MIN_CHANNELS and tiles >= _WINOGRAD_MIN_TILES
    )


def _conv2d_nhwc(x: np.ndarray, w: np.ndarray, strides, dilations, pads: Pads) -> np.ndarray:
    """Convolution (cross-correlation, as in TF) of NHWC ``x`` with HWIO ``w``."""
    kh, kw, c, o = w.shape
    n, h, wd, _ = x.shape
    out_hw = _out_hw((h + sum(pads[0]), wd + sum(pads[1])), (kh, kw), strides, dilations)
    out = np.empty((n, *out_hw, o), dtype=np.result_type(x, w))
    if kh == kw == 1 and strides == (1, 1) and not any(pads[0] + pads[1]):
        np.matmul(x.reshape(-1, c), w.reshape(c, o), out=out.reshape(-1, o))
        return out
    if _use_winograd(x, (kh, kw), strides, dilations, out_hw):
        _winograd.conv3x3(x, _winograd.filter_transform(w, out.dtype), pads, out)
        return out
    if _use_im2col(x, (kh, kw), out_hw, _IM2COL_MAX_CHANNELS):
        w2 = np.ascontiguousarray(w).reshape(kh * kw * c, o)
        for b0, b1, patches in _patch_blocks(x, (kh, kw), out_hw, strides, dilations, pads):
            np.matmul(patches, w2, out=out[b0:b1].reshape(-1, o))
        return out
    xp = _pad_hw(x, pads)
    flat = out.reshape(-1, o)
    term = np.empty_like(flat)
    for i in range(kh):
        for j in range(kw):
            patch = np.ascontiguousarray(_window(xp, i, j, out_hw, strides, dilations)).reshape(-1, c)
            np.matmul(patch, w[i, j], out=term if i or j else flat)
            if i or j:
                flat += term
    return out


def _conv2d_backprop_input_nhwc(
    g: np.ndarray, w: np.ndarray, input_hw, strides, dilations, pads: Pads
) -> np.ndarray:
    """Gradient of :func:`_conv2d_nhwc` with respect to its input (the transposed convolution)."""
    kh, kw, c, o = w.shape
    n, oh, ow, _ = g.shape
    (pt, pb), (pl, pr) = pads
    h, wd = input_hw
    dxp = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=np.result_type(g, w))
    g2 = g.reshape(-1, o)
    for i in range(kh):
        for j in range(kw):
            _window(dxp, i, j, (oh, ow), strides, dilations)[...] += (g2 @ w[i, j].T).reshape(n, oh, ow, c)
    return dxp[:, pt : pt + h, pl : pl + wd]


def _conv2d_backprop_filter_nhwc(
    x: np.ndarray, g: np.ndarray, khw, strides, dilations, pads: Pads
) -> np.ndarray:
    """Gradient of :func:`_conv2d_nhwc` with respect to its filters."""
    kh, kw = khw
    c, o = x.shape[3], g.shape[3]
    out_hw = g.shape[1:3]
    g2 = g.reshape(-1, o)
    if _use_im2col(x, khw, out_hw, _IM2COL_FILTER_GRAD_MAX_CHANNELS):
        dw = np.zeros((kh * kw * c, o), dtype=np.result_type(x, g))
        for b0, b1, patches in _patch_blocks(x, khw, out_hw, strides, dilations, pads):
            dw += patches.T @ g2[b0 * out_hw[0] * out_hw[1] : b1 * out_hw[0] * out_hw[1]]
        return dw.reshape(kh, kw, c, o)
    xp = _pad_hw(x, pads)
    dw = np.empty((kh, kw, c, o), dtype=np.result_type(x, g))
    for i in range(kh):
        for j in range(kw):
            dw[i, j] = np.ascontiguousarray(_window(xp, i, j, out_hw, strides, dilations)).reshape(-1, c).T @ g2
    return dw


def _max_pool_nhwc(x: np.ndarray, ksize, strides, pads: Pads) -> np.ndarray:
    xp = _pad_hw(x, pads, -np.inf)
    out_hw = _out_hw(xp.shape[1:3], ksize, strides, (1, 1))
    out = _window(xp, 0, 0, out_hw, strides, (1, 1)).copy()
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            if i or j:
                np.maximum(out, _window(xp, i, j, out_hw, strides, (1, 1)), out=out)
    return out


def _max_pool_grad_nhwc(x: np.ndarray, out: np.ndarray, g: np.ndarray, ksize, strides, pads: Pads) -> np.ndarray:
    """Routes each output's gradient to the first maximum of its window (row-major), as TF does."""
    xp = _pad_hw(x, pads, -np.inf)
    dxp = np.zeros(xp.shape, dtype=g.dtype)
    out_hw = out.shape[1:3]
    free = np.ones(out.shape, dtype=bool)  # windows whose maximum is not found yet
    hit = np.empty(out.shape, dtype=bool)
    contrib = np.empty(g.shape, dtype=g.dtype)
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            np.equal(_window(xp, i, j, out_hw, strides, (1, 1)), out, out=hit)
            hit &= free
            free ^= hit
            np.multiply(g, hit, out=contrib)
            _window(dxp, i, j, out_hw, strides, (1, 1))[...] += contrib
    (pt, _), (pl, _) = pads
    return dxp[:, pt : pt + x.shape[1], pl : pl + x.shape[2]]


def _window_counts(input_hw, ksize, strides, pads: Pads, out_hw, dtype) -> np.ndarray:
    """How many real (unpadded) pixels each output window covers: shape [oh, ow, 1]."""
    counts = []
    for a in range(2):
        valid = np.concatenate([np.zeros(pads[a][0]), np.ones(input_hw[a]), np.zeros(pads[a][1])])
        csum = np.concatenate([[0.0], np.cumsum(valid)])
        starts = np.arange(out_hw[a]) * strides[a]
        counts.append(csum[starts + ksize[a]] - csum[starts])
    return np.multiply.outer(counts[0], counts[1]).astype(dtype)[:, :, None]


def _avg_pool_nhwc(x: np.ndarray, ksize, strides, pads: Pads) -> np.ndarray:
    """Average over each window's real pixels (SAME padding is excluded from the count, as in TF)."""
    xp = _pad_hw(x, pads)
    out_hw = _out_hw(xp.shape[1:3], ksize, strides, (1, 1))
    out = _window(xp, 0, 0, out_hw, strides, (1, 1)).copy()
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            if i or j:
                out += _window(xp, i, j, out_hw, strides, (1, 1))
    out /= _window_counts(x.shape[1:3], ksize, strides, pads, out_hw, x.dtype)
    return out


def _avg_pool_grad_nhwc(g: np.ndarray, input_hw, ksize, strides, pads: Pads) -> np.ndarray:
    n, oh, ow, c = g.shape
    (pt, pb), (pl, pr) = pads
    gs = g / _window_counts(input_hw, ksize, strides, pads, (oh, ow), g.dtype)
    dxp = np.zeros((n, input_hw[0] + pt + pb, input_hw[1] + pl + pr, c), dtype=g.dtype)
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            _window(dxp, i, j, (oh, ow), strides, (1, 1))[...] += gs
    return dxp[:, pt : pt + input_hw[0], pl : pl + input_hw[1]]


kernels: dict[str, Callable[..., np.ndarray]] = {
    "conv2d": _conv2d_nhwc,
    "conv2d_backprop_input": _conv2d_backprop_input_nhwc,
    "conv2d_backprop_filter": _conv2d_backprop_filter_nhwc,
    "max_pool": _numba_conv.max_pool(_max_pool_nhwc),  # Numba when enabled (faster, see _numba_conv)
    "max_pool_grad": _max_pool_grad_nhwc,
    "avg_pool": _numba_conv.avg_pool(_avg_pool_nhwc),
    "avg_pool_grad": _avg_pool_grad_nhwc,
}
"""The one dispatch point of the heavy kernels: replace an entry to swap its implementation."""
