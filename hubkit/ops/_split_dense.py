"""A float32 dense layer at 1-2 rows split in depth over two threads: the caller and the pool's worker.

At one row a layer is a matrix-vector product whose time is the time to stream its weights from
cache: the 784x512 weights of an MLP (1.6 MB) do not fit one core's L2 (1.25 MB here), their halves
do. :func:`split_layer` computes ``x[:, :kc] @ w[:kc]`` on the calling thread and
``x[:, kc:] @ w[kc:]`` on the worker of :mod:`hubkit.ops._worker_pool` (each half on the tile kernel
of :mod:`hubkit.ops._gemm_kernel`, packed once per weights by :class:`SplitWeights`); each thread
always takes the same half, so each half stays in its own core's L2 from one call to the next.
The caller then adds the two partial rows, the bias and the activation (one Numba loop).

Results differ from the unsplit ``np.dot`` by summation order only: each output is the float32 sum
of two partial sums, each accumulated in FMA order, within ``K * eps * sum_k |x_k w_k|`` of the
exact value (tested in ``tests/ops/test_worker_pool.py``); the bias and activation follow
:mod:`hubkit.ops._epilogue` (NaN kept, ``Relu`` of ``-0.0`` is ``0.0``).

The worker is only an accelerator: if it is busy, missing (a forked child, a failed
``pthread_create``) or late, the caller runs the second half itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.ops import _numba
from hubkit.ops._forksafe import ForkSafeLock
from hubkit.ops._small_linear import DerivedWeights

__all__ = [
    "MIN_COLS",
    "MIN_DEPTH",
    "MIN_WORK",
    "SplitWeights",
    "applies",
    "available",
    "max_work",
    "split_dense",
    "split_depth",
    "split_layer",
]

MIN_DEPTH = 128
MIN_COLS = 64
MIN_WORK = 128 * 1024
"""Smallest ``K``, ``N`` and ``K * N`` split. Measured at one row, 2 threads, against ``np.dot`` plus
the epilogue kernel (by min / median): 784x512 0.25-0.28x / 0.25-0.28x, 512x512 0.43x / 0.45x,
256x512 0.72x / 0.73x, 128x1024 0.66x / 0.69x; below :data:`MIN_WORK` the gain shrinks to the noise
(256x256 0.83x / 0.90x, 512x128 0.89x / 0.90x)."""

L2_SHARE = 0.4
"""Largest ``K * N`` split, as a share of the L2 cache's bytes (:func:`max_work`): each half's weights
(``2 * K * N`` bytes) must fit one core's L2. Beyond, the halves stream from L3 and the split lost:
768x768 (1.18 MB halves, 1.25 MB of L2 here) took 2.0x np.dot's time, 1024x1024 1.3-1.5x."""

_F32 = np.dtype(np.float32)

_IR = r"""
; args: tile, rows, k, a, lda, b, c, ldc, n (i64 each): c[:, :n] = a[:, :k] @ B for B = pack_weights(w[:k])
define internal void @hk_split_panels(ptr %args) {
entry:
  %p1 = getelementptr i64, ptr %args, i64 1
  %p2 = getelementptr i64, ptr %args, i64 2
  %p3 = getelementptr i64, ptr %args, i64 3
  %p4 = getelementptr i64, ptr %args, i64 4
  %p5 = getelementptr i64, ptr %args, i64 5
  %p6 = getelementptr i64, ptr %args, i64 6
  %p7 = getelementptr i64, ptr %args, i64 7
  %p8 = getelementptr i64, ptr %args, i64 8
  %tilei = load i64, ptr %args, align 8
  %rows = load i64, ptr %p1, align 8
  %k = load i64, ptr %p2, align 8
  %a = load i64, ptr %p3, align 8
  %lda = load i64, ptr %p4, align 8
  %b = load i64, ptr %p5, align 8
  %c = load i64, ptr %p6, align 8
  %ldc = load i64, ptr %p7, align 8
  %n = load i64, ptr %p8, align 8
  %tile = inttoptr i64 %tilei to ptr
  %panel = mul i64 %k, 128
  br label %loop
loop:
  %j = phi i64 [0, %entry], [%j1, %loop]
  %bp = phi i64 [%b, %entry], [%bp1, %loop]
  %left = sub i64 %n, %j
  %small = icmp slt i64 %left, 32
  %w = select i1 %small, i64 %left, i64 32
  %joff = mul i64 %j, 4
  %cp = add i64 %c, %joff
  ; hk_sgemm_tile: its 6th argument is the column panels' stride, read only for n > 32 (here w <= 32)
  call void %tile(i64 %rows, i64 %k, i64 %a, i64 %lda, i64 %bp, i64 32, i64 %cp, i64 %ldc, i64 %w, i64 0, i64 0)
  %j1 = add i64 %j, 32
  %bp1 = add i64 %bp, %panel
  %more = icmp slt i64 %j1, %n
  br i1 %more, label %loop, label %out
out:
  ret void
}

define internal void @fill(ptr %blk, i64 %tile, i64 %rows, i64 %k, i64 %a, i64 %lda, i64 %b, i64 %c, i64 %ldc,
                           i64 %n) {
  %p1 = getelementptr i64, ptr %blk, i64 1
  %p2 = getelementptr i64, ptr %blk, i64 2
  %p3 = getelementptr i64, ptr %blk, i64 3
  %p4 = getelementptr i64, ptr %blk, i64 4
  %p5 = getelementptr i64, ptr %blk, i64 5
  %p6 = getelementptr i64, ptr %blk, i64 6
  %p7 = getelementptr i64, ptr %blk, i64 7
  %p8 = getelementptr i64, ptr %blk, i64 8
  store i64 %tile, ptr %blk, align 8
  store i64 %rows, ptr %p1, align 8
  store i64 %k, ptr %p2, align 8
  store i64 %a, ptr %p3, align 8
  store i64 %lda, ptr %p4, align 8
  store i64 %b, ptr %p5, align 8
  store i64 %c, ptr %p6, align 8
  store i64 %ldc, ptr %p7, align 8
  store i64 %n, ptr %p8, align 8
  ret void
}

; The caller's half (depth kc, packed bc, into cc) here, the worker's (depth kw, packed bw, into cw)
; through the pool's hk_pool_run at %run. The argument blocks live in this frame, which returns only
; when both halves are done.
define i64 @hk_split_gemv(i64 %run, i64 %ctl, i64 %tile, i64 %rows, i64 %kc, i64 %kw, i64 %a, i64 %lda,
                          i64 %bc, i64 %bw, i64 %cc, i64 %cw, i64 %ldc, i64 %n, i64 %spin) {
  %mine = alloca [9 x i64], align 64
  %theirs = alloca [9 x i64], align 64
  %koff = mul i64 %kc, 4
  %aw = add i64 %a, %koff
  call void @fill(ptr %mine, i64 %tile, i64 %rows, i64 %kc, i64 %a, i64 %lda, i64 %bc, i64 %cc, i64 %ldc, i64 %n)
  call void @fill(ptr %theirs, i64 %tile, i64 %rows, i64 %kw, i64 %aw, i64 %lda, i64 %bw, i64 %cw, i64 %ldc,
                  i64 %n)
  %fn = ptrtoint ptr @hk_split_panels to i64
  %mi = ptrtoint ptr %mine to i64
  %ti = ptrtoint ptr %theirs to i64
  %runfn = inttoptr i64 %run to ptr
  %ctlp = inttoptr i64 %ctl to ptr
  %r = call i64 %runfn(ptr %ctlp, i64 %fn, i64 %ti, i64 %mi, i64 %spin)
  ret i64 %r
}
"""


class _State:
    checked: bool = False
    ok: bool = False
    split: int = 0
    run: int = 0
    tile: int = 0
    kernel: Any = None


_STATE = _State()
_lock = ForkSafeLock()  # fresh in a forked child: a parent thread may hold it while compiling


def available() -> bool:
    """Whether a layer can be split here: Numba on, the tile kernel and the worker pool compile."""
    if not _numba.numba_enabled():
        return False
    if not _STATE.checked:
        with _lock:
            if not _STATE.checked:
                try:
                    from hubkit.ops import _gemm_kernel, _packed_gemm, _split_dense_numba, _worker_pool

                    # hosts with the tile kernel (_packed_gemm.TILE_MIN_MR)
                    if _packed_gemm._tile_host() and _packed_gemm.available() and _worker_pool.available():
                        _STATE.tile = _gemm_kernel.kernel_address()[0]
                        _STATE.run = _worker_pool.compile_code().run
                        _STATE.split = _worker_pool.compile_ir(_IR).get_function_address("hk_split_gemv")
                        _STATE.kernel = _numba.kernel(_split_dense_numba.split_dense_kernel)
                        _STATE.ok = _STATE.kernel is not None
                except Exception:  # llvmlite or numba unusable here: layers stay unsplit
                    _STATE.ok = False
                _STATE.checked = True
    return _STATE.ok


def split_depth(depth: int) -> int:
    """Where the depth is split: the caller's half is ``[0, kc)`` (half, rounded to a multiple of 4)."""
    return max(4, (depth // 2 + 3) // 4 * 4)


_MAX_WORK: list[int] = []


def max_work() -> int:
    """Largest ``K * N`` split: :data:`L2_SHARE` of the L2's bytes."""
    if not _MAX_WORK:
        from hubkit.ops._gemm_kernel import l2_bytes

        _MAX_WORK.append(int(L2_SHARE * (l2_bytes() or 1024 * 1024)))
    return _MAX_WORK[0]


def applies(w: np.ndarray) -> bool:
    """Whether :func:`split_layer` takes weights ``w`` (float32, 2-D, C-contiguous, large enough, each
    half small enough for one core's L2)."""
    if w.dtype != _F32 or w.ndim != 2 or not w.flags.c_contiguous:
        return False
    depth, cols = w.shape
    return depth >= MIN_DEPTH and cols >= MIN_COLS and MIN_WORK <= depth * cols <= max_work()


class SplitWeights(DerivedWeights):
    """``pack_weights`` of both depth halves of ``w``, kept per layer (remade when ``w`` changes)."""

    __slots__ = ()

    def derive(self, w: np.ndarray, key: Any) -> Any:
        from hubkit.ops._packed_gemm import pack_weights

        kc = split_depth(w.shape[0])
        return (pack_weights(np.ascontiguousarray(w[:kc])), pack_weights(np.ascontiguousarray(w[kc:])), kc)


_NO_BIAS = np.empty(0, _F32)


def split_layer(pool: Any, x: np.ndarray, w: np.ndarray, bias: np.ndarray, act: int, weights: SplitWeights) -> np.ndarray:
    """``act(x @ w + bias)`` with the depth split between the caller and ``pool``'s worker.

    Args:
        pool: a :class:`~hubkit.ops._worker_pool.Pool` the caller has acquired.
        x: the input rows, float32, C-contiguous, ``(M, K)``.
        w: float32 weights, ``(K, N)``, for which :func:`applies` holds.
        bias: a float32 ``(N,)`` array, or an empty one for no bias.
        act: an :mod:`hubkit.ops._epilogue` activation code.
        weights: where the packed halves of ``w`` are kept.

    Call only when :func:`available` is true.
    """
    packed_c, packed_w, kc = weights.get(w)
    rows, n = x.shape[0], w.shape[1]
    out = np.empty((rows, n), _F32)
    part = np.empty((rows, n), _F32)
    spin = pool.caller_spin if pool.started else 0
    _STATE.kernel(_STATE.split, _STATE.run, pool.ctl, _STATE.tile, spin, x, kc, packed_c, packed_w, out, part, bias,
                  act)
    return out


def split_dense(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, act: int = 0,
                weights: SplitWeights | None = None) -> np.ndarray | None:
    """``act(x @ w + bias)`` split over the pool's two threads, or None when it does not apply.

    Applies to a float32 C-contiguous ``x`` of 1-2 rows and weights for which :func:`applies` holds;
    None also when the pool is busy with another thread's call. For tests and measurements; the dense
    chain (``hubkit/runtime/dense_chain.py``) calls :func:`split_layer` directly.

    Example:
        >>> import numpy as np
        >>> from hubkit.ops import _split_dense
        >>> w = np.ones((256, 512), np.float32)
        >>> y = _split_dense.split_dense(np.ones((1, 256), np.float32), w)
        >>> y is None or float(y[0, 0]) == 256.0
        True
    """
    from hubkit.ops._worker_pool import get_pool

    if (
        not available()
        or type(x) is not np.ndarray
        or x.dtype != _F32
        or x.ndim != 2
        or not 0 < x.shape[0] <= 2
        or not x.flags.c_contiguous
        or not applies(w)
        or x.shape[1] != w.shape[0]
    ):
        return None
    b = _NO_BIAS if bias is None else np.ascontiguousarray(bias, _F32)
    if b.shape[0] not in (0, w.shape[1]):
        return None
    pool = get_pool()
    if not pool.acquire():
        return None
    try:
        return split_layer(pool, x, w, b, act, weights if weights is not None else SplitWeights())
    finally:
        pool.release()
