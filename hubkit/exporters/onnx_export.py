"""``export``: one signature of a hubkit module as a checked ONNX model."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np

from hubkit.errors import FormatError
from hubkit.exporters.onnx_emit import EMITTERS
from hubkit.graph import Graph, Tensor

__all__ = ["DEFAULT_OPSET", "EXTERNAL_DATA_BYTES", "MAX_OPSET", "MIN_OPSET", "export"]

DEFAULT_OPSET = 18  # emitters write opset-18 forms (reduction axes as inputs); lower opsets are converted down
MIN_OPSET, MAX_OPSET = 14, 21
EXTERNAL_DATA_BYTES = 1 << 20  # initializers this large are written to "<model>.onnx.data" beside the model
_LEAVES = ("Placeholder", "Variable", "Const")


class Emitter:
    """Collects ONNX nodes and initializers while the hubkit nodes are written one by one."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        from onnx import helper

        self._helper = helper
        self.tensors = tensors  # hubkit tensor name -> live tensor (dtype, static shape)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.constants: dict[str, np.ndarray] = {}
        self._count = 0

    def fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}__{self._count}"

    def node(self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any) -> str:
        outputs = outputs or [self.fresh(op)]
        self.nodes.append(self._helper.make_node(op, inputs, outputs, name=self.fresh(op), **attrs))
        return outputs[0]

    def const(self, value: np.ndarray, name: str | None = None) -> str:
        from onnx import numpy_helper

        name = name or self.fresh("const")
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))  # keeps 0-d arrays 0-d
        self.constants[name] = value
        return name

    def rank(self, tensor_name: str) -> int:
        t = self.tensors[tensor_name]
        if t.ndim is None:
            raise ValueError(f"the tensor {tensor_name!r} needs a known rank.")
        return t.ndim

    def np_dtype(self, tensor_name: str) -> np.dtype:
        return self.tensors[tensor_name].dtype.np_dtype

    def known(self, tensor_name: str) -> np.ndarray | None:
        t = self.tensors[tensor_name]
        return t.node.attrs["value"] if t.node.op == "Const" else None

    def onnx_type(self, dtype: Any) -> int:
        from onnx import TensorProto

        codes = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "int32": TensorProto.INT32,
                 "int64": TensorProto.INT64, "bool": TensorProto.BOOL}
        if dtype.name not in codes:
            raise FormatError(f"The dtype {dtype.name} has no ONNX form hubkit writes; writable: {sorted(codes)}.")
        return codes[dtype.name]

    def int64(self, name: str, tensor_name: str) -> str:
        """``name`` as an int64 value (ONNX shape inputs are int64)."""
        from onnx import TensorProto

        if self.tensors[tensor_name].dtype.name == "int64":
            return name
        return self.node("Cast", [name], to=TensorProto.INT64)


def output_name(key: str, input_keys: set[str]) -> str:
    """The ONNX name of output ``key``: the key itself, or ``<key>_output`` when an input has that key too
    (``default`` in and ``default`` out become ``default`` and ``default_output``: ONNX names are unique)."""
    return f"{key}_output" if key in input_keys else key


def _value_info(helper: Any, name: str, elem: int, shape: Any, dim_name: str) -> Any:
    if shape is None:
        return helper.make_tensor_value_info(name, elem, None)
    dims = [("batch" if i == 0 else f"{dim_name}_{i}") if d is None else int(d) for i, d in enumerate(shape)]
    return helper.make_tensor_value_info(name, elem, dims)


def export(module_or_handle: Any, path: str | os.PathLike, *, signature: str = "default",
           opset: int | None = None) -> str:
    from hubkit.importers.onnx.load import require_onnx
    from hubkit.module.module import Module
    from hubkit.ops.importer import import_nodes, nodes_needed

    onnx = require_onnx()
    from onnx import helper

    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise FormatError(f"ONNX export supports opsets {MIN_OPSET} to {MAX_OPSET}, got {opset!r}.")
    module = module_or_handle if isinstance(module_or_handle, Module) else Module(module_or_handle)
    variant = module.spec._variant(module.tags)
    sig = variant.signature(signature)
    ins = {info.name: key for key, info in sig.inputs.items()}
    needed = nodes_needed(variant.nodes, [i.name for i in sig.outputs.values()], stop_at=list(ins))
    nodes = [n for n in variant.nodes if n.name in needed or f"{n.name}:0" in ins]
    unsupported: dict[str, list[str]] = {}
    for n in nodes:
        if n.op not in _LEAVES and n.op not in EMITTERS:
            unsupported.setdefault(n.op, []).append(n.name)
        if n.op == "Const" and np.asarray(n.attrs["value"]).dtype.kind in "OUS":
            unsupported.setdefault("Const (strings)", []).append(n.name)
        if n.op == "Placeholder" and f"{n.name}:0" not in ins:
            unsupported.setdefault("Placeholder (not a signature input)", []).append(n.name)
    if unsupported:
        listing = "; ".join(f"{op} (nodes {names[:10]})" for op, names in sorted(unsupported.items()))
        raise FormatError(
            f"Signature {signature!r} cannot be written as ONNX: these ops have no faithful ONNX form: {listing}."
        )
    graph = Graph()
    live = import_nodes(nodes, graph)
    e = Emitter(dict(live.tensors))
    values = {name: var for name, var in module.variable_map.items()}
    graph_inputs = []
    for n in nodes:
        outs = [f"{n.name}:{i}" for i in range(len(live.nodes[n.name].outputs))]
        if n.op == "Placeholder":
            t = live.tensors[outs[0]]
            key = ins[outs[0]]
            graph_inputs.append(_value_info(helper, key, e.onnx_type(t.dtype), t.shape, key))
            e.node("Identity", [key], outs)
        elif n.op == "Variable":
            var = values.get(n.name)
            if var is None:
                raise FormatError(f"The module has no value for the variable {n.name!r}.")
            e.const(np.asarray(var.value), outs[0])
        elif n.op == "Const":
            e.const(np.asarray(n.attrs["value"]), outs[0])
        else:
            try:
                EMITTERS[n.op](e, n, list(n.inputs), outs)
            except (ValueError, KeyError, TypeError) as err:
                raise FormatError(f"{n.op} node {n.name!r} cannot be written as ONNX: {err}") from None
    graph_outputs = []
    for key, info in sig.outputs.items():
        t = live.tensors[info.name]
        name = output_name(key, set(sig.inputs))
        e.node("Identity", [info.name], [name])
        graph_outputs.append(_value_info(helper, name, e.onnx_type(t.dtype), t.shape, name))
    model = helper.make_model(
        helper.make_graph(e.nodes, f"hubkit_{signature}", graph_inputs, graph_outputs, initializer=e.initializers),
        opset_imports=[helper.make_opsetid("", max(opset, DEFAULT_OPSET))],
        producer_name="hubkit",
    )
    if opset < DEFAULT_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, opset)
        except Exception as err:
            raise FormatError(f"The model cannot be written at opset {opset}: {err}") from None
    return _write(onnx, model, os.fspath(path))


def _write(onnx: Any, model: Any, path: str) -> str:
    """Writes into a private temp dir beside ``path``, checks there, then renames into place."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".hubkit-onnx-", dir=directory)
    try:
        name = os.path.basename(path)
        data_name = name + ".data"
        big = sum(t.ByteSize() for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
        tmp_model = os.path.join(tmp, name)
        if big:
            onnx.save_model(model, tmp_model, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=EXTERNAL_DATA_BYTES)
        else:
            onnx.save_model(model, tmp_model)
        try:
            onnx.checker.check_model(tmp_model, full_check=True)
        except Exception as err:
            raise FormatError(f"The exported model fails onnx.checker: {err}") from None
        if os.path.exists(os.path.join(tmp, data_name)):
            os.replace(os.path.join(tmp, data_name), os.path.join(directory, data_name))
        os.replace(tmp_model, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
