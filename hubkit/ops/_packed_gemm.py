"""float32 dense layers on the LLVM tile kernel of :mod:`hubkit.ops._gemm_kernel`, with a NumPy fallback.

:func:`packed_matmul` computes ``act(x @ w + bias)`` with ``w`` packed once (:class:`PackedWeights`,
``K x 32`` column panels, zero-padded); :func:`dense` is what the fused ``MatMul`` step calls. They
read ``x`` in place (rows with unit column stride; anything else is copied first)
and run the macro-kernel of :mod:`hubkit.ops._gemm_numba`: rows in blocks whose output rows stay in
L2 across the depth blocks, the depth in balanced blocks of at most :data:`KC`. Bias and activation
are applied in the tile's registers after the last depth block (same arithmetic as
:mod:`hubkit.ops._epilogue`: one float32 addition, then the activation).

Measured (``scripts/bench_gemm.py``, one thread, Ice Lake AVX-512): 1.1-1.5x np.matmul's GFLOP/s on
the MLP's batch-64 layers, 0.95-1.0x at batch 4096 (where the fused epilogue still saves a pass).

Results differ from NumPy's by summation order only: each output is a float32 sum over ``K``
accumulated in FMA order, within ``K * eps * sum_k |a_k b_k|`` of the exact value (tested in
``tests/ops/test_packed_gemm.py``).

:func:`available` says whether the kernel can run (Numba on, llvmlite compiles for the host); the
entry points return None when it cannot and the caller keeps its NumPy code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from hubkit.ops import _numba
from hubkit.ops._epilogue import RELU, RELU6
from hubkit.ops._forksafe import ForkSafeLock
from hubkit.ops._gemm_kernel import AVX512_MR, nc_bytes
from hubkit.ops._small_linear import DerivedWeights

__all__ = [
    "KC", "MIN_COLS", "MIN_DEPTH", "ONE_BLOCK_DEPTH", "ChainTable", "DenseCall", "PackedWeights", "available", "batched_matmul", "chain_table",
    "dense", "fits", "kc_for", "pack_batch", "pack_weights", "packed_matmul", "prepare_dense", "run_chain", "run_tiles", "takes",
]

KC = 256
"""Most depth of a block: a row panel's ``mr x KC`` values of ``A`` (13 KB) stay in L1 along the column panels."""

ONE_BLOCK_DEPTH = 800
"""With tiles of fewer than 13 rows (AVX2's 6), depths up to this run as one block (:func:`kc_for`): a 6-row panel
of 800 is 19 KB. One thread, Zen 3, against blocks of :data:`KC`: 64x784x512 552 -> 535 us, 1024x784x512 8.64 ->
8.33 ms, 64x512x512 362 -> 353 us; deeper products keep :data:`KC` (49x2048x512 1117 us against 1149 in blocks
of 800, 196x1024x256 1111 against 1143 in blocks of 512)."""


def kc_for(depth: int) -> int:
    """The most depth of a block for a product of ``depth`` (:data:`KC`, or see :data:`ONE_BLOCK_DEPTH`)."""
    return depth if _STATE.mr < AVX512_MR and KC < depth <= ONE_BLOCK_DEPTH else KC

MIN_ROWS = 9
"""Fewest rows :func:`dense` takes: 3-8 rows go to ``hubkit/ops/_small_linear.py``, 1-2 to BLAS's GEMV."""

MIN_COLS = 64
MIN_DEPTH = 64
"""Smallest ``N`` and ``K`` :func:`dense` takes (below them, and below :data:`MIN_SMALL_WORK` for
fewer than 32 rows, np.matmul was as fast or faster: 0.3-0.9x for 512x64 and 64x512 weights at 4-16
rows; 0.6x for the MLP's 512x10 layer at 64 rows, where 22 of the 32 columns of a tile are padding)."""

MIN_SMALL_WORK = 128 * 1024
"""Least ``K * N`` for 9 to 31 rows (1.5-2.7x np.matmul for 784x512 and 512x512 weights there)."""

NARROW_FULL_LANES = 8
"""On hosts with 8-lane tiles (16 columns a tile) :func:`dense` also takes fewer than :data:`MIN_COLS` columns, at
any work, when its last tile's 16 columns hold more than this many of them (:func:`_narrow_fit`: 9-16, 25-32, 41-48,
57-63). One thread, Zen 3, tile against np.matmul plus the bias, depth 64 / 512: 10 columns 0.87-0.93x / 0.61-0.85x
at 9-256 rows, 16 columns 0.68-0.87x / 0.64-0.75x, 32 and 48 columns 0.71-0.80x / 0.55-0.87x; with 8 or 24 columns
(8 of a tile's 16 padding) 0.89-1.19x / 0.91-1.16x, so they stay on np.matmul. The MLP's 512x10 layer at 64 rows:
20 -> 15.8 us a step."""

_F32 = np.dtype(np.float32)
_lock = ForkSafeLock()  # fresh in a forked child: a parent thread may hold it while compiling


class _State:
    checked: bool = False
    ok: bool = False
    addr: int = 0
    mr: int = 0
    kernel: Any = None
    chain: Any = None  # run_chain's compiled kernel, once asked for
    chain_job: Any = None  # and its two-thread job: (chain_blocks compiled, chain_job's address)
    blas_fn: Any = None
    wide: bool | None = None
    narrow: bool | None = None


_STATE = _State()


def available() -> bool:
    """Whether the LLVM tile kernel runs here (Numba enabled, llvmlite compiled it for the host)."""
    if not _numba.numba_enabled():
        return False
    if not _STATE.checked:
        with _lock:
            if not _STATE.checked:
                try:
                    from hubkit.ops import _gemm_kernel, _gemm_numba

                    _STATE.mr = _gemm_kernel.kernel_address()[1]
                    _STATE.addr = _gemm_kernel.conv_kernel_address()  # the tile entry every Numba loop calls
                    _STATE.kernel = _numba.kernel(_gemm_numba.gemm_kernel)
                    _STATE.ok = _STATE.kernel is not None
                except Exception:  # llvmlite or numba unusable here: the NumPy code runs
                    _STATE.ok = False
                _STATE.checked = True
    return _STATE.ok


def _aligned_empty(n: int) -> np.ndarray:
    buf = np.empty(n + 16, _F32)
    off = (-buf.ctypes.data % 64) // 4
    return buf[off : off + n]


def pack_weights(w: np.ndarray) -> np.ndarray:
    """``w`` (``K x N`` float32) as ``ceil(N / 32)`` panels of ``K x 32``, zero-padded, 64-byte aligned."""
    k, n = w.shape
    panels = (n + 31) // 32
    packed = _aligned_empty(panels * k * 32).reshape(panels, k, 32)
    full = n // 32
    if full:
        packed[:full] = w[:, : full * 32].reshape(k, full, 32).transpose(1, 0, 2)
    if n % 32:
        packed[full] = 0
        packed[full, :, : n % 32] = w[:, full * 32 :]
    return packed


def pack_batch(w: np.ndarray) -> np.ndarray:
    """``pack_weights`` of each ``w[p]`` (``w``: ``P x K x N`` float32): ``P x ceil(N / 32) x K x 32``, 64-byte aligned."""
    count, k, n = w.shape
    panels = (n + 31) // 32
    packed = _aligned_empty(count * panels * k * 32).reshape(count, panels, k, 32)
    full = n // 32
    if full:
        packed[:, :full] = w[:, :, : full * 32].reshape(count, k, full, 32).transpose(0, 2, 1, 3)
    if n % 32:
        packed[:, full] = 0
        packed[:, full, :, : n % 32] = w[:, :, full * 32 :]
    return packed


class PackedWeights(DerivedWeights):
    """``pack_weights(w)``, or of ``w.T`` when asked with ``get(w, transpose=True)``, kept per fused step
    (:class:`~hubkit.ops._small_linear.DerivedWeights`: remade when ``w`` changes)."""

    __slots__ = ()

    def get(self, w: np.ndarray, transpose: bool = False, settled: bool = False) -> Any:
        """``pack_weights(w)``, or ``pack_weights(w.T)`` when ``transpose``; with ``settled``, None while the
        weights change between calls (:meth:`DerivedWeights.get`)."""
        return super().get(w, transpose, settled)

    def ready(self, w: np.ndarray, transpose: bool = False) -> Any:
        """The packed form kept for these very weights, or None (:meth:`DerivedWeights.ready`)."""
        return super().ready(w, transpose)

    def derive(self, w: np.ndarray, key: Any) -> np.ndarray:
        return pack_weights(np.asarray(w.T if key else w, _F32))


def tile_flags(act: int, bias: bool, accumulate: bool = False) -> int:
    """The tile kernel's ``flags`` for the epilogue activation ``act`` (0 none, 1 ReLU, 2 ReLU6), a bias or none,
    and whether the product is added to what the output holds."""
    from hubkit.ops import _gemm_kernel as g

    flags = g.RELU if act == RELU else g.RELU6 if act == RELU6 else 0
    return flags | (g.BIAS_COLS if bias else 0) | (g.ACCUMULATE if accumulate else 0)


NC_BYTES = nc_bytes()
"""As :data:`hubkit.ops._gemm_numba.NC_BYTES` (read here without importing numba)."""

L2_BLOCK = 256 * 1024
"""Bytes of a row block's rows of ``A`` (one depth block) and of ``C`` (when the depth takes several)."""


def _mc(mr: int, k: int, n: int) -> int:
    """Rows of a block: its rows of ``A`` (and of the output, when the depth takes several blocks) fit in L2.

    ``gemm_rows`` runs the columns in blocks of ``NC_BYTES`` of ``B`` (one depth block) each: a row's output
    in a block is at most that many columns."""
    kc = min(k, kc_for(k))
    per_row = 4 * kc + (4 * min(n, max(32, NC_BYTES // (4 * kc))) if k > kc else 0)
    return max(1, L2_BLOCK // (per_row * mr)) * mr


def fits(
    packed: np.ndarray, depth: int, n: int, out: np.ndarray | None = None, rows: int = 0, bias: np.ndarray | None = None
) -> bool:
    """Whether ``packed`` is ``pack_weights`` of a ``depth x n`` float32 matrix (its shape, dtype and layout; the
    64-byte alignment is checked by the compiled entries); ``out``, when given, a writable, aligned float32
    ``(rows, n)`` array the tile can store rows of ``n`` values into (unit column stride, rows 4-byte
    multiples apart and not overlapping); and ``bias``, when given, ``n`` contiguous float32 values.

    Every private entry that hands these arrays' addresses to the tile kernel asks it first: the kernel
    reads ``ceil(n / 32)`` panels of ``depth x 32`` values and ``n`` bias values, and writes ``rows x n``
    values, trusting all three."""
    if (
        not isinstance(packed, np.ndarray) or packed.dtype != _F32 or packed.ndim != 3 or packed.shape[2] != 32
        or packed.shape[1] != depth or packed.shape[0] * 32 < n or not packed.flags.c_contiguous
    ):
        return False
    if bias is not None and (
        not isinstance(bias, np.ndarray) or bias.dtype != _F32 or bias.shape != (n,) or not bias.flags.c_contiguous
    ):  # an empty one would be read as none, at address 0
        return False
    if out is None:
        return True
    return (
        isinstance(out, np.ndarray) and out.dtype == _F32 and out.shape == (rows, n) and out.flags.writeable
        and out.flags.aligned
        and (out.strides[1] == 4 or n <= 1) and out.strides[0] % 4 == 0 and (out.strides[0] >= 4 * n or rows <= 1)
    )


def packed_matmul(
    x: np.ndarray,
    packed: np.ndarray,
    n: int,
    bias: np.ndarray | None = None,
    act: int = 0,
    out: np.ndarray | None = None,
    accumulate: bool = False,
) -> np.ndarray | None:
    """``act(x @ w + bias)`` for ``packed = pack_weights(w)`` (``w`` of ``n`` columns), or None.

    ``x`` is ``(M, K)`` float32 with any strides; ``out`` (fresh when None) is ``(M, n)`` float32
    with unit column stride. With ``accumulate``, ``out`` holds a value the product is added to (in the
    tile's registers, before the bias and activation): ``act(out + x @ w + bias)``. None when the kernel
    is not available or ``packed`` is not 64-byte aligned (the caller computes it itself).
    """
    if not available() or x.dtype != _F32 or x.ndim != 2:
        return None
    rows, depth = x.shape
    if accumulate and out is None:
        raise ValueError("accumulate needs an out array holding the value to add to.")
    if bias is not None:
        bias = np.ascontiguousarray(bias, _F32)
    if not fits(packed, depth, n, out, rows, bias):
        return None
    if out is None:
        out = np.empty((rows, n), _F32)
    if rows == 0 or n == 0:
        return out
    flags = tile_flags(act, bias is not None, accumulate)
    if depth == 0 and accumulate:
        return None
    if depth == 0:
        out[...] = 0
        if bias is not None:
            out += bias
        from hubkit.ops._epilogue import bias_act_

        return bias_act_(out, None, act)
    if x.strides[1] != 4 or x.strides[0] % 4 or x.strides[0] < 0:
        x = np.ascontiguousarray(x)
    if not run_tiles(x, packed, _EMPTY if bias is None else bias, flags, out, kc_for(depth), _mc(_STATE.mr, depth, n)):
        return None  # packed not 64-byte aligned (pack_weights' always is)
    return out


def run_tiles(x: np.ndarray, packed: np.ndarray, bias: np.ndarray, flags: int, out: np.ndarray, kc: int, mc: int) -> bool:
    """:func:`packed_matmul` on this thread for a caller that has checked its arrays as it does (``x`` with unit
    column stride, ``bias`` empty for none, ``flags`` the kernel's, ``kc`` and ``mc`` :func:`kc_for` and ``_mc`` of
    the shape); False (nothing written) when ``packed`` is not 64-byte aligned."""
    rows, depth = x.shape
    return bool(_STATE.kernel(_STATE.addr, _STATE.mr, kc, mc, x, rows, depth, packed, out, bias, flags))


_EMPTY = np.empty(0, _F32)


def batched_matmul(a: np.ndarray, packed: np.ndarray, out: np.ndarray) -> bool:
    """``out[p] = a[p] @ w[p]`` for ``packed = pack_batch(w)``; False (nothing written) when the kernel cannot run.

    ``a`` (``P x M x K``) and ``out`` (``P x M x N``) are C-contiguous float32 arrays.
    """
    if not available() or a.dtype != _F32 or out.dtype != _F32 or not a.flags.c_contiguous or not out.flags.c_contiguous:
        return False
    count, rows, depth = a.shape
    n = out.shape[2]
    if (
        packed.dtype != _F32
        or packed.ndim != 4
        or packed.shape[3] != 32
        or not packed.flags.c_contiguous
        or packed.shape[0] != count
        or packed.shape[2] != depth
        or packed.shape[1] * 32 < n
        or out.shape[:2] != (count, rows)
    ):
        return False
    if count == 0 or rows == 0 or n == 0 or depth == 0:
        return False
    from hubkit.ops import _gemm_numba

    kernel = _numba.kernel(_gemm_numba.gemm_batched)
    if kernel is None:
        return False
    mr = _STATE.mr
    return bool(kernel(_STATE.addr, mr, kc_for(depth), _mc(mr, depth, n), a, packed, out, 0))


def dense(
    a: np.ndarray, w: np.ndarray, bias: np.ndarray | None, act: int, packed: PackedWeights, transpose_b: bool = False
) -> np.ndarray | None:
    """``act(a @ w + bias)`` (``w.T`` when ``transpose_b``) by the tile kernel, or None when it does not apply.

    The fused ``MatMul`` + bias + activation step (``hubkit/runtime/optimize.py``) calls it for a
    MatMul whose weights are a variable or a constant; ``packed`` keeps their packed form between
    runs. It applies to float32 2-D operands of at least :data:`MIN_ROWS` rows, :data:`MIN_DEPTH`
    depth and :data:`MIN_COLS` columns (and :data:`MIN_SMALL_WORK` below 32 rows), with a 1-D float32
    bias of the right length or none.
    """
    if a.ndim != 2 or w.ndim != 2 or a.dtype != _F32 or w.dtype != _F32:
        return None
    rows, depth = a.shape
    cols = w.shape[0] if transpose_b else w.shape[1]
    if (w.shape[1] if transpose_b else w.shape[0]) != depth:
        return None
    if bias is not None and (bias.dtype != _F32 or bias.shape != (cols,)):
        return None
    if not _tile_host() or not available():
        return None
    threads = blas_threads()
    if not takes(rows, depth, cols, threads) or (threads >= 2 and not a.flags.c_contiguous):
        return None
    form = packed.get(w, transpose_b, settled=True)  # weights written between calls (training): np.matmul
    if form is None:
        return None
    if threads >= 2:
        from hubkit.ops._split_rows import split_rows

        return split_rows(a, form, cols, bias, act)
    return packed_matmul(a, form, cols, bias, act)


def takes(rows: int, depth: int, cols: int, threads: int) -> bool:
    """Whether :func:`dense` runs a ``rows x depth`` by ``depth x cols`` product on the tile kernel with ``threads``
    BLAS threads (:func:`blas_threads`), given float32 operands that fit, on a host whose tiles it runs."""
    narrow = _narrow_host()
    if narrow and rows >= NARROW_DENSE_MAX_ROWS:
        return False
    if threads >= 2:  # every layer of enough rows, small ones too: a threaded BLAS call between them left
        # OpenBLAS's idle threads spinning on the worker's core (the MLP at batch 4096: 44 ms against 22)
        return rows >= (NARROW_SPLIT_MIN_ROWS if narrow else SPLIT_MIN_ROWS) and depth >= MIN_DEPTH and cols > 0
    return threads == 1 and rows >= MIN_ROWS and depth >= MIN_DEPTH and (
        (cols >= MIN_COLS and (rows >= 32 or depth * cols >= MIN_SMALL_WORK)) or (narrow and _narrow_fit(cols))
    )


class ChainTable:
    """:func:`run_chain`'s layers: ``table``, the kernel's int64 rows (addresses included), and the arrays they point
    at, kept alive with it; ``width`` (the first layer's depth), ``n`` (the last one's columns) and ``between`` (the
    other layers' columns, summed)."""

    __slots__ = ("_arrays", "between", "n", "table", "width")

    def __init__(self, table: np.ndarray, arrays: tuple[Any, ...]) -> None:
        self.table = table
        self._arrays = arrays
        self.width = int(table[0, 6])
        self.n = int(table[-1, 3])
        self.between = int(table[:-1, 3].sum())


def chain_table(layers: list[tuple[np.ndarray, int, np.ndarray | None, int]]) -> ChainTable | None:
    """:func:`run_chain`'s layers ``(packed, n, bias, act)``: ``pack_weights`` of a layer's ``depth x n`` weights,
    its ``n`` float32 bias values or None, and its activation, each run as :func:`dense` runs it on one thread.
    None when a packed form or a bias does not fit (:func:`fits`) or a form is not 64-byte aligned."""
    if not layers or not available():
        return None
    from hubkit.ops._gemm_numba import CHAIN_WORDS

    table = np.zeros((len(layers), CHAIN_WORDS), np.int64)
    width = -1
    for row, (packed, n, bias, act) in zip(table, layers, strict=True):
        if not isinstance(packed, np.ndarray) or packed.ndim != 3:
            return None
        depth = packed.shape[1]
        if not fits(packed, depth, n, None, 0, bias) or packed.ctypes.data % 64 or depth == 0 or n == 0 or (
            width >= 0 and depth != width
        ):
            return None
        width = n
        row[:] = (packed.ctypes.data, 0 if bias is None else bias.ctypes.data, tile_flags(act, bias is not None), n,
                  kc_for(depth), _mc(_STATE.mr, depth, n), depth)
    return ChainTable(table, tuple(layers))


def run_chain(x: np.ndarray, chain: ChainTable, threads: int = 1) -> np.ndarray | None:
    """Dense layers one after the other, each as :func:`dense` runs it with ``threads`` BLAS threads (the same
    bits), in one compiled call: ``x`` C-contiguous float32, ``chain`` :func:`chain_table`'s. With two or more
    threads the second half of the rows runs on the worker (:mod:`hubkit.ops._worker_pool`), through every layer:
    each half of a layer's rows needs only the same rows of the layer before. The last layer's output, or None
    (nothing computed) when the kernel (or the worker's job) cannot run or ``x``'s width is not the first layer's
    depth. Three calls of :func:`dense`'s prepared form cost the MLP 784-512-512-10 at 64 rows 30 us more (900
    against 868 us, one thread, Zen 3): their checks, their dispatches and the plan's loop."""
    kernel = _STATE.chain
    if kernel is None:
        from hubkit.ops import _gemm_numba

        kernel = _STATE.chain = _numba.kernel(_gemm_numba.gemm_chain) if available() else None
        if kernel is None:
            return None
    rows = x.shape[0] if type(x) is np.ndarray and x.ndim == 2 else 0
    if not rows or x.dtype != _F32 or not x.flags.c_contiguous or x.shape[1] != chain.width or not available():
        return None
    table = chain.table
    scratch = np.empty(rows * chain.between, _F32)  # the layers before the last (alive until the call is done)
    out = np.empty((rows, chain.n), _F32)
    if threads < 2:
        kernel(_STATE.addr, _STATE.mr, x, table, scratch, out)
        return out
    job = _chain_job()
    if job is None:
        return None
    from hubkit.ops import _worker_pool
    from hubkit.ops._gemm_numba import CHAIN_HEAD

    blocks = np.empty((2, CHAIN_HEAD + table.size), np.int64)
    addr = job[0](blocks, _STATE.addr, _STATE.mr, x, table, scratch, out, (rows + 1) // 2)
    return out if _worker_pool.run_halves(job[1], addr, blocks.strides[0]) else None


def _chain_job() -> tuple[Any, int] | None:
    """``(chain_blocks compiled, chain_job's address)``, or None when either cannot be had here."""
    job = _STATE.chain_job
    if job is None:
        from hubkit.ops import _gemm_numba, _worker_pool

        blocks = _numba.kernel(_gemm_numba.chain_blocks)
        address = _numba.job(_gemm_numba.chain_job) if blocks is not None and _worker_pool.available() else 0
        if not address:
            return None
        job = _STATE.chain_job = (blocks, address)
    return job if _numba.numba_enabled() else None


def _narrow_fit(cols: int) -> bool:
    """Whether ``cols`` columns fill more than :data:`NARROW_FULL_LANES` of their last 16-column tile."""
    return cols > 0 and (cols - 1) % 16 >= NARROW_FULL_LANES


class DenseCall:
    """:func:`dense` for C-contiguous inputs of one shape, one bias array and one BLAS thread count, its checks and
    decisions made once (:func:`prepare_dense`, after a :func:`dense` call that ran): a call checks the input, the
    weights' shape and dtype, the bias's identity and the thread count, takes the form ``packed`` holds for these
    very weights (None when they were written since) and runs the tile kernel. ``dense``'s checks cost 5-7 us a
    layer, a tenth of a 64x64x64 layer's time. Calling it gives the result, or None (nothing computed) when the
    call is not the one it was prepared for or the split could not run: the caller then calls :func:`dense`."""

    __slots__ = ("_bias", "_bias_arg", "_flags", "_kc_mc", "n", "packed", "shape", "threads", "transpose_b", "w_shape")

    def __init__(self, shape: tuple[int, ...], w_shape: tuple[int, ...], n: int, bias: np.ndarray | None, act: int,
                 packed: PackedWeights, transpose_b: bool, threads: int) -> None:
        self.shape = shape
        self.w_shape = w_shape
        self.n = n
        self._bias = bias
        self._bias_arg = _EMPTY if bias is None else bias
        self._flags = tile_flags(act, bias is not None)
        self._kc_mc = (kc_for(shape[1]), _mc(_STATE.mr, shape[1], n))
        self.packed = packed
        self.transpose_b = transpose_b
        self.threads = threads

    def __call__(self, a: np.ndarray, w: np.ndarray, bias: np.ndarray | None) -> np.ndarray | None:
        if (
            type(a) is not np.ndarray or a.shape != self.shape or a.dtype != _F32 or not a.flags.c_contiguous
            or type(w) is not np.ndarray or w.shape != self.w_shape or w.dtype != _F32
            or bias is not self._bias or blas_threads() != self.threads or not available()
        ):
            return None
        # the form packed for these very weights, or None: written weights (training) go the general way, which
        # decides whether to pack them again (``get(settled=True)`` notes them; asking here would count twice)
        form = self.packed.ready(w, self.transpose_b)
        if form is None or form.shape[1] != self.shape[1] or form.shape[0] * 32 < self.n:  # (the kernel reads it whole)
            return None
        out = np.empty((self.shape[0], self.n), _F32)
        kc, mc = self._kc_mc
        if self.threads >= 2:  # dense() split these rows over the worker
            from hubkit.ops._split_rows import run_split

            ok = run_split(a, form, self._bias_arg, self._flags, out, kc, mc)
        else:
            ok = run_tiles(a, form, self._bias_arg, self._flags, out, kc, mc)
        return out if ok else None


def prepare_dense(a: np.ndarray, w: np.ndarray, bias: np.ndarray | None, act: int, packed: PackedWeights,
                  transpose_b: bool = False) -> DenseCall | None:
    """The :class:`DenseCall` for inputs like ``a`` and weights of ``w``'s shape, given that ``dense(a, w, bias, act,
    packed, transpose_b)`` has just run the tile kernel (so every check passed); None for a non-contiguous ``a``."""
    if not a.flags.c_contiguous or a.dtype != _F32 or a.ndim != 2 or w.dtype != _F32 or w.ndim != 2:
        return None
    n = w.shape[0] if transpose_b else w.shape[1]
    return DenseCall(a.shape, w.shape, n, bias, act, packed, transpose_b, blas_threads())


SPLIT_MIN_ROWS = 256
"""With two or more BLAS threads, :func:`dense` splits every layer of at least this many rows over two threads
(:mod:`hubkit.ops._split_rows`), whatever its width; fewer rows stay on np.matmul. The MLP 784-512-512-10
with two threads (``scripts/bench_vs_ort.py --threads 2``, against main in the same minutes): batch 4096
22.3-23.0 ms against 23.9-26.7 (0.97-1.02x onnxruntime, 0.98-1.01x the GEMMs alone); batch 64 split 462 us
by the minimum against 513-528 but 768-835 us by the median against 590-605 (the worker's slow samples):
64 rows stay on np.matmul, like 17 rows of a 300x70 layer (2x its time split)."""


TILE_MIN_MR = 6
"""The tile paths (:func:`dense`, the NHWC convolutions, Winograd's products, the split layers) run only on hosts
whose tiles have at least this many rows: AVX-512's 13 and AVX2's 6 (``_gemm_kernel.max_mr``). The 3-row
tiles of other machines run in tests only. On the AMD Zen 3 of the tenth session (AVX2, one thread) turning
them on took ``scripts/bench_onnx.py --repeats 3 --layers 0`` from 1.62x / 1.39x onnxruntime to 1.35x / 1.10x
on SqueezeNet (batch 1 / 16), 1.02x / 0.92x to 0.99x / 0.87x on ResNet-50, 0.99x / 0.84x to 0.95x / 0.81x
on DenseNet-121 and 0.77x / 0.64x to 0.71x / 0.57x on Inception v1 (same minutes)."""

NARROW_DENSE_MAX_ROWS = 1024
"""On hosts with 8-lane tiles :func:`dense` takes the tile only below this many rows. The MLP 784-512-512-10 on the
Zen 3 (``scripts/bench_vs_ort.py --quick``, tile on / off, same minutes): batch 64 0.98-1.01 ms against 1.05,
batch 4096 63.2-63.6 ms against 60.2-60.7 (the 6-row tile runs 0.98-1.02x np.matmul's time from 256 rows up,
0.72-0.92x below 128, bias and ReLU fused, warm)."""

NARROW_SPLIT_MIN_ROWS = 16
"""With two or more BLAS threads on hosts with 8-lane tiles, :func:`dense` splits layers of this many rows and more
(up to :data:`NARROW_DENSE_MAX_ROWS`) over hubkit's worker. The MLP at batch 64, two threads, on the Zen 3
(``scripts/bench_vs_ort.py --threads 2 --quick``, alternating, twice): 561-563 us (median 578-618) split, against
608-625 us (672-681) on OpenBLAS's two threads; 1.11-1.12x onnxruntime against 1.19-1.20x. Between 16 and 64 rows
and from 65 to 1023 not measured."""


def _tile_host() -> bool:
    """Whether the host gets tiles of :data:`TILE_MIN_MR` rows or more, read from its features without compiling."""
    wide = _STATE.wide
    if wide is None:
        try:
            from hubkit.ops import _gemm_kernel

            wide = _gemm_kernel.max_mr() >= TILE_MIN_MR
        except Exception:  # llvmlite missing or broken: no kernel
            wide = False
        _STATE.wide = wide
    return wide


def _narrow_host() -> bool:
    """Whether the host's tiles are 8 lanes wide (AVX2), read from its features without compiling."""
    narrow = _STATE.narrow
    if narrow is None:
        try:
            from hubkit.ops import _gemm_kernel

            narrow = _gemm_kernel.lanes() == 8
        except Exception:  # llvmlite missing or broken: no kernel
            narrow = False
        _STATE.narrow = narrow
    return narrow


def _find_blas(verb: str) -> Any:
    """OpenBLAS's ``get_num_threads`` (``verb="get"``) or ``set_num_threads`` (``"set"``) of the library NumPy
    loaded (its wheels bundle one), or None."""
    import ctypes
    import glob

    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas_", "openblas_"):
            for tail in ("64_", ""):
                fn = getattr(lib, f"{prefix}{verb}_num_threads{tail}", None)
                if fn is not None:
                    if verb == "get":
                        fn.restype = ctypes.c_int
                    else:
                        fn.argtypes = [ctypes.c_int]
                        fn.restype = None
                    return fn
    return None


def blas_threads() -> int:
    """Threads NumPy's OpenBLAS uses now (0: not known -- another BLAS, or none found).

    :func:`dense` runs the one-threaded tile kernel only when the BLAS has one thread too: with two,
    np.matmul took 25.6 ms against the kernel's 43.9 ms for the MLP at batch 4096 (by min).
    """
    held = _OneThread
    changes = held.changes
    if held.depth == 0:  # no hold: the library's count, unless a hold came or went while it was read
        threads = _library_threads()
        if held.changes == changes:  # (a hold notes itself before it sets the count down, and after it restores it)
            return threads
    with held.lock:  # a hold entered or left by another thread meanwhile changes both (blas_one_thread)
        if held.depth > 0 and held.saved > 1:  # inside blas_one_thread: decide by the count it restores
            return held.saved
        return _library_threads()


def _library_threads() -> int:
    """OpenBLAS's own thread count now (0: not known)."""
    fn = _STATE.blas_fn
    if fn is None:
        fn = _STATE.blas_fn = _find_blas("get") or (lambda: 0)
    return int(fn())


class _OneThread:
    lock = ForkSafeLock()
    depth = 0
    saved = 0  # the count a hold set down to 1 and gives back (0 or 1: nothing was changed)
    setter: Any = None
    changes = 0  # holds entered and left: blas_threads reads the library's count unlocked between two equal values


def _one_thread_after_fork() -> None:
    """A child forked inside a hold: give its BLAS the count back, no block of the parent's is left to."""
    state = _OneThread
    if state.depth > 0 and state.saved > 1:
        state.setter(state.saved)
    state.depth = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_one_thread_after_fork)


@contextlib.contextmanager
def blas_one_thread() -> Iterator[None]:
    """NumPy's OpenBLAS at one thread inside the block, as many threads as before after it.

    For code that already runs on both cores with threads of its own (:mod:`hubkit.ops._chunks`): BLAS
    calls made there would wake OpenBLAS's threads, whose spinning then takes a core from the other
    chunk. The image CNN at 2 threads on an AVX2 host (its Winograd products on np.matmul): 51.7-54.8 ms
    as before, 29.4-29.7 ms with this (``scripts/bench_vs_ort.py --threads 2`` measures it against
    onnxruntime). Nested and concurrent blocks share one saved count: the last to leave restores it. The
    setting is the process's: another thread's BLAS calls inside the block run on one thread too, though
    :func:`blas_threads` (what the kernels decide by) still says the saved count. A child forked inside a
    block gets the count back at the fork.
    """
    state = _OneThread
    with state.lock:
        if state.setter is None:
            state.setter = _find_blas("set") or False
        if state.depth == 0:
            # the library's own count (blas_threads may be stubbed in tests); 0 when it cannot be set
            state.saved = _library_threads() if state.setter else 0
        state.depth += 1  # before the count drops: blas_threads (under the lock) reads the saved count meanwhile
        state.changes += 1  # before it too: an unlocked blas_threads that read the dropped count sees this
        if state.depth == 1 and state.saved > 1:
            state.setter(1)
        pid = os.getpid()
    try:
        yield
    finally:
        with state.lock:
            if os.getpid() == pid:  # not a child forked inside the block: its count was given back at the fork
                if state.depth == 1 and state.saved > 1:
                    state.setter(state.saved)  # the count back before the depth says so
                state.depth -= 1
                state.changes += 1
