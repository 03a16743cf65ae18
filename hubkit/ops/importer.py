"""Importing a serialized graph into a live :class:`~hubkit.graph.Graph`.

A graph read from disk (or kept by a module spec) is a list of :class:`NodeSpec` in a topological
order. :func:`import_nodes` adds them to a graph under a name prefix, replacing some tensors by
existing ones (``input_map``: a module's signature inputs become the caller's tensors) and letting
the caller supply each variable's read tensor (``bind_variable``: several calls share weights).
Every node goes through its op's ``infer`` again, so dtypes and shapes are rechecked against the
tensors actually wired in, and nothing of the stored file is trusted beyond plain data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Graph, Node, Tensor, format_shape
from hubkit.graph.shapes import merge_shapes
from hubkit.graph.walk import upstream
from hubkit.ops.registry import get_op, is_registered, normalize_specs

__all__ = ["ImportResult", "NodeSpec", "import_nodes", "nodes_needed", "split_tensor_name"]


@dataclass(frozen=True)
class NodeSpec:
    """One node of a serialized graph, as plain data.

    Attributes:
        name: node name inside the serialized graph.
        op: registered op type.
        inputs: tensor names ``"node:index"`` it consumes.
        control_inputs: node names that must run first.
        attrs: plain-data attributes.
    """

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    control_inputs: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ImportResult:
    """What :func:`import_nodes` created: serialized name -> live node / tensor."""

    nodes: dict[str, Node]
    tensors: dict[str, Tensor]

    def tensor(self, name: str) -> Tensor:
        """The live tensor for the serialized tensor ``name`` (``"node:0"``)."""
        try:
            return self.tensors[name]
        except KeyError:
            raise GraphError(f"Tensor {name!r} was not imported; imported {len(self.tensors)} tensors.") from None


def split_tensor_name(name: str) -> tuple[str, int]:
    """``"dense/MatMul:1"`` -> ``("dense/MatMul", 1)``; a bare node name means output 0."""
    node, sep, idx = name.rpartition(":")
    if not sep:
        return name, 0
    if not idx.isdigit():
        raise GraphError(f"Invalid tensor name {name!r}; expected 'node:index'.")
    return node, int(idx)


def nodes_needed(
    nodes: Sequence[NodeSpec], targets: Iterable[str], stop_at: Iterable[str] = ()
) -> set[str]:
    """Names of the nodes ``targets`` (node or tensor names) depend on, not looking past ``stop_at`` tensors."""
    by_name = {n.name: n for n in nodes}
    stops = set(stop_at)

    def parents(name: str) -> list[str]:
        node = by_name.get(name)
        if node is None:
            raise GraphError(f"The serialized graph has no node {name!r}.")
        return [split_tensor_name(t)[0] for t in node.inputs if t not in stops] + list(node.control_inputs)

    return upstream((split_tensor_name(t)[0] for t in targets), parents)


def _check_mapped(spec: NodeSpec, tensor: Tensor) -> None:
    """A placeholder replaced through ``input_map`` must agree with its declared dtype and shape."""
    dtype, shape = spec.attrs.get("dtype"), spec.attrs.get("shape")
    if dtype is not None and tensor.dtype is not dtype:
        raise GraphError(
            f"Input {spec.name!r} has dtype {dtype.name}; it cannot be given the {tensor.dtype.name} "
            f"tensor {tensor.name!r}."
        )
    if merge_shapes(shape, tensor.shape) is False:
        raise GraphError(
            f"Input {spec.name!r} has shape {format_shape(shape)}; it cannot be given the tensor "
            f"{tensor.name!r} of shape {format_shape(tensor.shape)}."
        )


def import_nodes(
    nodes: Sequence[NodeSpec],
    graph: Graph,
    *,
    prefix: str = "",
    input_map: Mapping[str, Tensor] | None = None,
    bind_variable: Callable[[NodeSpec], Tensor] | None = None,
    only: set[str] | None = None,
) -> ImportResult:
    """Adds serialized nodes to ``graph``.

    Args:
        nodes: the serialized graph, in a topological order.
        graph: the graph to add to.
        prefix: prepended to every node name (e.g. ``"module/"``); the caller makes it unique.
        input_map: serialized tensor name -> existing tensor of ``graph`` used instead; a mapped
            placeholder is not created, and must agree with the tensor's dtype and shape.
        bind_variable: called for each ``Variable`` node; returns the tensor reading the variable in
            ``graph`` (possibly created by an earlier import). When None, ``Variable`` nodes are created
            under ``prefix`` with no value bound.
        only: names of the nodes to import (closed under dependencies, see :func:`nodes_needed`);
            all when None.

    Returns:
        The created nodes and tensors, keyed by their serialized names.

    Raises:
        GraphError: an unknown op, an input that does not exist or comes later, or an op whose
            ``infer`` refuses the inputs now wired in; the message names the node.
    """
    input_map = dict(input_map or {})
    result = ImportResult({}, dict(input_map))
    for spec in nodes:
        if only is not None and spec.name not in only:
            continue
        if spec.op == "Placeholder" and f"{spec.name}:0" in input_map:
            _check_mapped(spec, input_map[f"{spec.name}:0"])
            continue
        if not is_registered(spec.op):
            raise GraphError(f"Node {spec.name!r} uses the unknown op {spec.op!r}.")
        if spec.op == "Variable" and bind_variable is not None:
            read = bind_variable(spec)
            result.nodes[spec.name] = read.node
            result.tensors[f"{spec.name}:0"] = read
            continue
        inputs = []
        for name in spec.inputs:
            t = result.tensors.get(name)
            if t is None:
                raise GraphError(
                    f"Node {spec.name!r} ({spec.op}) reads {name!r}, which is not defined before it."
                )
            inputs.append(t)
        control = []
        for name in spec.control_inputs:
            n = result.nodes.get(name)
            if n is None:
                raise GraphError(f"Node {spec.name!r} has the control input {name!r}, which is not defined before it.")
            control.append(n)
        attrs = dict(spec.attrs)
        try:
            specs = normalize_specs(get_op(spec.op).infer(*inputs, **attrs))
        except GraphError as e:
            raise GraphError(f"{spec.op} node {spec.name!r}: {e}") from None
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:  # attrs not fitting the op
            raise GraphError(f"{spec.op} node {spec.name!r} has invalid attributes: {type(e).__name__}: {e}") from None
        node = graph.create_node(
            spec.op, inputs, attrs, specs, name=prefix + spec.name, control_inputs=control, unique=False
        )
        result.nodes[spec.name] = node
        for t in node.outputs:
            result.tensors[f"{spec.name}:{t.index}"] = t
    return result
