"""Concrete ragged values: ``RaggedTensorValue`` (the fed and fetched form of a :class:`RaggedTensor`).

A ragged batch is fed as a ``RaggedTensorValue(values, row_ids, num_rows)`` or as nested Python
lists (``[[10, 2], [1]]``, rows of scalars or of equal-shaped values), and fetched as a
``RaggedTensorValue``, whose ``to_list()`` gives the rows back.

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     r = hk.ragged_placeholder(hk.int64)
...     sq = r.with_values(r.values * r.values)
>>> hk.Session(g).run(sq, {r: [[10, 2], [1]]}).to_list()
[[100, 4], [1]]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from hubkit.errors import FeedError
from hubkit.graph import as_dtype, int64, name_scope, placeholder
from hubkit.graph.shapes import normalize_shape
from hubkit.ops._helpers import as_tensor
from hubkit.ops.registry import apply, infer_error, register_op
from hubkit.ops.sparse import RaggedTensor

__all__ = ["RaggedTensor", "RaggedTensorValue", "ragged_from_row_splits", "ragged_placeholder"]


class RaggedTensorValue(NamedTuple):
    """Rows of different lengths kept flat: ``values[m]`` belongs to row ``row_ids[m]`` of ``num_rows``."""

    values: Any
    row_ids: Any
    num_rows: Any

    def to_list(self) -> list:
        """The rows as Python lists."""
        rows: list[list] = [[] for _ in range(int(self.num_rows))]
        for r, v in zip(np.asarray(self.row_ids), np.asarray(self.values)):
            rows[int(r)].append(v.tolist() if isinstance(v, np.ndarray) else v.item() if hasattr(v, "item") else v)
        return rows


def as_ragged_value(value: Any, what: str) -> RaggedTensorValue:
    """``value`` (a RaggedTensorValue, a 3-tuple of arrays, or nested lists of rows) checked and as arrays."""
    if isinstance(value, RaggedTensorValue) or (isinstance(value, tuple) and len(value) == 3):
        values, row_ids, num_rows = value
        values = np.asarray(values)
        row_ids = np.asarray(row_ids, dtype=np.int64)
        num_rows = np.asarray(num_rows, dtype=np.int64)
    elif isinstance(value, (list, np.ndarray)):
        rows = list(value)
        lengths = [len(r) for r in rows]
        flat = [x for r in rows for x in r]
        values = np.asarray(flat)
        row_ids = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        num_rows = np.asarray(len(rows), dtype=np.int64)
    else:
        raise FeedError(f"{what} needs a RaggedTensorValue or a list of rows, got {type(value).__name__}.")
    if row_ids.ndim != 1 or num_rows.ndim != 0 or values.ndim < 1 or len(values) != len(row_ids):
        raise FeedError(f"{what}: values {list(values.shape)}, row_ids {list(row_ids.shape)} and num_rows "
                        f"{list(num_rows.shape)} do not fit together; expected [M, ...], [M] and [].")
    if len(row_ids) and (row_ids.min() < 0 or row_ids.max() >= num_rows or (np.diff(row_ids) < 0).any()):
        raise FeedError(f"{what}: row_ids must be non-decreasing and in [0, {int(num_rows)}).")
    return RaggedTensorValue(values, row_ids, num_rows)


def ragged_placeholder(dtype: Any, value_shape: Any = (), name: str | None = None) -> RaggedTensor:
    """A ragged graph input (rows of values of shape ``value_shape``), fed a RaggedTensorValue or lists.

    Args:
        dtype: the values' dtype.
        value_shape: the shape of each value (``()`` for rows of scalars).
        name: name scope of the placeholders (``values``, ``row_ids``, ``num_rows``).
    """
    vs = normalize_shape(value_shape) or ()
    with name_scope(name or "ragged_placeholder"):
        values = placeholder(as_dtype(dtype), (None, *vs), name="values")
        row_ids = placeholder(int64, [None], name="row_ids")
        num_rows = placeholder(int64, [], name="num_rows")
    return RaggedTensor(values, row_ids, num_rows)


def is_ragged(value: Any) -> bool:
    return isinstance(value, RaggedTensor)




@register_op
class RowSplitsToIds:
    """``row_splits`` (``[rows + 1]``, starting at 0, non-decreasing) -> (``row_ids`` ``[M]``, ``num_rows``)."""

    differentiable = False

    def infer(row_splits):
        if not row_splits.dtype.is_integer:
            raise infer_error(f"row_splits must be integers, got {row_splits.dtype.name}.")
        return [(int64, (None,)), (int64, ())]

    def forward(row_splits):
        splits = np.asarray(row_splits, dtype=np.int64)
        if splits.ndim != 1 or len(splits) == 0 or splits[0] != 0 or (np.diff(splits) < 0).any():
            raise ValueError(f"row_splits must be 1-D, start at 0 and never decrease, got {splits.tolist()}")
        lengths = np.diff(splits)
        return np.repeat(np.arange(len(lengths), dtype=np.int64), lengths), np.asarray(len(lengths), np.int64)


def ragged_from_row_splits(values: Any, row_splits: Any, name: str | None = None) -> RaggedTensor:
    """The :class:`RaggedTensor` whose row ``r`` is ``values[row_splits[r]:row_splits[r + 1]]`` (as TF's
    ``RaggedTensor.from_row_splits``).

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     r = hk.ragged_from_row_splits(hk.constant([1, 2, 3]), hk.constant([0, 2, 2, 3]))
    >>> hk.Session(g).run(r).to_list()
    [[1, 2], [], [3]]
    """
    values_t = as_tensor(values)
    row_ids, num_rows = apply("RowSplitsToIds", as_tensor(row_splits, graph=values_t.graph),
                              name=name or "RowSplitsToIds")
    return RaggedTensor(values_t, row_ids, num_rows)
