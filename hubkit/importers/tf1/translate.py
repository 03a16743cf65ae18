"""TF op -> hubkit nodes: one translator per TF op type, registered in :data:`TRANSLATORS`.

A translator gets a :class:`Emitter` for one TF node and adds the hubkit node(s) computing it. The
node carrying the TF node's outputs takes the TF node's name, so ``"name:i"`` keeps meaning the same
tensor; helper nodes are named ``"<name>/_hk<k>"``. Where hubkit's own op has TF's semantics it is
used directly; otherwise the TF-exact op of ``hubkit/ops/tf_*.py`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from hubkit.errors import FormatError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import encode_attrs
from hubkit.graph import DType, as_dtype, int32, string

if TYPE_CHECKING:
    from hubkit.importers.tf1.graph import GraphTranslator

__all__ = ["TRANSLATORS", "Emitter", "supported_tf_ops"]


class Emitter:
    """Adds the hubkit nodes of one TF node to the variant being built."""

    def __init__(self, translator: GraphTranslator, name: str, op: str, attrs: dict[str, Any], inputs: list[str],
                 tf_inputs: list[str]) -> None:
        self.t = translator
        self.name = name
        self.op = op
        self.attrs = attrs
        self.inputs = inputs  # hubkit tensor names of the data inputs
        self.tf_inputs = tf_inputs  # the TF tensor names they came from
        self._count = 0

    def where(self) -> str:
        return f"{self.t.where}: {self.op} node {self.name!r}"

    def emit(self, op: str, inputs: list[str], attrs: dict[str, Any] | None = None, *, name: str | None = None,
             control: list[str] | tuple[str, ...] = ()) -> str:
        """Adds a hubkit node; returns its name (the TF node's name unless ``name`` is given)."""
        nd = pb.NodeDef(name=name or self.name, op=op)
        nd.inputs.extend(inputs)
        nd.control_inputs.extend(control)
        encode_attrs(dict(attrs or {}), nd.attrs, f"{self.where()} attribute")
        self.t.out_nodes.append(nd)
        return nd.name

    def helper_name(self) -> str:
        self._count += 1
        return f"{self.name}/_hk{self._count}"

    def const(self, value: Any, dtype: DType) -> str:
        """A helper Const node; returns its tensor name."""
        arr = np.asarray(value, dtype=dtype.np_dtype)
        return self.emit("Const", [], {"value": arr, "dtype": dtype}, name=self.helper_name()) + ":0"

    def alias(self, index: int, tensor: str) -> None:
        """Makes the TF tensor ``name:index`` stand for the hubkit tensor ``tensor``."""
        self.t.tensor_map[f"{self.name}:{index}"] = tensor

    def const_input(self, i: int) -> np.ndarray | None:
        return self.t.const_value(self.tf_inputs[i])

    def dtype_attr(self, key: str) -> DType:
        value = self.attrs.get(key)
        if not isinstance(value, DType):
            raise FormatError(f"{self.where()} has the {key} {value!r}, which hubkit tensors cannot hold.")
        return value

    def require(self, ok: bool, what: str) -> None:
        if not ok:
            raise FormatError(f"{self.where()}: {what}")


Translator = Callable[[Emitter], None]
TRANSLATORS: dict[str, Translator] = {}


def supported_tf_ops() -> list[str]:
    """Every TF op type the importer translates, sorted."""
    return sorted(TRANSLATORS)


def _register(*names: str) -> Callable[[Translator], Translator]:
    def deco(fn: Translator) -> Translator:
        for n in names:
            TRANSLATORS[n] = fn
        return fn

    return deco


def _same(hk_op: str, attr_map: dict[str, str] | None = None, **fixed: Any) -> Translator:
    def translate(e: Emitter) -> None:
        attrs = {hk: e.attrs[tf] for tf, hk in (attr_map or {}).items() if tf in e.attrs}
        e.emit(hk_op, e.inputs, {**attrs, **fixed})

    return translate


# -- direct equivalents -------------------------------------------------------------------------------------
for _tf, _hk in {
    "Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "RealDiv", "Maximum": "Maximum",
    "Minimum": "Minimum", "Pow": "Pow", "Neg": "Neg", "Abs": "Abs", "Exp": "Exp", "Log": "Log", "Log1p": "Log1p",
    "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Relu": "Relu", "Relu6": "Relu6", "Elu": "Elu", "Softplus": "Softplus",
    "Erf": "Erf", "Sqrt": "Sqrt", "Rsqrt": "Rsqrt", "Square": "Square", "Floor": "Floor", "Sign": "Sign",
    "StopGradient": "StopGradient", "PreventGradient": "StopGradient", "Less": "Less", "LessEqual": "LessEqual",
    "Greater": "Greater", "GreaterEqual": "GreaterEqual", "Equal": "Equal", "NotEqual": "NotEqual",
    "LogicalAnd": "LogicalAnd", "LogicalOr": "LogicalOr", "LogicalNot": "LogicalNot", "ZerosLike": "ZerosLike",
    "OnesLike": "OnesLike", "AddN": "AddN", "SelectV2": "Select", "Select": "TfSelect",
}.items():
    TRANSLATORS[_tf] = _same(_hk)

TRANSLATORS["MatMul"] = _same("MatMul", {"transpose_a": "transpose_a", "transpose_b": "transpose_b"})
TRANSLATORS["Softmax"] = _same("Softmax", axis=-1)
TRANSLATORS["LogSoftmax"] = _same("LogSoftmax", axis=-1)
TRANSLATORS["LeakyRelu"] = _same("LeakyRelu", {"alpha": "alpha"})
TRANSLATORS["Shape"] = _same("TfShape", {"out_type": "out_type"})
TRANSLATORS["Size"] = _same("TfSize", {"out_type": "out_type"})
TRANSLATORS["Rank"] = _same("TfRank")
TRANSLATORS["Reshape"] = _same("TfReshape")
TRANSLATORS["ExpandDims"] = _same("TfExpandDims")
TRANSLATORS["Transpose"] = _same("TfTranspose")
TRANSLATORS["Fill"] = _same("TfFill")
TRANSLATORS["Range"] = _same("TfRange")
TRANSLATORS["Tile"] = _same("TfTile")
TRANSLATORS["Slice"] = _same("TfSlice")
TRANSLATORS["OneHot"] = _same("TfOneHot", {"axis": "axis"})
TRANSLATORS["Pack"] = _same("TfPack", {"axis": "axis"})
TRANSLATORS["Unpack"] = _same("TfUnpack", {"num": "num", "axis": "axis"})
TRANSLATORS["ConcatV2"] = _same("TfConcat")
TRANSLATORS["StridedSlice"] = _same("TfStridedSlice", {m: m for m in (
    "begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")})
TRANSLATORS["BatchMatMul"] = _same("TfBatchMatMul", {"adj_x": "adj_x", "adj_y": "adj_y"}, broadcast=False)
TRANSLATORS["BatchMatMulV2"] = _same("TfBatchMatMul", {"adj_x": "adj_x", "adj_y": "adj_y"}, broadcast=True)
TRANSLATORS["BatchMatMulV3"] = TRANSLATORS["BatchMatMulV2"]
TRANSLATORS["FloorDiv"] = _same("TfIntegerBinary", fn="floor_div")
TRANSLATORS["FloorMod"] = _same("TfIntegerBinary", fn="floor_mod")
TRANSLATORS["TruncateDiv"] = _same("TfIntegerBinary", fn="truncate_div")
TRANSLATORS["Unique"] = _same("TfUnique", {"out_idx": "out_idx"})
TRANSLATORS["SparseFillEmptyRows"] = _same("TfSparseFillEmptyRows")
TRANSLATORS["DynamicPartition"] = _same("TfDynamicPartition", {"num_partitions": "num_partitions"})
TRANSLATORS["DynamicStitch"] = _same("TfDynamicStitch")
TRANSLATORS["ParallelDynamicStitch"] = _same("TfDynamicStitch")
TRANSLATORS["StringSplit"] = _same("TfStringSplit", {"skip_empty": "skip_empty"})
TRANSLATORS["StringSplitV2"] = _same("TfStringSplitV2", {"maxsplit": "maxsplit"})
TRANSLATORS["StringJoin"] = _same("TfStringJoin", {"separator": "separator"})
TRANSLATORS["StaticRegexReplace"] = _same("TfStaticRegexReplace", {"pattern": "pattern", "rewrite": "rewrite",
                                                                    "replace_global": "replace_global"})
TRANSLATORS["RegexReplace"] = _same("TfRegexReplace", {"replace_global": "replace_global"})
TRANSLATORS["StringLower"] = _same("TfStringLower", {"encoding": "encoding"})
TRANSLATORS["StringToHashBucketFast"] = _same("TfStringToHashBucketFast", {"num_buckets": "num_buckets"})
for _tf, _red in (("SparseSegmentSum", "sum"), ("SparseSegmentMean", "mean"), ("SparseSegmentSqrtN", "sqrtn"),
                  ("SparseSegmentSumWithNumSegments", "sum"), ("SparseSegmentMeanWithNumSegments", "mean"),
                  ("SparseSegmentSqrtNWithNumSegments", "sqrtn")):
    TRANSLATORS[_tf] = _same("TfSparseSegmentReduce", reduction=_red)
for _tf, _red in (("Sum", "sum"), ("Mean", "mean"), ("Max", "max"), ("Min", "min"), ("Prod", "prod"),
                  ("All", "all"), ("Any", "any")):
    TRANSLATORS[_tf] = _same("TfReduce", {"keep_dims": "keep_dims"}, reduction=_red)


TRANSLATORS["Pad"] = _same("TfPad")
TRANSLATORS["PadV2"] = _same("TfPad")
TRANSLATORS["MirrorPad"] = _same("TfPad", {"mode": "mode"})
TRANSLATORS["Split"] = _same("TfSplit", {"num_split": "num_split"})
TRANSLATORS["SplitV"] = _same("TfSplit", {"num_split": "num_split"}, v2=True)
TRANSLATORS["ArgMax"] = _same("TfArgMax", {"output_type": "output_type"}, kind="max")
TRANSLATORS["ArgMin"] = _same("TfArgMax", {"output_type": "output_type"}, kind="min")


@_register("SegmentSum")
def _segment_sum(e: Emitter) -> None:
    """``SegmentSum(data, ids)`` is the sparse segment sum over every row in order (``embedding_lookup_sparse``
    with weights and ``combiner="sum"`` uses it)."""
    rows = e.emit("TfSize", [e.inputs[1]], {"out_type": int32}, name=e.helper_name()) + ":0"
    order = e.emit("TfRange", [e.const(0, int32), rows, e.const(1, int32)], name=e.helper_name()) + ":0"
    e.emit("TfSparseSegmentReduce", [e.inputs[0], order, e.inputs[1]], {"reduction": "sum"})


@_register("Reciprocal", "Inv")
def _reciprocal(e: Emitter) -> None:
    e.emit("RealDiv", [e.const(1, e.dtype_attr("T")), e.inputs[0]])


@_register("Identity", "Snapshot", "ReadVariableOp", "CheckNumerics")
def _identity(e: Emitter) -> None:
    """No node: the TF tensor stands for its input (one executor step less per call)."""
    e.alias(0, e.inputs[0])


@_register("Placeholder")
def _placeholder(e: Emitter) -> None:
    e.emit("Placeholder", [], {"dtype": e.dtype_attr("dtype"), "shape": e.attrs.get("shape")})


@_register("PlaceholderWithDefault")
def _placeholder_with_default(e: Emitter) -> None:
    if e.name in e.t.signature_inputs:  # fed by the caller: a placeholder (the default is not kept)
        e.emit("Placeholder", [], {"dtype": e.dtype_attr("dtype"), "shape": e.attrs.get("shape")})
    else:
        e.emit("Identity", e.inputs)


@_register("Const")
def _const(e: Emitter) -> None:
    dtype = e.dtype_attr("dtype")
    value = e.t.const_value(f"{e.name}:0")
    if e.name in e.t.asset_consts:
        e.emit("AssetPath", [], {"filename": e.t.asset_consts[e.name], "source": ""})
        return
    e.emit("Const", [], {"value": np.asarray(value, dtype=dtype.np_dtype), "dtype": dtype})


@_register("Cast")
def _cast(e: Emitter) -> None:
    e.emit("Cast", e.inputs, {"dtype": e.dtype_attr("DstT")})


@_register("BiasAdd", "BiasAddV1")
def _bias_add(e: Emitter) -> None:
    e.require(e.attrs.get("data_format", "NHWC") == "NHWC", "only the NHWC data format is supported.")
    e.emit("BiasAdd", e.inputs)


@_register("Div")
def _div(e: Emitter) -> None:
    dtype = e.dtype_attr("T")
    if dtype.is_floating:
        e.emit("RealDiv", e.inputs)
    else:
        e.emit("TfIntegerBinary", e.inputs, {"fn": "truncate_div"})


@_register("SquaredDifference")
def _squared_difference(e: Emitter) -> None:
    diff = e.emit("Sub", e.inputs, name=e.helper_name())
    e.emit("Square", [diff + ":0"])


@_register("Squeeze")
def _squeeze(e: Emitter) -> None:
    e.emit("TfSqueeze", e.inputs, {"squeeze_dims": list(e.attrs.get("squeeze_dims") or [])})


@_register("Concat")
def _concat_v1(e: Emitter) -> None:
    e.emit("TfConcat", e.inputs[1:] + e.inputs[:1])


@_register("GatherV2")
def _gather_v2(e: Emitter) -> None:
    e.require(int(e.attrs.get("batch_dims", 0)) == 0, "batch_dims other than 0 are not supported.")
    e.emit("TfGather", e.inputs)


@_register("Gather", "ResourceGather")
def _gather(e: Emitter) -> None:
    e.require(int(e.attrs.get("batch_dims", 0)) == 0, "batch_dims other than 0 are not supported.")
    e.emit("TfGather", [*e.inputs[:2], e.const(0, int32)])


def _conv_attrs(e: Emitter) -> dict[str, Any]:
    e.require(e.attrs.get("data_format", "NHWC") == "NHWC", "only the NHWC data format is supported.")
    return {"strides": list(e.attrs["strides"]), "padding": e.attrs["padding"],
            "explicit_paddings": list(e.attrs.get("explicit_paddings") or []),
            "dilations": list(e.attrs.get("dilations") or [1, 1, 1, 1]), "data_format": "NHWC"}


@_register("Conv2D")
def _conv2d(e: Emitter) -> None:
    e.emit("TfConv2D", e.inputs, {**_conv_attrs(e), "depthwise": False})


@_register("DepthwiseConv2dNative")
def _depthwise(e: Emitter) -> None:
    e.emit("TfConv2D", e.inputs, {**_conv_attrs(e), "depthwise": True})


@_register("MaxPool", "AvgPool")
def _pool(e: Emitter) -> None:
    e.require(e.attrs.get("data_format", "NHWC") == "NHWC", "only the NHWC data format is supported.")
    e.emit("TfPool", e.inputs, {"kind": "max" if e.op == "MaxPool" else "avg", "ksize": list(e.attrs["ksize"]),
                                "strides": list(e.attrs["strides"]), "padding": e.attrs["padding"],
                                "explicit_paddings": list(e.attrs.get("explicit_paddings") or [])})


@_register("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_batch_norm(e: Emitter) -> None:
    e.require(e.attrs.get("data_format", "NHWC") == "NHWC", "only the NHWC data format is supported.")
    e.emit("TfFusedBatchNorm", e.inputs, {
        "epsilon": float(e.attrs.get("epsilon", 1e-4)), "is_training": bool(e.attrs.get("is_training", True)),
        "exponential_avg_factor": float(e.attrs.get("exponential_avg_factor", 1.0)), "data_format": "NHWC",
        "num_outputs": 6 if e.op == "FusedBatchNormV3" else 5})


# -- variables ------------------------------------------------------------------------------------------------
@_register("VarHandleOp", "VariableV2", "Variable")
def _variable(e: Emitter) -> None:
    info = e.t.variable_for(e.name)
    if info.const_value is not None:  # string variables become constants: the store holds numbers only
        e.emit("Const", [], {"value": info.const_value, "dtype": string})
        return
    e.emit("Variable", [], {"dtype": info.dtype, "shape": info.shape, "trainable": info.trainable,
                            "initializer": None})


def _assign(hk_op: str) -> Translator:
    def translate(e: Emitter) -> None:
        var = e.t.variable_tensor(e.tf_inputs[0], e.where())
        e.emit(hk_op, [var, e.inputs[1]])
        e.alias(0, var)  # a ref Assign's output is the variable; reads of it see the variable

    return translate


TRANSLATORS["Assign"] = TRANSLATORS["AssignVariableOp"] = _assign("Assign")
TRANSLATORS["AssignSub"] = TRANSLATORS["AssignSubVariableOp"] = _assign("AssignSub")
TRANSLATORS["AssignAdd"] = TRANSLATORS["AssignAddVariableOp"] = _assign("AssignAdd")
# refused inside loop bodies and branches (hubkit's functions are pure)
ASSIGN_OPS = frozenset({"Assign", "AssignVariableOp", "AssignSub", "AssignSubVariableOp", "AssignAdd",
                        "AssignAddVariableOp"})


@_register("NoOp")
def _no_op(e: Emitter) -> None:
    e.emit("Group", [], control=e.t.control_inputs_of(e.name))


# -- lookup tables ---------------------------------------------------------------------------------------------
@_register("LookupTableFindV2")
def _lookup_find(e: Emitter) -> None:
    table = e.t.table_for(e.tf_inputs[0], e.where())
    if table.kind == "text_file":
        e.emit("TfTextFileTableLookup", [table.filename, e.inputs[1], e.inputs[2]], table.attrs)
    else:
        e.emit("TfConstTableLookup", [e.inputs[1], e.inputs[2]], table.attrs)


@_register("LookupTableSizeV2")
def _lookup_size(e: Emitter) -> None:
    """A constant: the table was read when the module loaded (and its asset travels with the module)."""
    table = e.t.table_for(e.tf_inputs[0], e.where())
    size = table.size if table.kind == "text_file" else len(np.asarray(table.attrs["table_keys"]).reshape(-1))
    e.emit("Const", [], {"value": np.array(size, dtype=np.int64), "dtype": as_dtype("int64")})


def supported_ops_markdown() -> str:
    """The supported-op list of docs/tf1_import.md, generated from :data:`TRANSLATORS` (a test keeps them equal)."""
    ops = supported_tf_ops()
    lines = [f"hubkit translates {len(ops)} TF op types:", ""]
    by_letter: dict[str, list[str]] = {}
    for op in ops:
        by_letter.setdefault(op[0], []).append(f"`{op}`")
    lines += [f"- **{letter}**: {', '.join(names)}" for letter, names in sorted(by_letter.items())]
    return "\n".join(lines)


# The control-flow, function-call and TensorArray translators (hubkit/importers/tf1/control_flow.py,
# functions.py, tensor_array.py) need the Emitter above; importing them here keeps TRANSLATORS complete for every
# importer of this module.
from hubkit.importers.tf1 import control_flow as _control_flow  # noqa: E402,F401
from hubkit.importers.tf1 import functions as _functions  # noqa: E402,F401
from hubkit.importers.tf1 import tensor_array as _tensor_array  # noqa: E402,F401
