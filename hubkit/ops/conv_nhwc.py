"""Channels-last (NHWC) 2-D convolution + bias + residual + activation in one step, for imported ONNX models.

The channels-last regions of the plan optimiser (:mod:`hubkit.runtime.optimize_layout`) run their
convolutions here. Channels-last, a convolution is one pixel-major GEMM with no transpose on either
side: ``columns[N*OH*OW, kh*kw*C] @ W[kh*kw*C, M]`` is the ``(N, OH, OW, M)`` output itself, and a
concatenation's channel slice is the same product written with a longer row stride.

- A 1x1 stride-1 unpadded convolution multiplies the input in place (no copy); a strided one its
  subsampled copy.
- Other kernels with no width dilation are an implicit GEMM: the tile kernel reads each window's kernel
  rows from the (zero-bordered) input in place (:mod:`hubkit.ops._conv_taps`); with two or more BLAS
  threads, half of its tiles on the worker thread.
- Otherwise they gather their columns (taps in ``(kh, kw, C)`` order, zeros for padding) with a Numba
  kernel (:mod:`hubkit.ops._nhwc_gather`), in chunks of about :data:`CHUNK_BYTES` so that each chunk's
  columns stay in L2 for its GEMM; on one thread the gathers and the tile GEMMs of all chunks run in one
  compiled call (:mod:`hubkit.ops._nhwc_gather_gemm`).
- 3x3 stride-1 layers with enough tiles per filter run Winograd F(4x4, 3x3)
  (:func:`hubkit.ops._winograd43.conv3x3_bias_act`, whose input and output are NHWC already), on the
  criteria of :mod:`hubkit.ops.conv_nchw`.
- The GEMM is hubkit's tile kernel (:func:`hubkit.ops._packed_gemm.packed_matmul`: float32, AVX-512 or AVX2;
  the filters packed once per :class:`~hubkit.ops.conv_nchw.PreparedConv`; with two or more BLAS threads
  half of the rows on the worker thread, :mod:`hubkit.ops._split_rows`) with bias and activation in its
  registers, or else ``np.matmul`` with the ``[kh*kw*C, M]`` filter matrix and a
  Numba (or NumPy) epilogue. A residual is added after the GEMM, then the activation, in the order the
  separate ops use.

Results differ from :func:`hubkit.ops.conv_nchw.conv_nchw_fused`'s by summation order only.
"""

from __future__ import annotations

import numpy as np

from hubkit.errors import OpError
from hubkit.ops import _conv_taps, _numba, _packed_gemm, _winograd43
from hubkit.ops._epilogue import activate, bias_act_
from hubkit.ops._gemm_kernel import AVX512_MR
from hubkit.ops._nhwc_gather import gather_kernel
from hubkit.ops._nhwc_gather_gemm import gathered_tile_conv
from hubkit.ops._split_rows import split_rows
from hubkit.ops.conv_nchw import _NUMBA_DTYPES, PreparedConv, _scratch, _use_f43, outputs

__all__ = ["CHUNK_BYTES", "channel_affine_nhwc", "checked_geometry", "conv_nhwc_fused", "form", "to_nhwc"]

_F32 = np.dtype(np.float32)

CHUNK_BYTES = 1 << 20
"""Bytes of gathered columns per GEMM: a chunk's columns stay in L2 while its GEMM reads them."""


@_numba.helper
def _interleave(x, out, c):  # pragma: no cover - compiled by Numba
    """:func:`to_nhwc_kernel` pixel by pixel, for a constant ``c``: LLVM then vectorises the interleaved stores."""
    n, _, h, w = x.shape
    for i in range(n):
        for y in range(h):
            dst = out[i, y].reshape(w * c)
            for j in range(w):
                for k in range(c):
                    dst[j * c + k] = x[i, k, y, j]


def to_nhwc_kernel(x, out):  # pragma: no cover - compiled by Numba
    """``out[i, y, x, c] = x[i, c, y, x]``: each image row read channel by channel along contiguous pixels, or pixel
    by pixel for 3 and 4 channels (images: 1x3x224x224 51.6 -> 24.1 us, 2x4x224x224 134 -> 61 us, one thread, Zen 3;
    with any other count the pixel loop is 2-6x slower, its inner loop not being vectorised)."""
    n, c, h, w = x.shape
    if c == 3:
        _interleave(x, out, 3)
        return
    if c == 4:
        _interleave(x, out, 4)
        return
    for i in range(n):
        for y in range(h):
            dst = out[i, y].reshape(w * c)
            for k in range(c):
                src = x[i, k, y]
                for j in range(w):
                    dst[j * c + k] = src[j]


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """A new C-contiguous ``(N, H, W, C)`` copy of 4-D ``x`` (``(N, C, H, W)``); a Numba pass for few channels
    (NumPy's transposed copy of a 3-channel 224x224 image took 0.34 ms, 6x the time per value of 64 channels)."""
    n, c, h, w = x.shape
    out = outputs.empty((n, h, w, c), x.dtype)
    fast = _numba.kernel(to_nhwc_kernel) if c <= TO_NHWC_MAX_CHANNELS and x.dtype in _NUMBA_DTYPES else None
    if fast is not None and out.size:
        fast(np.ascontiguousarray(x), out)
    else:
        np.copyto(out, x.transpose(0, 2, 3, 1))
    return out


TO_NHWC_MAX_CHANNELS = 16
"""Inputs of at most this many channels are converted by :func:`to_nhwc_kernel` (more: NumPy's copy)."""


def channel_affine_kernel(x, ld, scale, shift, act, out):  # pragma: no cover - compiled by Numba
    """``out[r, k] = act(x[r * ld + k] * scale[k] + shift[k])`` over the rows of 2-D ``out``, ``x`` flat.

    ``x`` is 1-D and C-contiguous, its rows ``ld`` apart (a channel slice's, see :func:`channel_affine_nhwc`): each
    row is a contiguous slice of it, which vectorises; rows of a 2-D strided view did not (a 64-channel slice of a
    56x56x256 map: 139 us, against 50 us now and 30 us for a contiguous input)."""
    rows, c = out.shape
    for r in range(rows):
        src = x[r * ld : r * ld + c]
        dst = out[r]
        for k in range(c):
            dst[k] = activate(src[k] * scale[k] + shift[k], act)


def channel_affine_nhwc(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, act: int) -> np.ndarray:
    """``act(x * scale + shift)`` along the last axis of 4-D ``x`` (an imported batch norm), into a new array.

    ``x`` may be a channel slice (rows with unit stride along C). One Numba pass; NumPy's two when Numba is off.
    """
    c = x.shape[3]
    out = outputs.empty(x.shape, x.dtype)
    s = np.ascontiguousarray(scale, x.dtype).reshape(c)
    t = np.ascontiguousarray(shift, x.dtype).reshape(c)
    fast = _numba.kernel(channel_affine_kernel) if x.dtype in _NUMBA_DTYPES and out.size else None
    flat = _flat_rows(x) if fast is not None else None
    if fast is not None and flat is not None:
        fast(flat[0], flat[1], s, t, act, out.reshape(-1, c))
        return out
    np.multiply(x, s, out=out)
    return bias_act_(out.reshape(-1, c), t, act).reshape(x.shape)


def residual_act_kernel(y, res, act):  # pragma: no cover - compiled by Numba
    """``y[i, j] = act(y[i, j] + res[i, j])``, in place."""
    rows, cols = y.shape
    for i in range(rows):
        d = y[i]
        s = res[i]
        for j in range(cols):
            d[j] = activate(d[j] + s[j], act)


def _flat_rows(x: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(flat, ld)``: 4-D ``x``'s values from its first row's start to its last row's end as one flat C-contiguous
    read-only view, its ``(N*H*W, C)`` rows ``ld`` values apart; None when its rows are not evenly spaced.

    For a channel slice of a C-contiguous array the view also holds the other channels between its rows: all of
    them inside the same buffer."""
    size = x.dtype.itemsize
    c = x.shape[3]
    if x.size == 0 or x.strides[3] != size:
        return None
    try:
        rows = _rows_view(x)
    except AttributeError:  # rows not evenly spaced (e.g. a slice along H): no 2-D view
        return None
    ld, rem = divmod(rows.strides[0], size)
    if rem or (ld < c and rows.shape[0] > 1):
        return None
    span = (rows.shape[0] - 1) * ld + c
    return np.lib.stride_tricks.as_strided(rows, shape=(span,), strides=(size,), writeable=False), ld


def _rows_view(a: np.ndarray) -> np.ndarray:
    """``a`` (N, OH, OW, M) as an (N*OH*OW, M) view (a channel slice of a C-contiguous array has one)."""
    v = a.view()
    v.shape = (-1, a.shape[3])  # raises rather than copying
    return v


def _residual_act(y2: np.ndarray, res: np.ndarray, act: int) -> None:
    r2 = np.ascontiguousarray(res, y2.dtype).reshape(y2.shape)
    fast = _numba.kernel(residual_act_kernel) if y2.dtype in _NUMBA_DTYPES else None
    if fast is not None:
        fast(y2, r2, act)
        return
    np.add(y2, r2, out=y2)
    bias_act_(y2, None, act)


F43_MIN_TILES = 48
F43_MIN_TILES_WIDE = 16
F43_MIN_WIDTH = 48
"""Channels-last 3x3 stride-1 convolutions run Winograd F(4x4, 3x3) (besides :mod:`hubkit.ops.conv_nchw`'s
conditions on channels, pads and dtype) with at least ``F43_MIN_TILES`` 4x4 output tiles in all images,
or ``F43_MIN_TILES_WIDE`` when ``C * M / (C + M)`` (what a tile's products save over what its transforms
cost) is at least ``F43_MIN_WIDTH``; otherwise gathered columns on the GEMM, which here costs no
transposes. Winograd / GEMM time, one thread, one image: 4 tiles (7x7 maps) 1.11-1.64 (128 -> 32,
160 -> 320, 192 -> 384, 512 -> 512 channels); 16 tiles: 128 -> 32 1.11, 48 -> 192 1.06, 64 -> 256 0.81,
96 -> 208 0.64, 256 -> 256 0.56; 49 tiles: 32 -> 128 0.68, 128 -> 32 0.84; 16 images: 128 -> 32 on 7x7
(64 tiles) 0.90, 48 -> 192 on 13x13 0.86, 160 -> 320 on 7x7 0.51."""


def _winograd_wins(n: int, c: int, m: int, oh: int, ow: int, begin, dtype, taps: bool = False,
                   split: bool = False) -> bool:
    """Whether Winograd F(4x4, 3x3) runs; ``taps``: the windows could be read in place (:mod:`hubkit.ops._conv_taps`),
    ``split``: over two threads."""
    tiles = n * -(-oh // 4) * -(-ow // 4)
    if taps and (split or _packed_gemm._STATE.mr >= F43_TAPS_MIN_MR) and (
        c <= F43_TAPS_MAX_C or tiles < F43_TAPS_MIN_TILES
    ):
        return False
    enough = tiles >= F43_MIN_TILES or (tiles >= F43_MIN_TILES_WIDE and c * m >= F43_MIN_WIDTH * (c + m))
    return enough and _use_f43(n, c, m, oh, ow, begin, dtype)


F43_TAPS_MAX_C = 32
F43_TAPS_MIN_TILES = 32
"""Where the windows can be read in place, Winograd runs only on more than :data:`F43_TAPS_MAX_C` input channels
and at least :data:`F43_TAPS_MIN_TILES` tiles. Its transformed filters are four times the filters' size, and in a
model they come from memory: SqueezeNet's 32 -> 128 on 27x27 (49 tiles) and 64 -> 256 on 13x13 (16) took 1.9x /
1.5x onnxruntime's time in the model at batch 1, against 0.96-1.06x of its own in-place form warm. SqueezeNet
against onnxruntime, same process: batch 1 1.53x -> 1.35x, batch 16 1.20x -> 1.18x; ResNet-50 has no such layer.

That was with 13-row tiles, which cover a 13- or 27-pixel row in one or two tiles. With 6-row tiles (AVX2) the
rows split into short tiles (13 pixels: 5, 4, 4), and on one thread Winograd is faster there: SqueezeNet at one
image, Zen 3, same process, 9.43 -> 9.02 ms without the rule. Split over two threads the rule still pays (the tap
form splits on hubkit's worker, Winograd on a Python thread): 5.77 ms with it, 7.06 without."""

F43_TAPS_MIN_MR = AVX512_MR
"""Tile rows from which the rule above applies on one thread."""


def _tile_runs(dtype) -> int:
    """0: np.matmul; 1: the tile GEMM on this thread; 2 (two or more BLAS threads): the tile GEMM with half
    of the rows on the worker thread (:mod:`hubkit.ops._split_rows`)."""
    if dtype != _F32 or not _packed_gemm._tile_host() or not _packed_gemm.available():
        return 0
    return 1 if _packed_gemm.blas_threads() == 1 else 2


def _filter_matrix(prep: PreparedConv, c: int) -> np.ndarray:
    """``[kh*kw*C, M]`` filters (depth in ``(kh, kw, C)`` order) for np.matmul, kept on ``prep``."""
    cached = prep.hwc
    if cached is None:
        m = prep.w2.shape[0]
        kh, kw = prep.kernel
        cached = np.ascontiguousarray(prep.w2.reshape(m, c, kh, kw).transpose(2, 3, 1, 0).reshape(kh * kw * c, m))
        prep.hwc = cached
    return cached


def _gemm(a: np.ndarray, prep: PreparedConv, c: int, act: int, tile: int, y2: np.ndarray, accumulate=False) -> None:
    """``y2 = act(a @ W + bias)`` (rows of ``a``: pixels; ``y2`` may have a longer row stride); with
    ``accumulate`` (the tile GEMM only), ``y2 = act(y2 + a @ W + bias)``. ``tile``: :func:`_tile_runs`."""
    m = prep.w2.shape[0]
    if tile == 2:
        a = np.ascontiguousarray(a)
        if split_rows(a, prep.tile_packed(c), m, prep.bias, act, y2, accumulate) is not None:
            return
    if tile and _packed_gemm.packed_matmul(a, prep.tile_packed(c), m, prep.bias, act, y2, accumulate) is not None:
        return
    if accumulate:  # conv_nhwc_fused adds a residual in place only where the tile GEMM runs
        raise OpError("a convolution cannot add its residual in place here (the tile GEMM did not run).")
    np.matmul(a, _filter_matrix(prep, c), out=y2)
    bias_act_(y2, prep.bias, act)  # a channel slice (strided rows) takes NumPy's passes


def checked_geometry(x_shape: tuple[int, ...], prep: PreparedConv, strides, dilations, begin, end,
                     out_hw) -> tuple[int, int, int, int, int, int, int, int]:
    """``(oh, ow, sh, sw, dh, dw, top, left)`` as Python integers, once they are checked against the 4-D NHWC
    input shape ``x_shape`` and the filters (:class:`~hubkit.errors.OpError` names what does not fit): every
    window inside the padded input, so the kernels' indices are too."""
    _, h, w, c = x_shape
    kh, kw = prep.kernel
    ck = prep.w2.shape[1]
    if ck != c * kh * kw:
        raise OpError(f"input has {c} channels but the filters expect {ck // (kh * kw)}.")
    oh, ow = map(int, out_hw)
    sh, sw = map(int, strides)
    dh, dw = map(int, dilations)
    top, left = map(int, begin)
    bottom, right = map(int, end)
    if (
        min(oh, ow, top, left, bottom, right) < 0 or min(sh, sw, dh, dw) < 1
        # Python integers: no wrap-around
        or (oh > 0 and (oh - 1) * sh + (kh - 1) * dh + 1 > h + top + bottom)
        or (ow > 0 and (ow - 1) * sw + (kw - 1) * dw + 1 > w + left + right)
    ):
        raise OpError(
            f"convolution geometry out of range for a {h}x{w} input: outputs {list(out_hw)}, strides {list(strides)}, "
            f"dilations {list(dilations)}, pads {list(begin)} / {list(end)}."
        )
    return oh, ow, sh, sw, dh, dw, top, left


def form(x_shape: tuple[int, ...], prep: PreparedConv, geometry: tuple[int, ...], tile: int) -> tuple[bool, bool, bool]:
    """``(taps, f43, pointwise)``: whether the tap form can run, whether Winograd runs, whether it is a 1x1
    unpadded convolution, for :func:`checked_geometry`'s ``geometry`` and ``tile`` (:func:`_tile_runs`)."""
    n, h, w, c = x_shape
    kh, kw = prep.kernel
    oh, ow, sh, sw, dh, dw, top, left = geometry
    taps = tile > 0 and dw == 1 and _conv_taps.fits(c, (kh, kw), sw)
    f43 = (kh, kw, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1) and _winograd_wins(
        n, c, prep.w2.shape[0], oh, ow, (top, left), prep.w2.dtype, taps, tile == 2)
    pointwise = kh == kw == 1 and top == left == 0 and (oh - 1) * sh < h and (ow - 1) * sw < w
    return taps, f43, pointwise


def conv_nhwc_fused(
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
    """``act(conv2d(x) + bias + res)`` of NHWC ``x``: ``(N, OH, OW, M)``.

    Args:
        x: ``(N, H, W, C)`` input of the filter's dtype.
        prep: the prepared filter and bias (group 1).
        res: an ``(N, OH, OW, M)`` tensor added before the activation, or None.
        act: 0 none, 1 ReLU, 2 ReLU6.
        strides, dilations, begin, end, out_hw: the window geometry (pads at the begin and end of H and W).
        out: where to write the result (returned): an ``(N, OH, OW, M)`` array of the filter's dtype with unit
            stride along M, e.g. this convolution's channels of a concatenation. ``out`` may be ``res`` itself
            (a residual nothing reads afterwards): the tile GEMM then adds its product to the residual in
            its registers (``act(res + conv + bias)``: the same sums, another order), with no pass of its
            own; where that cannot run, the result goes to a new array instead (returned).
    """
    if x.ndim != 4:
        raise OpError(f"a 2-D convolution needs a 4-D input, got shape {list(x.shape)}.")
    n, h, w, c = x.shape
    kh, kw = prep.kernel
    m, ck = prep.w2.shape
    oh, ow, sh, sw, dh, dw, top, left = checked_geometry(x.shape, prep, strides, dilations, begin, end, out_hw)
    dtype = prep.w2.dtype
    x = np.ascontiguousarray(x, dtype=dtype)
    shape = (n, oh, ow, m)
    if res is not None and res.shape != shape:
        raise OpError(f"residual of shape {list(res.shape)} does not match the output {list(shape)}.")
    tile = _tile_runs(dtype)
    taps, f43, pointwise = form(x.shape, prep, (oh, ow, sh, sw, dh, dw, top, left), tile)
    in_place = res is not None and out is res
    if res is not None and in_place and (
        not tile or f43 or ck == 0 or res.dtype != dtype or not res.flags.c_contiguous or res.strides[3] != dtype.itemsize
        or not res.flags.writeable or np.may_share_memory(x, res)
    ):
        out = None  # the residual is added after the GEMM, into a new array
        in_place = False
    if out is not None:
        _check_out(out, shape, dtype)
        if not in_place and (
            np.may_share_memory(x, out) or (res is not None and np.may_share_memory(res, out))
            or not _rows_of_one_stride(out)
        ):  # the kernels read x (and the residual after the GEMM) while they write out, or cannot write it
            # as rows: a new array first
            out[...] = conv_nhwc_fused(x, prep, res, act, strides, dilations, begin, end, out_hw)
            return out
    y = outputs.empty(shape, dtype) if out is None else out
    if y.size == 0:
        return y
    if ck == 0:  # no input channels: every output is its bias (and residual)
        y[...] = 0 if prep.bias is None else prep.bias
        if res is not None:
            np.add(y, res, out=y)
        return bias_act_(y, None, act)
    gemm_act = 0 if res is not None and not in_place else act
    if f43:
        dst = y if y.flags.c_contiguous else _scratch.get("nhwc_f43", y.size, dtype)[: y.size].reshape(shape)
        pads = ((top, int(end[0])), (left, int(end[1])))
        if _winograd43.conv3x3_bias_act(x, prep.u43(), prep.bias, gemm_act, pads, dst):
            if dst is not y:
                y[...] = dst
            if res is not None:
                _residual_act(_rows_view(y), res, act)
            return y
    y2 = _rows_view(y)
    if pointwise:
        xs = x if sh == sw == 1 and (oh, ow) == (h, w) else np.ascontiguousarray(x[:, : oh * sh : sh, : ow * sw : sw])
        _gemm(xs.reshape(n * oh * ow, c), prep, c, gemm_act, tile, y2, in_place)
    elif not (taps and _conv_taps.run(  # the arguments are checked above, as tap_conv would
        x, prep.tile_packed(c), prep.bias, gemm_act, kh, kw, sh, sw, dh, top, left, oh, ow, y2,
        lambda size: _scratch.get("nhwc_pad", size, dtype), in_place, tile == 2,
    )):
        gather = _numba.kernel(gather_kernel) if dtype in _NUMBA_DTYPES else None
        rows = n * oh * ow
        chunk = max(1, min(rows, CHUNK_BYTES // (dtype.itemsize * ck))) if gather is not None else rows
        cols_buf = _scratch.get("nhwc_cols", chunk * ck, dtype)
        one_call = tile == 1 and gather is not None and gathered_tile_conv(
            x, prep.tile_packed(c), prep.bias, gemm_act, prep.kernel, (sh, sw), (dh, dw), (top, left), (oh, ow), y2,
            cols_buf, chunk, in_place,
        )
        for r0 in range(0, 0 if one_call else rows, chunk):
            r1 = min(rows, r0 + chunk)
            cols = cols_buf[: (r1 - r0) * ck].reshape(r1 - r0, ck)
            if gather is not None:
                gather(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, r0, cols)
            else:
                _gather_numpy(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, r0, cols)
            _gemm(cols, prep, c, gemm_act, tile, y2[r0:r1], in_place)
    if res is not None and not in_place:
        _residual_act(y2, res, act)
    return y


def _check_out(out: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if out.shape != shape or out.dtype != dtype or out.strides[3] != dtype.itemsize or not out.flags.writeable:
        raise OpError(
            f"out of shape {list(out.shape)}, dtype {out.dtype}, strides {list(out.strides)}"
            f"{'' if out.flags.writeable else ', read-only,'} for a writable {list(shape)} {dtype} result."
        )


def _rows_of_one_stride(out: np.ndarray) -> bool:
    """Whether the kernels can write ``out`` as ``(N*OH*OW, M)`` rows: aligned, its pixels one run of rows of a
    positive stride of at least ``M`` values (a channel slice of a C-contiguous array is)."""
    if out.size == 0:
        return True
    try:
        rows = _rows_view(out)
    except (AttributeError, ValueError):  # no single run of rows
        return False
    size = out.dtype.itemsize
    return bool(out.flags.aligned) and rows.strides[0] % size == 0 and rows.strides[0] >= size * out.shape[3]


def _gather_numpy(x, kh, kw, sh, sw, dh, dw, top, left, oh, ow, r0, cols) -> None:
    """:func:`gather_kernel` in NumPy (Numba off, other dtypes): every output pixel of the padded input."""
    n, h, w, c = x.shape
    bottom = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - top - h)
    right = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - left - w)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    full = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for a in range(kh):
        for b in range(kw):
            ra, cb = a * dh, b * dw
            full[:, :, :, a, b] = xp[:, ra : ra + (oh - 1) * sh + 1 : sh, cb : cb + (ow - 1) * sw + 1 : sw]
    cols[...] = full.reshape(n * oh * ow, kh * kw * c)[r0 : r0 + cols.shape[0]]
