"""``graph.pb``: graph nodes and signatures to protobuf and back.

Writing serializes deterministically (the same graph gives the same bytes). Reading checks the
structure before anything is built: unique node names, registered ops, inputs that name earlier
nodes, and the trailing ``end`` field whose absence reveals a truncated file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from hubkit.errors import FormatError, GraphError
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import decode_attrs, decode_dtype, decode_shape, encode_attrs, encode_shape
from hubkit.format.bounded_io import read_regular_file
from hubkit.graph import DType, Graph, Node, Shape
from hubkit.ops.importer import NodeSpec, split_tensor_name
from hubkit.ops.registry import is_registered

__all__ = [
    "END_MARK",
    "GRAPH_FILE",
    "decode_nodes",
    "decode_tensor_info",
    "encode_nodes",
    "encode_tensor_info",
    "read_graph_file",
    "write_graph_file",
]

GRAPH_FILE = "graph.pb"
END_MARK = "end"


def encode_nodes(
    graph: Graph, out: pb.GraphVariant, attrs_of: Callable[[Node], dict[str, Any]] | None = None
) -> None:
    """Appends every node of ``graph`` to ``out.nodes``; ``attrs_of(node)`` may override stored attrs."""
    for node in graph.nodes:
        nd = out.nodes.add()
        nd.name = node.name
        nd.op = node.op
        nd.inputs.extend(t.name for t in node.inputs)
        nd.control_inputs.extend(c.name for c in node.control_inputs)
        attrs = attrs_of(node) if attrs_of is not None else node.attrs
        try:
            encode_attrs(attrs, nd.attrs, "attribute")
        except GraphError as e:
            raise GraphError(f"{node.op} node {node.name!r} cannot be saved: {e}") from None


def decode_nodes(variant: pb.GraphVariant, where: str) -> list[NodeSpec]:
    """Reads and structurally checks a variant's nodes.

    Raises:
        FormatError: naming ``where`` (the file and variant) and the offending node.
    """
    seen: set[str] = set()
    out = []
    for nd in variant.nodes:
        name = nd.name
        if not name or name in seen:
            raise FormatError(f"{where}: the node name {name!r} is empty or repeated.")
        if not is_registered(nd.op):
            raise FormatError(
                f"{where}: node {name!r} uses the unknown op {nd.op!r}, which this version of hubkit does not have."
            )
        for t in nd.inputs:
            try:
                src, _ = split_tensor_name(t)
            except GraphError:
                src = None
            if src not in seen:
                raise FormatError(f"{where}: node {name!r} reads {t!r}, which is not an earlier node's output.")
        for c in nd.control_inputs:
            if c not in seen:
                raise FormatError(f"{where}: node {name!r} has the control input {c!r}, which is not an earlier node.")
        attrs = decode_attrs(nd.attrs, f"{where}: node {name!r} attribute")
        seen.add(name)
        out.append(NodeSpec(name, nd.op, tuple(nd.inputs), tuple(nd.control_inputs), attrs))
    return out


def encode_tensor_info(out: pb.TensorInfo, key: str, tensor_name: str, dtype: DType, shape: Shape) -> None:
    out.key = key
    out.tensor = tensor_name
    out.dtype = dtype.name
    encode_shape(shape, out.shape)


def decode_tensor_info(info: pb.TensorInfo, where: str) -> tuple[str, DType, Shape]:
    """(tensor name, dtype, shape) of a signature input or output."""
    return info.tensor, decode_dtype(info.dtype, where), decode_shape(info.shape, where)


_MAX_GRAPH_BYTES = (2 << 30) - 1  # protobuf cannot parse a larger message anyway


def write_graph_file(directory: str, module_graph: pb.ModuleGraph) -> None:
    """Writes ``graph.pb`` (deterministic bytes, ``end`` mark last)."""
    module_graph.end = END_MARK
    with open(os.path.join(directory, GRAPH_FILE), "wb") as f:
        f.write(module_graph.SerializeToString(deterministic=True))
        f.flush()
        os.fsync(f.fileno())


def read_graph_file(directory: str) -> pb.ModuleGraph:
    """Parses ``graph.pb``; a missing, random or truncated file raises FormatError naming it."""
    path = os.path.join(directory, GRAPH_FILE)
    # A regular file only (a FIFO would block, a link to /dev/zero never end), within protobuf's 2 GiB.
    data = read_regular_file(path, _MAX_GRAPH_BYTES, "Module graph")
    try:
        graph = pb.ModuleGraph.FromString(data)
    except (DecodeError, RuntimeError, ValueError, RecursionError) as e:
        raise FormatError(f"Module graph {path!r} is corrupt: it is not a valid hubkit graph ({e}).") from None
    if graph.end != END_MARK:
        raise FormatError(f"Module graph {path!r} is truncated or corrupt: its end mark is missing.")
    return graph
