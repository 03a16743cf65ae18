"""A chain of float32 dense layers at one or two rows, split by columns over two threads: the caller and the pool's
worker (:mod:`hubkit.ops._worker_pool`).

At one row each layer is a matrix-vector product whose time is the time to stream its weights: the MLP
784-512-512-10's 2.6 MB come from L3 on a host with 512 KB of L2 a core, at about 60 GB/s for one core. Two cores
streaming part of the columns each reach more (OpenBLAS's GEMV on each half of 784x1024 weights, both cores at
once: 104 GB/s against 62 for the whole on one), and unlike a split in depth no partial sums need adding.

The weights are kept as :func:`pack_cols` blocks (:class:`ColumnBlocks`, made once per weights like the fused
steps' packed forms). :func:`prepare` fills both threads' argument blocks once per chain; a call (:func:`run`)
writes its input and output addresses into them (one compiled call) and hands the worker its block; the chunks
are shared out as :mod:`hubkit.ops._chain_cols_kernel` describes. Every output is computed the same way whichever
thread runs its chunk (the worker runs its jobs with the caller's floating-point control word,
:mod:`hubkit.ops._worker_pool`): the products in the order of the depth, each rounded to float32 and added, bit for
bit that loop in NumPy but for which NaN a sum of two NaNs keeps (tested), so the values differ from the one-thread
chain's ``np.dot`` by summation order only.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from hubkit.ops import _numba, _worker_pool
from hubkit.ops._packed_gemm import _aligned_empty
from hubkit.ops._small_linear import DerivedWeights

__all__ = ["CHUNK_COLS", "MAX_ROWS", "ColsCall", "ColumnBlocks", "available", "pack_cols", "prepare", "run"]

CHUNK_COLS = 64
"""Columns of a chunk: its weights are one contiguous block (784x64: 200 KB). One thread, Zen 3, a layer at one row
against OpenBLAS's GEMV (``np.dot``) and the tile kernel on 32-column panels (GB/s of weights read): 784x512 55 /
59 / 45, 512x512 60 / 64 / 44, 2048x1024 62 / 61 / 45; blocks of 32 columns 46-51, of 128 49-56."""

MAX_ROWS = 2
"""Most rows a call takes (the scratch buffer holds this many of each layer)."""

WAIT_SPIN_US = 20.0
"""Microseconds a thread spins waiting for a chunk the other thread runs before it yields its CPU on each further
check (the other may share it). A chunk takes 1-4 us, a layer of the MLP 8-20 us."""

_F32 = np.dtype(np.float32)


def pack_cols(w: np.ndarray) -> np.ndarray:
    """``w`` (``K x N`` float32) as its chunks' blocks one after the other, 64-byte aligned: the block of columns
    ``[c0, c0 + width)`` (``width`` :data:`CHUNK_COLS`, fewer in the last) is ``w[:, c0:c0 + width]`` C-ordered,
    from float ``c0 * K``."""
    k, n = w.shape
    out = _aligned_empty(k * n)
    full = n // CHUNK_COLS
    if full:
        out[: full * CHUNK_COLS * k].reshape(full, k, CHUNK_COLS)[...] = w[:, : full * CHUNK_COLS].reshape(
            k, full, CHUNK_COLS).transpose(1, 0, 2)
    if n % CHUNK_COLS:
        out[full * CHUNK_COLS * k :].reshape(k, n % CHUNK_COLS)[...] = w[:, full * CHUNK_COLS :]
    return out


class ColumnBlocks(DerivedWeights):
    """:func:`pack_cols` of a layer's weights, kept per variable (:class:`~hubkit.ops._small_linear.DerivedWeights`:
    remade when the weights change; with ``settled``, not while they change between calls)."""

    __slots__ = ()

    def derive(self, w: np.ndarray, key: Any) -> np.ndarray:
        return pack_cols(np.asarray(w, _F32))


class _State:
    code: tuple[Any, int, int, int] | None = None  # (cols_patch compiled, cols_job's address, sched_yield's, spin ticks)
    failed = False


_STATE = _State()


def _code() -> tuple[Any, int, int, int] | None:
    """The compiled patch, the job's address, ``sched_yield``'s and the wait's spin in time-stamp ticks, or None when
    they cannot be had here."""
    code = _STATE.code
    if code is None and not _STATE.failed:
        if not (_numba.numba_enabled() and _worker_pool.available()):
            return None
        from hubkit.ops import _chain_cols_kernel

        patch = _numba.kernel(_chain_cols_kernel.cols_patch)
        job = _numba.job(_chain_cols_kernel.cols_job) if patch is not None else 0
        yield_fn = ctypes.cast(_worker_pool._libc().sched_yield, ctypes.c_void_p).value or 0
        if not job or not yield_fn:
            _STATE.failed = True
            return None
        ticks = int(WAIT_SPIN_US * _worker_pool.compile_code().ticks_per_us)
        code = _STATE.code = (patch, job, yield_fn, ticks)
    return code if _numba.numba_enabled() else None


def available() -> bool:
    """Whether a column-split chain can run here (Numba, the worker pool and the compiled job)."""
    return _code() is not None


class ColsCall:
    """A chain's two argument blocks, its claim words and its scratch buffer, filled once; one call at a time (the
    caller holds the pool, :meth:`~hubkit.ops._worker_pool.Pool.acquire`). Keeps every array the blocks point at
    alive."""

    __slots__ = ("_arrays", "blocks", "n", "scratch", "sync")

    def __init__(self, blocks: np.ndarray, sync: np.ndarray, scratch: np.ndarray, arrays: tuple[Any, ...],
                 n: int) -> None:
        self.blocks = blocks
        self.sync = sync
        self.scratch = scratch
        self._arrays = arrays
        self.n = n  # the last layer's columns


def prepare(layers: list[tuple[np.ndarray, int, np.ndarray | None, int]]) -> ColsCall | None:
    """The argument blocks of the chain ``layers``, each ``(pack_cols(w), n, bias or None, act)`` for a ``depth x n``
    float32 ``w`` (``n`` float32 bias values; the layers as :func:`hubkit.ops._packed_gemm.chain_table` takes
    them), every depth the columns of the layer before; None when the job cannot run here or a layer does not fit."""
    code = _code()
    if code is None or not layers:
        return None
    from hubkit.ops._chain_cols_kernel import COLS_HEAD, LAYER_WORDS, SYNC_WORDS

    table = np.zeros((len(layers), LAYER_WORDS), np.int64)
    depth = width = layers[0][0].size // layers[0][1] if layers[0][1] > 0 else 0
    words = between = 0
    kept: list[Any] = []
    for row, (blocks, n, bias, act) in zip(table, layers, strict=True):
        if (n <= 0 or depth == 0 or blocks.dtype != _F32 or blocks.ndim != 1 or blocks.size != depth * n
                or not blocks.flags.c_contiguous
                or (bias is not None and (bias.dtype != _F32 or bias.shape != (n,) or not bias.flags.c_contiguous))):
            return None
        row[:] = (blocks.ctypes.data, 0 if bias is None else bias.ctypes.data, act, n, depth)
        kept += (blocks, bias)
        words += -(-n // CHUNK_COLS)
        between += n
        depth = n
    between -= depth  # the last layer writes the output
    sync = _aligned_empty(2 * words * SYNC_WORDS).view(np.int64)  # each claim word on a line of its own
    sync[:] = 0
    scratch = np.empty(max(1, MAX_ROWS * between), _F32)
    blocks_arr = np.zeros((2, COLS_HEAD + table.size), np.int64)
    for side in range(2):
        blocks_arr[side, :COLS_HEAD] = (0, 0, len(layers), scratch.ctypes.data, 0, sync.ctypes.data, side, code[2],
                                        width, words, code[3])
        blocks_arr[side, COLS_HEAD:] = table.reshape(-1)
    return ColsCall(blocks_arr, sync, scratch, tuple(kept), depth)


def run(x: np.ndarray, call: ColsCall, pool: _worker_pool.Pool) -> np.ndarray | None:
    """The chain's output for ``x`` (1-2 rows of its width, float32, C-contiguous), computed by this thread and
    ``pool``'s worker (the caller holds ``pool``); None, nothing run, when ``x`` does not fit or the job cannot
    run here."""
    code = _code()
    if (code is None or type(x) is not np.ndarray or x.dtype != _F32 or x.ndim != 2 or not x.flags.c_contiguous
            or not 0 < x.shape[0] <= MAX_ROWS):
        return None
    out = np.empty((x.shape[0], call.n), _F32)
    addr = code[0](call.blocks, call.sync, x, out)
    if not addr:
        return None
    pool.run(code[1], addr + call.blocks.strides[0], addr)
    return out
