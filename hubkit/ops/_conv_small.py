"""Direct Numba convolution for inputs with few channels (an RGB layer), fused with bias, activation and 2x2 max pool.

An RGB layer's im2col GEMM is a poor BLAS shape (K = 27 for 3x3 filters on 3 channels, tens of
output channels), and the patch matrix, the full-size output and the pool pass each cross memory.
Here, for each pair of output rows that one pooled row comes from, the input planes are copied
into a small staging block (one row per filter term: a tap and an input channel, at most
``MAX_TERMS``), and each output channel's two rows are one vectorised loop over pixels whose body
is the whole sum, with that channel's weights held in registers. The rows go to a planar tile in
L1; the pool, bias and activation are applied from there as the NHWC output is written, so the
full-size output never exists. Float32 sums run in another order than the GEMM's: results agree to
rounding (tests compare with a float64 reference).

Without the pool (a layer whose output is kept at full size) the tile's transpose to NHWC cost
what the GEMM saved (42 vs 43 ms, batch 32, 96x96, 3 -> 32): that case stays im2col.
"""

from __future__ import annotations

import numpy as np

from hubkit.ops import _numba
from hubkit.ops._chunks import run_chunks, two_threads
from hubkit.ops._scratch import ScratchBuffers

__all__ = ["MAX_TERMS", "conv_small_bias_act_max_pool"]

MAX_TERMS = 27
"""Filter taps times input channels the kernel's sum holds (3x3 on RGB; 5x5 on one channel)."""
_PLANES_BLOCK_BYTES = 1 << 20  # padded planar input converted this many bytes of images at a time
_scratch = ScratchBuffers(keep_bytes=2 * _PLANES_BLOCK_BYTES)


def conv_small_kernel(xpl, wt, bias, act, kh, kw, sh, sw, dh, dw, oh, ow, out):  # pragma: no cover
    """``out`` = max_pool_2x2(act(conv(x, w) + bias)), stride 2, VALID.

    ``xpl``: [n, C, rows, cols] zero-padded input planes; ``wt``: [K, MAX_TERMS] filters, term
    ``(c * kh + i) * kw + j``, zero past ``C * kh * kw``; ``bias``: [K]; ``act``: 0 none, 1 ReLU, 2
    ReLU6; ``oh, ow``: the convolution's output size; ``out``: [n, oh // 2, ow // 2, K].

    The staging block ``st`` holds row ``t`` (one term) of output row ``r`` at ``(27 r + t) * 64``:
    offsets known at compile time, so the vectorised loop needs one alias check (``st`` against the
    tile) instead of one per term.
    """
    n, c = xpl.shape[0], xpl.shape[1]
    k_out = wt.shape[0]
    zero = out.dtype.type(0)
    six = out.dtype.type(6)
    st = np.zeros(2 * 27 * 64, out.dtype)  # rows past the real terms stay 0 (their weights are 0 too)
    tile = np.empty(k_out * 2 * 64, out.dtype)  # [K, 2 rows, 64 pixels] before the epilogue
    pp = np.empty(k_out * 32, out.dtype)  # [K, 32 pixels] pooled
    for b in range(n):
        for yo in range(oh // 2):
            for x0 in range(0, 2 * (ow // 2), 64):
                seg = min(64, 2 * (ow // 2) - x0)
                for r in range(2):  # stage the two output rows of a pooled row: row t of r at (27 r + t) * 64
                    y = 2 * yo + r
                    t = 27 * r
                    for ch in range(c):
                        for i in range(kh):
                            yi = y * sh + i * dh
                            for j in range(kw):
                                s0 = x0 * sw + j * dw
                                d0 = t * 64
                                # unsigned indices: Numba adds no negative-index wraparound, so the copy vectorises
                                if sw == 1:
                                    s0u, d0u = np.uint64(s0), np.uint64(d0)
                                    for xx in range(np.uint64(seg)):
                                        st[d0u + xx] = xpl[b, ch, yi, s0u + xx]
                                else:
                                    for xx in range(seg):
                                        st[d0 + xx] = xpl[b, ch, yi, s0 + xx * sw]
                                t += 1
                for k in range(k_out):  # both rows in one loop: the channel's weights are loaded once
                    bk = bias[k]
                    row = 2 * k * 64
                    w0, w1, w2, w3, w4, w5, w6, w7, w8 = (
                        wt[k, 0], wt[k, 1], wt[k, 2], wt[k, 3], wt[k, 4], wt[k, 5], wt[k, 6], wt[k, 7], wt[k, 8]
                    )
                    w9, w10, w11, w12, w13, w14, w15, w16, w17 = (
                        wt[k, 9], wt[k, 10], wt[k, 11], wt[k, 12], wt[k, 13], wt[k, 14], wt[k, 15], wt[k, 16], wt[k, 17]
                    )
                    w18, w19, w20, w21, w22, w23, w24, w25, w26 = (
                        wt[k, 18], wt[k, 19], wt[k, 20], wt[k, 21], wt[k, 22], wt[k, 23], wt[k, 24], wt[k, 25], wt[k, 26]
                    )
                    for xx in range(seg):
                        tile[row + xx] = bk + (
                            (
                                st[0 + xx] * w0 + st[64 + xx] * w1 + st[128 + xx] * w2
                                + st[192 + xx] * w3 + st[256 + xx] * w4 + st[320 + xx] * w5
                                + st[384 + xx] * w6 + st[448 + xx] * w7 + st[512 + xx] * w8
                            )
                            + (
                                st[576 + xx] * w9 + st[640 + xx] * w10 + st[704 + xx] * w11
                                + st[768 + xx] * w12 + st[832 + xx] * w13 + st[896 + xx] * w14
                                + st[960 + xx] * w15 + st[1024 + xx] * w16 + st[1088 + xx] * w17
                            )
                            + (
                                st[1152 + xx] * w18 + st[1216 + xx] * w19 + st[1280 + xx] * w20
                                + st[1344 + xx] * w21 + st[1408 + xx] * w22 + st[1472 + xx] * w23
                                + st[1536 + xx] * w24 + st[1600 + xx] * w25 + st[1664 + xx] * w26
                            )
                        )
                        tile[row + 64 + xx] = bk + (
                            (
                                st[1728 + xx] * w0 + st[1792 + xx] * w1 + st[1856 + xx] * w2
                                + st[1920 + xx] * w3 + st[1984 + xx] * w4 + st[2048 + xx] * w5
                                + st[2112 + xx] * w6 + st[2176 + xx] * w7 + st[2240 + xx] * w8
                            )
                            + (
                                st[2304 + xx] * w9 + st[2368 + xx] * w10 + st[2432 + xx] * w11
                                + st[2496 + xx] * w12 + st[2560 + xx] * w13 + st[2624 + xx] * w14
                                + st[2688 + xx] * w15 + st[2752 + xx] * w16 + st[2816 + xx] * w17
                            )
                            + (
                                st[2880 + xx] * w18 + st[2944 + xx] * w19 + st[3008 + xx] * w20
                                + st[3072 + xx] * w21 + st[3136 + xx] * w22 + st[3200 + xx] * w23
                                + st[3264 + xx] * w24 + st[3328 + xx] * w25 + st[3392 + xx] * w26
                            )
                        )
                half = seg // 2
                for k in range(k_out):  # any NaN wins, as with np.maximum; the activation commutes with it
                    e = np.uint64(2 * k * 64)
                    f = np.uint64(k * 32)
                    for px in range(np.uint64(half)):  # pooled planar rows (vectorised along the pixels) ...
                        m = tile[e + 2 * px]
                        v = tile[e + 2 * px + 1]
                        m = v if v > m or v != v else m
                        v = tile[e + 64 + 2 * px]
                        m = v if v > m or v != v else m
                        v = tile[e + 65 + 2 * px]
                        m = v if v > m or v != v else m
                        if act == 1:  # as the ops compute it: NaN stays NaN, -0.0 becomes 0.0
                            m = zero if m <= zero else m
                        elif act == 2:  # np.clip keeps NaN and -0.0
                            m = zero if m < zero else (six if m > six else m)
                        pp[f + px] = m
                px0 = x0 // 2
                for px in range(half):  # ... then written as NHWC pixels
                    for k in range(k_out):
                        out[b, yo, px0 + px, k] = pp[k * 32 + px]

def conv_small_bias_act_max_pool(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, act: int, strides, dilations, pads, out: np.ndarray
) -> bool:
    """Writes ``max_pool(act(conv2d(x, w) + bias))`` (2x2 windows, stride 2, VALID) into ``out``; False when it cannot.

    Args:
        x: [n, h, w, C] NHWC input of ``out``'s dtype (float32 or float64).
        w: [kh, kw, C, K] HWIO filters of that dtype with ``kh * kw * C <= MAX_TERMS``.
        bias: [K] or None.
        act: 0 none, 1 ReLU, 2 ReLU6 (:mod:`hubkit.ops._epilogue`).
        strides, dilations: (height, width) of the convolution.
        pads: ``((top, bottom), (left, right))`` zero padding of the convolution.
        out: C-contiguous [n, oh // 2, ow // 2, K] for the convolution's output size (oh, ow).

    Returns:
        False (``out`` untouched) when Numba is off or the shapes do not fit the kernel.
    """
    kh, kw, c, k = w.shape
    dt = out.dtype
    if kh * kw * c > MAX_TERMS or x.dtype != dt or w.dtype != dt or dt not in (np.float32, np.float64) or not out.flags.c_contiguous:
        return False
    fast = _numba.kernel(conv_small_kernel, fastmath={"contract"})
    if fast is None:
        return False
    n, h, wd, _ = x.shape
    (pt, pb), (pl, pr) = pads
    rows, cols = h + pt + pb, wd + pl + pr
    oh = (rows - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (cols - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    if out.shape != (n, max(oh, 0) // 2, max(ow, 0) // 2, k):
        return False
    if out.size == 0:
        return True
    wt = np.zeros((k, MAX_TERMS), dt)
    wt[:, : kh * kw * c] = w.transpose(3, 2, 0, 1).reshape(k, -1)  # term (c * kh + i) * kw + j
    b = np.zeros(k, dt) if bias is None else np.ascontiguousarray(bias, dtype=dt)
    nb = max(1, min(n, _PLANES_BLOCK_BYTES // (rows * cols * c * dt.itemsize)))
    y0, y1 = pt, pt + h
    x0, x1 = pl, pl + wd

    def run(chunk_starts: list[int]) -> None:
        buf = _scratch.get("planes", nb * c * rows * cols, dt)  # per thread
        for b0 in chunk_starts:
            b1 = min(n, b0 + nb)
            xpl = buf[: (b1 - b0) * c * rows * cols].reshape(b1 - b0, c, rows, cols)
            xpl[:, :, :y0] = 0
            xpl[:, :, y1:] = 0
            xpl[:, :, y0:y1, :x0] = 0
            xpl[:, :, y0:y1, x1:] = 0
            xpl[:, :, y0:y1, x0:x1] = x[b0:b1].transpose(0, 3, 1, 2)
            fast(xpl, wt, b, act, kh, kw, strides[0], strides[1], dilations[0], dilations[1], oh, ow, out[b0:b1])

    starts = list(range(0, n, nb))
    run_chunks(starts, run, len(starts) >= 2 and two_threads())  # each chunk writes its own images
    return True
