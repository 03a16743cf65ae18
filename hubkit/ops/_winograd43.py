"""Winograd F(4x4, 3x3) with Numba transforms and the bias + activation epilogue in the output transform.

Lavin & Gray (2015): 6x6 input tiles overlapping by 2 give 4x4 outputs each. The transforms
``V = B^T d B`` (input), ``U = G g G^T`` (filters) and ``Y = A^T M A`` (output) bracket 36
independent matmuls ``M[p] = V[p] @ U[p]`` (tiles x C times C x K, one batched ``np.matmul``):
36 multiply-adds per 16 outputs and channel pair instead of 144, 4x fewer matmul FLOPs than
im2col (F(2x2, 3x3) saves 2.25x). The input and output transforms are compiled loops over
tiles, vectorised along the contiguous channel axis, so they cost a fraction of the NumPy
strided passes F(2x2, 3x3) uses; the output transform also adds the bias and applies ReLU/ReLU6
as it writes each output pixel. Numba only: without it the caller uses the NumPy kernels.

Float32 rounding is larger than im2col's (the transforms multiply by up to 8 and 1/24): relative
errors stay below ~1e-5 of ``sum |x| |w|`` per output, checked against a float64 reference in
``tests/ops/test_winograd43.py``.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops import _numba
from hubkit.ops._chunks import run_chunks, two_threads
from hubkit.ops._scratch import ScratchBuffers

__all__ = [
    "BLOCK_BYTES",
    "MAX_BLOCK_BYTES",
    "Filters",
    "available",
    "conv3x3_bias_act",
    "conv3x3_bias_act_max_pool2",
    "filter_transform",
]

BLOCK_BYTES = 2 << 20
"""Target size of one block's transformed tiles and products (they should stay in L2)..."""
MAX_BLOCK_BYTES = 32 << 20
"""... unless the transformed filters are larger: then a block holds up to as many bytes as they do (at
most this), so each of the 36 matmuls multiplies its ``C x K`` filter slice by enough tiles to pay
for reading it (deep layers on small maps: 512 channels at 7x7, batch 16, ran 3x faster with 16 MB
blocks than with 2 MB ones; ``python scripts/bench_onnx.py --layers``)."""

_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
_scratch = ScratchBuffers(keep_bytes=MAX_BLOCK_BYTES)

TILE_MIN_CHANNELS = 64
"""Least input channels for the tile GEMM (see :data:`TILE_MIN_FILTERS`)."""
TILE_MIN_FILTERS = 96
"""Least input channels and filters for which the 36 products run on hubkit's tile GEMM
(:mod:`hubkit.ops._packed_gemm`) instead of one batched ``np.matmul``, on its hosts (float32, AVX-512 or AVX2,
one BLAS thread). Measured by the products alone (36 x tiles x C times C x K, one thread, by the
minimum): C = 32 or 64 with K = 64, 1.2-1.3x slower than OpenBLAS (whose small-matrix kernels do well
there); C = 64, K = 96 0.83x; C = 96-512, K = 128-512 0.56-0.80x the time."""


class Filters:
    """F(4x4, 3x3) filters ready to run: the transform ``[36, C, K]`` (:func:`filter_transform`) in one of
    two forms, the array (:attr:`u`, for ``np.matmul``) or its 36 slices packed for the tile GEMM
    (:meth:`packed`). Asking for one form makes it from the other and drops the other: a model keeps one
    copy of each transform (ResNet-50's are 181 MB), not two. Which form a layer uses depends on its
    shape and on the BLAS's thread count, so it changes only when that count does.

    Thread-safe without a lock: the forms are one tuple, replaced as a whole (two threads switching
    at once may both make the new form; either result is the same).
    """

    __slots__ = ("_forms", "shape")

    def __init__(self, u: np.ndarray) -> None:
        self.shape = u.shape
        self._forms: tuple[np.ndarray | None, np.ndarray | None] = (u, None)  # (array, packed): one is set

    @property
    def u(self) -> np.ndarray:
        """The ``[36, C, K]`` array (unpacked again if the packed form was made)."""
        u, packed = self._forms
        if u is None:
            assert packed is not None
            count, panels, c, width = packed.shape
            flat = packed.transpose(0, 2, 1, 3).reshape(count, c, panels * width)
            u = np.ascontiguousarray(flat[:, :, : self.shape[2]])
            self._forms = (u, None)
        return u

    def packed(self) -> np.ndarray:
        """``pack_batch(u)`` (:mod:`hubkit.ops._packed_gemm`), made from the array (which is then dropped)."""
        u, packed = self._forms
        if packed is None:
            from hubkit.ops._packed_gemm import pack_batch

            assert u is not None
            packed = pack_batch(u)
            self._forms = (None, packed)
        return packed


def _multiply(v: np.ndarray, u: np.ndarray | Filters, m: np.ndarray, split: bool = False) -> None:
    """``m[p] = v[p] @ u[p]`` for the 36 positions: the tile GEMM for ``Filters`` of enough channels, else NumPy.

    ``split``: the blocks run on two threads of ours, so the one-thread tile GEMM runs whatever the BLAS's
    thread count.
    """
    if isinstance(u, Filters):
        c, k = u.shape[1:]
        if c >= TILE_MIN_CHANNELS and k >= TILE_MIN_FILTERS and v.dtype == np.float32 and _tile_gemm_applies(split):
            from hubkit.ops._packed_gemm import batched_matmul

            if batched_matmul(v, u.packed(), m):
                return
        u = u.u
    np.matmul(v, u, out=m)


def _tile_gemm_applies(split: bool = False) -> bool:
    from hubkit.ops import _packed_gemm

    return _packed_gemm._tile_host() and (split or _packed_gemm.blas_threads() == 1) and _packed_gemm.available()


def filter_transform(w: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``U = G g G^T`` of HWIO 3x3 filters, computed in float64: ``[36, C, K]`` in ``dtype``.

    Two small matmuls over all channel pairs at once (an einsum was ~100x slower for 256x256 filters).
    """
    c, k = w.shape[2:]
    t = np.matmul(_G, w.astype(np.float64).reshape(3, 3 * c * k)).reshape(
        6, 3, c * k
    )  # G g, along the height
    u = np.matmul(_G, t)  # [6, 6, C*K]: (G g) G^T along the width, row a of G g at a time
    return np.ascontiguousarray(u.reshape(36, c, k), dtype=dtype)


def input_transform_kernel(xp, ty0, ty1, v):  # pragma: no cover - compiled by Numba
    """``v[6i + j, t, :]`` = entry (i, j) of ``B^T d B`` for each 6x6 tile ``d`` of padded ``xp``.

    ``xp``: [nb, rows, cols, C] (zero-padded); tiles of tile rows ``ty0 .. ty1 - 1`` of every image,
    numbered image by image, row by row. ``B^T`` rows: (4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1).
    """
    nb, _, cols, c = xp.shape
    tw = (cols - 2) // 4
    rs = ty1 - ty0
    t_rows = np.empty((6, 6, c), xp.dtype)
    two, four, five = xp.dtype.type(2), xp.dtype.type(4), xp.dtype.type(5)  # no float64 promotion
    for b in range(nb):
        for ty in range(ty0, ty1):
            for tx in range(tw):
                t = (b * rs + ty - ty0) * tw + tx
                y0 = 4 * ty
                x0 = 4 * tx
                # t_rows = B^T d: combine the 6 input rows, for each of the 6 columns.
                for j in range(6):
                    d0 = xp[b, y0, x0 + j]
                    d1 = xp[b, y0 + 1, x0 + j]
                    d2 = xp[b, y0 + 2, x0 + j]
                    d3 = xp[b, y0 + 3, x0 + j]
                    d4 = xp[b, y0 + 4, x0 + j]
                    d5 = xp[b, y0 + 5, x0 + j]
                    for ch in range(c):
                        a0, a1, a2, a3, a4, a5 = d0[ch], d1[ch], d2[ch], d3[ch], d4[ch], d5[ch]
                        t_rows[0, j, ch] = four * a0 - five * a2 + a4
                        t_rows[1, j, ch] = a3 + a4 - four * (a1 + a2)
                        t_rows[2, j, ch] = four * (a1 - a2) - a3 + a4
                        t_rows[3, j, ch] = two * (a3 - a1) - a2 + a4
                        t_rows[4, j, ch] = two * (a1 - a3) - a2 + a4
                        t_rows[5, j, ch] = four * a1 - five * a3 + a5
                # v = t_rows B: the same combination along the columns.
                for i in range(6):
                    e0, e1, e2, e3, e4, e5 = (
                        t_rows[i, 0],
                        t_rows[i, 1],
                        t_rows[i, 2],
                        t_rows[i, 3],
                        t_rows[i, 4],
                        t_rows[i, 5],
                    )
                    o0, o1, o2 = v[6 * i, t], v[6 * i + 1, t], v[6 * i + 2, t]
                    o3, o4, o5 = v[6 * i + 3, t], v[6 * i + 4, t], v[6 * i + 5, t]
                    for ch in range(c):
                        a0, a1, a2, a3, a4, a5 = e0[ch], e1[ch], e2[ch], e3[ch], e4[ch], e5[ch]
                        o0[ch] = four * a0 - five * a2 + a4
                        o1[ch] = a3 + a4 - four * (a1 + a2)
                        o2[ch] = four * (a1 - a2) - a3 + a4
                        o3[ch] = two * (a3 - a1) - a2 + a4
                        o4[ch] = two * (a1 - a3) - a2 + a4
                        o5[ch] = four * a1 - five * a3 + a5


@_numba.helper
def _a_t_m(m, t, s):
    """``s`` [4, 6, K] = ``A^T M`` of tile ``t`` of ``m`` [36, tiles, K], column by column."""
    two, four, eight = s.dtype.type(2), s.dtype.type(4), s.dtype.type(8)
    for j in range(6):
        m0, m1, m2 = m[j, t], m[6 + j, t], m[12 + j, t]
        m3, m4, m5 = m[18 + j, t], m[24 + j, t], m[30 + j, t]
        s0, s1, s2, s3 = s[0, j], s[1, j], s[2, j], s[3, j]
        for ch in range(s.shape[2]):
            a1, a2, a3, a4 = m1[ch], m2[ch], m3[ch], m4[ch]
            p, q = a1 + a2, a3 + a4
            r, u = a1 - a2, a3 - a4
            s0[ch] = m0[ch] + p + q
            s1[ch] = r + two * u
            s2[ch] = p + four * q
            s3[ch] = r + eight * u + m5[ch]


def output_transform_kernel(m, bias, act, ty0, ty1, tw, out):  # pragma: no cover - compiled by Numba
    """``out`` pixels of tile rows ``ty0 .. ty1 - 1`` = ``act(A^T M A + bias)`` per tile, cropped to ``out``.

    ``m``: [36, tiles, K]; ``bias``: [K] or empty; ``act``: 0 none, 1 ReLU, 2 ReLU6 (as
    :mod:`hubkit.ops._epilogue`). ``A^T`` rows: (1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1).
    """
    nb, oh, ow, k = out.shape
    rs = ty1 - ty0
    has_bias = bias.shape[0] > 0
    zero = out.dtype.type(0)
    six = out.dtype.type(6)
    two, four, eight = out.dtype.type(2), out.dtype.type(4), out.dtype.type(8)
    s = np.empty((4, 6, k), out.dtype)
    for b in range(nb):
        for ty in range(ty0, ty1):
            for tx in range(tw):
                t = (b * rs + ty - ty0) * tw + tx
                _a_t_m(m, t, s)
                for i in range(4):  # y = s A, row i
                    y = 4 * ty + i
                    if y >= oh:
                        break
                    e0, e1, e2, e3, e4, e5 = s[i, 0], s[i, 1], s[i, 2], s[i, 3], s[i, 4], s[i, 5]
                    for jj in range(4):
                        x = 4 * tx + jj
                        if x >= ow:
                            break
                        dst = out[b, y, x]
                        for ch in range(k):
                            a1, a2, a3, a4 = e1[ch], e2[ch], e3[ch], e4[ch]
                            if jj == 0:
                                val = e0[ch] + (a1 + a2) + (a3 + a4)
                            elif jj == 1:
                                val = (a1 - a2) + two * (a3 - a4)
                            elif jj == 2:
                                val = (a1 + a2) + four * (a3 + a4)
                            else:
                                val = (a1 - a2) + eight * (a3 - a4) + e5[ch]
                            if has_bias:
                                val += bias[ch]
                            if act == 1:
                                if val <= zero:
                                    val = zero
                            elif act == 2:
                                if val < zero:
                                    val = zero
                                elif val > six:
                                    val = six
                            dst[ch] = val


def output_transform_pool_kernel(m, bias, lo, hi, ty0, ty1, tw, out):  # pragma: no cover - compiled by Numba
    """``out`` = ``clip(max_pool2x2(A^T M A) + bias, lo, hi)`` for tile rows ``ty0 .. ty1 - 1``, cropped.

    Each 4x4 output tile holds four whole 2x2 stride-2 pool windows (tiles start at multiples of 4),
    so the pooled ``[nb, oh // 2, ow // 2, K]`` pixels are written straight from the tile and the
    full-size output never exists. Bias and the clip (``lo``/``hi``: -inf/inf, 0/inf for ReLU, 0/6 for
    ReLU6) are nondecreasing per channel, so applying them after the maximum gives the same values as
    pooling ``act(conv + bias)``, with a quarter of the work. ``bias``: [K] (zeros when there is none).
    """
    nb, ph, pw, k = out.shape
    rs = ty1 - ty0
    two, four, eight = out.dtype.type(2), out.dtype.type(4), out.dtype.type(8)
    s = np.empty((4, 6, k), out.dtype)
    for b in range(nb):
        for ty in range(ty0, ty1):
            for tx in range(tw):
                t = (b * rs + ty - ty0) * tw + tx
                _a_t_m(m, t, s)
                for py in range(2):  # pooled row 2 ty + py: output rows 2 py and 2 py + 1 of the tile
                    yo = 2 * ty + py
                    if yo >= ph:
                        break
                    e0, e1, e2, e3, e4, e5 = (
                        s[2 * py, 0],
                        s[2 * py, 1],
                        s[2 * py, 2],
                        s[2 * py, 3],
                        s[2 * py, 4],
                        s[2 * py, 5],
                    )
                    f0, f1, f2, f3, f4, f5 = (
                        s[2 * py + 1, 0],
                        s[2 * py + 1, 1],
                        s[2 * py + 1, 2],
                        s[2 * py + 1, 3],
                        s[2 * py + 1, 4],
                        s[2 * py + 1, 5],
                    )
                    xo = 2 * tx
                    if xo < pw:  # tile columns 0 and 1
                        dst = out[b, yo, xo]
                        for ch in range(k):
                            a1, a2, a3, a4 = e1[ch], e2[ch], e3[ch], e4[ch]
                            c1, c2, c3, c4 = f1[ch], f2[ch], f3[ch], f4[ch]
                            y00 = e0[ch] + (a1 + a2) + (a3 + a4)
                            y01 = (a1 - a2) + two * (a3 - a4)
                            y10 = f0[ch] + (c1 + c2) + (c3 + c4)
                            y11 = (c1 - c2) + two * (c3 - c4)
                            top = y00 if (y00 > y01 or y00 != y00) else y01  # NaN wins, as with np.maximum
                            bot = y10 if (y10 > y11 or y10 != y10) else y11
                            val = (top if (top > bot or top != top) else bot) + bias[ch]
                            if val < lo:
                                val = lo
                            if val > hi:
                                val = hi
                            dst[ch] = val
                    if xo + 1 < pw:  # tile columns 2 and 3
                        dst = out[b, yo, xo + 1]
                        for ch in range(k):
                            a1, a2, a3, a4 = e1[ch], e2[ch], e3[ch], e4[ch]
                            c1, c2, c3, c4 = f1[ch], f2[ch], f3[ch], f4[ch]
                            y02 = (a1 + a2) + four * (a3 + a4)
                            y03 = (a1 - a2) + eight * (a3 - a4) + e5[ch]
                            y12 = (c1 + c2) + four * (c3 + c4)
                            y13 = (c1 - c2) + eight * (c3 - c4) + f5[ch]
                            top = y02 if (y02 > y03 or y02 != y02) else y03  # NaN wins, as with np.maximum
                            bot = y12 if (y12 > y13 or y12 != y12) else y13
                            val = (top if (top > bot or top != top) else bot) + bias[ch]
                            if val < lo:
                                val = lo
                            if val > hi:
                                val = hi
                            dst[ch] = val


def available() -> bool:
    """Whether the compiled transforms can run (Numba on)."""
    return _numba.numba_enabled()


def conv3x3_bias_act(
    x: np.ndarray, u: np.ndarray | Filters, bias: np.ndarray | None, act: int, pads, out: np.ndarray
) -> bool:
    """Writes ``act(conv3x3(x) + bias)`` (stride 1, undilated, NHWC) into ``out``; False when Numba is off.

    Args:
        x: [n, h, w, C] input, of ``out``'s dtype.
        u: [36, C, K] transformed filters (:func:`filter_transform`), or :class:`Filters` holding them
            (then the products may run on the tile GEMM, its packed filters kept in the object).
        bias: [K] or None.
        act: 0 none, 1 ReLU, 2 ReLU6.
        pads: ``((top, bottom), (left, right))``; ``out``'s size must be what they give.
        out: [n, oh, ow, K] C-contiguous output.
    """
    (pt, _), (pl, _) = pads
    if not (0 <= pt <= 2 and 0 <= pl <= 2):  # the padded block holds at most 2 leading pad rows/columns
        return False
    tf_in = _numba.kernel(input_transform_kernel)
    tf_out = _numba.kernel(output_transform_kernel)
    if tf_in is None or tf_out is None:
        return False
    oh, ow = out.shape[1:3]
    b = np.empty(0, out.dtype) if bias is None else np.ascontiguousarray(bias, dtype=out.dtype)
    th, tw = -(-oh // 4), -(-ow // 4)
    _tiles_in_blocks(x, u, pt, pl, th, tw, out, tf_in, lambda m, r0, r1, o: tf_out(m, b, act, r0, r1, tw, o))
    return True


def _tiles_in_blocks(x: np.ndarray, u: np.ndarray | Filters, pt: int, pl: int, th: int, tw: int, out: np.ndarray, tf_in,
                     finish) -> None:
    """The blocked F(4x4, 3x3) loop shared by the plain and the pooled convolution: ``th x tw`` tiles per
    image, padded by ``pt``/``pl`` leading rows/columns, input-transformed (``tf_in``) in blocks of whole tile
    rows (or whole images) that fit the scratch budget, multiplied by ``u``, then ``finish(m, r0, r1, out_block)``
    output-transforms the block's products into the block's images of ``out``."""
    n, h, w, c = x.shape
    k = u.shape[2]
    rows, cols = 4 * th + 2, 4 * tw + 2
    dt = out.dtype
    per_tile = 36 * (c + k) * dt.itemsize
    block = max(BLOCK_BYTES, min(MAX_BLOCK_BYTES, int(np.prod(u.shape)) * dt.itemsize))
    rb = max(1, min(th, block // (per_tile * tw)))  # tile rows per block
    nb = max(1, min(n, block // (per_tile * tw * th))) if rb == th else 1  # images per block
    y0, y1 = pt, min(rows, pt + h)  # where the input lands in the padded block
    x0, x1 = pl, min(cols, pl + w)
    starts = list(range(0, n, nb))
    two = two_threads()

    def padded(b0: int, b1: int) -> np.ndarray:  # images b0 .. b1 - 1 in this thread's zero-bordered block
        xp = _scratch.get("xp", nb * rows * cols * c, dt)[: (b1 - b0) * rows * cols * c].reshape(b1 - b0, rows, cols, c)
        xp[:, :y0] = 0
        xp[:, y1:] = 0
        xp[:, y0:y1, :x0] = 0
        xp[:, y0:y1, x1:] = 0
        xp[:, y0:y1, x0:x1] = x[b0:b1, : y1 - y0, : x1 - x0]
        return xp

    def tile_rows(xp: np.ndarray, b0: int, b1: int, row_starts: list[int], rb: int, split: bool) -> None:
        v_buf = _scratch.get("v", 36 * nb * rb * tw * c, dt)  # per thread: each thread its own buffers
        m_buf = _scratch.get("m", 36 * nb * rb * tw * k, dt)
        for r0 in row_starts:
            r1 = min(th, r0 + rb)
            tiles = (b1 - b0) * (r1 - r0) * tw
            v = v_buf[: 36 * tiles * c].reshape(36, tiles, c)
            tf_in(xp, r0, r1, v)
            m = m_buf[: 36 * tiles * k].reshape(36, tiles, k)
            _multiply(v, u, m, split)
            finish(m, r0, r1, out[b0:b1])

    if len(starts) == 1 and th >= 2 and two:
        # one block of images (one image, say): the two threads take halves of its tile rows instead
        half = min(rb, -(-th // 2))
        xp = padded(0, n)
        run_chunks(list(range(0, th, half)), lambda row_starts: tile_rows(xp, 0, n, row_starts, half, True), True)
        return
    split = len(starts) >= 2 and two

    def run(chunk_starts: list[int]) -> None:
        for b0 in chunk_starts:
            b1 = min(n, b0 + nb)
            tile_rows(padded(b0, b1), b0, b1, list(range(0, th, rb)), rb, split)

    run_chunks(starts, run, split)


def conv3x3_bias_act_max_pool2(
    x: np.ndarray, u: np.ndarray | Filters, bias: np.ndarray | None, act: int, pads, out: np.ndarray
) -> bool:
    """Writes ``max_pool2x2(act(conv3x3(x) + bias))`` (2x2 stride-2 VALID pool) into ``out``; False when it cannot.

    As :func:`conv3x3_bias_act`, with the pool fused into the output transform
    (:func:`output_transform_pool_kernel`): ``out`` is [n, oh // 2, ow // 2, K] for the convolution's
    output size ``oh x ow`` (what ``pads`` give), C-contiguous.
    """
    (pt, pb), (pl, pr) = pads
    if not (0 <= pt <= 2 and 0 <= pl <= 2) or act not in (0, 1, 2):
        return False
    tf_in = _numba.kernel(input_transform_kernel)
    tf_out = _numba.kernel(output_transform_pool_kernel)
    if tf_in is None or tf_out is None:
        return False
    n, h, w, _ = x.shape
    k = u.shape[2]
    oh, ow = h + pt + pb - 2, w + pl + pr - 2
    if out.shape != (n, oh // 2, ow // 2, k) or min(out.shape[1:3]) < 1:
        return False
    th, tw = -(-(oh // 2) // 2), -(-(ow // 2) // 2)  # only tiles holding a whole pool window
    dt = out.dtype
    b = np.zeros(k, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
    lo = dt.type(-np.inf if act == 0 else 0)
    hi = dt.type(6 if act == 2 else np.inf)
    _tiles_in_blocks(x, u, pt, pl, th, tw, out, tf_in, lambda m, r0, r1, o: tf_out(m, b, lo, hi, r0, r1, tw, o))
    return True
