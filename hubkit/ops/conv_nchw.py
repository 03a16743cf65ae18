"""Channels-first (NCHW) 2-D convolution + bias + residual + activation in one step, for imported ONNX models.

The fused ONNX convolution steps of the plan optimiser (:mod:`hubkit.runtime.optimize_conv`) run here.
ONNX's layout stays as it is, with no transpose around the op: per image, the output ``(M, OH*OW)``
is the GEMM ``W[M, C*kh*kw] @ cols[C*kh*kw, OH*OW]``, which is already that image's NCHW block.
A 1x1 stride-1 convolution multiplies the image itself (no im2col); other kernels gather their taps
into a reused per-image column buffer (the 7x7 RGB stems: per block of output rows, see
:data:`IM2COL_BLOCK_MAX_CHANNELS`). The epilogue (bias, a residual tensor added before the
activation, ReLU/ReLU6) runs on each image's block right after its GEMM, in one Numba pass. 1x1
convolutions of several images on small maps run one GEMM over all of their pixels instead
(:data:`BATCH_GEMM_MAX_PIXELS`).

Float32 convolutions with few output pixels (7x7 to 14x14 maps, stride-2 layers) run as a pixel-major GEMM
on hubkit's LLVM tile kernel instead, where it measured faster (:mod:`hubkit.ops._conv_tile`).

3x3 stride-1 convolutions over enough tiles run Winograd F(4x4, 3x3) (:mod:`hubkit.ops._winograd43`):
its padded-input copy reads the NCHW image through a transposed view (the layout change costs
nothing there), and one Numba pass moves the NHWC product back to NCHW while it adds the bias and
residual and applies the activation.

:class:`PreparedConv` holds what the weights give once (the filter as a GEMM matrix, the bias, the
Winograd filter transform on first use); the plan's fold step rebuilds it only when a weight changes.
"""

from __future__ import annotations

import numpy as np

from hubkit.errors import OpError
from hubkit.ops import _conv_tile, _numba, _winograd43
from hubkit.ops._epilogue import activate
from hubkit.ops._scratch import RecycledOutputs, ScratchBuffers

__all__ = ["PreparedConv", "channel_affine_act", "conv_nchw_fused", "epilogue_nchw_"]

F43_MIN_CHANNELS = 32
F43_FILTER_PAIRS_PER_TILE = 16384
"""3x3 stride-1 convolutions with at least ``F43_MIN_CHANNELS`` input channels run Winograd F(4x4, 3x3)
when they have at least one 4x4 output tile (all images) per ``F43_FILTER_PAIRS_PER_TILE`` (input,
output) channel pairs: with fewer tiles, reading the 36 transformed filter slices costs more than the
multiplications it saves (512 -> 512 channels on one 7x7 image: 4 tiles, 2x slower than im2col; 16
images: 3x faster). ``python scripts/bench_onnx.py --layers`` prints the per-layer figures."""

_scratch = ScratchBuffers(keep_bytes=64 << 20)
outputs = RecycledOutputs(min_bytes=1 << 20, max_bytes=512 << 20)
"""Where the fused steps' outputs of 1 MB or more come from (memory reused across calls, no page faults)."""
_NUMBA_DTYPES = _numba.FLOAT_DTYPES


class PreparedConv:
    """An ONNX convolution's weights, ready for :func:`conv_nchw_fused`.

    Attributes:
        w2: ``[M, C*kh*kw]`` C-contiguous filter matrix.
        bias: ``[M]`` bias, or None.
        kernel: ``(kh, kw)``.
    """

    __slots__ = ("_tile", "_u43", "bias", "hwc", "kernel", "w2")

    def __init__(self, w: np.ndarray, bias: np.ndarray | None) -> None:
        if bias is not None and bias.shape != w.shape[:1]:  # the epilogue kernels read bias[k] for every channel
            raise OpError(f"a bias of shape {list(bias.shape)} for {w.shape[0]} output channels.")
        self.kernel = tuple(int(k) for k in w.shape[2:])
        self.w2 = np.ascontiguousarray(w.reshape(w.shape[0], -1))
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=self.w2.dtype)
        self._u43: _winograd43.Filters | None = None
        self._tile: np.ndarray | None = None
        self.hwc: np.ndarray | None = None  # [kh*kw*C, M], kept by hubkit.ops.conv_nhwc on first use

    def u43(self) -> _winograd43.Filters:
        """The Winograd F(4x4, 3x3) filter transform ``[36, C, M]`` (computed once), as ``Filters``."""
        if self._u43 is None:
            m = self.w2.shape[0]
            w = self.w2.reshape(m, -1, 3, 3).transpose(2, 3, 1, 0)  # HWIO
            self._u43 = _winograd43.Filters(_winograd43.filter_transform(w, self.w2.dtype))
        return self._u43

    def tile_packed(self, c: int) -> np.ndarray:
        """The filters packed for the pixel-major tile GEMM (:func:`hubkit.ops._conv_tile.pack_filters`, once)."""
        if self._tile is None:
            self._tile = _conv_tile.pack_filters(self.w2, c, *self.kernel)
        return self._tile


def epilogue_kernel(out, bias, res, act):  # pragma: no cover - compiled by Numba
    """``out[i, k, j] = act(out[i, k, j] + bias[k] + res[i, k, j])`` (empty ``bias``/``res``: not added)."""
    n, m, p = out.shape
    has_bias = bias.shape[0] > 0
    has_res = res.shape[0] > 0
    zero = out.dtype.type(0)
    for i in range(n):
        for k in range(m):
            row = out[i, k]
            b = bias[k] if has_bias else zero
            for j in range(p):
                v = row[j]
                if has_bias:
                    v = v + b
                if has_res:
                    v = v + res[i, k, j]
                row[j] = activate(v, act)


def transpose_epilogue_kernel(src, bias, res, act, out):  # pragma: no cover - compiled by Numba
    """``out[i, k, j] = act(src[i, j, k] + bias[k] + res[i, k, j])``: NHWC product to NCHW output."""
    n, p, m = src.shape
    has_bias = bias.shape[0] > 0
    has_res = res.shape[0] > 0
    zero = out.dtype.type(0)
    for i in range(n):
        for j0 in range(0, p, 64):
            j1 = min(p, j0 + 64)
            for k in range(m):
                b = bias[k] if has_bias else zero
                for j in range(j0, j1):
                    v = src[i, j, k]
                    if has_bias:
                        v = v + b
                    if has_res:
                        v = v + res[i, k, j]
                    out[i, k, j] = activate(v, act)


def _view3(a: np.ndarray) -> np.ndarray:
    """``a`` (N, M, ...) as an (N, M, P) view; its (M, ...) blocks must be C-contiguous (a channel slice is)."""
    v = a.view()
    v.shape = (a.shape[0], a.shape[1], -1)  # raises rather than copying
    return v


def epilogue_nchw_(out: np.ndarray, bias: np.ndarray | None, res: np.ndarray | None, act: int) -> np.ndarray:
    """``out = act(out + bias[channel] + res)`` in place on an ``(N, M, ...)`` ``out`` whose ``(M, ...)`` blocks
    are C-contiguous (a whole array, or a channel slice of one); returns it."""
    if out.size == 0 or (bias is None and res is None and act == 0):
        return out
    m = out.shape[1]
    o3 = _view3(out)
    if out.dtype in _NUMBA_DTYPES:
        fast = _numba.kernel(epilogue_kernel)
        if fast is not None:
            b = np.empty(0, out.dtype) if bias is None else np.ascontiguousarray(bias, dtype=out.dtype)
            r: np.ndarray = (
                np.empty((0, 0, 0), out.dtype) if res is None else np.ascontiguousarray(res, out.dtype).reshape(o3.shape)
            )
            if o3.flags.c_contiguous:
                fast(o3, b, r, act)
            else:  # a channel slice: image by image, each block contiguous (Numba's fast 'C' layout)
                for i in range(o3.shape[0]):
                    fast(o3[i : i + 1], b, r[i : i + 1] if r.shape[0] else r, act)
            return out
    if bias is not None:
        np.add(o3, bias.reshape(m, 1), out=o3)
    if res is not None:
        np.add(o3, res.reshape(o3.shape), out=o3)
    if act == 1:
        np.maximum(o3, 0, out=o3)
    elif act == 2:
        np.clip(o3, 0, 6, out=o3)
    return out


def conv_nchw_fused(
    x: np.ndarray,
    prep: PreparedConv,
    res: np.ndarray | None,
    act: int,
    strides,
    dilations,
    begin,
    end,
    out_hw,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``act(conv2d(x) + bias + res)`` of NCHW ``x``: ``(N, M, OH, OW)``.

    Args:
        x: ``(N, C, H, W)`` input of the filter's dtype.
        prep: the prepared filter and bias (group 1).
        res: a tensor of the output's shape added before the activation, or None.
        act: 0 none, 1 ReLU, 2 ReLU6.
        strides, dilations, begin, end, out_hw: the window geometry (pads at the begin and end of H and W).
        out: where to write the result (returned): an ``(N, M, OH, OW)`` array of the filter's dtype whose
            ``(M, OH, OW)`` blocks are C-contiguous, e.g. this convolution's channels of a concatenation.
    """
    n, c = x.shape[:2]
    kh, kw = prep.kernel
    m, ck = prep.w2.shape
    if ck != c * kh * kw:
        raise ValueError(f"input has {c} channels but the filters expect {ck // (kh * kw)}.")
    oh, ow = out_hw
    p = oh * ow
    dtype = prep.w2.dtype
    x = np.ascontiguousarray(x, dtype=dtype)
    if res is not None and res.shape != (n, m, oh, ow):
        raise ValueError(f"residual of shape {res.shape} does not match the output {(n, m, oh, ow)}.")
    if out is None:
        y = outputs.empty((n, m, oh, ow), dtype)
    elif out.shape != (n, m, oh, ow) or out.dtype != dtype:
        raise ValueError(f"out of shape {out.shape} and dtype {out.dtype} for a {(n, m, oh, ow)} {dtype} result.")
    else:
        y = out
    if y.size == 0:
        return y
    sh, sw = strides
    dh, dw = dilations
    if (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1) and _use_f43(n, c, m, oh, ow, begin, dtype):
        src = _scratch.get("nhwc", n * p * m, dtype)[: n * p * m].reshape(n, oh, ow, m)
        if _winograd43.conv3x3_bias_act(
            x.transpose(0, 2, 3, 1), prep.u43(), None, 0, ((begin[0], end[0]), (begin[1], end[1])), src
        ):
            fast = _numba.kernel(transpose_epilogue_kernel)
            if fast is not None:
                b = np.empty(0, dtype) if prep.bias is None else prep.bias
                r = np.empty((0, 0, 0), dtype) if res is None else np.ascontiguousarray(res, dtype).reshape(n, m, p)
                src3, y3 = src.reshape(n, p, m), _view3(y)
                if y3.flags.c_contiguous:
                    fast(src3, b, r, act, y3)
                else:  # a channel slice: image by image (contiguous blocks)
                    for i in range(n):
                        fast(src3[i : i + 1], b, r[i : i + 1] if r.shape[0] else r, act, y3[i : i + 1])
                return y
            y[...] = src.transpose(0, 3, 1, 2)
            return epilogue_nchw_(y, prep.bias, res, act)
    pointwise = kh == kw == 1 and not any(begin) and not any(end)
    if not pointwise and _conv_tile.wanted(c, m, kh, kw, strides, False, p, dtype):
        return _tile(x, prep, res, act, strides, dilations, begin, end, out_hw, y)
    max_pixels = BATCH_GEMM_MAX_PIXELS if sh == sw == 1 else BATCH_GEMM_MAX_PIXELS_STRIDED
    if pointwise and n > 1 and p <= max_pixels and m >= BATCH_GEMM_MIN_OUTPUTS and dtype in _NUMBA_DTYPES:
        fast = _numba.kernel(batch_epilogue_kernel)
        if fast is not None:
            return _pointwise_one_gemm(x, prep, res, act, strides, (oh, ow), y, fast)
    if pointwise and _conv_tile.wanted(c, m, kh, kw, strides, True, p, dtype):
        return _tile(x, prep, res, act, strides, dilations, begin, end, out_hw, y)
    if pointwise and sh == sw == 1:
        np.matmul(prep.w2, x.reshape(n, c, p), out=_view3(y))
        return epilogue_nchw_(y, prep.bias, res, act)
    if pointwise:  # strided 1x1: the subsampled image, then one GEMM
        xs = np.ascontiguousarray(x[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw])
        np.matmul(prep.w2, xs.reshape(n, c, p), out=_view3(y))
        return epilogue_nchw_(y, prep.bias, res, act)
    return _im2col_nchw(x, prep, res, act, strides, dilations, begin, end, (oh, ow), y)


def _tile(x, prep: PreparedConv, res, act: int, strides, dilations, begin, end, out_hw, y) -> np.ndarray:
    """The pixel-major tile GEMM (:mod:`hubkit.ops._conv_tile`), bias and activation in its tiles; a residual
    is added afterwards (then the activation comes with it, in the same order of operations)."""
    c = x.shape[1]
    packed = prep.tile_packed(c)
    _conv_tile.conv_tile(
        x, packed, prep.bias, 0 if res is not None else act, prep.kernel, strides, dilations, begin, end, out_hw, y,
        _scratch,
    )
    return y if res is None else epilogue_nchw_(y, None, res, act)


BATCH_GEMM_MAX_PIXELS = 64
BATCH_GEMM_MIN_OUTPUTS = 192
"""1x1 convolutions of several images with at most ``BATCH_GEMM_MAX_PIXELS`` output pixels each (7x7 maps)
and at least ``BATCH_GEMM_MIN_OUTPUTS`` output channels run one GEMM over all images' pixels,
``W @ x[c, (image, pixel)]``, instead of one GEMM of 49 columns per image (a column count OpenBLAS runs
at 60-75 GFLOP/s): the input is copied channel-major first and the epilogue moves the product back to
NCHW. Same process, 16 images at 7x7: 512 -> 2048 channels 0.66-0.70x the time, 2048 -> 512 0.78-0.79x,
1024 -> 2048 at stride 2 0.60-0.65x, 832 -> 384 0.83-0.85x, 1024 -> 256 0.88-0.89x, 480 -> 192 0.93-0.98x;
with fewer outputs the copy of the input costs more than the GEMM gains (1024 -> 128: 1.08-1.12x,
128 -> 32: 1.5x). 14x14 maps (196 columns) were 1.0-1.15x, except for strided 1x1 convolutions, which
copy their (subsampled) input anyway: up to ``BATCH_GEMM_MAX_PIXELS_STRIDED`` output pixels, 512 -> 1024
channels from 28x28 to 14x14 0.84-0.88x (56x56 to 28x28: 0.95-1.02x, left per image)."""
BATCH_GEMM_MAX_PIXELS_STRIDED = 196


def _pointwise_one_gemm(x, prep: PreparedConv, res, act: int, strides, out_hw, y, fast) -> np.ndarray:
    """A 1x1 convolution of all images as one GEMM over their pixels (see :data:`BATCH_GEMM_MAX_PIXELS`)."""
    n, c = x.shape[:2]
    m = prep.w2.shape[0]
    oh, ow = out_hw
    p = oh * ow
    sh, sw = strides
    dtype = prep.w2.dtype
    xt = _scratch.get("channel_major", c * n * p, dtype)[: c * n * p].reshape(c, n, oh, ow)
    np.copyto(xt, x[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw].transpose(1, 0, 2, 3))
    src = _scratch.get("block", m * n * p, dtype)[: m * n * p].reshape(m, n, p)
    np.matmul(prep.w2, xt.reshape(c, n * p), out=src.reshape(m, n * p))
    b = np.empty(0, dtype) if prep.bias is None else prep.bias
    r3 = None if res is None else np.ascontiguousarray(res, dtype).reshape(n, m, p)
    no_res = np.empty((0, 0), dtype)
    y3 = _view3(y)
    for i in range(n):  # each image's (M, P) block is contiguous, also in a channel slice
        fast(src, b, no_res if r3 is None else r3[i], act, y3[i], i)
    return y


def batch_epilogue_kernel(src, bias, res, act, out, i):  # pragma: no cover - compiled by Numba
    """``out[k, j] = act(src[k, i, j] + bias[k] + res[k, j])`` (empty ``bias``/``res``: not added): image ``i``
    of a channel-major ``(M, N, P)`` product into its ``(M, P)`` NCHW block."""
    m, _, q = src.shape
    has_bias = bias.shape[0] > 0
    has_res = res.shape[0] > 0
    zero = out.dtype.type(0)
    for k in range(m):
        s = src[k, i]
        d = out[k]
        r = res[k] if has_res else s
        b = bias[k] if has_bias else zero
        for j in range(q):
            v = s[j]
            if has_bias:
                v = v + b
            if has_res:
                v = v + r[j]
            d[j] = activate(v, act)


def _im2col_nchw(x, prep: PreparedConv, res, act: int, strides, dilations, begin, end, out_hw, y) -> np.ndarray:
    """Image by image: gather the taps (im2col), one GEMM into the image's output, the epilogue in place.

    Inputs of few channels with many bytes of columns (:data:`IM2COL_BLOCK_MAX_CHANNELS`) go block of output
    rows by block instead: the block's GEMM writes a scratch block that the epilogue moves into ``y``
    while both are in cache, and at stride 2 the taps come from the image's four parity planes.
    """
    n, c, h, wd = x.shape
    kh, kw = prep.kernel
    m, ck = prep.w2.shape
    oh, ow = out_hw
    p = oh * ow
    sh, sw = strides
    dh, dw = dilations
    dtype = prep.w2.dtype
    fast = _numba.kernel(block_epilogue_kernel) if dtype in _NUMBA_DTYPES else None
    rows = _block_rows(c, ck, m, oh, ow) if fast is not None else oh
    padded = any(begin) or any(end)
    hp, wp = h + begin[0] + end[0], wd + begin[1] + end[1]
    xp = _scratch.get("padded", c * hp * wp, dtype)[: c * hp * wp].reshape(c, hp, wp)
    cols_buf = _scratch.get("cols", ck * rows * ow, dtype)
    y3 = _view3(y)
    phases = None
    if rows < oh:
        blk_buf = _scratch.get("block", m * rows * ow, dtype)
        b = np.empty(0, dtype) if prep.bias is None else prep.bias
        r3 = None if res is None else np.ascontiguousarray(res, dtype).reshape(n, m, p)
        no_res = np.empty((0, 0), dtype)
        if sh == sw == 2 and dh == dw == 1:
            ph, pw = (hp + 1) // 2, (wp + 1) // 2
            phases = _scratch.get("phases", 4 * c * ph * pw, dtype)[: 4 * c * ph * pw].reshape(2, 2, c, ph, pw)
    if padded:
        xp[:, : begin[0]] = 0
        xp[:, hp - end[0] :] = 0
        xp[:, :, : begin[1]] = 0
        xp[:, :, wp - end[1] :] = 0
    for i in range(n):
        if padded:
            xp[:, begin[0] : begin[0] + h, begin[1] : begin[1] + wd] = x[i]
            img = xp
        else:
            img = x[i]
        if phases is not None:  # stride 2: the four (row, column) parity planes, then stride-1 gathers
            for u in range(2):
                for v in range(2):
                    sub = img[:, u::2, v::2]
                    phases[u, v, :, : sub.shape[1], : sub.shape[2]] = sub
        for r0 in range(0, oh, rows):
            r1 = min(oh, r0 + rows)
            q = (r1 - r0) * ow
            cols = cols_buf[: ck * q].reshape(c, kh, kw, r1 - r0, ow)
            for ta in range(kh):
                for tb in range(kw):
                    if phases is not None:
                        pa, pb = ta // 2 + r0, tb // 2
                        cols[:, ta, tb] = phases[ta % 2, tb % 2, :, pa : pa + r1 - r0, pb : pb + ow]
                    else:
                        ra, cb = ta * dh + r0 * sh, tb * dw
                        cols[:, ta, tb] = img[:, ra : ra + (r1 - r0 - 1) * sh + 1 : sh, cb : cb + (ow - 1) * sw + 1 : sw]
            if rows < oh:
                blk = blk_buf[: m * q].reshape(m, q)
                np.matmul(prep.w2, cols.reshape(ck, q), out=blk)
                fast(blk, b, no_res if r3 is None else r3[i], act, y3[i], r0 * ow)  # type: ignore[misc]
            else:
                np.matmul(prep.w2, cols.reshape(ck, q), out=y3[i])
        if rows == oh:
            epilogue_nchw_(y3[i : i + 1], prep.bias, None if res is None else res[i : i + 1], act)
    return y


IM2COL_BLOCK_BYTES = 1536 << 10
IM2COL_BLOCK_MAX_CHANNELS = 16
"""Im2col convolutions of at most ``IM2COL_BLOCK_MAX_CHANNELS`` input channels whose columns take more than
``2 * IM2COL_BLOCK_BYTES`` per image (the 7x7 RGB stems of ResNet-50, DenseNet-121 and Inception v1: 7.4 MB)
work in blocks of output rows holding about ``IM2COL_BLOCK_BYTES`` of columns and GEMM output, and gather
stride-2 taps from the image's parity planes: 0.81-0.87x the time of the whole-image form (1 and 4 images,
same process). The 3x3 RGB stem (1.3 MB of columns) ran 1.01-1.14x, SqueezeNet's 16-channel 3x3 layers
(1.7 MB) 0.9-1.03x, the stride-2 layers of 128-512 channels 1.0-1.2x in blocks: they stay whole."""


def _block_rows(c: int, ck: int, m: int, oh: int, ow: int) -> int:
    if c > IM2COL_BLOCK_MAX_CHANNELS or 4 * ck * oh * ow <= 2 * IM2COL_BLOCK_BYTES:
        return oh
    return max(1, min(oh, IM2COL_BLOCK_BYTES // (4 * (ck + m) * ow)))


def block_epilogue_kernel(src, bias, res, act, out, j0):  # pragma: no cover - compiled by Numba
    """``out[k, j0 + j] = act(src[k, j] + bias[k] + res[k, j0 + j])`` (empty ``bias``/``res``: not added):
    one im2col block's GEMM product into its columns of the image's ``(M, P)`` output."""
    m, q = src.shape
    has_bias = bias.shape[0] > 0
    has_res = res.shape[0] > 0
    zero = out.dtype.type(0)
    for k in range(m):
        s = src[k]
        d = out[k, j0 : j0 + q]
        r = res[k, j0 : j0 + q] if has_res else s
        b = bias[k] if has_bias else zero
        for j in range(q):
            v = s[j]
            if has_bias:
                v = v + b
            if has_res:
                v = v + r[j]
            d[j] = activate(v, act)


def _use_f43(n: int, c: int, m: int, oh: int, ow: int, begin, dtype) -> bool:
    tiles = n * -(-oh // 4) * -(-ow // 4)
    return (
        c >= F43_MIN_CHANNELS
        and tiles * F43_FILTER_PAIRS_PER_TILE >= c * m
        and max(begin) <= 2
        and dtype in _NUMBA_DTYPES
        and _winograd43.available()
    )


def channel_affine_kernel(x, scale, shift, act, out):  # pragma: no cover - compiled by Numba
    """``out[i, k, j] = act(x[i, k, j] * scale[k] + shift[k])``."""
    n, m, p = x.shape
    for i in range(n):
        for k in range(m):
            s = scale[k]
            t = shift[k]
            src = x[i, k]
            dst = out[i, k]
            for j in range(p):
                dst[j] = activate(src[j] * s + t, act)


def channel_affine_act(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, act: int) -> np.ndarray:
    """``act(x * scale[channel] + shift[channel])`` of an ``(N, C, ...)`` ``x``, into a new array."""
    n, m = x.shape[:2]
    dtype = x.dtype
    s = np.ascontiguousarray(scale, dtype=dtype).reshape(m)
    t = np.ascontiguousarray(shift, dtype=dtype).reshape(m)
    out = outputs.empty(x.shape, dtype)
    fast = _numba.kernel(channel_affine_kernel) if dtype in _NUMBA_DTYPES and out.size else None
    if fast is not None:
        fast(np.ascontiguousarray(x).reshape(n, m, -1), s, t, act, out.reshape(n, m, -1))
        return out
    shape = (m,) + (1,) * (x.ndim - 2)
    np.multiply(x, s.reshape(shape), out=out)
    np.add(out, t.reshape(shape), out=out)
    if act == 1:
        np.maximum(out, 0, out=out)
    elif act == 2:
        np.clip(out, 0, 6, out=out)
    return out
