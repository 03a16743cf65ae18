"""TF1 ``TensorArrayV3`` and its ops -> the value ops of :mod:`hubkit.ops.tf_tensor_array`.

TF's TensorArray ops take a resource handle and a *flow* tensor; hubkit drops the handle (its input is never
translated: :data:`HANDLE_OPS` tells the graph walk to skip it) and lets the flow carry the array itself, so a
``tf.nn.dynamic_rnn`` loop, whose flows are loop variables, becomes an ordinary ``While`` over array values.
"""

from __future__ import annotations

from hubkit.graph import int32
from hubkit.importers.tf1.translate import TRANSLATORS, Emitter

__all__ = ["HANDLE_OPS"]

# TF op -> the hubkit op taking (flow, other inputs but the handle); input 0 of each is the handle.
_OPS = {"TensorArrayWriteV3": "TfTensorArrayWrite", "TensorArrayScatterV3": "TfTensorArrayScatter",
        "TensorArrayReadV3": "TfTensorArrayRead", "TensorArrayGatherV3": "TfTensorArrayGather",
        "TensorArraySizeV3": "TfTensorArraySize"}
HANDLE_OPS = frozenset({*_OPS, "TensorArrayCloseV3"})


def _tensor_array(e: Emitter) -> None:
    shape = e.attrs.get("element_shape")
    e.emit("TfTensorArrayNew", [e.inputs[0]], {"dtype": e.dtype_attr("dtype"),
                                                "element_shape": None if shape is None else list(shape)})
    e.alias(1, f"{e.name}:0")  # the flow is the array; the handle (output 0) is never read as data


def _array_op(e: Emitter) -> None:
    hk_op = _OPS[e.op]
    flow = e.inputs[-1]
    attrs = {"dtype": e.dtype_attr("dtype")} if hk_op in ("TfTensorArrayRead", "TfTensorArrayGather") else {}
    e.emit(hk_op, [flow, *e.inputs[1:-1]], attrs)


def _close(e: Emitter) -> None:
    e.emit("Group", [])


# -- control flow v2: TensorList ops (a list is a variant value; input 0 is the list itself, not a handle) ----------
def _element_shape(e: Emitter, i: int) -> list[int] | None:
    shape = e.const_input(i)
    if shape is None or shape.ndim != 1 or (shape < 0).any():
        return None  # unknown rank or dimensions: taken from the first element written
    return [int(d) for d in shape]


def _list_reserve(e: Emitter) -> None:
    e.emit("TfTensorArrayNew", [e.inputs[1]], {"dtype": e.dtype_attr("element_dtype"),
                                                "element_shape": _element_shape(e, 0)})


def _empty_list(e: Emitter) -> None:
    e.emit("TfTensorArrayNew", [e.const(0, int32)], {"dtype": e.dtype_attr("element_dtype"),
                                                      "element_shape": _element_shape(e, 0)})


_LIST_OPS = {"TensorListSetItem": ("TfTensorArrayWrite", 3, False), "TensorListGetItem": ("TfTensorArrayRead", 2, True),
             "TensorListGather": ("TfTensorArrayGather", 2, True), "TensorListLength": ("TfTensorArraySize", 1, False),
             "TensorListStack": ("TfTensorArrayStack", 1, True), "TensorListFromTensor": ("TfTensorArrayFromTensor", 1,
                                                                                          False),
             "TensorListPushBack": ("TfTensorArrayPushBack", 2, False)}


def _list_op(e: Emitter) -> None:
    hk_op, n_inputs, typed = _LIST_OPS[e.op]
    attrs = {"dtype": e.dtype_attr("element_dtype")} if typed else {}
    e.emit(hk_op, e.inputs[:n_inputs], attrs)


TRANSLATORS["TensorListReserve"] = _list_reserve
TRANSLATORS["EmptyTensorList"] = _empty_list
for _op in _LIST_OPS:
    TRANSLATORS[_op] = _list_op
TRANSLATORS["TensorArrayV3"] = _tensor_array
TRANSLATORS["TensorArrayCloseV3"] = _close
for _op in _OPS:
    TRANSLATORS[_op] = _array_op
