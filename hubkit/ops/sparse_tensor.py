"""Op family: sparse tensors, as TensorFlow 1's ``tf.SparseTensor`` and ``tf.sparse``.

A :class:`SparseTensor` is three tensors: ``indices`` (int64 ``[N, rank]``), ``values`` (``[N]``)
and ``dense_shape`` (int64 ``[rank]``). It is fed and fetched as a :class:`SparseTensorValue`
(``Session.run`` and a module's eager call both accept and return them), and it may be a
signature input or output (``TensorInfo.is_sparse``).

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     sp = hk.sparse_placeholder(hk.float32, [2, 3])
...     dense = hk.sparse.to_dense(sp)
>>> hk.Session(g).run(dense, {sp: hk.SparseTensorValue([[0, 1], [1, 2]], [5.0, 7.0], [2, 3])})
array([[0., 5., 0.],
       [0., 0., 7.]], dtype=float32)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from hubkit.errors import FeedError, GraphError
from hubkit.graph import (
    Graph,
    Tensor,
    as_dtype,
    format_shape,
    get_default_graph,
    int64,
    name_scope,
    placeholder,
)
from hubkit.graph.shapes import normalize_shape
from hubkit.ops._helpers import as_tensor, check_output_size
from hubkit.ops.registry import apply, apply_op, infer_error, register_op

# fill_empty_rows is public as hk.sparse.fill_empty_rows only (as tf.sparse.fill_empty_rows).
__all__ = [
    "SparseTensor",
    "SparseTensorValue",
    "sparse_from_dense",
    "sparse_placeholder",
    "sparse_reduce_sum",
    "sparse_tensor_dense_matmul",
    "sparse_tensor_to_dense",
    "sparse_to_dense",
]


class SparseTensorValue(NamedTuple):
    """A concrete sparse value: ``indices`` ``[N, rank]``, ``values`` ``[N]``, ``dense_shape`` ``[rank]``."""

    indices: Any
    values: Any
    dense_shape: Any


def _check_value(value: Any, what: str) -> SparseTensorValue:
    if not isinstance(value, SparseTensorValue):
        if isinstance(value, tuple) and len(value) == 3:
            value = SparseTensorValue(*value)
        else:
            raise FeedError(f"{what} needs a SparseTensorValue(indices, values, dense_shape), got {type(value).__name__}.")
    indices = np.asarray(value.indices, dtype=np.int64)
    values = np.asarray(value.values)
    shape = np.asarray(value.dense_shape, dtype=np.int64)
    if indices.size == 0:
        indices = indices.reshape(0, shape.size)
    if shape.ndim != 1 or indices.ndim != 2 or indices.shape[1] != shape.size or values.shape != (len(indices),):
        raise FeedError(
            f"{what}: indices {list(indices.shape)}, values {list(values.shape)} and dense_shape {list(shape.shape)} "
            "do not fit together; expected [N, rank], [N] and [rank]."
        )
    if len(indices) and ((indices < 0).any() or (indices >= shape).any()):
        raise FeedError(f"{what}: an index lies outside the dense shape {shape.tolist()}.")
    return SparseTensorValue(indices, values, shape)


class SparseTensor:
    """A symbolic sparse tensor: ``indices``, ``values`` and ``dense_shape`` tensors of one graph.

    Args:
        indices: int64 ``[N, rank]`` positions of the values (tensor or array-like).
        values: ``[N]`` values.
        dense_shape: int64 ``[rank]`` shape of the dense tensor.
    """

    def __init__(self, indices: Any, values: Any, dense_shape: Any, *, static_shape: Any = None) -> None:
        graph = next((t.graph for t in (indices, values, dense_shape) if isinstance(t, Tensor)), None)
        graph = graph or get_default_graph()
        self.indices = as_tensor(indices, int64, graph)
        self.values = as_tensor(values, None, graph)
        self.dense_shape = as_tensor(dense_shape, int64, graph)
        if self.values.shape is not None and len(self.values.shape) != 1:
            raise GraphError(f"SparseTensor values must be 1-D, got {format_shape(self.values.shape)}.")
        if self.indices.shape is not None and len(self.indices.shape) != 2:
            raise GraphError(f"SparseTensor indices must be 2-D, got {format_shape(self.indices.shape)}.")
        if static_shape is None:
            static_shape = _known_shape(self.dense_shape, self.indices)
        self._shape = normalize_shape(static_shape)

    @property
    def dtype(self):
        return self.values.dtype

    @property
    def shape(self):
        """The static dense shape (``None`` entries unknown)."""
        return self._shape

    def get_shape(self):
        return self._shape

    @property
    def graph(self) -> Graph:
        return self.values.graph

    def with_values(self, values: Any) -> SparseTensor:
        """The same positions holding other ``values``."""
        return SparseTensor(self.indices, values, self.dense_shape, static_shape=self._shape)

    # Session protocol: fetched as a SparseTensorValue, fed from one.
    def _composite_components(self) -> list[Tensor]:
        return [self.indices, self.values, self.dense_shape]

    def _composite_value(self, parts: list) -> SparseTensorValue:
        return SparseTensorValue(*parts)

    def _composite_feed(self, value: Any) -> list[tuple[Tensor, Any]]:
        v = _check_value(value, "SparseTensor feed")
        return list(zip(self._composite_components(), v))

    def __repr__(self) -> str:
        return f"<hubkit.SparseTensor shape={format_shape(self._shape)} dtype={self.dtype.name}>"


def _known_shape(dense_shape: Tensor, indices: Tensor):
    if dense_shape.node.op == "Const":
        return tuple(int(d) for d in dense_shape.node.attrs["value"])
    if indices.shape is not None and indices.shape[1] is not None:
        return (None,) * indices.shape[1]
    return None


def sparse_placeholder(dtype: Any, shape: Any = None, name: str | None = None) -> SparseTensor:
    """A sparse graph input, fed a :class:`SparseTensorValue`.

    Args:
        dtype: the values' dtype.
        shape: the static dense shape (``None`` entries unknown); None for unknown rank.
        name: name scope of the three placeholders (``<name>/indices``, ``/values``, ``/shape``).
    """
    sh = normalize_shape(shape)
    rank = None if sh is None else len(sh)
    with name_scope(name or "sparse_placeholder"):
        indices = placeholder(int64, [None, rank], name="indices")
        values = placeholder(as_dtype(dtype), [None], name="values")
        dense_shape = placeholder(int64, [rank], name="shape")
    return SparseTensor(indices, values, dense_shape, static_shape=sh)


# -- ops ---------------------------------------------------------------------------------------------------
@register_op
class SparseToDense:
    """Scatters ``values`` at ``indices`` into zeros (or ``default``) of shape ``dense_shape``."""

    def infer(indices, values, dense_shape, default, *, static_shape=None):
        if indices.dtype is not int64 or dense_shape.dtype is not int64:
            raise infer_error("indices and dense_shape must be int64.")
        if default.dtype is not values.dtype:
            raise infer_error(f"default is {default.dtype.name} but values are {values.dtype.name}.")
        return values.dtype, normalize_shape(static_shape)

    def forward(indices, values, dense_shape, default, *, static_shape=None):
        shape = tuple(int(d) for d in dense_shape)
        check_output_size(shape, "SparseToDense")  # the dense shape is a tensor's value
        out = np.full(shape, default, dtype=values.dtype)
        if len(indices):
            if (indices < 0).any() or (indices >= np.asarray(shape)).any():
                raise ValueError(f"an index lies outside the dense shape {list(shape)}")
            out[tuple(indices.T)] = values
        return out

    def vjp(g, out, indices, values, dense_shape, default, *, static_shape=None):
        return (None, apply("GatherNd", g, indices), None, None)


@register_op
class GatherNd:
    """``params[tuple(indices[i])]`` for each row ``i`` of ``indices`` (full positions only)."""

    def infer(params, indices):
        if indices.dtype is not int64:
            raise infer_error(f"indices must be int64, got {indices.dtype.name}.")
        n = None if indices.shape is None else indices.shape[0]
        return params.dtype, (n,)

    def forward(params, indices):
        if indices.shape[1] != params.ndim:
            raise ValueError(f"indices have {indices.shape[1]} coordinates for a rank-{params.ndim} tensor")
        return params[tuple(indices.T)] if len(indices) else np.zeros((0,), params.dtype)

    def vjp(g, out, params, indices):
        from hubkit.ops.shape import shape as shape_of

        zero = as_tensor(np.zeros((), g.dtype.np_dtype), g.dtype, g.graph)
        node = apply_op("SparseToDense", [indices, g, shape_of(params, out_type=int64), zero],
                        {"static_shape": params.shape})
        return (node.outputs[0], None)


@register_op
class SparseFillEmptyRows:
    """Adds ``(r, 0, ...) = default`` for every row ``r`` holding no value; also says which rows were empty."""

    differentiable = False

    def infer(indices, values, dense_shape, default):
        if default.dtype is not values.dtype:
            raise infer_error(f"default_value is {default.dtype.name} but values are {values.dtype.name}.")
        rank = None if indices.shape is None else indices.shape[1]
        return [(int64, (None, rank)), (values.dtype, (None,)), (as_dtype("bool"), (None,))]

    def forward(indices, values, dense_shape, default):
        rows = int(dense_shape[0])
        check_output_size([max(rows, 0), *indices.shape[1:]], "SparseFillEmptyRows")  # rows: a tensor's value
        present = np.zeros(rows, dtype=bool)
        if len(indices):
            present[indices[:, 0]] = True
        empty = np.flatnonzero(~present)
        extra = np.zeros((len(empty), indices.shape[1]), dtype=np.int64)
        extra[:, 0] = empty
        all_idx = np.concatenate([indices, extra]) if len(extra) else indices
        all_val = np.concatenate([values, np.full(len(empty), default, values.dtype)]) if len(extra) else values
        order = np.lexsort(all_idx.T[::-1]) if len(all_idx) else np.arange(0)
        return all_idx[order], all_val[order], ~present


@register_op
class NonZeroIndices:
    """int64 ``[N, rank]`` positions where ``x`` differs from ``ignore`` (row-major order)."""

    differentiable = False

    def infer(x, ignore):
        rank = None if x.shape is None else len(x.shape)
        return int64, (None, rank)

    def forward(x, ignore):
        return np.argwhere(x != ignore).astype(np.int64).reshape(-1, x.ndim)


# -- functions ---------------------------------------------------------------------------------------------
def _as_sparse(sp: Any, what: str) -> SparseTensor:
    if not isinstance(sp, SparseTensor):
        raise GraphError(f"{what} needs a hubkit.SparseTensor, got {type(sp).__name__}.")
    return sp


def sparse_tensor_to_dense(sp_input: SparseTensor, default_value: Any = None, validate_indices: bool = True,
                           name: str | None = None) -> Tensor:
    """The dense tensor of ``sp_input`` (``default_value``, 0 by default, where no value is stored)."""
    sp = _as_sparse(sp_input, "sparse.to_dense")
    graph = sp.graph
    default = as_tensor(0 if default_value is None else default_value, sp.dtype, graph)
    node = apply_op("SparseToDense", [sp.indices, sp.values, sp.dense_shape, default],
                    {"static_shape": sp.shape}, name=name or "SparseToDense")
    return node.outputs[0]


def sparse_to_dense(sparse_indices: Any, output_shape: Any, sparse_values: Any, default_value: Any = 0,
                    name: str | None = None) -> Tensor:
    """TF1's ``tf.sparse_to_dense(indices, shape, values, default)`` (indices ``[N, rank]``)."""
    return sparse_tensor_to_dense(SparseTensor(sparse_indices, sparse_values, output_shape), default_value, name=name)


def sparse_reduce_sum(sp_input: SparseTensor, axis: Any = None, keepdims: bool = False, name: str | None = None
                      ) -> Tensor:
    """The sum of the stored values, over ``axis`` (all axes when None), as a dense tensor."""
    from hubkit.ops.reduce import reduce_sum

    return reduce_sum(sparse_tensor_to_dense(_as_sparse(sp_input, "sparse.reduce_sum")), axis=axis,
                      keepdims=keepdims, name=name)


def sparse_tensor_dense_matmul(sp_a: SparseTensor, b: Any, adjoint_a: bool = False, adjoint_b: bool = False,
                               name: str | None = None) -> Tensor:
    """``sp_a @ b`` for a rank-2 sparse ``sp_a`` and a dense ``b`` (gradients reach ``sp_a.values`` and ``b``)."""
    from hubkit.ops.elementwise import matmul

    sp = _as_sparse(sp_a, "sparse_tensor_dense_matmul")
    if sp.shape is not None and len(sp.shape) != 2:
        raise GraphError(f"sparse_tensor_dense_matmul needs a rank-2 SparseTensor, got {format_shape(sp.shape)}.")
    return matmul(sparse_tensor_to_dense(sp), b, transpose_a=adjoint_a, transpose_b=adjoint_b, name=name)


def sparse_from_dense(tensor: Any, ignore_value: Any = None, name: str | None = None) -> SparseTensor:
    """The SparseTensor of ``tensor``'s entries that differ from ``ignore_value`` (0, or "" for strings).

    Gradients reach ``tensor`` through the values (as ``tf.sparse.from_dense``).
    """
    from hubkit.ops.shape import shape as shape_of

    dense = as_tensor(tensor)
    ignore = as_tensor(("" if dense.dtype.name == "string" else 0) if ignore_value is None else ignore_value,
                       dense.dtype, dense.graph)
    with name_scope(name or "from_dense"):
        indices = apply("NonZeroIndices", dense, ignore)
        values = apply("GatherNd", dense, indices)
        dense_shape = shape_of(dense, out_type=int64)
    return SparseTensor(indices, values, dense_shape, static_shape=dense.shape)


def fill_empty_rows(sp_input: SparseTensor, default_value: Any, name: str | None = None
                    ) -> tuple[SparseTensor, Tensor]:
    """Gives every empty row ``r`` the value ``default_value`` at ``(r, 0, ...)``.

    Returns:
        The filled SparseTensor (indices in row-major order) and a bool ``[rows]`` tensor marking the
        rows that were empty.
    """
    sp = _as_sparse(sp_input, "sparse.fill_empty_rows")
    default = as_tensor(default_value, sp.dtype, sp.graph)
    node = apply_op("SparseFillEmptyRows", [sp.indices, sp.values, sp.dense_shape, default], {},
                    name=name or "SparseFillEmptyRows")
    idx, vals, empty = node.outputs
    return SparseTensor(idx, vals, sp.dense_shape, static_shape=sp.shape), empty
