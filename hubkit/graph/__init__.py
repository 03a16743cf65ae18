"""Layer 1: graphs, nodes, symbolic tensors, dtypes and static shapes."""

from hubkit.graph.dtypes import DType, as_dtype, bool_, float32, float64, int32, int64, string
from hubkit.graph.graph import (
    Graph,
    GraphKeys,
    Node,
    add_to_collection,
    constant,
    control_dependencies,
    convert_to_tensor,
    get_collection,
    get_default_graph,
    name_scope,
    placeholder,
    reset_default_graph,
)
from hubkit.graph.shapes import Shape, format_shape, normalize_shape
from hubkit.graph.tensor import Tensor

__all__ = [
    "DType",
    "Graph",
    "GraphKeys",
    "Node",
    "Shape",
    "Tensor",
    "add_to_collection",
    "as_dtype",
    "bool_",
    "constant",
    "control_dependencies",
    "convert_to_tensor",
    "float32",
    "float64",
    "format_shape",
    "get_collection",
    "get_default_graph",
    "int32",
    "int64",
    "name_scope",
    "normalize_shape",
    "placeholder",
    "reset_default_graph",
    "string",
]
