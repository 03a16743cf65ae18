"""TF1 signature entries (``TensorInfo``) -> hubkit signature entries, sparse ones included.

A ``coo_sparse`` entry ``x`` (a ``tf.compat.v1.sparse_placeholder`` input, or a ``SparseTensor`` output)
names three tensors; hubkit stores a sparse signature value as the plain entries ``x/indices`` (int64,
``[N, rank]``), ``x/values`` (``[N]``) and ``x/dense_shape`` (int64, ``[rank]``), which its API groups
back into one :class:`hubkit.SparseTensor` (``TensorInfo.is_sparse``). So nothing new is needed in the
hubkit format, and a converted module behaves as the TF1 one.
"""

from __future__ import annotations

from hubkit.errors import FormatError
from hubkit.graph import DType, as_dtype
from hubkit.importers.tf1.attrs import decode_shape
from hubkit.importers.tf1.dtypes import hubkit_dtype
from hubkit.importers.tf1.proto import tf1_pb2 as tfpb

__all__ = ["signature_entries"]

Entry = tuple[str, str, DType, "tuple[int | None, ...] | None"]


def _tensor_name(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def signature_entries(key: str, info: tfpb.TensorInfo, where: str) -> list[Entry]:
    """``(hubkit key, TF tensor name, dtype, shape)`` for one TF1 signature entry (three for a sparse one)."""
    dtype = hubkit_dtype(info.dtype, where)
    shape = decode_shape(info.tensor_shape)
    encoding = info.WhichOneof("encoding")
    if encoding == "name":
        return [(key, _tensor_name(info.name), dtype, shape)]
    if encoding != "coo_sparse":
        raise FormatError(f"{where} is a composite tensor of a kind hubkit does not read (only dense and coo_sparse).")
    if "/" in key:
        raise FormatError(f"{where} is sparse and its key holds '/'; hubkit stores a sparse value as the entries "
                          "'<key>/indices', '<key>/values' and '<key>/dense_shape', so its key cannot.")
    coo = info.coo_sparse
    names = (coo.indices_tensor_name, coo.values_tensor_name, coo.dense_shape_tensor_name)
    if not all(names):
        raise FormatError(f"{where} is sparse but does not name its indices, values and dense shape tensors.")
    rank = None if shape is None else len(shape)
    int64 = as_dtype("int64")
    return [(f"{key}/indices", _tensor_name(names[0]), int64, (None, rank)),
            (f"{key}/values", _tensor_name(names[1]), dtype, (None,)),
            (f"{key}/dense_shape", _tensor_name(names[2]), int64, (rank,))]
