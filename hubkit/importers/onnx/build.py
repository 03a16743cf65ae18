"""From a normalised ONNX ``ModelProto`` to a hubkit graph, its ``default`` signature, variables and spec."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from hubkit.errors import FormatError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import encode_shape
from hubkit.format.graph_codec import encode_nodes, encode_tensor_info
from hubkit.format.safetensors_io import TensorEntry
from hubkit.graph import Graph, GraphKeys, Tensor, placeholder
from hubkit.importers.onnx.names import signature_keys, variable_name
from hubkit.importers.onnx.translate import Context, onnx_dtype, translate_node
from hubkit.ops import api as K

__all__ = ["build_spec"]

_TRAINABLE_KINDS = "f"  # float initializers become trainable variables; integer ones are constants


def _value_type(vi: Any, what: str):
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise FormatError(f"{what} is not a tensor (sequences, maps and optionals are not supported).")
    dtype = onnx_dtype(tt.elem_type, what)
    if not tt.HasField("shape"):
        return dtype, None
    return dtype, [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]


def _external_entry(tensor: Any, base: str, dtype: np.dtype, shape: tuple[int, ...]) -> TensorEntry | None:
    """A TensorEntry mapping the initializer's bytes in place, when they are raw, aligned and little-endian.

    ``read_model`` checked the entries (and rewrote them canonically): the file holds ``prod(shape)`` elements
    from ``offset`` on.
    """
    from hubkit.importers.onnx.load import external_data_info

    location, offset, length = external_data_info(tensor)
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no int64 wrap-around
    if offset % dtype.itemsize or (length is not None and length != nbytes):
        return None
    path = os.path.realpath(os.path.join(base, location))
    return TensorEntry(path, dtype, shape, offset, offset + nbytes)


def _initializer_loader(tensor: Any, base: str):
    def load() -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(tensor, base_dir=base)

    return load


def build_spec(model: Any, path: str):
    """The ``ModuleSpec`` of a checked, normalised ONNX model read from ``path``."""
    from onnx import helper
    from onnx.external_data_helper import uses_external_data

    from hubkit.module.spec import ModuleSpec

    base = os.path.dirname(path)
    g = model.graph
    graph = Graph()
    loaders = {t.name: _initializer_loader(t, base) for t in g.initializer}
    ctx = Context(graph, loaders)
    initializer_names = set(loaders)
    inputs = [vi for vi in g.input if vi.name not in initializer_names]
    in_keys = signature_keys([vi.name for vi in inputs], "input")
    taken: set[str] = set()
    with graph.as_default():
        for vi, key in zip(inputs, in_keys):
            dtype, shape = _value_type(vi, f"Model input {vi.name!r}")
            ph = placeholder(dtype, shape, name=key)
            taken.add(ph.node.name)
            ctx.values[vi.name] = ph
    variables: list[tuple[str, Any, tuple[int, ...]]] = []
    initial_values: dict[str, np.ndarray] = {}
    entries: dict[str, TensorEntry] = {}
    for tensor in g.initializer:
        where = f"Initializer {tensor.name!r}"
        dtype = onnx_dtype(tensor.data_type, where)
        shape = tuple(int(d) for d in tensor.dims)
        if dtype.np_dtype.kind not in _TRAINABLE_KINDS:
            ctx.values[tensor.name] = np.asarray(loaders[tensor.name]())
            continue
        name = variable_name(tensor.name, taken)
        node = graph.create_node("Variable", [], {"dtype": dtype, "shape": shape, "trainable": True,
                                                  "initializer": None}, [(dtype, shape)], name=name)
        ctx.values[tensor.name] = node.outputs[0]
        variables.append((name, dtype, shape))
        entry = _external_entry(tensor, base, dtype.np_dtype, shape) if uses_external_data(tensor) else None
        if entry is not None:
            entries[name] = entry
        else:
            initial_values[name] = np.asarray(loaders[tensor.name](), dtype=dtype.np_dtype)
    for node in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        translate_node(ctx, node, attrs)
    out_keys = signature_keys([vi.name for vi in g.output], "output")
    outputs: dict[str, Tensor] = {}
    with graph.as_default():
        for vi, key in zip(g.output, out_keys):
            if vi.name not in ctx.values:
                raise FormatError(f"Model output {vi.name!r} is not computed by any node.")
            out = ctx.t(vi.name)
            outputs[key] = K.identity(out) if out.node.op in ("Placeholder", "Variable", "Const") else out
    proto = pb.ModuleGraph()
    vp = proto.variants.add()
    encode_nodes(graph, vp)
    sd = vp.signatures.add()
    sd.name = "default"
    for vi, key in zip(inputs, in_keys):
        ph = ctx.t(vi.name)
        encode_tensor_info(sd.inputs.add(), key, ph.name, ph.dtype, ph.shape)
    for key, t in outputs.items():
        encode_tensor_info(sd.outputs.add(), key, t.name, t.dtype, t.shape)
    for key in (GraphKeys.GLOBAL_VARIABLES, GraphKeys.TRAINABLE_VARIABLES):
        if variables:
            cd = vp.collections.add()
            cd.key = key
            for name, _, _ in variables:
                cd.items.add(variable=name)
    for name, dtype, shape in sorted(variables):
        vd = proto.variables.add(name=name, dtype=dtype.name, trainable=True)
        encode_shape(shape, vd.shape)
    return ModuleSpec(proto, where=f"ONNX model {path!r}", module_dir=base, initial_values=initial_values,
                      store_entries=entries)
