"""The op registry: every op declared once, with its shape rule, kernel and gradient side by side.

An op is a class decorated with :func:`register_op`; the class is never instantiated, it only
groups the rules::

    @register_op
    class Square:
        def infer(x):                      # input tensors (with .dtype/.shape) and attrs
            return x.dtype, x.shape        # one (dtype, shape) per output, or a list of them
        def forward(x):                    # NumPy arrays in, arrays out (a tuple for several)
            return np.square(x)
        def vjp(g, out, x):                # symbolic: builds the gradient in the graph
            return (g * 2.0 * x,)

Optional members: ``differentiable = False`` (instead of ``vjp``), ``stateful = True`` (mutates a
variable; the executor runs it after every pure node of the same plan), ``prepare(node)`` (called
once per compiled plan; returns extra keyword arguments for ``forward``, e.g. the bound variable),
``aliases_input = True`` when ``forward`` may return an array owned by someone else (fetches of it
are copied).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import DType, Graph, Node, Shape, Tensor, convert_to_tensor, format_shape, get_default_graph

__all__ = ["OpDef", "apply_op", "get_op", "infer_error", "is_registered", "register_op", "registered_ops"]


@dataclass(frozen=True)
class OpDef:
    """The rules of one op type."""

    name: str
    infer: Callable[..., Any]
    forward: Callable[..., Any]
    vjp: Callable[..., tuple] | None
    differentiable: bool
    stateful: bool
    prepare: Callable[[Node], dict] | None
    aliases_input: bool
    doc: str
    module: str = ""  # the module declaring the op (its family), e.g. "hubkit.ops.elementwise"
    fused: Any = None  # its FusedForm inside the fusion kernel (hubkit.ops.fusion_forms), None if it has none
    fused_powers: Any = None  # Pow only: cheaper forms for constant exponents, {2.0: FusedForm, ...}


_REGISTRY: dict[str, OpDef] = {}


def register_op(cls: type) -> type:
    """Registers the op described by ``cls`` under ``cls.__name__`` (or ``cls.op_name``)."""
    name = getattr(cls, "op_name", cls.__name__)
    differentiable = getattr(cls, "differentiable", True)
    if not hasattr(cls, "infer") or not hasattr(cls, "forward"):
        raise TypeError(f"Op {name!r} must define infer and forward.")
    if differentiable and not hasattr(cls, "vjp"):
        raise TypeError(f"Op {name!r} must define vjp or set differentiable = False.")
    if name in _REGISTRY:
        if _source_file(_REGISTRY[name].module) == _source_file(cls.__module__):
            return cls  # the same file imported a second time (e.g. by a doctest collector): keep the first
        raise TypeError(f"Op {name!r} is registered twice.")
    _REGISTRY[name] = OpDef(
        name=name,
        infer=cls.infer,
        forward=cls.forward,
        vjp=getattr(cls, "vjp", None),
        differentiable=differentiable,
        stateful=getattr(cls, "stateful", False),
        prepare=getattr(cls, "prepare", None),
        aliases_input=getattr(cls, "aliases_input", False),
        doc=(cls.__doc__ or "").strip(),
        module=cls.__module__,
        fused=getattr(cls, "fused", None),
        fused_powers=getattr(cls, "fused_powers", None),
    )
    return cls


def _source_file(module_name: str) -> str | None:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    return os.path.realpath(path) if path else None


def get_op(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphError(f"Unknown op {name!r}; it is not registered in this version of hubkit.") from None


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def registered_ops() -> list[str]:
    return sorted(_REGISTRY)


class InferError(GraphError):
    """Raised by an op's ``infer``; :func:`apply_op` prefixes the op type and node name."""


def infer_error(message: str) -> InferError:
    return InferError(message)


def _graph_of(inputs: Sequence[Any]) -> Graph:
    graph = None
    for x in inputs:
        g = x.graph if isinstance(x, Tensor) else None
        if g is not None:
            if graph is not None and g is not graph:
                if hasattr(get_default_graph(), "capture"):  # tracing a function: it captures both
                    return get_default_graph()
                raise GraphError(f"Inputs come from different graphs ({x.name!r} is from another graph).")
            graph = g
    default = get_default_graph()
    if graph is not None and graph is not default and hasattr(default, "capture"):
        return default  # tracing a cond branch or loop body: the op belongs there, outer inputs are captured
    return graph or default


def normalize_specs(specs: Any) -> list[tuple[DType, Shape]]:
    if isinstance(specs, tuple) and len(specs) == 2 and isinstance(specs[0], DType):
        return [specs]
    return list(specs)


def apply_op(
    op: str,
    inputs: Sequence[Any],
    attrs: dict[str, Any] | None = None,
    name: str | None = None,
    graph: Graph | None = None,
) -> Node:
    """Converts ``inputs`` to tensors, infers the outputs and adds an ``op`` node to the graph.

    Raises:
        GraphError: the inputs do not fit the op; the message names the op and the node.
    """
    opdef = get_op(op)
    attrs = dict(attrs or {})
    g = graph or _graph_of(inputs)
    tensors = [convert_to_tensor(x, graph=g) for x in inputs]
    try:
        specs = normalize_specs(opdef.infer(*tensors, **attrs))
    except InferError as e:
        node_name = g.unique_name(name or op, mark_used=False)
        raise GraphError(f"{op} node {node_name!r}: {e}") from None
    return g.create_node(op, tensors, attrs, specs, name=name or op)


def apply(op: str, *inputs: Any, name: str | None = None, **attrs: Any) -> Any:
    """Like :func:`apply_op` but returns the output tensor (or a tuple when there are several)."""
    node = apply_op(op, inputs, attrs, name=name)
    if not node.outputs:
        return node
    return node.outputs[0] if len(node.outputs) == 1 else node.outputs


def describe(t: Tensor) -> str:
    """``'x:0' [None, 4] float32`` for error messages."""
    return f"{t.name!r} {format_shape(t.shape)} {t.dtype.name}"
