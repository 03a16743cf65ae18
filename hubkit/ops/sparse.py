"""Op family: sparse. Ragged batches of ids and ``embedding_lookup_sparse`` with a sparse-row gradient.

A :class:`RaggedTensor` is a batch of variable-length rows kept flat: ``values[m]`` belongs to row
``row_ids[m]``, and ``num_rows`` counts the rows (rows without values included). Tokenizers in
:mod:`hubkit.text` produce them and ``embedding_lookup_sparse`` consumes them.

The gradient of ``embedding_lookup_sparse`` with respect to ``params`` is an
:class:`hubkit.runtime.IndexedSlices` holding one row per looked-up id, so an optimizer step
touches only the rows that were used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hubkit.errors import GraphError, OpError
from hubkit.graph import Tensor, get_default_graph, int64
from hubkit.graph.shapes import format_shape, merge_shapes
from hubkit.ops import _numba, _numba_kernels
from hubkit.ops._helpers import MAX_OUTPUT_ELEMENTS, as_tensor, check_dtype, check_output_size
from hubkit.ops.indexed_slices import IndexedSlices
from hubkit.ops.registry import apply, describe, infer_error, register_op

__all__ = ["RaggedTensor", "embedding_lookup_sparse"]

COMBINERS = {"sum": _numba_kernels.SUM, "mean": _numba_kernels.MEAN, "sqrtn": _numba_kernels.SQRTN}


@dataclass(frozen=True)
class RaggedTensor:
    """Variable-length rows stored flat.

    Attributes:
        values: ``[M, ...]`` the values of every row, row after row.
        row_ids: int64 ``[M]``, the row of each value (non-decreasing when made by a tokenizer).
        num_rows: int64 scalar, the number of rows.
    """

    values: Tensor
    row_ids: Tensor
    num_rows: Tensor

    @property
    def dtype(self):
        return self.values.dtype

    def with_values(self, values: Tensor) -> RaggedTensor:
        """The same rows holding other ``values`` (e.g. the ids of these tokens)."""
        return RaggedTensor(values, self.row_ids, self.num_rows)

    # Session protocol (hubkit/ops/ragged_value.py): fetched as a RaggedTensorValue, fed from one or from lists.
    def _composite_components(self) -> list[Tensor]:
        return [self.values, self.row_ids, self.num_rows]

    def _composite_value(self, parts: list) -> Any:
        from hubkit.ops.ragged_value import RaggedTensorValue

        return RaggedTensorValue(*parts)

    def _composite_feed(self, value: Any) -> list[tuple[Tensor, Any]]:
        from hubkit.ops.ragged_value import as_ragged_value

        return list(zip(self._composite_components(), as_ragged_value(value, "RaggedTensor feed")))


# -- forward -----------------------------------------------------------------------------------------
def check_ragged(ids: np.ndarray, row_ids: np.ndarray, weights: np.ndarray | None, num_rows: int) -> None:
    """Refuses ids, row_ids and weights of different lengths (or not 1-D) and a negative ``num_rows``.

    Runs before any kernel: the Numba kernels index ``row_ids`` and ``weights`` by the position of
    each id and would read past the end of a shorter array.

    Raises:
        OpError: naming the three lengths, or the bad ``num_rows``.
    """
    shape = ids.shape  # one comparison of shapes per array: this runs on every call, even for one sentence
    if len(shape) != 1 or row_ids.shape != shape or (weights is not None and weights.shape != shape) or num_rows < 0:
        _ragged_error(ids, row_ids, weights, num_rows)


def _ragged_error(ids: np.ndarray, row_ids: np.ndarray, weights: np.ndarray | None, num_rows: int) -> None:
    if ids.ndim != 1 or row_ids.ndim != 1 or (weights is not None and weights.ndim != 1):
        shapes = [ids.shape, row_ids.shape] + ([] if weights is None else [weights.shape])
        raise OpError(
            "embedding_lookup_sparse: ids, row_ids and weights must be 1-D, got shapes "
            f"{', '.join(format_shape(s) for s in shapes)}."
        )
    n = ids.shape[0]
    if row_ids.shape[0] != n or (weights is not None and weights.shape[0] != n):
        weights_part = "" if weights is None else f", weights {weights.shape[0]}"
        raise OpError(
            f"embedding_lookup_sparse: ids has {n} values, row_ids {row_ids.shape[0]}{weights_part}; "
            "they must be equal."
        )
    raise OpError(f"embedding_lookup_sparse: num_rows must be >= 0, got {num_rows}.")


def _check_ids(ids: np.ndarray, row_ids: np.ndarray, vocab: int, num_rows: int, bad: int) -> None:
    raise OpError(
        f"embedding_lookup_sparse: id {int(ids[bad])} of value {bad} (row {int(row_ids[bad])}) is outside "
        f"params with {vocab} rows, or its row is outside [0, {num_rows})."
    )


def _denominators(counts, row_ids, weights, combiner: int, num_rows: int) -> np.ndarray:
    """Per-row norm: 1 (sum), sum of weights (mean) or sqrt of the sum of squared weights (sqrtn).

    ``counts`` is the number of ids of each row, or None to count them here.
    """
    if combiner == _numba_kernels.SUM:
        return np.ones(num_rows)
    if weights is None:
        counts = (np.bincount(row_ids, minlength=num_rows) if counts is None else counts).astype(np.float64)
        return np.sqrt(counts) if combiner == _numba_kernels.SQRTN else counts
    w = weights.astype(np.float64)
    if combiner == _numba_kernels.SQRTN:
        return np.sqrt(np.bincount(row_ids, weights=w * w, minlength=num_rows).astype(np.float64))
    return np.bincount(row_ids, weights=w, minlength=num_rows).astype(np.float64)  # int64 when empty


_UNSIGNED = {np.dtype(f"i{n}"): np.dtype(f"u{n}") for n in (1, 2, 4, 8)}


def _as_unsigned(x: np.ndarray) -> np.ndarray:
    """``x`` with negative values seen as huge ones, so one ``max()`` checks both ends of a range."""
    unsigned = _UNSIGNED.get(x.dtype)
    return x if unsigned is None else x.view(unsigned)


def _valid(ids, row_ids, weights, vocab: int, num_rows: int):
    """Drops ids < 0 (TF's safe_embedding_lookup_sparse behaviour) and checks the rest."""
    outside = _as_unsigned(ids).max() >= vocab  # an id < 0 (skipped) or one past the table (an error)
    if outside and ids.min() < 0:
        keep = ids >= 0
        ids, row_ids = ids[keep], row_ids[keep]
        weights = None if weights is None else weights[keep]
        if not ids.size:
            return ids, row_ids, weights
    if (outside and ids.max() >= vocab) or _as_unsigned(row_ids).max() >= num_rows:
        bad = np.flatnonzero((ids >= vocab) | (row_ids < 0) | (row_ids >= num_rows))
        _check_ids(ids, row_ids, vocab, num_rows, int(bad[0]))
    return ids, row_ids, weights


_CHUNK = 1024  # rows gathered per block when one row is summed on its own
_BLOCK_BYTES = 1 << 18  # vectors summed together by position: these and their gathered block fit in L2


def _gather(params, ids, weights):
    rows = params.take(ids, axis=0)
    if weights is not None:
        rows *= weights.astype(params.dtype).reshape((-1,) + (1,) * (rows.ndim - 1))
    return rows


def _sum_rows_one_by_one(params, ids, weights, out, rows, starts, counts) -> None:
    """``out[r]`` = the sum of row r's gathered vectors, ``_CHUNK`` at a time (so a block stays in cache)."""
    for r, lo, n in zip(rows.tolist(), starts.tolist(), counts.tolist()):
        for s in range(lo, lo + n, _CHUNK):
            e = min(s + _CHUNK, lo + n)
            part = _gather(params, ids[s:e], None if weights is None else weights[s:e]).sum(axis=0)
            if s == lo:
                out[r] = part
            else:
                out[r] += part


def _sum_rows_by_position(params, ids, weights, out, rows, starts, counts) -> None:
    """Adds up the rows' m-th vectors for m = 0, 1, ...: one gather and one add per position.

    Rows are taken longest first, so the rows with an m-th id are a prefix and every step is one
    contiguous ``take`` into a reused block plus one in-place add. Each row is summed in token
    order, as a per-row loop (and the Numba kernel) does. Rows go ``_BLOCK_BYTES`` of vectors at
    a time, so the sums and the gathered block stay in the core's cache
    (`python scripts/bench_text.py --stages` times this combiner).
    """
    order = np.argsort(-counts, kind="stable")
    rows, starts, counts = rows[order], starts[order], counts[order]
    group = max(1, _BLOCK_BYTES // max(1, params[:1].nbytes))
    acc = np.empty((min(group, rows.size), *params.shape[1:]), dtype=params.dtype)
    block = np.empty_like(acc)
    scale = (-1,) + (1,) * (acc.ndim - 1)
    for g in range(0, rows.size, group):
        g_starts, g_counts = starts[g : g + group], counts[g : g + group]
        longer = np.cumsum(np.bincount(g_counts)[::-1])[::-1]  # longer[m]: how many rows have >= m ids
        for m in range(int(g_counts[0])):
            k = int(longer[m + 1])  # rows with more than m ids
            pos = g_starts[:k] + m
            dest = acc[:k] if m == 0 else block[:k]
            params.take(ids[pos], axis=0, out=dest, mode="clip")  # ids were checked; clip skips a buffered copy
            if weights is not None:
                dest *= weights[pos].astype(params.dtype).reshape(scale)
            if m:
                acc[:k] += dest
        out[rows[g : g + group]] = acc[: g_counts.size]


def _combine_one_row(params, ids, row_ids, combiner: int) -> np.ndarray | None:
    """One unweighted row with valid ids (one sentence), in a few NumPy calls; None for anything else."""
    # count_nonzero and a comparison: half the fixed cost of min() and any() on a sentence's ids.
    if np.count_nonzero(ids < 0) or np.count_nonzero(row_ids):
        return None  # ids to skip, or rows to report: the general path handles them
    try:
        rows = params.take(ids, axis=0)
    except IndexError:  # an id past the table: the general path names it
        return None
    total = np.add.reduce(rows, axis=0, keepdims=True)
    if combiner != _numba_kernels.SUM:
        total *= params.dtype.type(1.0 / (math.sqrt(ids.size) if combiner == _numba_kernels.SQRTN else ids.size))
    return total


def combine_numpy(params, ids, row_ids, num_rows: int, weights, combiner: int) -> np.ndarray:
    """The NumPy kernel of :func:`embedding_lookup_sparse`."""
    check_ragged(ids, row_ids, weights, num_rows)
    if type(params) is not np.ndarray:  # e.g. a memmap: plain arrays avoid its per-result bookkeeping
        params = params.view(np.ndarray)
    if num_rows == 1 and weights is None and ids.size:
        out = _combine_one_row(params, ids, row_ids, combiner)
        if out is not None:
            return out
    check_output_size([num_rows, *params.shape[1:]], "embedding_lookup_sparse")
    out = np.zeros((num_rows, *params.shape[1:]), dtype=params.dtype)
    if not ids.size:
        return out
    ids, row_ids, weights = _valid(ids, row_ids, weights, params.shape[0], num_rows)
    if not ids.size:
        return out
    if num_rows == 1:
        counts = np.array([ids.size])
        out[0] = _gather(params, ids, weights).sum(axis=0)
    else:
        if row_ids.size > 1 and (row_ids[1:] < row_ids[:-1]).any():
            order = np.argsort(row_ids, kind="stable")
            ids, row_ids = ids[order], row_ids[order]
            weights = None if weights is None else weights[order]
        counts = np.bincount(row_ids, minlength=num_rows)
        starts = np.cumsum(counts) - counts
        rows = np.flatnonzero(counts)
        # Summing by position takes one step per id of the longest row; alone, one per row. Rows much
        # longer than the others are summed alone so that one long row costs no thousand tiny steps.
        long = counts[rows] > max(64, 4 * ids.size // rows.size)
        if long.any():
            _sum_rows_one_by_one(params, ids, weights, out, rows[long], starts[rows[long]], counts[rows[long]])
            rows = rows[~long]
        if rows.size:
            lengths = counts[rows]
            sum_rows = _sum_rows_by_position if rows.size > int(lengths.max()) else _sum_rows_one_by_one
            sum_rows(params, ids, weights, out, rows, starts[rows], lengths)
    if combiner != _numba_kernels.SUM:
        den = _denominators(counts, row_ids, weights, combiner, num_rows)
        scale = np.divide(1.0, den, out=np.zeros_like(den), where=den > 0).astype(params.dtype)
        out *= scale.reshape((-1,) + (1,) * (out.ndim - 1))
    return out


_NO_WEIGHTS = {np.dtype(np.float32): np.zeros(0, np.float32), np.dtype(np.float64): np.zeros(0, np.float64)}


def combine(params, ids, row_ids, num_rows, weights, combiner: int) -> np.ndarray:
    """Numba kernel when enabled and the shapes allow it, else :func:`combine_numpy`."""
    n = int(num_rows)
    fast = _numba.kernel(_numba_kernels.sparse_combine)
    if fast is None or params.dtype.kind != "f" or params.ndim < 1:
        return combine_numpy(params, ids, row_ids, n, weights, combiner)
    shape = ids.shape  # check_ragged, inlined: a call costs as much as the check on one sentence
    if len(shape) != 1 or row_ids.shape != shape or (weights is not None and weights.shape != shape) or n < 0:
        _ragged_error(ids, row_ids, weights, n)
    if type(params) is not np.ndarray:  # a memmap: its subclass bookkeeping costs more than the kernel
        params = params.view(np.ndarray)
    flat = params if params.ndim == 2 else params.reshape(params.shape[0], -1)
    if n * flat.shape[1] > MAX_OUTPUT_ELEMENTS:  # num_rows is a tensor's value (a SparseTensor's dense_shape)
        check_output_size([n, *params.shape[1:]], "embedding_lookup_sparse")
    out = np.zeros((n, flat.shape[1]), dtype=params.dtype)
    den = np.zeros(n)
    w = _NO_WEIGHTS.get(params.dtype) if weights is None else weights.astype(params.dtype, copy=False)
    if w is None:
        w = np.zeros(0, params.dtype)
    bad = fast(flat, ids, row_ids, w, weights is not None, combiner, out, den)
    if bad >= 0:
        _check_ids(ids, row_ids, params.shape[0], n, bad)
    return out if params.ndim == 2 else out.reshape((n, *params.shape[1:]))


def combine_grad(grad, ids, row_ids, weights, combiner: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of the params gradient: one scaled row of ``grad`` per id >= 0.

    Raises:
        OpError: ids, row_ids and weights of different lengths, or the row of an id >= 0 outside
            ``[0, len(grad))``.
    """
    num_rows = grad.shape[0]
    check_ragged(ids, row_ids, weights, num_rows)
    if row_ids.size and _as_unsigned(row_ids).max() >= num_rows:  # a row < 0 is seen as a huge one
        bad = np.flatnonzero((ids >= 0) & ((row_ids < 0) | (row_ids >= num_rows)))
        if bad.size:  # rows of skipped ids (< 0) are never read, as in the forward kernels
            raise OpError(
                f"embedding_lookup_sparse gradient: row {int(row_ids[bad[0]])} of value {int(bad[0])} is "
                f"outside [0, {num_rows})."
            )
    fast = _numba.kernel(_numba_kernels.sparse_combine_grad)
    if fast is not None and grad.dtype.kind == "f":
        flat = grad.reshape(num_rows, -1)
        values = np.empty((ids.shape[0], flat.shape[1]), dtype=grad.dtype)
        indices = np.empty(ids.shape[0], dtype=np.int64)
        w = np.zeros(0, grad.dtype) if weights is None else weights.astype(grad.dtype, copy=False)
        k = fast(flat, ids, row_ids, w, weights is not None, combiner, np.zeros(num_rows), values, indices)
        return values[:k].reshape((k, *grad.shape[1:])), indices[:k]
    if ids.size and ids.min() < 0:
        keep = ids >= 0
        ids, row_ids = ids[keep], row_ids[keep]
        weights = None if weights is None else weights[keep]
    den = _denominators(None, row_ids, weights, combiner, num_rows)
    inv = np.divide(1.0, den, out=np.zeros_like(den), where=den > 0)
    scale = inv[row_ids] if weights is None else inv[row_ids] * weights
    values = np.take(grad, row_ids, axis=0)
    values *= scale.astype(grad.dtype).reshape((-1,) + (1,) * (values.ndim - 1))
    return values, ids.astype(np.int64, copy=False)


def _merge_lengths(ids, row_ids, *weights) -> None:
    """Static check that ids, row_ids and weights (when given) are 1-D with one length."""
    tensors = [("ids", ids), ("row_ids", row_ids)] + [("weights", w) for w in weights]
    merged: Any = (None,)
    for _, t in tensors:
        merged = merge_shapes(merged, t.shape)
        if merged is False:
            break
    if merged is False:
        listed = ", ".join(f"{what} {format_shape(t.shape)}" for what, t in tensors)
        raise infer_error(f"ids, row_ids and weights must be 1-D with one length, got {listed}.")


@register_op
class EmbeddingLookupSparse:
    """Combines the ``params`` rows of each ragged row's ids: ``sum``, ``mean`` or ``sqrtn`` (weighted).

    Inputs: params ``[V, ...]``, ids ``[M]``, row_ids ``[M]``, num_rows ``[]`` and optionally
    weights ``[M]``. Ids < 0 are skipped; rows without ids give zeros.
    """

    def infer(params, ids, row_ids, num_rows, *weights, combiner):
        check_dtype(params, "f", "params")
        if params.shape is not None and len(params.shape) < 1:
            raise infer_error(f"params must have rank >= 1, got {describe(params)}.")
        for t, what in ((ids, "ids"), (row_ids, "row_ids")):
            check_dtype(t, "i", what)
            if t.shape is not None and len(t.shape) != 1:
                raise infer_error(f"{what} must be 1-D, got {describe(t)}.")
        if not num_rows.dtype.is_integer or num_rows.shape not in (None, ()):
            raise infer_error(f"num_rows must be an integer scalar, got {describe(num_rows)}.")
        if weights and (weights[0].dtype is not params.dtype):
            raise infer_error(f"weights must have the dtype of params ({params.dtype.name}), got {describe(weights[0])}.")
        _merge_lengths(ids, row_ids, *weights)
        if combiner not in COMBINERS:
            raise infer_error(f"Unknown combiner {combiner!r}; expected one of {sorted(COMBINERS)}.")
        row_shape = (None,) if params.shape is None else params.shape[1:]
        return params.dtype, (None, *row_shape) if params.shape is not None else None

    def forward(params, ids, row_ids, num_rows, *weights, combiner):
        return combine(params, ids, row_ids, num_rows, weights[0] if weights else None, COMBINERS[combiner])

    def vjp(g, out, params, ids, row_ids, num_rows, *weights, combiner):
        values, indices = apply("EmbeddingLookupSparseGrad", g, ids, row_ids, *weights, combiner=combiner)
        # Weights get no gradient: as in TensorFlow, they are treated as given (e.g. tf-idf scores).
        return (IndexedSlices(values, indices, params), None, None, None, *(None for _ in weights))


@register_op
class EmbeddingLookupSparseGrad:
    """The rows of the params gradient of ``EmbeddingLookupSparse`` -> (values ``[K, ...]``, indices ``[K]``)."""

    differentiable = False

    def infer(g, ids, row_ids, *weights, combiner):
        _merge_lengths(ids, row_ids, *weights)
        row_shape = None if g.shape is None else g.shape[1:]
        return [(g.dtype, None if row_shape is None else (None, *row_shape)), (int64, (None,))]

    def forward(g, ids, row_ids, *weights, combiner):
        return combine_grad(g, ids, row_ids, weights[0] if weights else None, COMBINERS[combiner])


# -- the public function -------------------------------------------------------------------------------
def _as_ragged(ids: Any, what: str) -> tuple[Any, Any, Any]:
    if isinstance(ids, RaggedTensor):
        return ids.values, ids.row_ids, ids.num_rows
    if hasattr(ids, "indices") and hasattr(ids, "dense_shape"):  # a SparseTensor: rows are indices[:, 0]
        from hubkit.ops.shape import getitem

        return ids.values, getitem(ids.indices, (slice(None), 0)), getitem(ids.dense_shape, 0)
    if isinstance(ids, (tuple, list)) and len(ids) == 3:
        return tuple(ids)
    raise GraphError(
        f"embedding_lookup_sparse: {what} must be a RaggedTensor (e.g. from a vocabulary table's lookup) or a "
        f"(values, row_ids, num_rows) tuple, got {type(ids).__name__}."
    )


def embedding_lookup_sparse(
    params: Any, ids: Any = None, weights: Any = None, combiner: str | None = "sqrtn", name: str | None = None,
    *, sp_ids: Any = None, sp_weights: Any = None, partition_strategy: str = "mod", max_norm: Any = None,
) -> Tensor:
    """One combined embedding per row of a ragged batch of ids, as ``tf.nn.embedding_lookup_sparse``.

    For row ``r`` with ids ``i_m`` and weights ``w_m`` (1 when ``weights`` is None):
    ``sum`` gives ``sum_m w_m params[i_m]``, ``mean`` divides that by ``sum_m w_m`` and ``sqrtn`` by
    ``sqrt(sum_m w_m**2)``. Rows without ids (and ids < 0, which are skipped, as TensorFlow's
    ``safe_embedding_lookup_sparse`` does) contribute zeros. The gradient with respect to ``params``
    is an ``IndexedSlices`` with one row per used id, so training updates only those rows.

    Args:
        params: ``[vocab, dim...]`` embedding table (a Variable or a tensor).
        ids: a :class:`RaggedTensor` or ``SparseTensor`` of int ids (rows: ``indices[:, 0]``), or a
            ``(values, row_ids, num_rows)`` tuple; ``sp_ids=`` is the same argument by TensorFlow's name.
        weights: None, or float weights with one value per id (a RaggedTensor, a SparseTensor or a flat
            tensor); ``sp_weights=`` is TensorFlow's name for it.
        combiner: ``"sqrtn"`` (default), ``"mean"`` or ``"sum"``; None means ``"mean"`` (TF1's default).
        name: node name.
        partition_strategy: with ``params`` a list of parts, ``"mod"`` or ``"div"`` (as ``embedding_lookup``).
        max_norm: accepted for TensorFlow compatibility; must be None.

    Returns:
        A ``[num_rows, dim...]`` tensor.

    Raises:
        GraphError: unknown combiner, or inputs of the wrong dtype or rank.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     table = hk.constant([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    ...     rows = hk.text.RaggedTensor(hk.constant([0, 2, 1]), hk.constant([0, 0, 2], hk.int64),
    ...                                 hk.constant(3, hk.int64))
    ...     out = hk.nn.embedding_lookup_sparse(table, rows, combiner="sum")
    >>> hk.Session(g).run(out)
    array([[4., 4.],
           [0., 0.],
           [0., 1.]], dtype=float32)
    """
    ids = sp_ids if ids is None else ids  # TensorFlow's argument names
    weights = sp_weights if weights is None else weights
    combiner = "mean" if combiner is None else combiner  # TF1's default when combiner=None
    if ids is None:
        raise GraphError("embedding_lookup_sparse: ids (sp_ids) are required.")
    if max_norm is not None:
        raise GraphError("embedding_lookup_sparse: max_norm is not supported.")
    if combiner not in COMBINERS:
        raise GraphError(f"embedding_lookup_sparse: unknown combiner {combiner!r}; expected one of {sorted(COMBINERS)}.")
    values, row_ids, num_rows = _as_ragged(ids, "ids")
    if isinstance(params, (list, tuple)) or hasattr(params, "_get_variable_list"):
        from hubkit.ops.partitioned_lookup import concat_parts

        params, values = concat_parts(list(params), values, partition_strategy)
    graph = next((t.graph for t in (values, row_ids, num_rows) if isinstance(t, Tensor)), None)
    if graph is None and isinstance(params, Tensor):
        graph = params.graph
    graph = graph or get_default_graph()
    params_t = as_tensor(params, graph=graph)
    inputs = [params_t, *(as_tensor(t, int64, graph) for t in (values, row_ids, num_rows))]
    if weights is not None:
        w = weights.values if isinstance(weights, RaggedTensor) or hasattr(weights, "dense_shape") else weights
        inputs.append(as_tensor(w, params_t.dtype, graph))
    if params_t.shape is not None and len(params_t.shape) == 0:
        raise GraphError(f"embedding_lookup_sparse: params must have rank >= 1, got {format_shape(params_t.shape)}.")
    return apply("EmbeddingLookupSparse", *inputs, name=name or "embedding_lookup_sparse", combiner=combiner)
