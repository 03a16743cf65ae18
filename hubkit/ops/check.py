"""``check_graph``: a validator run after a graph is built and after it is loaded.

Like JAX's ``check_jaxpr``: it walks the nodes once and refuses anything the executor would trip
over later (an unregistered op, an input from another graph or from a later node, an attribute that
is not plain data, outputs that no longer match the op's own inference), naming the node, so a
broken graph fails at load time and never mid-run with a NumPy traceback.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import DType, Graph, Node, Tensor, format_shape
from hubkit.graph.shapes import merge_shapes
from hubkit.ops.registry import get_op, is_registered, normalize_specs

__all__ = ["check_graph", "invalid_attr"]

_SCALARS = (type(None), bool, int, float, str, DType, np.integer, np.floating, np.bool_)


def invalid_attr(value: Any, where: str = "value") -> str | None:
    """Describes why ``value`` is not plain attribute data, or returns None when it is."""
    if isinstance(value, _SCALARS):
        return None
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf" or (value.dtype.kind == "O" and all(isinstance(x, str) for x in value.flat)):
            return None
        if value.dtype.kind == "U":
            return None
        return f"{where} is an array of dtype {value.dtype}, which cannot be stored"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = invalid_attr(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                return f"{where} has the non-string key {k!r}"
            problem = invalid_attr(item, f"{where}[{k!r}]")
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}, which is not plain data"


def _check_inputs(node: Node, graph: Graph, position: dict[Node, int], index: int) -> None:
    for t in node.inputs:
        if not isinstance(t, Tensor) or t.node.graph is not graph or t.node not in position:
            raise GraphError(f"Node {node.name!r} ({node.op}) reads {t!r}, which is not a tensor of this graph.")
        if position[t.node] >= index:
            raise GraphError(f"Node {node.name!r} ({node.op}) reads {t.name!r}, which is defined after it.")
    for c in node.control_inputs:
        if c not in position or position[c] >= index:
            raise GraphError(
                f"Node {node.name!r} ({node.op}) has the control input {c.name!r}, which is not an earlier node "
                "of this graph."
            )


def _check_outputs(node: Node) -> None:
    try:
        specs = normalize_specs(get_op(node.op).infer(*node.inputs, **node.attrs))
    except GraphError as e:
        raise GraphError(f"{node.op} node {node.name!r}: {e}") from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError) as e:
        raise GraphError(f"{node.op} node {node.name!r} has invalid attributes: {type(e).__name__}: {e}") from None
    if len(specs) != len(node.outputs):
        raise GraphError(
            f"{node.op} node {node.name!r} has {len(node.outputs)} outputs, but its op infers {len(specs)}."
        )
    for t, (dtype, shape) in zip(node.outputs, specs):
        try:
            merged = merge_shapes(t.shape, shape)
        except (TypeError, ValueError) as e:  # attributes (from a module file) that make no shape
            raise GraphError(f"{node.op} node {node.name!r} has invalid attributes: {type(e).__name__}: {e}") from None
        if t.dtype is not dtype or merged is False:
            raise GraphError(
                f"{node.op} node {node.name!r}: output {t.index} is {t.dtype.name} {format_shape(t.shape)}, but "
                f"its op infers {dtype.name} {format_shape(shape)}."
            )


def check_graph(graph: Graph, *, require_bound_variables: bool = False) -> None:
    """Validates every node of ``graph``.

    Args:
        graph: the graph to check.
        require_bound_variables: also require each ``Variable`` node to have a value bound in
            ``graph.variables`` (true for graphs about to run).

    Raises:
        GraphError: naming the first offending node and what is wrong with it.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     y = hk.placeholder(hk.float32, [2]) * 2.0
    >>> check_graph(g)
    """
    nodes = graph.nodes
    position = {n: i for i, n in enumerate(nodes)}
    for i, node in enumerate(nodes):
        if not is_registered(node.op):
            raise GraphError(
                f"Node {node.name!r} uses the unknown op {node.op!r}, which this version of hubkit does not have."
            )
        _check_inputs(node, graph, position, i)
        for key, value in node.attrs.items():
            problem = invalid_attr(value, f"attribute {key!r}")
            if problem:
                raise GraphError(f"{node.op} node {node.name!r}: {problem}.")
        _check_outputs(node)
        if require_bound_variables and node.op == "Variable":
            bound = node.attrs.get("var_node", node.name)
            if bound not in graph.variables:
                raise GraphError(f"Variable node {node.name!r} has no value bound to it.")
