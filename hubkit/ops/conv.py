"""Op family: 2-D convolution and pooling over NHWC images, with TensorFlow's padding rules.

Geometry follows TensorFlow: ``SAME`` gives ``ceil(in / stride)`` outputs and puts the odd pixel of
padding after (bottom/right), ``VALID`` uses no padding, and an explicit ``[[top, bottom], [left,
right]]`` list pads exactly that. Filters are ``[height, width, in_channels, out_channels]`` (HWIO).

The heavy work is in plain module-level NumPy functions reached through :data:`kernels`, the one
dispatch point a faster implementation (e.g. Numba) replaces entries of; every kernel receives
concrete paddings ``((top, bottom), (left, right))`` so it needs no knowledge of padding modes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from hubkit.errors import GraphError
from hubkit.graph import Tensor
from hubkit.ops import _numba_conv, _winograd
from hubkit.ops._helpers import as_tensor, check_dtype
from hubkit.ops.registry import apply, describe, infer_error, register_op
from hubkit.ops.shape import shape as shape_of

__all__ = ["avg_pool", "avg_pool2d", "conv2d", "conv2d_transpose", "max_pool", "max_pool2d"]

Pads = tuple[tuple[int, int], tuple[int, int]]

# Forward and filter gradient build the im2col patch matrix a block of images at a time into a
# reused per-thread buffer (written sequentially by kh*kw slice copies, or kh copies of kw*c-long
# runs when the rows are contiguous), then one BLAS matmul per block writes straight into the
# output. Measured on the batch-32 benchmark shapes (3x3 SAME, float32) with one OpenBLAS thread,
# forward ms before (one unblocked im2col below 64 channels, else per-tap matmuls) -> after:
# 96x96 3->32 12.3 -> 12.6, 48x48 32->64 39 -> 28, 24x24 64->96 27 -> 19, 12x12 96->128 10.5 -> 9.2
# (the matmuls alone: 5.7, 23.7, 20.8, 9.5; filter gradient 84 -> 71 in all). Blocks of 4 MB
# beat 1-2 MB slightly and 16-64 MB by 20-30% (the copy and the matmul then share the cache).
# The per-tap path (kh*kw matmuls accumulated, no patch copy) is kept for very wide inputs, where
# each tap's matmul is already large, and for one image's patches too big to buffer.
_IM2COL_MAX_CHANNELS = 512
_IM2COL_FILTER_GRAD_MAX_CHANNELS = 512
_IM2COL_MAX_BYTES = 256 << 20
_PATCH_BLOCK_BYTES = 4 << 20
_ROW_RUN_MAX_CHANNELS = 16  # below this, copy whole kw*c runs from a padded copy (fewer, longer copies)
_scratch = threading.local()

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


# -- geometry ---------------------------------------------------------------------------------------
def _pair(value: Any, what: str, fn: str) -> tuple[int, int]:
    """``2`` -> (2, 2); ``[2, 3]`` -> (2, 3); TF's NHWC form ``[1, 2, 3, 1]`` -> (2, 3)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        items = [int(value)] * 2
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        items = list(value)
    elif isinstance(value, (list, tuple)) and len(value) == 4 and value[0] == 1 and value[3] == 1:
        items = [value[1], value[2]]
    else:
        raise GraphError(
            f"{fn}: {what} must be an int, a pair [height, width] or NHWC [1, height, width, 1]; got {value!r}."
        )
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in items):
        raise GraphError(f"{fn}: {what} must be positive integers; got {value!r}.")
    return int(items[0]), int(items[1])


def _padding(value: Any, fn: str, explicit: bool = True) -> str | list[list[int]]:
    """``"SAME"``/``"VALID"`` (any case), or explicit ``[[top, bottom], [left, right]]`` (or NHWC 4x2)."""
    if isinstance(value, str):
        mode = value.upper()
        if mode in ("SAME", "VALID"):
            return mode
    elif explicit and isinstance(value, (list, tuple)) and len(value) in (2, 4):
        rows = [list(r) for r in value] if all(isinstance(r, (list, tuple)) for r in value) else []
        if len(rows) == 4 and rows[0] == [0, 0] and rows[3] == [0, 0]:
            rows = rows[1:3]
        ok = len(rows) == 2 and all(
            len(r) == 2 and all(isinstance(p, (int, np.integer)) and p >= 0 for p in r) for r in rows
        )
        if ok:
            return [[int(p) for p in r] for r in rows]
    choices = "'SAME', 'VALID' or [[top, bottom], [left, right]]" if explicit else "'SAME' or 'VALID'"
    raise GraphError(f"{fn}: padding must be {choices}; got {value!r}.")


def _dim_geometry(size: int | None, k: int, s: int, d: int, pad: Any) -> tuple[int | None, tuple[int, int]]:
    """(output size, (pad before, pad after)) along one spatial dimension, as TensorFlow computes it."""
    eff = (k - 1) * d + 1
    if size is None:
        return None, (0, 0)
    if pad == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + eff - size, 0)
        return out, (total // 2, total - total // 2)
    before, after = (0, 0) if pad == "VALID" else (int(pad[0]), int(pad[1]))
    padded = size + before + after
    return (padded - eff) // s + 1 if padded >= eff else 0, (before, after)


def _geometry(hw: Sequence[int | None], khw: Sequence[int], strides, dilations, padding):
    """Output (height, width) and concrete paddings of a window op."""
    pads = [padding, padding] if isinstance(padding, str) else padding
    (oh, ph), (ow, pw) = (
        _dim_geometry(hw[i], khw[i], strides[i], dilations[i], pads[i]) for i in range(2)
    )
    return (oh, ow), (ph, pw)


def _does_not_fit(hw: Sequence, khw: Sequence, dilations: Sequence, padding: Any) -> str:
    return (
        f"a {khw[0]}x{khw[1]} window with dilations {list(dilations)} does not fit in an input of "
        f"height {hw[0]} and width {hw[1]} with padding {padding!r}."
    )


def _runtime_geometry(hw, khw, strides, dilations, padding) -> tuple[tuple[int, int], Pads]:
    out, pads = _geometry(hw, khw, strides, dilations, padding)
    if out[0] <= 0 or out[1] <= 0:
        raise ValueError(_does_not_fit(hw, khw, dilations, padding))
    return out, pads


def _check_fits(out: tuple, hw: Sequence, khw: Sequence, dilations: Sequence, padding: Any) -> None:
    if (out[0] is not None and out[0] <= 0) or (out[1] is not None and out[1] <= 0):
        raise infer_error(_does_not_fit(hw, khw, dilations, padding))


def _check_image(t: Tensor, what: str) -> tuple:
    if t.shape is not None and len(t.shape) != 4:
        raise infer_error(f"{what} {describe(t)} must have rank 4 [batch, height, width, channels].")
    check_dtype(t, "f", what)
    return t.shape if t.shape is not None else (None,) * 4


def _same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


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
    buf = getattr(_scratch, "patches", None)
    if buf is None or buf.dtype != x.dtype or buf.size < nb * per_image:
        buf = np.empty(nb * per_image, dtype=x.dtype)
        if buf.nbytes <= 2 * _PATCH_BLOCK_BYTES:  # keep small buffers only; a huge one is freed
            _scratch.patches = buf
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


# -- ops ---------------------------------------------------------------------------------------------
def _sizes_hw(sizes: np.ndarray | None, input_hw) -> tuple[int, int]:
    if sizes is not None:
        return int(sizes[1]), int(sizes[2])
    return input_hw[0], input_hw[1]


def _size_of(like: Tensor) -> tuple[list, list[Tensor]]:
    """The ``input_hw`` attr of a gradient op shaped like ``like``, and its run-time size input when needed."""
    hw = list(like.shape[1:3]) if like.shape is not None else [None, None]
    return hw, ([shape_of(like)] if None in hw else [])


def _check_filters(w: Tensor, x: Tensor) -> tuple:
    """``(height, width, in_channels, out_channels)`` of HWIO filters ``w`` applied to images like ``x``."""
    if w.shape is not None and len(w.shape) != 4:
        raise infer_error(f"filters {describe(w)} must have rank 4 [height, width, in_channels, out_channels].")
    kh, kw, c, o = w.shape if w.shape is not None else (None,) * 4
    if w.dtype is not x.dtype:
        raise infer_error(f"filters {describe(w)} must have the dtype of the input {describe(x)}.")
    if kh is None or kw is None:
        raise infer_error(f"filters {describe(w)} must have a known height and width.")
    return kh, kw, c, o


def _input_grad(g: Tensor, w: Tensor, like: Tensor, attrs: dict) -> Tensor:
    """The gradient with respect to a conv input shaped like ``like`` (its size read at run time if needed)."""
    hw, extra = _size_of(like)
    return apply("Conv2DBackpropInput", g, w, *extra, input_hw=hw, **attrs)


def _filter_grad(x: Tensor, g: Tensor, w_shape, attrs: dict) -> Tensor:
    return apply("Conv2DBackpropFilter", x, g, filter_hw=list(w_shape[:2]), **attrs)


@register_op
class Conv2D:
    """NHWC convolution with HWIO filters."""

    def infer(x, w, *, strides, dilations, padding):
        n, h, wd, c = _check_image(x, "input")
        kh, kw, wc, o = _check_filters(w, x)
        if not _same(c, wc):
            raise infer_error(
                f"input {describe(x)} has {c} channels but filters {describe(w)} expect {wc} "
                "(filters are [height, width, in_channels, out_channels])."
            )
        out, _ = _geometry((h, wd), (kh, kw), strides, dilations, padding)
        _check_fits(out, (h, wd), (kh, kw), dilations, padding)
        return x.dtype, (n, out[0], out[1], o)

    def forward(x, w, *, strides, dilations, padding):
        if x.shape[3] != w.shape[2]:
            raise ValueError(f"input has {x.shape[3]} channels but the filters expect {w.shape[2]}.")
        _, pads = _runtime_geometry(x.shape[1:3], w.shape[:2], strides, dilations, padding)
        return kernels["conv2d"](x, w, strides, dilations, pads)

    def vjp(g, out, x, w, **attrs):
        return _input_grad(g, w, x, attrs), _filter_grad(x, g, w.shape, attrs)


@register_op
class Conv2DBackpropInput:
    """Gradient of Conv2D with respect to its input; also the transposed convolution.

    Inputs: the output gradient, the filters, and optionally the input's size as a [4] int tensor
    (when the static ``input_hw`` attr has unknown entries).
    """

    def infer(g, w, sizes=None, *, input_hw, strides, dilations, padding):
        n, oh, ow, o = _check_image(g, "input")
        kh, kw, c, wo = _check_filters(w, g)
        if not _same(o, wo):
            raise infer_error(
                f"input {describe(g)} has {o} channels but filters {describe(w)} take {wo} "
                "(their last dimension)."
            )
        if None in input_hw and sizes is None:
            raise infer_error("the input size is not known statically; pass it as a tensor.")
        out, _ = _geometry(input_hw, (kh, kw), strides, dilations, padding)
        if not (_same(out[0], oh) and _same(out[1], ow)):
            raise infer_error(
                f"an input of height {input_hw[0]} and width {input_hw[1]} gives outputs of "
                f"{out[0]}x{out[1]}, not {oh}x{ow} as {describe(g)} has (strides {list(strides)}, "
                f"padding {padding!r})."
            )
        return g.dtype, (n, input_hw[0], input_hw[1], c)

    def forward(g, w, sizes=None, *, input_hw, strides, dilations, padding):
        hw = _sizes_hw(sizes, input_hw)
        out, pads = _runtime_geometry(hw, w.shape[:2], strides, dilations, padding)
        if tuple(g.shape[1:3]) != out or g.shape[3] != w.shape[3]:
            raise ValueError(
                f"an input of size {hw[0]}x{hw[1]} gives outputs of {out[0]}x{out[1]}x{w.shape[3]} with these "
                f"filters, strides and padding, but the gradient has shape {list(g.shape)}."
            )
        return kernels["conv2d_backprop_input"](g, w, hw, strides, dilations, pads)

    def vjp(gg, out, g, w, sizes=None, *, input_hw, **attrs):
        grads = (apply("Conv2D", gg, w, **attrs), _filter_grad(gg, g, w.shape, attrs))
        return grads if sizes is None else (*grads, None)


@register_op
class Conv2DBackpropFilter:
    """Gradient of Conv2D with respect to its filters, from the input and the output gradient."""

    def infer(x, g, *, filter_hw, strides, dilations, padding):
        _, h, wd, c = _check_image(x, "input")
        _, oh, ow, o = _check_image(g, "gradient")
        if g.dtype is not x.dtype:
            raise infer_error(f"gradient {describe(g)} must have the dtype of the input {describe(x)}.")
        out, _ = _geometry((h, wd), filter_hw, strides, dilations, padding)
        if not (_same(out[0], oh) and _same(out[1], ow)):
            raise infer_error(f"input {describe(x)} gives outputs of {out[0]}x{out[1]}, not {describe(g)}.")
        return x.dtype, (filter_hw[0], filter_hw[1], c, o)

    def forward(x, g, *, filter_hw, strides, dilations, padding):
        out, pads = _runtime_geometry(x.shape[1:3], filter_hw, strides, dilations, padding)
        if tuple(g.shape[1:3]) != out:
            raise ValueError(f"input of shape {list(x.shape)} gives outputs of {out}, not {list(g.shape)}.")
        return kernels["conv2d_backprop_filter"](x, g, tuple(filter_hw), strides, dilations, pads)

    def vjp(gw, out, x, g, *, filter_hw, **attrs):
        return _input_grad(g, gw, x, attrs), apply("Conv2D", x, gw, **attrs)


def _pool_infer(x: Tensor, ksize, strides, padding):
    n, h, w, c = _check_image(x, "input")
    out, _ = _geometry((h, w), ksize, strides, (1, 1), padding)
    _check_fits(out, (h, w), ksize, (1, 1), padding)
    return x.dtype, (n, out[0], out[1], c)


@register_op
class MaxPool:
    """Maximum over each window; padding never wins."""

    def infer(x, *, ksize, strides, padding):
        return _pool_infer(x, ksize, strides, padding)

    def forward(x, *, ksize, strides, padding):
        _, pads = _runtime_geometry(x.shape[1:3], ksize, strides, (1, 1), padding)
        return kernels["max_pool"](x, ksize, strides, pads)

    def vjp(g, out, x, **attrs):
        return (apply("MaxPoolGrad", x, out, g, **attrs),)


@register_op
class MaxPoolGrad:
    """Gradient of MaxPool: each output's gradient goes to its window's (first) maximum."""

    differentiable = False

    def infer(x, out, g, *, ksize, strides, padding):
        return x.dtype, x.shape

    def forward(x, out, g, *, ksize, strides, padding):
        _, pads = _runtime_geometry(x.shape[1:3], ksize, strides, (1, 1), padding)
        return kernels["max_pool_grad"](x, out, g, ksize, strides, pads)


@register_op
class AvgPool:
    """Mean over each window's real pixels."""

    def infer(x, *, ksize, strides, padding):
        return _pool_infer(x, ksize, strides, padding)

    def forward(x, *, ksize, strides, padding):
        _, pads = _runtime_geometry(x.shape[1:3], ksize, strides, (1, 1), padding)
        return kernels["avg_pool"](x, ksize, strides, pads)

    def vjp(g, out, x, **attrs):
        hw, extra = _size_of(x)
        return (apply("AvgPoolGrad", g, *extra, input_hw=hw, **attrs),)


@register_op
class AvgPoolGrad:
    """Gradient of AvgPool (linear in the gradient, so its own gradient is AvgPool)."""

    def infer(g, sizes=None, *, input_hw, ksize, strides, padding):
        n, _, _, c = _check_image(g, "gradient")
        return g.dtype, (n, input_hw[0], input_hw[1], c)

    def forward(g, sizes=None, *, input_hw, ksize, strides, padding):
        hw = _sizes_hw(sizes, input_hw)
        out, pads = _runtime_geometry(hw, ksize, strides, (1, 1), padding)
        if tuple(g.shape[1:3]) != out:
            raise ValueError(f"an input of size {hw[0]}x{hw[1]} pools to {out}, not {list(g.shape)}.")
        return kernels["avg_pool_grad"](g, hw, ksize, strides, pads)

    def vjp(gg, out, g, sizes=None, *, input_hw, **attrs):
        grad = apply("AvgPool", gg, **attrs)
        return (grad,) if sizes is None else (grad, None)


# -- public functions --------------------------------------------------------------------------------
def _nhwc(data_format: str, fn: str) -> None:
    if data_format != "NHWC":
        raise GraphError(f"{fn}: data_format {data_format!r} is not supported; expected one of ['NHWC'].")


def conv2d(
    x: Any,
    filters: Any,
    strides: Any = 1,
    padding: Any = "SAME",
    dilations: Any = 1,
    data_format: str = "NHWC",
    name: str | None = None,
) -> Tensor:
    """2-D convolution of NHWC images, as ``tf.nn.conv2d``.

    Args:
        x: ``[batch, height, width, in_channels]`` float tensor.
        filters: ``[height, width, in_channels, out_channels]`` tensor or Variable, same dtype.
        strides: an int, ``[sh, sw]`` or ``[1, sh, sw, 1]``.
        padding: ``"SAME"``, ``"VALID"`` or ``[[top, bottom], [left, right]]``.
        dilations: an int, ``[dh, dw]`` or ``[1, dh, dw, 1]``.
        data_format: only ``"NHWC"``.
        name: node name.

    Returns:
        ``[batch, out_height, out_width, out_channels]``.

    Raises:
        GraphError: ranks, dtypes or channel counts do not fit (the message names both shapes).

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     x = hk.placeholder(hk.float32, [None, 28, 28, 3])
    ...     y = hk.nn.conv2d(x, hk.constant(np.ones((3, 3, 3, 8), np.float32)), strides=2)
    >>> y.shape
    (None, 14, 14, 8)
    """
    _nhwc(data_format, "conv2d")
    attrs = {
        "strides": _pair(strides, "strides", "conv2d"),
        "dilations": _pair(dilations, "dilations", "conv2d"),
        "padding": _padding(padding, "conv2d"),
    }
    return apply("Conv2D", x, filters, name=name or "Conv2D", **attrs)


def conv2d_transpose(
    x: Any,
    filters: Any,
    output_shape: Any = None,
    strides: Any = 1,
    padding: Any = "SAME",
    dilations: Any = 1,
    data_format: str = "NHWC",
    name: str | None = None,
) -> Tensor:
    """The transposed convolution (gradient of :func:`conv2d` with respect to its input), as in TF.

    Args:
        x: ``[batch, height, width, in_channels]`` float tensor.
        filters: ``[height, width, out_channels, in_channels]`` (note the order, as in TF).
        output_shape: ``[batch, out_height, out_width, out_channels]`` as a list (entries may be None
            for the batch) or a [4] int tensor; by default ``height * stride`` for ``SAME`` and
            ``(height - 1) * stride + dilated kernel height`` for ``VALID``, as Keras computes it.
        strides, padding, dilations, data_format, name: as in :func:`conv2d`.

    Returns:
        A tensor of ``output_shape``.

    Raises:
        GraphError: the output shape does not convolve back to the shape of ``x``.
    """
    _nhwc(data_format, "conv2d_transpose")
    s = _pair(strides, "strides", "conv2d_transpose")
    d = _pair(dilations, "dilations", "conv2d_transpose")
    pad = _padding(padding, "conv2d_transpose")
    xt = as_tensor(x)
    wt = as_tensor(filters, graph=xt.graph)
    extra: list[Tensor] = []
    hw: list[int | None]
    if isinstance(output_shape, Tensor):
        hw = [None, None]
        extra = [output_shape]
    elif output_shape is not None:
        if not isinstance(output_shape, (list, tuple)) or len(output_shape) != 4:
            raise GraphError(f"conv2d_transpose: output_shape must have 4 entries (NHWC); got {output_shape!r}.")
        hw = [None if v is None else int(v) for v in output_shape[1:3]]
        c = output_shape[3]
        wc = wt.shape[2] if wt.shape is not None else None
        if c is not None and not _same(int(c), wc):
            raise GraphError(
                f"conv2d_transpose: output_shape {list(output_shape)} has {c} channels but filters "
                f"{describe(wt)} produce {wc} (filters are [height, width, out_channels, in_channels])."
            )
        if None in hw:
            raise GraphError(f"conv2d_transpose: output_shape {list(output_shape)} needs a known height and width.")
    else:
        hw = []
        for a in range(2):
            size = xt.shape[1 + a] if xt.shape is not None else None
            k = wt.shape[a] if wt.shape is not None else None
            if size is None or k is None or isinstance(pad, list):
                raise GraphError(
                    f"conv2d_transpose: pass output_shape; it cannot be derived from input {describe(xt)}, "
                    f"filters {describe(wt)} and padding {pad!r}."
                )
            hw.append(size * s[a] if pad == "SAME" else (size - 1) * s[a] + (k - 1) * d[a] + 1)
    return apply(
        "Conv2DBackpropInput", xt, wt, *extra, name=name or "conv2d_transpose",
        input_hw=hw, strides=s, dilations=d, padding=pad,
    )


def _pool(op: str, fn: str, x, ksize, strides, padding, data_format, name) -> Tensor:
    _nhwc(data_format, fn)
    k = _pair(ksize, "ksize", fn)
    s = k if strides is None else _pair(strides, "strides", fn)
    return apply(op, x, name=name or op, ksize=k, strides=s, padding=_padding(padding, fn, explicit=False))


def max_pool2d(
    x: Any, ksize: Any, strides: Any = None, padding: str = "VALID", data_format: str = "NHWC", name: str | None = None
) -> Tensor:
    """Max pooling of NHWC images, as ``tf.nn.max_pool2d`` (``strides`` default to ``ksize``).

    Args:
        x: ``[batch, height, width, channels]`` float tensor.
        ksize: window size: an int, ``[kh, kw]`` or ``[1, kh, kw, 1]``.
        strides: like ``ksize``; None means ``ksize`` (non-overlapping windows).
        padding: ``"SAME"`` or ``"VALID"``; padded pixels never win.
        data_format: only ``"NHWC"``.
        name: node name.

    Returns:
        The pooled tensor; its gradient flows to the maximum of each window.
    """
    return _pool("MaxPool", "max_pool2d", x, ksize, strides, padding, data_format, name)


def avg_pool2d(
    x: Any, ksize: Any, strides: Any = None, padding: str = "VALID", data_format: str = "NHWC", name: str | None = None
) -> Tensor:
    """Average pooling of NHWC images, as ``tf.nn.avg_pool2d``; ``SAME`` padding is not counted.

    Args:
        x, ksize, strides, padding, data_format, name: as in :func:`max_pool2d`.

    Returns:
        The pooled tensor.
    """
    return _pool("AvgPool", "avg_pool2d", x, ksize, strides, padding, data_format, name)


max_pool = max_pool2d
avg_pool = avg_pool2d
