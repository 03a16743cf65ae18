"""Fused linear layers for 3 to 8 rows: ``act(x @ w + bias)`` as dot products, on one thread.

At a small batch (up to :data:`MAX_ROWS` rows) a dense layer is a few matrix-vector products,
and NumPy adds a BLAS call, an allocation and a pass for the epilogue. This kernel computes each output column as a dot product of the input
rows with a contiguous row of ``w.T`` (kept per fused step, see :class:`TransposedWeights`),
four rows sharing each load of the weights, and applies bias and activation while the rows are
in cache. It runs for 3 to 8 rows, where it beats OpenBLAS; 1-2 rows go to OpenBLAS's GEMV.
A column split across Numba's threads (for 1-2 rows) was measured and removed: on two threads
at batch 1 it was 0.76x of BLAS GEMV's time by minimum but 1.01x by median, and a batch-64 call
right after it 12.1x slower (11.0x median), batch 4096 1.22x slower (MLP 784-512-512-10, load
1.2-2.3).

Results differ from NumPy's by rounding only: the dot products are summed in a different order
(vectorised partial sums), within ``K * eps * sum_k |x_k w_k|`` per output, tested in
``tests/ops/test_small_linear.py``. Bias and activation follow :mod:`hubkit.ops._epilogue`
exactly (NaN kept, ``Relu`` of ``-0.0`` is ``0.0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.ops import _numba
from hubkit.ops._epilogue import activate

__all__ = [
    "MAX_ROWS",
    "MIN_ROWS_ONE_THREAD",
    "MIN_WORK",
    "DerivedWeights",
    "TransposedWeights",
    "small_linear",
]

MAX_ROWS = 8
"""Most rows the kernel takes; above that the BLAS GEMM is faster."""

MIN_ROWS_ONE_THREAD = 3
"""Fewest rows the kernel takes on one thread: for 1-2 rows OpenBLAS's GEMV is as fast or faster
(MLP 784-512-512-10, one thread, CPU time: 1.02-1.09x NumPy's time at 1-2 rows, 0.53-0.57x at 4, 0.87-0.90x at 8)."""

MIN_WORK = 16384
"""Least ``K * N`` the kernel takes (smaller products gain nothing over NumPy's)."""

_FASTMATH = {"reassoc", "contract"}  # vectorised dot products; no 'nnan'/'nsz': NaN and -0.0 as NumPy


def linear_block_kernel(x, wt, bias, act, out, j0, j1):  # pragma: no cover - compiled by Numba
    """``out[:, j] = act(x @ wt[j] + bias[j])`` for ``j0 <= j < j1`` (``bias`` may be empty)."""
    rows, depth = x.shape
    zero = out.dtype.type(0)
    for j in range(j0, j1):
        wr = wt[j]
        m = 0
        while m + 4 <= rows:  # four rows share each load of wr
            x0, x1, x2, x3 = x[m], x[m + 1], x[m + 2], x[m + 3]
            s0 = s1 = s2 = s3 = zero
            for k in range(depth):
                w = wr[k]
                s0 += x0[k] * w
                s1 += x1[k] * w
                s2 += x2[k] * w
                s3 += x3[k] * w
            out[m, j], out[m + 1, j], out[m + 2, j], out[m + 3, j] = s0, s1, s2, s3
            m += 4
        while m < rows:
            xr = x[m]
            s = zero
            for k in range(depth):
                s += xr[k] * wr[k]
            out[m, j] = s
            m += 1
    has_bias = bias.shape[0] > 0
    for m in range(rows):
        row = out[m]
        for j in range(j0, j1):
            row[j] = activate(row[j] + bias[j] if has_bias else row[j], act)


class DerivedWeights:
    """A form of a weight array (see :meth:`derive`) made on first use and remade when the weights change.

    ``w`` is the same array object on every run of a plan while its variable is not written; a
    write goes through ``Variable._writable`` and ``Variable._written``, which move
    ``Variable._version`` on both sides of it (pass the variable, or None for a constant). ``get(w,
    key)`` keeps one form per key: asking with another ``w`` or version remakes it. The forms of a
    variable are kept on the variable itself, shared by every plan and step that asks for the same
    subclass and key (a Session's plans of one graph hold one packed copy, not one each); a
    constant's are kept in this object.
    """

    __slots__ = ("_cache", "variable")

    def __init__(self, variable: Any | None = None) -> None:
        self.variable = variable
        self._cache: tuple[Any, int, Any, Any] | None = None

    def derive(self, w: np.ndarray, key: Any) -> Any:
        """The form of ``w`` to keep (a subclass's)."""
        raise NotImplementedError

    def _kept(self, key: Any) -> tuple[int, Any, dict | None]:
        """``(version, entry, forms)``: the variable's version (0 for a constant), the entry kept for ``key`` (or
        None) and the variable's dict of forms (None for a constant, or before the variable's first form)."""
        var = self.variable
        if var is None:
            return 0, self._cache, None
        forms = var.__dict__.get("_derived_forms")
        return var._version, None if forms is None else forms.get((type(self), key)), forms

    def ready(self, w: np.ndarray, key: Any = None) -> Any:
        """The form kept for ``w`` (the same array, its variable at the same version) and ``key``, or None; unlike
        :meth:`get` it makes nothing and notes nothing (a caller that finds None then asks :meth:`get`)."""
        version, cache, _ = self._kept(key)
        if cache is not None and cache[0] is w and cache[1] == version and cache[2] == key:
            return cache[3]
        return None

    def get(self, w: np.ndarray, key: Any = None, settled: bool = False) -> Any:
        """``derive(w, key)``, made again only when ``w``, its variable's version or ``key`` changed.

        With ``settled``, a form that a write made stale is not remade at once: this call returns None and
        notes the weights, and the form is remade by the first call that finds them as the one before did.
        Training writes the weights between every two runs; packing them for each run cost more than the
        packed form saved (``scripts/bench_fit.py``)."""
        version, cache, forms = self._kept(key)
        if cache is not None and cache[0] is w and cache[1] == version and cache[2] == key:
            if cache[3] is not None:
                return cache[3]
            value = self.derive(w, key)  # unchanged since the call before: settled
        else:
            value = None if settled and cache is not None else self.derive(w, key)
        entry = (w, version, key, value)  # ``w`` kept: an identity check needs the object alive
        if self.variable is None:
            self._cache = entry
        else:
            if forms is None:
                forms = self.variable.__dict__.setdefault("_derived_forms", {})
            forms[(type(self), key)] = entry
        return value


class TransposedWeights(DerivedWeights):
    """``w.T`` as a C-contiguous array, kept per fused step (:class:`DerivedWeights`)."""

    __slots__ = ()

    def derive(self, w: np.ndarray, key: Any) -> np.ndarray:
        return np.ascontiguousarray(w.T)


_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def small_linear(
    a: np.ndarray, w: np.ndarray, bias: np.ndarray | None, act: int, transposed: TransposedWeights | None
) -> np.ndarray | None:
    """``act(a @ w + bias)`` by the small-batch kernel, or None when it does not apply.

    Args:
        a: the input rows, 2-D (:data:`MIN_ROWS_ONE_THREAD` to :data:`MAX_ROWS` of them).
        w: the weights, ``(K, N)``; or ``(N, K)``, already transposed, when ``transposed`` is None.
        bias: a 1-D array of length N of ``a``'s dtype, or None.
        act: an :mod:`hubkit.ops._epilogue` activation code.
        transposed: where ``w.T`` is kept, or None when ``w`` is already ``(N, K)``.
    """
    rows = a.shape[0] if a.ndim == 2 else 0
    if rows < MIN_ROWS_ONE_THREAD:
        return None  # OpenBLAS's GEMV: checked first, it is the common batch-1 case
    dtype = a.dtype
    if (
        a.ndim != 2
        or w.ndim != 2
        or not 0 < a.shape[0] <= MAX_ROWS
        or w.dtype != dtype
        or dtype not in _DTYPES
        or w.size < MIN_WORK
        or (bias is not None and bias.dtype != dtype)
    ):
        return None
    fast = _numba.kernel(linear_block_kernel, fastmath=_FASTMATH)
    if fast is None:
        return None
    wt = w if transposed is None else transposed.get(w)
    if wt.shape[1] != a.shape[1] or (bias is not None and bias.shape[0] != wt.shape[0]):
        return None  # let NumPy raise its own shape error
    if not wt.flags.c_contiguous:
        wt = np.ascontiguousarray(wt)
    x = a if a.flags.c_contiguous else np.ascontiguousarray(a)
    b = (
        np.empty(0, dtype)
        if bias is None
        else bias
        if bias.flags.c_contiguous
        else np.ascontiguousarray(bias)
    )
    n = wt.shape[0]
    out = np.empty((x.shape[0], n), dtype)
    fast(x, wt, b, act, out, 0, n)
    return out
