"""Winograd minimal filtering F(2x2, 3x3) for 3x3, stride-1, dilation-1 convolutions (NHWC, HWIO).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2015), as NNPACK uses it: the
padded input is cut into 4x4 tiles overlapping by 2, each tile and each filter is transformed
(``V = B^T d B``, ``U = G g G^T``), the 16 transformed positions are 16 independent matmuls
``M[xi, nu] = V[xi, nu] @ U[xi, nu]`` (tiles x C times C x K, one batched ``np.matmul``), and the
output transform ``Y = A^T M A`` gives each tile's 2x2 outputs: 16 multiply-adds per 4 outputs
and channel pair instead of 36, so 2.25x fewer matmul FLOPs than im2col.

The transforms are additions and subtractions of whole strided views, vectorised over a block of
tiles and every channel at once (8 NumPy calls in, 8 out per block), into per-thread buffers
reused across blocks and calls. Blocks are a range of images, or of tile rows of one image, sized
so the buffers stay near :data:`BLOCK_BYTES`.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops._scratch import ScratchBuffers

__all__ = ["BLOCK_BYTES", "conv3x3", "filter_transform"]

BLOCK_BYTES = 4 << 20
"""Target size of one block's buffers (padded input, transformed tiles, products, row sums)."""

_scratch = ScratchBuffers(keep_bytes=4 * BLOCK_BYTES)


def filter_transform(w: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``U = G g G^T`` of HWIO 3x3 filters: ``[16, C, K]`` in ``dtype``.

    ``G`` rows: (1, 0, 0), (1/2, 1/2, 1/2), (1/2, -1/2, 1/2), (0, 0, 1). Written out as sums of
    whole filter taps (an einsum was slower than the small convolutions it serves).
    """
    c, k = w.shape[2:]
    g = w.astype(dtype, copy=False)
    t = np.empty((4, 3, c, k), dtype=dtype)  # G g: along the filter's height
    _g_rows(g, t)
    u = np.empty((4, 4, c, k), dtype=dtype)  # (G g) G^T: along its width
    _g_rows(t.transpose(1, 0, 2, 3), u.transpose(1, 0, 2, 3))
    return u.reshape(16, c, k)


def _g_rows(g: np.ndarray, out: np.ndarray) -> None:
    """``out[0..3]`` = ``G @ g[0..2]`` along the first axis."""
    np.copyto(out[0], g[0])
    np.add(g[0], g[2], out=out[1])
    np.subtract(out[1], g[1], out=out[2])
    out[1] += g[1]
    out[1:3] *= 0.5
    np.copyto(out[3], g[2])


def _fill_padded(dst: np.ndarray, x: np.ndarray, row0: int, col0: int) -> None:
    """``dst[b, i, j]`` = ``x[b, row0 + i, col0 + j]``, zero outside ``x``."""
    h, w = x.shape[1:3]
    rows, cols = dst.shape[1:3]
    y0, y1 = max(0, -row0), min(rows, h - row0)
    x0, x1 = max(0, -col0), min(cols, w - col0)
    if y1 <= y0 or x1 <= x0:
        dst[...] = 0
        return
    dst[:, :y0] = 0
    dst[:, y1:] = 0
    dst[:, y0:y1, :x0] = 0
    dst[:, y0:y1, x1:] = 0
    np.copyto(dst[:, y0:y1, x0:x1], x[:, row0 + y0 : row0 + y1, col0 + x0 : col0 + x1])


def _input_transform(xp: np.ndarray, rows: np.ndarray, v: np.ndarray) -> None:
    """``v[4i + j]`` = the (i, j) entry of ``B^T d B`` for every 4x4 tile ``d`` of padded ``xp``.

    ``xp``: [nb, 2*th + 2, 2*tw + 2, C]; ``rows``: scratch [4, nb, th, 2*tw + 2, C];
    ``v``: [4, 4, nb, th, tw, C]. ``B^T`` rows: (1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1).
    """
    th, tw = v.shape[3:5]
    d = [xp[:, r : r + 2 * th : 2] for r in range(4)]
    np.subtract(d[0], d[2], out=rows[0])
    np.add(d[1], d[2], out=rows[1])
    np.subtract(d[2], d[1], out=rows[2])
    np.subtract(d[1], d[3], out=rows[3])
    e = [rows[:, :, :, s : s + 2 * tw : 2] for s in range(4)]
    np.subtract(e[0], e[2], out=v[:, 0])
    np.add(e[1], e[2], out=v[:, 1])
    np.subtract(e[2], e[1], out=v[:, 2])
    np.subtract(e[1], e[3], out=v[:, 3])


def _output_transform(m: np.ndarray, sums: np.ndarray, y: np.ndarray) -> None:
    """``y[a, b]`` = the (a, b) entry of ``A^T M A`` per tile; ``A^T`` rows: (1, 1, 1, 0), (0, 1, -1, -1).

    ``m``: [4, 4, T...]; ``sums``: scratch [2, 4, T...]; ``y``: [2, 2, T...] (may be a strided view).
    """
    np.add(m[1], m[2], out=sums[0])
    sums[0] += m[0]
    np.subtract(m[1], m[2], out=sums[1])
    sums[1] -= m[3]
    np.add(sums[:, 1], sums[:, 2], out=y[:, 0])
    y[:, 0] += sums[:, 0]
    np.subtract(sums[:, 1], sums[:, 2], out=y[:, 1])
    y[:, 1] -= sums[:, 3]


def conv3x3(x: np.ndarray, u: np.ndarray, pads, out: np.ndarray, epilogue=None) -> None:
    """Writes the 3x3 stride-1 convolution of NHWC ``x`` into ``out`` [n, oh, ow, K].

    Args:
        x: [n, h, w, C] input.
        u: [16, C, K] transformed filters (:func:`filter_transform`).
        pads: ``((top, bottom), (left, right))``; ``out``'s size must be what they give.
        out: the preallocated output, same dtype as ``u``.
        epilogue: called on each finished, C-contiguous block of ``out`` while it is in cache.
    """
    n, _, _, c = x.shape
    k = u.shape[2]
    _, oh, ow, _ = out.shape
    (pt, _), (pl, _) = pads
    th, tw = -(-oh // 2), -(-ow // 2)
    even = oh % 2 == 0 and ow % 2 == 0
    wp = 2 * tw + 2
    # Bytes per tile row of one image: padded input (2 rows), row sums, V, M, output sums, crop buffer.
    per_row = (2 * wp * c + 4 * wp * c + 16 * tw * c + 16 * tw * k + 8 * tw * k + (0 if even else 4 * tw * k))
    per_row *= out.itemsize
    rb = max(1, min(th, BLOCK_BYTES // per_row))
    nb = max(1, min(n, BLOCK_BYTES // (per_row * th))) if rb == th else 1
    dt = out.dtype
    xp_buf = _scratch.get("xp", nb * (2 * rb + 2) * wp * c, dt)
    rows_buf = _scratch.get("rows", 4 * nb * rb * wp * c, dt)
    v_buf = _scratch.get("v", 16 * nb * rb * tw * c, dt)
    m_buf = _scratch.get("m", 16 * nb * rb * tw * k, dt)
    s_buf = _scratch.get("sums", 8 * nb * rb * tw * k, dt)
    y_buf = None if even else _scratch.get("y", 4 * nb * rb * tw * k, dt)
    for b0 in range(0, n, nb):
        b1 = min(n, b0 + nb)
        bs = b1 - b0
        for r0 in range(0, th, rb):
            r1 = min(th, r0 + rb)
            rs = r1 - r0
            tiles = bs * rs * tw
            xp = xp_buf[: bs * (2 * rs + 2) * wp * c].reshape(bs, 2 * rs + 2, wp, c)
            _fill_padded(xp, x[b0:b1], 2 * r0 - pt, -pl)
            rows = rows_buf[: 4 * bs * rs * wp * c].reshape(4, bs, rs, wp, c)
            v = v_buf[: 16 * tiles * c].reshape(4, 4, bs, rs, tw, c)
            _input_transform(xp, rows, v)
            m = m_buf[: 16 * tiles * k].reshape(16, tiles, k)
            np.matmul(v.reshape(16, tiles, c), u, out=m)
            sums = s_buf[: 8 * tiles * k].reshape(2, 4, bs, rs, tw, k)
            m6 = m.reshape(4, 4, bs, rs, tw, k)
            if even:
                # out rows 2r+a, columns 2t+b: [bs, rs, 2, tw, 2, k] -> [a, b, bs, rs, tw, k]
                y = out[b0:b1, 2 * r0 : 2 * r1].reshape(bs, rs, 2, tw, 2, k).transpose(2, 4, 0, 1, 3, 5)
                _output_transform(m6, sums, y)
            else:
                assert y_buf is not None  # allocated above whenever the output is odd-sized
                yb = y_buf[: 4 * tiles * k].reshape(bs, rs, 2, tw, 2, k)
                _output_transform(m6, sums, yb.transpose(2, 4, 0, 1, 3, 5))
                rows_out = min(oh, 2 * r1) - 2 * r0
                out[b0:b1, 2 * r0 : 2 * r0 + rows_out] = yb.reshape(bs, 2 * rs, 2 * tw, k)[:, :rows_out, :ow]
            if epilogue is not None:  # whole images, or rows of one image: contiguous either way
                epilogue(out[b0:b1, 2 * r0 : min(oh, 2 * r1)])
