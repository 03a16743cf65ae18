"""TF-exact sparse and segment ops: ``Unique``, ``SparseSegment{Sum,Mean,SqrtN}``, ``SparseFillEmptyRows``,
``DynamicPartition`` and ``(Parallel)DynamicStitch``.

``Unique`` keeps the order of first occurrence; a sparse segment reduction has ``last segment id + 1``
rows (or ``num_segments``), empty segments are zero, ``SqrtN`` divides by the square root of the count;
``SparseFillEmptyRows`` adds ``[row, 0] = default`` for every empty row and keeps the entries in row order.
"""

from __future__ import annotations

import numpy as np

from hubkit.graph import bool_, int64
from hubkit.ops._helpers import check_output_size
from hubkit.ops._tf_common import static_list
from hubkit.ops.registry import apply, infer_error, register_op
from hubkit.ops.tf_array import TfRuntimeError
from hubkit.ops.tf_text_buffers import kernels

__all__: list[str] = []

_MODES = {"sum": 0, "mean": 1, "sqrtn": 2}


@register_op
class TfUnique:
    """TF ``Unique``: ``y`` (values in order of first occurrence) and ``idx`` (position of each input in ``y``)."""

    differentiable = False

    def infer(x, *, out_idx):
        if x.shape is not None and len(x.shape) != 1:
            raise infer_error("needs a vector.")
        return [(x.dtype, (None,)), (out_idx, x.shape)]

    def forward(x, *, out_idx):
        if len(x) <= 64:  # small inputs: a dict in insertion order beats sorting
            first: dict = {}
            idx = [first.setdefault(v, len(first)) for v in x.tolist()]
            y = np.empty(len(first), dtype=x.dtype)
            y[:] = list(first)
            return y, np.array(idx, dtype=out_idx.np_dtype)
        k = kernels() if x.dtype.kind in "iu" and x.ndim == 1 else None
        if k is not None:  # a hash table in one pass, no sort
            values, idx = np.empty_like(x), np.empty(len(x), dtype=out_idx.np_dtype)
            return values[:k.unique(x, values, idx)], idx
        _, first, inverse = np.unique(x, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # unique values by their first occurrence
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return x[first[order]], rank[inverse.reshape(-1)].astype(out_idx.np_dtype)


def _segments(data, indices, segment_ids, num_segments, reduction):
    if len(indices) != len(segment_ids):
        raise TfRuntimeError(f"indices ({len(indices)}) and segment_ids ({len(segment_ids)}) differ in length.")
    if len(segment_ids) and np.any(np.diff(segment_ids) < 0):
        raise TfRuntimeError("segment_ids must be sorted.")
    if len(indices) and (indices.min() < 0 or indices.max() >= data.shape[0]):
        raise TfRuntimeError(f"an index is out of range [0, {data.shape[0]}).")
    rows = int(num_segments) if num_segments is not None else (int(segment_ids[-1]) + 1 if len(segment_ids) else 0)
    check_output_size([max(rows, 0), *data.shape[1:]], "SparseSegmentReduce")  # rows from a tensor's value
    if len(segment_ids) and (segment_ids[0] < 0 or segment_ids[-1] >= rows):
        raise TfRuntimeError(f"a segment id is out of range [0, {rows}).")
    counts = np.bincount(segment_ids, minlength=rows).astype(data.dtype) if len(segment_ids) else \
        np.zeros(rows, dtype=data.dtype)
    if reduction == "sum":
        scale = np.ones(rows, dtype=data.dtype)
    elif reduction == "mean":
        scale = 1.0 / np.maximum(counts, 1)
    else:
        scale = 1.0 / np.sqrt(np.maximum(counts, 1))
    return rows, scale.astype(data.dtype)


@register_op
class TfSparseSegmentReduce:
    """TF ``SparseSegmentSum``/``Mean``/``SqrtN`` (and ``WithNumSegments``, a fourth input)."""

    def infer(data, indices, segment_ids, *num_segments, reduction):
        if reduction not in ("mean", "sqrtn", "sum"):
            raise infer_error(f"unknown reduction {reduction!r}; expected one of ['mean', 'sqrtn', 'sum'].")
        rows = static_list(num_segments[0]) if num_segments else None
        rest = None if data.shape is None else data.shape[1:]
        return data.dtype, None if rest is None else ((rows[0] if rows else None),) + rest

    def forward(data, indices, segment_ids, *num_segments, reduction):
        n = int(num_segments[0]) if num_segments else None
        k = kernels() if data.ndim == 2 and data.dtype.kind == "f" and len(indices) == len(segment_ids) else None
        if k is not None:  # one pass that also checks; on a failed check the NumPy path below names the error
            rows = n if n is not None else (int(segment_ids[-1]) + 1 if len(segment_ids) else 0)
            check_output_size([max(rows, 0), data.shape[1]], "SparseSegmentReduce")  # rows from a tensor's value
            out = np.zeros((max(rows, 0), data.shape[1]), dtype=data.dtype)
            if rows >= 0 and k.segment_reduce(data, indices, segment_ids, _MODES[reduction], out) == 0:
                return out
        rows, scale = _segments(data, indices, segment_ids, n, reduction)
        out = np.zeros((rows,) + data.shape[1:], dtype=data.dtype)
        if len(segment_ids):  # ids are sorted: each segment is one run, summed by reduceat (np.add.at is ~10x slower)
            starts = np.flatnonzero(np.r_[True, segment_ids[1:] != segment_ids[:-1]])
            out[segment_ids[starts]] = np.add.reduceat(data[indices], starts, axis=0)
        return out * scale.reshape((-1,) + (1,) * (data.ndim - 1))

    def vjp(g, out, data, indices, segment_ids, *num_segments, reduction):
        from hubkit.ops.indexed_slices import IndexedSlices

        rows = apply("TfSparseSegmentRows", g, data, indices, segment_ids, reduction=reduction)
        grad = IndexedSlices(rows, apply("Cast", indices, dtype=int64), data)  # only the rows read get a gradient
        return (grad, None, None, *(None for _ in num_segments))


@register_op
class TfSparseSegmentRows:
    """The gradient of each row a sparse segment reduction read: ``g[segment_ids] * scale``, one per index."""

    differentiable = False

    def infer(g, data, indices, segment_ids, *, reduction):
        rest = None if data.shape is None else data.shape[1:]
        return g.dtype, None if rest is None or indices.shape is None else indices.shape[:1] + rest

    def forward(g, data, indices, segment_ids, *, reduction):
        _, scale = _segments(data, indices, segment_ids, g.shape[0], reduction)
        rows = g * scale.reshape((-1,) + (1,) * (g.ndim - 1))
        return rows[segment_ids]


def _check_fill_inputs(indices, values, dense_shape, default_value) -> None:
    """What TF checks, and what the Numba kernel needs to stay in bounds (it reads ``values[m]`` and
    ``indices[m, 0]`` for every row ``m`` unchecked: 4M index rows with one value read 32 MB past it)."""
    if indices.ndim != 2 or indices.shape[1] < 1 or indices.dtype.kind not in "iu":
        raise TfRuntimeError(f"indices must be an integer matrix with 1 or more columns, got shape {list(indices.shape)}.")
    if values.ndim != 1 or len(values) != len(indices):
        raise TfRuntimeError(f"values must be a vector of {len(indices)} entries (one per index row), got shape "
                             f"{list(values.shape)}.")
    if dense_shape.ndim != 1 or len(dense_shape) < 1 or dense_shape.dtype.kind not in "iu":
        raise TfRuntimeError(f"dense_shape must be a non-empty integer vector, got shape {list(dense_shape.shape)}.")
    if np.size(default_value) != 1:
        raise TfRuntimeError(f"default_value must be a scalar, got {np.size(default_value)} values.")
    rows = int(dense_shape[0])
    if rows < 0 or (len(indices) and (indices[:, 0].min() < 0 or indices[:, 0].max() >= rows)):
        raise TfRuntimeError(f"a sparse index row is out of range [0, {rows}).")


@register_op
class TfSparseFillEmptyRows:
    """TF ``SparseFillEmptyRows``: ``output_indices, output_values, empty_row_indicator, reverse_index_map``."""

    def infer(indices, values, dense_shape, default_value):
        for t, rank, what in ((indices, 2, "indices"), (values, 1, "values"), (dense_shape, 1, "dense_shape")):
            if t.shape is not None and len(t.shape) != rank:
                raise infer_error(f"{what} must have rank {rank}, got shape {list(t.shape)}.")
        if default_value.shape is not None and any(d is not None and d != 1 for d in default_value.shape):
            raise infer_error(f"default_value must be a scalar, got shape {list(default_value.shape)}.")
        return [(int64, (None, 2) if indices.shape is None else (None, indices.shape[1])),
                (values.dtype, (None,)), (bool_, (None,)), (int64, values.shape)]

    def forward(indices, values, dense_shape, default_value):
        _check_fill_inputs(indices, values, dense_shape, default_value)
        rows = int(dense_shape[0])
        n = len(indices)
        check_output_size([n + rows, indices.shape[1]], "SparseFillEmptyRows")  # rows: a tensor's value
        k = kernels() if indices.ndim == 2 and values.dtype != object and rows >= 0 else None
        if k is not None:  # rows in order (as StringSplit makes them): one pass
            out_idx = np.empty((n + rows, indices.shape[1]), dtype=np.int64)
            out_val = np.empty(n + rows, dtype=values.dtype)
            empty, reverse = np.empty(rows, dtype=bool), np.empty(n, dtype=np.int64)
            q = k.fill_empty_rows(indices, values, rows, np.asarray(default_value, values.dtype).reshape(-1)[0], out_idx,
                                  out_val, empty, reverse)
            if q >= 0:
                return out_idx[:q], out_val[:q], empty, reverse
        if n and (indices[:, 0].min() < 0 or indices[:, 0].max() >= rows):
            raise TfRuntimeError(f"a sparse index row is out of range [0, {rows}).")
        if n and indices[0, 0] == 0 and indices[-1, 0] == rows - 1:
            steps = np.diff(indices[:, 0])
            if ((steps == 0) | (steps == 1)).all():  # rows in order, none empty: the input is the output
                return (indices.astype(np.int64), values.copy(), np.zeros(rows, dtype=bool),
                        np.arange(n, dtype=np.int64))
        counts = np.bincount(indices[:, 0], minlength=rows) if n else np.zeros(rows, dtype=np.int64)
        empty = counts == 0
        per_row = np.where(empty, 1, counts)
        starts = np.concatenate([[0], np.cumsum(per_row)[:-1]]).astype(np.int64)
        total = int(per_row.sum())
        out_idx = np.zeros((total, indices.shape[1] if indices.ndim == 2 else 2), dtype=np.int64)
        out_val = np.empty(total, dtype=values.dtype)
        order = np.argsort(indices[:, 0], kind="stable") if n else np.zeros(0, dtype=np.int64)
        sorted_rows = indices[order, 0] if n else np.zeros(0, dtype=np.int64)
        rank = np.arange(n) - np.searchsorted(sorted_rows, sorted_rows, side="left")  # position inside its row
        positions = starts[sorted_rows] + rank
        reverse = np.empty(n, dtype=np.int64)
        reverse[order] = positions
        out_idx[positions] = indices[order]
        out_val[positions] = values[order]
        empty_rows = np.nonzero(empty)[0]
        out_idx[starts[empty_rows], 0] = empty_rows
        out_val[starts[empty_rows]] = default_value
        return out_idx, out_val, empty, reverse

    def vjp(gs, outs, indices, values, dense_shape, default_value):
        g = gs[1]
        if g is None:
            return None, None, None, None
        dv = apply("TfStitchGrad", g, outs[3])
        dd = apply("TfFillDefaultGrad", g, outs[2], outs[3])
        return None, dv, None, dd


@register_op
class TfStitchGrad:
    """``g[indices]`` (the gradient of the rows a stitch or fill took from one input)."""

    differentiable = False

    def infer(g, indices):
        rest = None if g.shape is None else g.shape[1:]
        return g.dtype, None if rest is None or indices.shape is None else indices.shape + rest

    def forward(g, indices):
        return g[indices]


@register_op
class TfFillDefaultGrad:
    """Gradient of the default value of SparseFillEmptyRows: the sum of the filled entries' gradients."""

    differentiable = False

    def infer(g, empty, reverse):
        return g.dtype, ()

    def forward(g, empty, reverse):
        mask = np.ones(len(g), dtype=bool)
        mask[reverse] = False
        return np.asarray(g[mask].sum(), dtype=g.dtype)


@register_op
class TfDynamicPartition:
    """TF ``DynamicPartition``: ``num_partitions`` outputs, ``data[partitions == i]`` each."""

    def infer(data, partitions, *, num_partitions):
        rest = None
        if data.shape is not None and partitions.shape is not None:
            rest = data.shape[len(partitions.shape):]
        return [(data.dtype, None if rest is None else (None,) + rest)] * num_partitions

    def forward(data, partitions, *, num_partitions):
        if np.any((partitions < 0) | (partitions >= num_partitions)):
            raise TfRuntimeError(f"a partition index is outside [0, {num_partitions}).")
        flat = data.reshape((-1,) + data.shape[partitions.ndim:])
        p = partitions.reshape(-1)
        return tuple(flat[p == i] for i in range(num_partitions))

    def vjp(gs, outs, data, partitions, *, num_partitions):
        parts = [g if g is not None else apply("ZerosLike", o) for g, o in zip(gs, outs)]
        return apply("TfDynamicPartitionGrad", data, partitions, *parts), None


@register_op
class TfDynamicPartitionGrad:
    """Gradient of TfDynamicPartition: each partition's gradient put back at its rows."""

    differentiable = False

    def infer(data, partitions, *gs):
        return gs[0].dtype, data.shape

    def forward(data, partitions, *gs):
        out = np.zeros(data.shape, dtype=gs[0].dtype)
        flat = out.reshape((-1,) + data.shape[partitions.ndim:])
        p = partitions.reshape(-1)
        for i, g in enumerate(gs):
            flat[p == i] = g
        return out


@register_op
class TfDynamicStitch:
    """TF ``DynamicStitch``/``ParallelDynamicStitch``: ``indices_0..n-1, data_0..n-1`` merged (later wins)."""

    def infer(*inputs):
        n = len(inputs) // 2
        data = inputs[n]
        rest = None
        if data.shape is not None and inputs[0].shape is not None:
            rest = data.shape[len(inputs[0].shape):]
        return data.dtype, None if rest is None else (None,) + rest

    def forward(*inputs):
        n = len(inputs) // 2
        indices, data = inputs[:n], inputs[n:]
        rows = max((int(i.max()) + 1 for i in indices if i.size), default=0)
        rest = data[0].shape[indices[0].ndim:]
        check_output_size([rows, *rest], "DynamicStitch")  # rows: the largest index, a tensor's value
        out = np.zeros((rows,) + rest, dtype=data[0].dtype)
        for i, d in zip(indices, data):
            if i.size and i.min() < 0:
                raise TfRuntimeError("DynamicStitch indices must be non-negative.")
            out[i.reshape(-1)] = d.reshape((-1,) + rest)
        return out

    def vjp(g, out, *inputs):
        n = len(inputs) // 2
        return (*(None for _ in range(n)), *(apply("TfStitchGrad", g, inputs[i]) for i in range(n)))
