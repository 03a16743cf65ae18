"""A float32 dense layer of many rows on two threads: half of the rows on the pool's worker, on the tile GEMM.

With two BLAS threads the fused dense step used np.matmul: OpenBLAS packs the weights on every call,
and the bias and activation ran after it on one thread. :func:`split_rows` runs the tile kernel of
:mod:`hubkit.ops._gemm_kernel` (weights packed once, bias and activation in its registers) on the
two halves of the rows at once: the second half on the worker thread of
:mod:`hubkit.ops._worker_pool`, the first on the caller. Each output row is computed by one thread,
in the same order as the one-thread tile GEMM, so the result is bit for bit
:func:`hubkit.ops._packed_gemm.packed_matmul`'s.

The channels-last convolutions of :mod:`hubkit.ops.conv_nhwc` split their GEMMs the same way (into a
concatenation's channel slice, or adding to a residual in place).

The worker is only an accelerator: when the pool is busy (another caller has it), missing or late,
the caller runs the second half itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.ops import _numba, _packed_gemm, _worker_pool

__all__ = ["MIN_ROWS", "job_address", "run_split", "split_rows"]

MIN_ROWS = 16
"""Fewest rows split (two tile panels of 8 or more rows each); fewer go to np.matmul."""

class _Job:
    blocks: Any = None  # the compiled _gemm_numba.rows_blocks
    words: int = 0
    address: int = 0  # rows_job's, once compiled


_JOB = _Job()


def job_address() -> int:
    """The address of the compiled ``void rows_job(int64 *args)`` of :mod:`hubkit.ops._gemm_numba` (compiled
    and cached on the first call; 0 when it cannot be)."""
    if _JOB.address and _numba.numba_enabled():
        return _JOB.address
    if not _numba.numba_enabled():
        return 0
    try:
        from hubkit.ops import _gemm_numba
    except Exception:  # numba or llvmlite unusable: no split
        return 0
    if _JOB.blocks is None:
        blocks = _numba.kernel(_gemm_numba.rows_blocks)
        if blocks is None:
            return 0
        _JOB.words = _gemm_numba.ROWS_JOB_ARGS
        _JOB.blocks = blocks
    _JOB.address = _numba.job(_gemm_numba.rows_job)
    return _JOB.address


def split_rows(
    x: np.ndarray,
    packed: np.ndarray,
    n: int,
    bias: np.ndarray | None,
    act: int,
    out: np.ndarray | None = None,
    accumulate: bool = False,
) -> np.ndarray | None:
    """``act(x @ w + bias)`` for ``packed = pack_weights(w)``, half of the rows on the pool's worker; None
    when it cannot run here (the caller then computes it another way).

    ``x`` is a C-contiguous float32 ``(M, K)`` with at least :data:`MIN_ROWS` rows; ``bias`` a float32
    ``(n,)`` array or None; ``out`` (fresh when None) a float32 ``(M, n)`` array with unit column stride
    (rows may be further apart, e.g. a channel slice). ``accumulate`` adds the product to what ``out``
    holds (``act(out + x @ w + bias)``, as :func:`hubkit.ops._packed_gemm.packed_matmul`).
    """
    if x.dtype != np.float32 or x.ndim != 2:
        return None
    rows, depth = x.shape
    if rows < MIN_ROWS or depth == 0 or n == 0 or not x.flags.c_contiguous or not _worker_pool.available():
        return None
    if not _packed_gemm.available():
        return None
    if bias is not None:
        bias = np.ascontiguousarray(bias, np.float32)
    if not _packed_gemm.fits(packed, depth, n, out, rows, bias):
        return None
    if accumulate and out is None:
        return None
    if not job_address():
        return None
    if out is None:
        out = np.empty((rows, n), np.float32)
    flags = _packed_gemm.tile_flags(act, bias is not None, accumulate)
    mr = _packed_gemm._STATE.mr
    ok = run_split(x, packed, _packed_gemm._EMPTY if bias is None else bias, flags, out, _packed_gemm.kc_for(depth),
                   _packed_gemm._mc(mr, depth, n))
    return out if ok else None


def run_split(x: np.ndarray, packed: np.ndarray, bias: np.ndarray, flags: int, out: np.ndarray, kc: int, mc: int) -> bool:
    """:func:`split_rows` for a caller that has checked its arrays as it does (``bias`` empty for none, ``flags`` the
    kernel's, ``kc`` and ``mc`` :func:`hubkit.ops._packed_gemm.kc_for` and ``_mc`` of the shape); False (nothing
    written) when the worker or the job cannot run, or ``packed`` is not 64-byte aligned."""
    fn = job_address()
    if not fn:
        return False
    blocks = np.empty((2, _JOB.words), np.int64)  # alive until run_halves returns: both halves are done by then
    addr = _JOB.blocks(blocks, _packed_gemm._STATE.addr, _packed_gemm._STATE.mr, kc, mc, x, (x.shape[0] + 1) // 2,
                       packed, out, bias, flags)
    return bool(addr) and _worker_pool.run_halves(fn, addr, blocks.strides[0])
