"""TF-exact ``TensorArray`` ops for imported TF1 graphs (``tf.nn.dynamic_rnn``, ``tf.while_loop`` over a
``tf.TensorArray``): the array is a value, not a resource. Control flow v2's ``TensorList`` ops (a list is a
variant value) map onto the same ops.

TF passes a resource handle plus a scalar *flow* tensor that orders the writes; the importer drops the handle
and makes the flow carry the whole array: a NumPy array ``[size, *element_shape]`` (its element shape taken
from the first write when TF did not know it: until then it is ``[size, 0]``). A write returns a new array,
so a loop variable holding it behaves like any other value and gradients follow reads and writes back
through the loop. The flow keeps TF's declared dtype (float32) whatever the elements hold.
"""

from __future__ import annotations

import numpy as np

from hubkit.graph import float32, int32
from hubkit.ops.registry import apply, infer_error, register_op
from hubkit.ops.tf_array import TfRuntimeError

__all__: list[str] = []


def _elements(ta: np.ndarray, shape: tuple, dtype, what: str) -> np.ndarray:
    """``ta`` with room for elements of ``shape`` (allocated at the first write when TF did not know it)."""
    if ta.shape[1:] == shape:
        return ta if ta.dtype == dtype else ta.astype(dtype)
    if ta.size == 0:
        return np.zeros((ta.shape[0], *shape), dtype=dtype)
    raise TfRuntimeError(f"{what} writes an element of shape {list(shape)} into a TensorArray of elements of shape "
                         f"{list(ta.shape[1:])}.")


def _grown(ta: np.ndarray, index: np.ndarray, what: str) -> np.ndarray:
    idx = np.asarray(index).reshape(-1)
    if idx.size and int(idx.min()) < 0:
        raise TfRuntimeError(f"{what} index {int(idx.min())} is negative.")
    need = int(idx.max()) + 1 if idx.size else 0
    if need <= ta.shape[0]:
        return ta.copy()
    out = np.zeros((need, *ta.shape[1:]), dtype=ta.dtype)  # a dynamic_size array grows
    out[: ta.shape[0]] = ta
    return out


def _read_rows(ta: np.ndarray, index: np.ndarray, what: str) -> np.ndarray:
    idx = np.asarray(index)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= ta.shape[0]):
        raise TfRuntimeError(f"{what} index {idx.reshape(-1).tolist()} is not in [0, {ta.shape[0]}).")
    return ta[idx]


@register_op
class TfTensorArrayNew:
    """A TensorArray of ``size`` elements (zeros; shape ``[size, *element_shape]``, or ``[size, 0]`` if unknown)."""

    differentiable = False

    def infer(size, *, dtype, element_shape):
        return float32, None

    def forward(size, *, dtype, element_shape):
        n = int(size)
        if n < 0:
            raise TfRuntimeError(f"TensorArray size {n} is negative.")
        known = element_shape is not None and all(d is not None and d >= 0 for d in element_shape)
        return np.zeros((n, *element_shape) if known else (n, 0), dtype=dtype.np_dtype)


@register_op
class TfTensorArrayWrite:
    """``TensorArrayWriteV3``: the array with element ``index`` replaced by ``value``."""

    def infer(ta, index, value):
        return float32, None

    def forward(ta, index, value):
        value = np.asarray(value)
        out = _grown(_elements(ta, value.shape, value.dtype, "TensorArrayWrite"), index, "TensorArrayWrite")
        out[int(index)] = value
        return out

    def vjp(g, out, ta, index, value):
        return apply("TfTensorArrayZeroRows", g, ta, index), None, apply("TfTensorArrayRead", g, index,
                                                                          dtype=value.dtype)


@register_op
class TfTensorArrayScatter:
    """``TensorArrayScatterV3``: the array with elements ``indices`` replaced by the rows of ``value``."""

    def infer(ta, indices, value):
        return float32, None

    def forward(ta, indices, value):
        value = np.asarray(value)
        if value.ndim < 1 or value.shape[0] != np.asarray(indices).size:
            raise TfRuntimeError(f"TensorArrayScatter got {np.asarray(indices).size} indices for a value of shape "
                                 f"{list(value.shape)}.")
        out = _grown(_elements(ta, value.shape[1:], value.dtype, "TensorArrayScatter"), indices, "TensorArrayScatter")
        out[np.asarray(indices).reshape(-1)] = value
        return out

    def vjp(g, out, ta, indices, value):
        return apply("TfTensorArrayZeroRows", g, ta, indices), None, apply("TfTensorArrayGather", g, indices,
                                                                            dtype=value.dtype)


@register_op
class TfTensorArrayRead:
    """``TensorArrayReadV3``: element ``index``."""

    def infer(ta, index, *, dtype):
        if index.shape is not None and index.shape != ():
            raise infer_error("the index must be a scalar.")
        return dtype, None

    def forward(ta, index, *, dtype):
        return np.asarray(_read_rows(ta, np.asarray(index).reshape(()), "TensorArrayRead"))

    def vjp(g, out, ta, index, *, dtype):
        return apply("TfTensorArrayAddRows", g, ta, index), None


@register_op
class TfTensorArrayGather:
    """``TensorArrayGatherV3``: the elements ``indices``, stacked."""

    def infer(ta, indices, *, dtype):
        return dtype, None

    def forward(ta, indices, *, dtype):
        return _read_rows(ta, np.asarray(indices).reshape(-1), "TensorArrayGather")

    def vjp(g, out, ta, indices, *, dtype):
        return apply("TfTensorArrayAddRows", g, ta, indices), None


@register_op
class TfTensorArraySize:
    """``TensorArraySizeV3``: the number of elements."""

    differentiable = False

    def infer(ta):
        return int32, ()

    def forward(ta):
        return np.array(ta.shape[0], dtype=np.int32)


@register_op
class TfTensorArrayZeroRows:
    """The gradient a write passes to the array before it: ``g`` with the overwritten rows zeroed (zeros if that
    array held no element yet)."""

    differentiable = False

    def infer(g, ta, indices):
        return g.dtype, None

    def forward(g, ta, indices):
        if g.shape[1:] != ta.shape[1:]:
            return np.zeros(ta.shape, dtype=g.dtype)
        out = np.array(g[: ta.shape[0]], copy=True)
        idx = np.asarray(indices).reshape(-1)
        out[idx[idx < ta.shape[0]]] = 0
        return out


@register_op
class TfTensorArrayAddRows:
    """The gradient of reading rows ``indices``: zeros shaped like the array, ``g`` added at those rows."""

    differentiable = False

    def infer(g, ta, indices):
        return g.dtype, None

    def forward(g, ta, indices):
        out = np.zeros(ta.shape, dtype=g.dtype)
        idx = np.asarray(indices).reshape(-1)
        np.add.at(out, idx, np.asarray(g).reshape((idx.size, *ta.shape[1:])))
        return out


@register_op
class TfTensorArrayFromTensor:
    """``TensorListFromTensor``: the rows of ``tensor`` as the elements (the array is the tensor itself)."""

    def infer(tensor):
        return float32, None

    def forward(tensor):
        return np.asarray(tensor)

    def vjp(g, out, tensor):
        return (g,)


@register_op
class TfTensorArrayStack:
    """``TensorListStack``: the elements stacked (the array itself, read with its element dtype)."""

    def infer(ta, *, dtype):
        return dtype, None

    def forward(ta, *, dtype):
        return ta

    def vjp(g, out, ta, *, dtype):
        return (g,)


@register_op
class TfTensorArrayPushBack:
    """``TensorListPushBack``: the array with ``value`` appended."""

    def infer(ta, value):
        return float32, None

    def forward(ta, value):
        value = np.asarray(value)
        buf = _elements(ta, value.shape, value.dtype, "TensorListPushBack")
        return np.concatenate([buf, value[None]], axis=0)

    def vjp(g, out, ta, value):
        return apply("TfTensorArrayZeroRows", g, ta, apply("TfTensorArraySize", ta)), apply(
            "TfTensorArrayRead", g, apply("TfTensorArraySize", ta), dtype=value.dtype)
