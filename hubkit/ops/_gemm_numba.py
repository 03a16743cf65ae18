"""Numba side of the packed GEMM: the intrinsic that calls the LLVM tile kernel, and the macro-kernel.

Imported only when a packed GEMM runs (it imports numba). See :mod:`hubkit.ops._gemm_kernel` for
the tile kernel and :mod:`hubkit.ops._packed_gemm` for the entry points.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray
from numba.core import types
from numba.extending import intrinsic

from hubkit.ops import _numba
from hubkit.ops._gemm_kernel import ACCUMULATE, BIAS_COLS, NR, PF_FLOATS, RELU, RELU6, nc_bytes

PF_ROWS = 52
"""Rows (of a row block) up to which :func:`gemm_rows` goes column panel by column panel, prefetching (four
13-row panels of AVX-512, nine 6-row panels of AVX2)."""
PF_TILES = 4
"""Tiles of such a column panel that prefetch, each a quarter of the panel :data:`PF_AHEAD` ahead."""
PF_AHEAD = 2
"""Column panels ahead that those tiles prefetch (two: 0.96 ms for 49x512x2048 cold, against 1.18 for one)."""
NC_BYTES = nc_bytes()
"""Bytes of B (one depth block) per block of columns :func:`gemm_rows` runs every row block over."""

__all__ = [
    "CHAIN_HEAD", "CHAIN_WORDS", "ROWS_JOB_ARGS", "call_tile", "call_wrap_tile", "chain_blocks", "chain_job", "chain_rows", "conv_tile",
    "gemm_batched", "gemm_chain", "gemm_kernel", "gemm_rows", "rows_blocks", "rows_job",
]


def _call_codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
    """A call of the function at ``args[0]`` with the other arguments as ``i64``, returning nothing."""
    i64 = ir.IntType(64)
    fnty = ir.FunctionType(ir.VoidType(), [i64] * (len(args) - 1))
    vals = [context.cast(builder, v, t, types.int64) for v, t in zip(args, signature.args, strict=True)]
    fn = builder.inttoptr(vals[0], fnty.as_pointer())
    builder.call(fn, vals[1:])
    return context.get_dummy_value()


@intrinsic
def call_tile(typingctx, addr, mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf):  # type: ignore[no-untyped-def]
    """Calls ``hk_sconv_tile`` at the address ``addr`` (every argument an integer, pointers as addresses): the
    tile over ``taps`` runs of ``k`` steps of ``A``, ``tstride`` floats apart (one run: a plain GEMM tile),
    along the ``ceil(n / 32)`` column panels of ``B`` (``bstride`` floats apart), prefetching the stream at
    ``pf`` into L2 as it goes (see :mod:`hubkit.ops._gemm_kernel`)."""
    return types.void(addr, mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf), _call_codegen


@intrinsic
def call_wrap_tile(typingctx, addr, mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf, col0,  # type: ignore[no-untyped-def]
                   width, wrap):
    """Calls ``hk_swrap_tile`` at the address ``addr``: :func:`call_tile` whose rows are pixels of output rows
    ``width`` wide, the first at column ``col0``, so that a row starting the next output row is ``wrap`` floats
    further on (see :mod:`hubkit.ops._gemm_kernel`)."""
    sig = types.void(addr, mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf, col0, width, wrap)
    return sig, _call_codegen


@_numba.helper
def conv_tile(addr, mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf, col0, width, wrap):  # pragma: no cover
    """:func:`call_wrap_tile` for kernels of other modules: a helper, so their disk cache is keyed by this file's
    source (the tile's arguments live here) and is compiled again when they change."""
    call_wrap_tile(addr, mr, taps, tstride, k, a, lda, b, bstride, c, ldc, n, flags, bias, pf, col0, width, wrap)


def gemm_kernel(addr, mr_max, kc_max, mc_max, x, rows, depth, packed, c, bias, flags):  # pragma: no cover - compiled by Numba
    """``c (=|+=) x @ B`` then the epilogue ``flags`` ask for: :func:`gemm_rows` on arrays.

    ``x`` is ``(rows, depth)`` and ``c`` ``(rows, N)``, float32 with unit column stride; ``packed`` is
    ``pack_weights(B)``; ``bias`` holds ``N`` floats (read with ``BIAS_COLS``; empty without). Arrays, not
    addresses, cross from Python: ``ndarray.ctypes.data`` costs 1.5-2.5 us a call, as much as a small GEMM.
    False (nothing written) when ``packed`` is not 64-byte aligned (the tile's aligned vector loads would fault).
    """
    if packed.ctypes.data % 64 != 0:
        return False
    bias_addr = bias.ctypes.data if bias.shape[0] > 0 else 0
    gemm_rows(addr, mr_max, kc_max, mc_max, x.ctypes.data, x.strides[0] // 4, rows, depth, packed.ctypes.data,
              c.ctypes.data, c.strides[0] // 4, c.shape[1], bias_addr, flags)
    return True


@_numba.helper  # inlined into gemm_kernel and the split-rows job (hubkit/ops/_split_rows.py)
def gemm_rows(addr, mr_max, kc_max, mc_max, a_addr, lda, rows, depth, b_addr, c_addr, ldc, n_total, bias_addr, flags):  # pragma: no cover - compiled by Numba
    """``C (=|+=) A @ B`` then the epilogue ``flags`` ask for, tile by tile (every operand an address).

    ``A`` is ``rows x depth`` float32, element ``(i, p)`` at ``a_addr + (i * lda + p) * 4`` (read in
    place: each step of a tile broadcasts one value of each of its rows); ``C`` is ``rows x n_total``
    float32, element ``(i, j)`` at ``c_addr + (i * ldc + j) * 4``. ``B`` is ``pack_weights(w)`` at
    ``b_addr``: row ``p`` of column panel ``j`` (32 columns, zero-padded) at ``b_addr + (j * depth + p)
    * 128`` (bytes). ``flags``: :mod:`hubkit.ops._gemm_kernel` flags (``ACCUMULATE`` and the
    epilogue); ``bias_addr`` points at ``n_total`` floats (``BIAS_COLS``).

    Order: blocks of columns of :data:`NC_BYTES` of ``B`` (one depth block), then row blocks of ``mc_max`` (their output rows stay in L2 across the depth blocks), depth
    blocks (balanced, at most ``kc_max``), then each row panel (at most ``mr_max`` rows, balanced
    heights) along all column panels: the panel's rows of ``A`` stay in L1, and its output rows are
    written left to right (a few sequential streams, which the prefetchers follow; a
    column-panel-major order over hundreds of rows measured 2-3x slower once ``C`` left L2). A block of at most
    :data:`PF_ROWS` rows goes column panel by column panel instead, each panel's first :data:`PF_TILES` tiles prefetching the
    panel :data:`PF_AHEAD` ahead (the next depth block's first panels after the last): the block of ``B`` is
    read from memory once, while the tiles compute.
    """
    epilogue = flags & (BIAS_COLS | RELU | RELU6)
    kblocks = (depth + kc_max - 1) // kc_max
    kstep = (depth + kblocks - 1) // kblocks
    # column blocks whose B (one depth block) stays in L2 while every row block passes
    nc = max(NR, (NC_BYTES // (kstep * 4 * NR)) * NR)
    for jb in range(0, n_total, nc):
        ncols = min(nc, n_total - jb)
        gemm_cols(addr, mr_max, mc_max, a_addr, lda, rows, depth, kstep, b_addr + jb * depth * 4, c_addr + jb * 4, ldc,
                  ncols, bias_addr + jb * 4 if bias_addr != 0 else 0, flags, epilogue)


@_numba.helper
def gemm_cols(addr, mr_max, mc_max, a_addr, lda, rows, depth, kstep, b_addr, c_addr, ldc, n_total, bias_addr, flags,
              epilogue):  # pragma: no cover - compiled by Numba
    """:func:`gemm_rows` on one block of columns (``b_addr`` at its first column panel, ``c_addr`` at its first
    column): row blocks, depth blocks of ``kstep``, row panels."""
    for i0 in range(0, rows, mc_max):
        mc = min(mc_max, rows - i0)
        npanels = (mc + mr_max - 1) // mr_max
        # panels of balanced heights (70 rows: 12, 12, 12, 12, 11, 11 rather than 13 x 5 + 5)
        base_r = mc // npanels
        extra = mc - base_r * npanels
        for k0 in range(0, depth, kstep):
            kc = min(kstep, depth - k0)
            fl = 0
            if k0 > 0 or (flags & ACCUMULATE) != 0:
                fl |= ACCUMULATE
            if k0 + kc == depth:
                fl |= epilogue
            if mc <= PF_ROWS:
                # few rows (a 7x7 map at batch 1): column panel by column panel, each panel's block of B read
                # from memory once, its tiles fetching the next block into L2 meanwhile
                for j0 in range(0, n_total, NR):
                    n = min(NR, n_total - j0)
                    bias = bias_addr + j0 * 4 if (fl & BIAS_COLS) != 0 else 0
                    bptr = b_addr + ((j0 // NR) * depth + k0) * NR * 4
                    if j0 + PF_AHEAD * NR < n_total:
                        nxt = bptr + PF_AHEAD * depth * NR * 4
                    elif k0 + kc < depth:
                        nxt = b_addr + (k0 + kc) * NR * 4
                    else:
                        nxt = 0  # nothing left to fetch
                    i = i0
                    for t in range(npanels):
                        r = base_r + (1 if t < extra else 0)
                        call_tile(addr, r, 1, 0, kc, a_addr + (i * lda + k0) * 4, lda, bptr, depth * NR,
                                  c_addr + i * ldc * 4 + j0 * 4, ldc, n, fl, bias,
                                  nxt + t * kc * PF_FLOATS * 4 if t < PF_TILES and nxt != 0 else 0)
                        i += r
                continue
            i = i0
            bias = bias_addr if (fl & BIAS_COLS) != 0 else 0
            bptr = b_addr + k0 * NR * 4
            for t in range(npanels):
                r = base_r + (1 if t < extra else 0)
                # one call: the tile runs along every column panel (the panel's rows of A stay in L1)
                call_tile(addr, r, 1, 0, kc, a_addr + (i * lda + k0) * 4, lda, bptr, depth * NR, c_addr + i * ldc * 4,
                          ldc, n_total, fl, bias, 0)
                i += r


def gemm_batched(addr, mr_max, kc_max, mc_max, a, packed, c, flags):  # pragma: no cover - compiled by Numba
    """``c[p] = A[p] @ B[p]`` for each ``p``: :func:`gemm_rows` on each slice, in one compiled loop.

    ``a`` is ``(P, rows, depth)`` and ``c`` ``(P, rows, N)``, float32 and C-contiguous; ``packed[p]`` is
    ``pack_weights`` of a ``depth x N`` matrix. False (nothing written) when ``packed`` is not 64-byte
    aligned: the tile loads its panels with aligned vector loads.
    """
    n_slices, rows, depth = a.shape
    n = c.shape[2]
    if packed.ctypes.data % 64 != 0 or packed.strides[0] % 64 != 0:
        return False
    for p in range(n_slices):
        gemm_rows(addr, mr_max, kc_max, mc_max, a.ctypes.data + p * a.strides[0], depth, rows, depth,
                  packed.ctypes.data + p * packed.strides[0], c.ctypes.data + p * c.strides[0], n, n, 0, flags)
    return True


CHAIN_WORDS = 7
"""int64 words per layer of :func:`gemm_chain`'s table: the packed weights' and the bias's addresses (0: none), the
flags, ``n``, ``kc_max``, ``mc_max`` and the depth."""


@_numba.helper  # inlined into gemm_chain and chain_job
def chain_rows(addr, mr_max, src, rows, r0, r1, words, scratch, out):  # pragma: no cover - compiled by Numba
    """Rows ``r0 .. r1 - 1`` of a chain of dense layers, each ``act(h @ B + bias)`` by :func:`gemm_rows` from the
    same rows of the layer before (the first from the ``rows x depth`` float32 input at ``src``): layer ``l`` is
    ``words[l * CHAIN_WORDS : (l + 1) * CHAIN_WORDS]`` (see :data:`CHAIN_WORDS`). Every layer's output but the
    last goes to the float32 buffer at ``scratch`` (all rows of each, one after the other), the last to ``out``
    (``rows x n``, C-contiguous)."""
    layers = words.shape[0] // CHAIN_WORDS
    offset = 0
    for layer in range(layers):
        w = words[layer * CHAIN_WORDS : (layer + 1) * CHAIN_WORDS]
        n, depth = w[3], w[6]
        dst = out if layer == layers - 1 else scratch + offset * 4
        gemm_rows(addr, mr_max, w[4], w[5], src + r0 * depth * 4, depth, r1 - r0, depth, w[0], dst + r0 * n * 4, n, n,
                  w[1], w[2])
        offset += rows * n
        src = dst


def gemm_chain(addr, mr_max, x, table, scratch, out):  # pragma: no cover - compiled by Numba
    """:func:`chain_rows` on all the rows of ``x`` (C-contiguous float32): row ``l`` of the int64 ``table`` describes
    layer ``l`` (:data:`CHAIN_WORDS`: its ``pack_weights`` of a ``depth x n`` matrix, 64-byte aligned, and ``n``
    bias values, the layers' depths chained; all checked by the caller and alive through the call)."""
    rows = x.shape[0]
    chain_rows(addr, mr_max, x.ctypes.data, rows, 0, rows, table.reshape(-1), scratch.ctypes.data, out.ctypes.data)


CHAIN_HEAD = 9
"""int64 words before the layers in :func:`chain_job`'s argument block: the tile entry's address, ``mr_max``, the
input's address, its rows, the first and the end row of the half to compute, the number of layers, a scratch
buffer's address (every layer's output but the last, one after the other, all rows) and the output's."""


def chain_blocks(blocks, addr, mr_max, x, table, scratch, out, half):  # pragma: no cover - compiled by Numba
    """Fills ``blocks[0]`` and ``blocks[1]`` with :func:`chain_job`'s arguments for rows ``[0, half)`` and ``[half,
    rows)`` of the chain of :func:`gemm_chain`'s ``table`` on ``x`` (into ``scratch`` and ``out``); returns
    ``blocks``' address."""
    rows = x.shape[0]
    layers = table.shape[0]
    for b in range(2):
        blk = blocks[b]
        blk[0] = addr
        blk[1] = mr_max
        blk[2] = x.ctypes.data
        blk[3] = rows
        blk[4] = 0 if b == 0 else half
        blk[5] = half if b == 0 else rows
        blk[6] = layers
        blk[7] = scratch.ctypes.data
        blk[8] = out.ctypes.data
        for layer in range(layers):
            for w in range(CHAIN_WORDS):
                blk[CHAIN_HEAD + layer * CHAIN_WORDS + w] = table[layer, w]
    return np.int64(blocks.ctypes.data)


def chain_job(args):  # pragma: no cover - compiled by Numba as a C callback (hubkit/ops/_packed_gemm.py)
    """:func:`chain_rows` on the half of the rows :func:`chain_blocks`' argument block at ``args`` gives: each
    layer's rows from the same rows of the layer before, so the two halves of the rows need nothing of each other
    until the end."""
    head = carray(args, (CHAIN_HEAD,))
    a = carray(args, (CHAIN_HEAD + head[6] * CHAIN_WORDS,))
    chain_rows(a[0], a[1], a[2], a[3], a[4], a[5], a[CHAIN_HEAD:], a[7], a[8])


ROWS_JOB_ARGS = 14
"""int64 words of :func:`rows_job`'s argument block: :func:`gemm_rows`' arguments, in order."""


def rows_blocks(blocks, addr, mr_max, kc_max, mc_max, x, half, packed, c, bias, flags):  # pragma: no cover - compiled by Numba
    """Fills ``blocks[0]`` and ``blocks[1]`` with :func:`rows_job`'s arguments for rows ``[0, half)`` and
    ``[half, rows)`` of ``c (=|+=) x @ B`` (the arguments of :func:`gemm_kernel`); returns ``blocks``' address
    (0, nothing filled, when ``packed`` is not 64-byte aligned)."""
    if packed.ctypes.data % 64 != 0:
        return np.int64(0)  # the tile's aligned vector loads would fault (int64 both ways: Numba would unify to float)
    rows, depth = x.shape
    ldc = c.strides[0] // 4
    bias_addr = bias.ctypes.data if bias.shape[0] > 0 else 0
    for b in range(2):
        r0 = 0 if b == 0 else half
        r1 = half if b == 0 else rows
        blk = blocks[b]
        blk[0] = addr
        blk[1] = mr_max
        blk[2] = kc_max
        blk[3] = mc_max
        blk[4] = x.ctypes.data + r0 * x.strides[0]
        blk[5] = x.strides[0] // 4
        blk[6] = r1 - r0
        blk[7] = depth
        blk[8] = packed.ctypes.data
        blk[9] = c.ctypes.data + r0 * c.strides[0]
        blk[10] = ldc
        blk[11] = c.shape[1]
        blk[12] = bias_addr
        blk[13] = flags
    return np.int64(blocks.ctypes.data)


def rows_job(args):  # pragma: no cover - compiled by Numba as a C callback (hubkit/ops/_split_rows.py)
    """:func:`gemm_rows` on the :data:`ROWS_JOB_ARGS` int64 arguments at ``args`` (a ``void f(int64 *)``)."""
    a = carray(args, (14,))
    gemm_rows(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13])
