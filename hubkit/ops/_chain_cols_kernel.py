"""The compiled side of :mod:`hubkit.ops._chain_cols` (imports numba: loaded on first use).

A chain of dense layers at one or two rows, split by columns between the calling thread and the pool's worker
(:mod:`hubkit.ops._worker_pool`): each layer's columns are cut in chunks of :data:`CHUNK_COLS`, and a layer starts
once every chunk of the one before is written. Both threads run :func:`cols_job` on their own argument block; the
chunks are handed out by a claim word each (``FREE -> CLAIMED -> DONE``, compare-and-swap), the caller taking them
from the first, the worker from the last, each until it meets one the other has taken. So the faster thread does
more of a layer, a late or absent worker leaves every chunk to the caller, and no thread ever waits for a chunk
nobody runs; with both on time each takes the same chunks call after call (which then stay in its core's cache).

A chunk reads its weights as one contiguous ``depth x width`` block (:func:`~hubkit.ops._chain_cols.pack_cols`) four
rows at a time into a buffer of its own (which the compiler then knows no weight aliases, and vectorises): every
output is the sum of its products in the order of the depth (each product rounded to float32, then added: no fused
multiply-add), then ``act(sum + bias)`` as :func:`hubkit.ops._epilogue.activate` computes it. Which thread runs a
chunk does not change its bits (the worker runs with the caller's floating-point control word); which NaN a sum of
two NaNs keeps may differ from a plain loop's (the compiler may swap an addition's operands).

A thread waiting for the other's chunk spins (``pause``) for a bounded number of time-stamp-counter ticks
(:data:`hubkit.ops._chain_cols.WAIT_SPIN_US`), then yields its CPU at each further check.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray
from numba.core import cgutils, types
from numba.extending import intrinsic

from hubkit.ops import _numba
from hubkit.ops._chain_cols import CHUNK_COLS, MAX_ROWS
from hubkit.ops._epilogue import activate
from hubkit.ops._gemm_numba import _call_codegen

__all__ = ["COLS_HEAD", "FREE", "LAYER_WORDS", "SYNC_WORDS", "chunks", "cols_job", "cols_patch"]

COLS_HEAD = 11
"""int64 words before the layers in a :func:`cols_job` argument block: the input's address, its rows, the number of
layers, the scratch buffer's address (each layer's output but the last, one after the other), the output's, the
claim words' address, this thread's side (0: the caller, from the first chunk; 1: the worker, from the last),
``sched_yield``'s address, the input's width, the number of claim words (every layer's chunks) and the
time-stamp-counter ticks a thread spins waiting for the other's chunk before it yields its CPU."""

LAYER_WORDS = 5
"""int64 words of a layer in a :func:`cols_job` argument block: its weights' ``pack_cols`` address, its bias's
(0: none), its activation (:mod:`hubkit.ops._epilogue` code), its columns and its depth."""

SYNC_WORDS = 8
"""int64 words between two claim words: each on a 64-byte line of its own (the two threads write them)."""

FREE, CLAIMED, DONE = 0, 1, 2


_I64 = ir.IntType(64)


def _address(context, builder, sig, args, i, pointee=_I64):  # type: ignore[no-untyped-def]
    """Argument ``i`` (an integer address) as a pointer to ``pointee``."""
    return builder.inttoptr(context.cast(builder, args[i], sig.args[i], types.int64), pointee.as_pointer())


@intrinsic
def _claim(typingctx, addr):  # type: ignore[no-untyped-def]
    """Compare-and-swap of the int64 at ``addr`` from FREE to CLAIMED (sequentially consistent): True if won."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        res = builder.cmpxchg(_address(context, builder, sig, args, 0), ir.Constant(i64, FREE),
                              ir.Constant(i64, CLAIMED), "seq_cst", "seq_cst")
        return builder.extract_value(res, 1)

    return types.boolean(addr), codegen


@intrinsic
def _load(typingctx, addr):  # type: ignore[no-untyped-def]
    """The int64 at ``addr``, loaded with acquire ordering (what the writer stored before its release is seen)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.load_atomic(_address(context, builder, sig, args, 0), "acquire", 8)

    return types.int64(addr), codegen


@intrinsic
def _release(typingctx, addr):  # type: ignore[no-untyped-def]
    """Stores DONE at ``addr`` with release ordering (the chunk's output is written before it)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        builder.store_atomic(ir.Constant(ir.IntType(64), DONE), _address(context, builder, sig, args, 0), "release", 8)
        return context.get_dummy_value()

    return types.void(addr), codegen


@intrinsic
def _pause(typingctx):  # type: ignore[no-untyped-def]
    """The x86 ``pause`` instruction (a spin-wait hint)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _ticks(typingctx):  # type: ignore[no-untyped-def]
    """The time-stamp counter (``rdtsc``)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, []), "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


@intrinsic
def _call0(typingctx, addr):  # type: ignore[no-untyped-def]
    """Calls the function at ``addr`` without arguments (its result ignored)."""
    return types.void(addr), _call_codegen


@intrinsic
def _floats(typingctx, addr):  # type: ignore[no-untyped-def]
    """The address ``addr`` as a pointer to float32 (for ``numba.carray``)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return _address(context, builder, sig, args, 0, ir.FloatType())

    return types.CPointer(types.float32)(addr), codegen


@_numba.helper
def chunks(n):  # pragma: no cover - compiled by Numba
    """The chunks of a layer of ``n`` columns."""
    return (n + CHUNK_COLS - 1) // CHUNK_COLS


@_numba.helper
def _chunk(a, layer, c, buf):  # pragma: no cover - compiled by Numba
    """Chunk ``c`` of layer ``layer`` (its columns ``[c * CHUNK_COLS, (c + 1) * CHUNK_COLS)``, fewer in the last) for
    every row, summed in ``buf`` (a fresh array of at least ``CHUNK_COLS`` floats)."""
    rows = a[1]
    offset = 0  # the layer's input and output in the scratch buffer (each layer's rows after the one before)
    src = a[0]
    for before in range(layer):
        src = a[3] + offset * 4
        offset += rows * a[COLS_HEAD + before * LAYER_WORDS + 3]
    w = a[COLS_HEAD + layer * LAYER_WORDS : COLS_HEAD + (layer + 1) * LAYER_WORDS]
    n, depth = w[3], w[4]
    c0 = c * CHUNK_COLS
    width = min(CHUNK_COLS, n - c0)
    block = carray(_floats(w[0] + c0 * depth * 4), (depth, width))
    x = carray(_floats(src), (rows, depth))
    dst = carray(_floats(a[4] if layer == a[2] - 1 else a[3] + offset * 4), (rows, n))
    for r in range(rows):
        xr = x[r]
        for j in range(width):
            buf[j] = 0.0
        k = 0
        while k + 4 <= depth:
            x0, x1, x2, x3 = xr[k], xr[k + 1], xr[k + 2], xr[k + 3]
            w0, w1, w2, w3 = block[k], block[k + 1], block[k + 2], block[k + 3]
            for j in range(width):
                buf[j] = (((buf[j] + x0 * w0[j]) + x1 * w1[j]) + x2 * w2[j]) + x3 * w3[j]
            k += 4
        while k < depth:
            x0 = xr[k]
            w0 = block[k]
            for j in range(width):
                buf[j] = buf[j] + x0 * w0[j]
            k += 1
        _store(dst[r], c0, buf, width, w[1], w[2])


@_numba.helper
def _store(out, c0, buf, width, bias_addr, act):  # pragma: no cover - compiled by Numba
    """``out[c0 + j] = act(buf[j] + bias[c0 + j])`` for ``j < width`` (no bias where ``bias_addr`` is 0)."""
    has_bias = bias_addr != 0
    bias = carray(_floats(bias_addr + c0 * 4 if has_bias else 0), (width if has_bias else 0,))
    for j in range(width):
        out[c0 + j] = activate(buf[j] + bias[j] if has_bias else buf[j], act)


def cols_job(args):  # pragma: no cover - compiled by Numba as a C callback (hubkit/ops/_chain_cols.py)
    """Every layer in turn: the chunks still free from this thread's end until one the other thread has taken, then
    a wait until every chunk of the layer is done (spinning, then yielding the CPU: the other thread runs the
    chunks it claimed)."""
    head = carray(args, (COLS_HEAD,))
    a = carray(args, (COLS_HEAD + head[2] * LAYER_WORDS,))
    side = a[6]
    word0 = a[5]  # the layer's first claim word
    buf = np.zeros(CHUNK_COLS, np.float32)
    for layer in range(a[2]):
        count = chunks(a[COLS_HEAD + layer * LAYER_WORDS + 3])
        for i in range(count):
            c = i if side == 0 else count - 1 - i
            word = word0 + c * SYNC_WORDS * 8
            if _load(word) != FREE or not _claim(word):
                break  # the other thread took this one, and so every one beyond it
            _chunk(a, layer, c, buf)
            _release(word)
        for c in range(count):
            word = word0 + c * SYNC_WORDS * 8
            if _load(word) != DONE:
                end = _ticks() + a[10]
                while _load(word) != DONE:
                    if _ticks() < end:
                        _pause()
                    else:
                        _call0(a[7])
        word0 += count * SYNC_WORDS * 8


def cols_patch(blocks, sync, x, out):  # pragma: no cover - compiled by Numba
    """Writes this call's input, its row count and the output into both argument blocks (every other word filled
    once) and sets every claim word FREE; returns the blocks' address, or 0 (nothing written) when ``x`` is not
    ``1 .. MAX_ROWS`` C-contiguous rows of the chain's width or ``out`` not as many C-contiguous rows of the last
    layer's columns."""
    rows, width = x.shape
    layers = blocks[0, 2]
    n = blocks[0, COLS_HEAD + (layers - 1) * LAYER_WORDS + 3]
    if rows < 1 or rows > MAX_ROWS or width != blocks[0, 8] or out.shape[0] != rows or out.shape[1] != n or (
        x.strides[1] != 4 or x.strides[0] != width * 4 or out.strides[1] != 4 or out.strides[0] != n * 4
    ):
        return np.int64(0)  # (the dtype, float32, is the caller's check: run())
    for h in range(2):
        blocks[h, 0] = x.ctypes.data
        blocks[h, 1] = rows
        blocks[h, 4] = out.ctypes.data
    for i in range(0, blocks[0, 9] * SYNC_WORDS, SYNC_WORDS):
        sync[i] = FREE
    return np.int64(blocks.ctypes.data)
