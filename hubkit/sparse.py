"""``hubkit.sparse``: sparse tensors and their ops, as ``tf.sparse``.

The types and ops live in :mod:`hubkit.ops.sparse_tensor`; ``hubkit.SparseTensor``,
``hubkit.SparseTensorValue`` and ``hubkit.sparse_placeholder`` are also top-level names.
"""

from hubkit.ops.sparse_tensor import (
    SparseTensor,
    SparseTensorValue,
    fill_empty_rows,
    sparse_from_dense,
    sparse_placeholder,
    sparse_reduce_sum,
    sparse_tensor_dense_matmul,
    sparse_tensor_to_dense,
)

from_dense = sparse_from_dense
placeholder = sparse_placeholder
reduce_sum = sparse_reduce_sum
sparse_dense_matmul = sparse_tensor_dense_matmul
to_dense = sparse_tensor_to_dense

__all__ = [
    "SparseTensor",
    "SparseTensorValue",
    "fill_empty_rows",
    "from_dense",
    "placeholder",
    "reduce_sum",
    "sparse_dense_matmul",
    "sparse_tensor_dense_matmul",
    "sparse_tensor_to_dense",
    "to_dense",
]
