"""Partitioned variables, as TensorFlow 1's ``get_variable(..., partitioner=...)``.

A partitioner maps a variable's shape and dtype to the number of parts along each axis (one axis
only is split). ``get_variable`` with a partitioner creates one ordinary variable per part, named
``<name>/part_<i>`` (the first ``dim % n`` parts are one row longer, as in TensorFlow), and returns
a :class:`PartitionedVariable`: a list of the parts that reads as their concatenation wherever a
tensor is expected. ``embedding_lookup`` takes the list directly (``partition_strategy`` "mod" or
"div"), gradients reach each part, and export/load keeps the parts as variables of their own.

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     v = hk.get_variable("emb", [5, 2], initializer=hk.initializers.ones(),
...                         partitioner=hk.fixed_size_partitioner(2))
>>> [p.name for p in v], [p.shape for p in v]
(['emb/part_0', 'emb/part_1'], [(3, 2), (2, 2)])
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import DType, Graph, Tensor, as_dtype, format_shape, get_default_graph, normalize_shape
from hubkit.runtime.variables import Variable

__all__ = [
    "PartitionedVariable",
    "fixed_size_partitioner",
    "min_max_variable_partitioner",
    "variable_axis_size_partitioner",
]

Partitioner = Callable[[tuple, DType], list[int]]


def _element_bytes(dtype: DType, bytes_per_string_element: int) -> int:
    return bytes_per_string_element if dtype.name == "string" else dtype.np_dtype.itemsize


def _check_axis(shape: tuple, axis: int) -> None:
    if not 0 <= axis < len(shape):
        raise GraphError(f"Cannot partition a variable of shape {format_shape(shape)} along axis {axis}.")


def fixed_size_partitioner(num_shards: int, axis: int = 0) -> Partitioner:
    """Splits ``axis`` into ``num_shards`` parts (fewer when the axis is shorter).

    Raises:
        GraphError: ``num_shards`` is not a positive int.
    """
    if not isinstance(num_shards, int) or num_shards < 1:
        raise GraphError(f"fixed_size_partitioner needs a positive number of shards, got {num_shards!r}.")

    def partitioner(shape: tuple, dtype: DType) -> list[int]:
        _check_axis(shape, axis)
        parts = [1] * len(shape)
        parts[axis] = max(1, min(num_shards, shape[axis]))
        return parts

    return partitioner


def variable_axis_size_partitioner(max_shard_bytes: int, axis: int = 0, bytes_per_string_element: int = 16,
                                   max_shards: int | None = None) -> Partitioner:
    """Splits ``axis`` so that each part holds at most ``max_shard_bytes`` (one slice at least per part)."""
    if not isinstance(max_shard_bytes, int) or max_shard_bytes < 1:
        raise GraphError(f"max_shard_bytes must be a positive int, got {max_shard_bytes!r}.")
    if max_shards is not None and (not isinstance(max_shards, int) or max_shards < 1):
        raise GraphError(f"max_shards must be None or a positive int, got {max_shards!r}.")

    def partitioner(shape: tuple, dtype: DType) -> list[int]:
        _check_axis(shape, axis)
        dim = shape[axis]
        slice_bytes = (math.prod(shape) / dim if dim else 0) * _element_bytes(dtype, bytes_per_string_element)
        per_shard = max(1, math.floor(max_shard_bytes / slice_bytes)) if slice_bytes else max(1, dim)
        shards = max(1, math.ceil(dim / per_shard))
        if max_shards is not None:
            shards = min(max_shards, shards)
        parts = [1] * len(shape)
        parts[axis] = shards
        return parts

    return partitioner


def min_max_variable_partitioner(max_partitions: int = 1, axis: int = 0, min_slice_size: int = 256 << 10,
                                 bytes_per_string_element: int = 16) -> Partitioner:
    """As many parts as keep each at least ``min_slice_size`` bytes, at most ``max_partitions``."""
    if not isinstance(max_partitions, int) or max_partitions < 1:
        raise GraphError(f"max_partitions must be a positive int, got {max_partitions!r}.")
    if not isinstance(min_slice_size, int) or min_slice_size < 1:
        raise GraphError(f"min_slice_size must be a positive int, got {min_slice_size!r}.")

    def partitioner(shape: tuple, dtype: DType) -> list[int]:
        _check_axis(shape, axis)
        total = math.prod(shape) * _element_bytes(dtype, bytes_per_string_element)
        parts = [1] * len(shape)
        parts[axis] = max(1, min(shape[axis], max_partitions, math.ceil(total / min_slice_size)))
        return parts

    return partitioner


def part_sizes(dim: int, n: int) -> list[int]:
    """Sizes of ``n`` parts of ``dim`` rows: the first ``dim % n`` get one more (TensorFlow's split)."""
    base, extra = divmod(dim, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


class PartitionedVariable:
    """The parts of a partitioned variable: a list of :class:`Variable` that reads as their concatenation.

    Attributes:
        name: the full name (parts are ``<name>/part_<i>``).
        shape: the full shape.
        dtype: the element type.
        axis: the axis along which it is split.
    """

    def __init__(self, name: str, shape: tuple, dtype: DType, parts: list[Variable], axis: int) -> None:
        self.name, self.shape, self.dtype, self.axis = name, shape, dtype, axis
        self._parts = list(parts)
        self._reads: weakref.WeakKeyDictionary[Graph, Tensor] = weakref.WeakKeyDictionary()

    def __iter__(self) -> Iterator[Variable]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def __getitem__(self, i: int) -> Variable:
        return self._parts[i]

    @property
    def trainable(self) -> bool:
        return all(p.trainable for p in self._parts)

    def _get_variable_list(self) -> list[Variable]:
        return list(self._parts)

    def _as_graph_tensor(self, graph: Graph) -> Tensor:
        """The concatenation of the parts' reads in ``graph`` (one node per graph)."""
        t = self._reads.get(graph)
        if t is None:
            from hubkit.ops.shape import concat  # the runtime builds on the ops layer

            with graph.as_default(), graph.name_scope(None):
                t = concat([p._as_graph_tensor(graph) for p in self._parts], axis=self.axis,
                           name=f"{self.name}/ConcatPartitions")
            self._reads[graph] = t
        return t

    def tensor(self, graph: Graph | None = None) -> Tensor:
        return self._as_graph_tensor(graph or get_default_graph())

    def numpy(self) -> np.ndarray:
        """The full value (the parts concatenated)."""
        return np.concatenate([p.value for p in self._parts], axis=self.axis)

    def __repr__(self) -> str:
        return f"<hubkit.PartitionedVariable {self.name!r} shape={format_shape(self.shape)} parts={len(self)}>"

    def __add__(self, o): return self.tensor() + o
    def __radd__(self, o): return o + self.tensor()
    def __sub__(self, o): return self.tensor() - o
    def __mul__(self, o): return self.tensor() * o
    def __rmul__(self, o): return o * self.tensor()
    def __matmul__(self, o): return self.tensor() @ o


def get_partitioned_variable(get_variable: Callable[..., Variable], name: str, shape: Any, dtype: Any,
                             initializer: Any, trainable: bool, regularizer: Any,
                             partitioner: Partitioner) -> PartitionedVariable:
    """Creates (or reuses) the parts of ``name`` with ``get_variable`` and returns them as one variable."""
    dt = as_dtype(dtype)
    value = None
    if initializer is not None and not callable(initializer) and not isinstance(initializer, (str, dict)):
        value = np.asarray(initializer)
        if shape is None:
            shape = value.shape
    sh = normalize_shape(shape)
    if sh is None or any(d is None for d in sh):
        raise GraphError(f"Partitioned variable {name!r} needs a fully known shape, got {format_shape(sh)}.")
    if not callable(partitioner):
        raise GraphError(f"partitioner must be a function of (shape, dtype), got {partitioner!r}.")
    counts = partitioner(tuple(sh), dt)
    if not isinstance(counts, (list, tuple)) or len(counts) != len(sh) or any(
            not isinstance(c, int) or c < 1 for c in counts):
        raise GraphError(f"Partitioner for {name!r} returned {counts!r}; expected {len(sh)} positive ints.")
    split = [i for i, c in enumerate(counts) if c > 1]
    if len(split) > 1:
        raise GraphError(f"Partitioner for {name!r} splits axes {split}; only one axis may be split.")
    axis = split[0] if split else 0
    sizes = part_sizes(sh[axis], counts[axis])
    parts = []
    offset = 0
    for i, size in enumerate(sizes):
        part_shape = list(sh)
        part_shape[axis] = size
        init = initializer
        if value is not None:
            init = np.take(value, range(offset, offset + size), axis=axis) if value.ndim else value
        parts.append(get_variable(f"{name}/part_{i}", part_shape, dt, init, trainable, regularizer))
        offset += size
    scope_prefix = parts[0].name[: -len("/part_0")]
    return PartitionedVariable(scope_prefix, tuple(sh), dt, parts, axis)


_PART = re.compile(r"^(.+)/part_(0|[1-9][0-9]*)$")


def group_partitions(named: dict[str, Any]) -> dict[str, Any]:
    """``{name: variable}`` with each complete ``<base>/part_0 .. part_<n-1>`` set as ``{base: [parts]}``.

    Keys come out sorted; parts in numeric order. A set with a gap, or whose base is itself a name,
    stays as it is (those are ordinary variables that happen to be called ``part_<i>``).
    """
    bases: dict[str, dict[int, str]] = {}
    for name in named:
        m = _PART.match(name)
        if m:
            bases.setdefault(m.group(1), {})[int(m.group(2))] = name
    grouped: dict[str, Any] = {}
    taken: set[str] = set()
    for base, parts in bases.items():
        if base in named or sorted(parts) != list(range(len(parts))):
            continue
        grouped[base] = [named[parts[i]] for i in range(len(parts))]
        taken.update(parts.values())
    for name, var in named.items():
        if name not in taken:
            grouped[name] = var
    return dict(sorted(grouped.items()))
