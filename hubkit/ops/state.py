"""Leaf and stateful ops: placeholders, constants, variables and in-place updates of variables.

A ``Variable`` node reads the runtime ``Variable`` object bound to it in ``graph.variables`` under
the node's name; the binding is looked up once per compiled plan (``prepare``).
"""

from __future__ import annotations

import numpy as np

from hubkit.errors import FeedError, GraphError
from hubkit.graph import Node, Tensor, format_shape
from hubkit.graph.shapes import merge_shapes
from hubkit.ops.registry import apply_op, infer_error, register_op

__all__ = ["assign", "assign_add", "assign_sub", "group", "scatter_sub"]


@register_op
class Placeholder:
    """A graph input; running it without a feed is an error caught when the plan is compiled."""

    differentiable = False

    def infer(*, dtype, shape):
        return dtype, shape

    def forward(*, dtype, shape):
        raise FeedError(f"Placeholder of shape {format_shape(shape)} and dtype {dtype.name} was not fed.")


@register_op
class Const:
    """A fixed value stored in the graph."""

    differentiable = False
    aliases_input = True

    def infer(*, value, dtype):
        return dtype, tuple(np.shape(value))

    def forward(*, value, dtype):
        return value


def _bound_variable(node: Node, key: str = "var_node"):
    name = node.attrs.get(key, node.name)
    try:
        return node.graph.variables[name]
    except KeyError:
        raise GraphError(f"Variable node {name!r} has no value bound to it in this graph.") from None


@register_op
class Variable:
    """Reads a variable's current value (the array itself; fetches of it are copied)."""

    differentiable = False  # gradients stop here: the variable's tensor is what xs names
    aliases_input = True

    def infer(*, dtype, shape, trainable=True, initializer=None):
        return dtype, shape

    def prepare(node):
        return {"variable": _bound_variable(node)}

    def forward(*, variable, dtype, shape, trainable=True, initializer=None):
        return variable.value


def _check_update(var_t: Tensor, value: Tensor, what: str):
    if var_t.node.op != "Variable":
        raise infer_error(f"{what} needs a variable as its first input, got {var_t.name!r}.")
    if value.dtype is not var_t.dtype:
        raise infer_error(f"{what} of {var_t.name!r}: dtype {value.dtype.name} does not match {var_t.dtype.name}.")
    if merge_shapes(var_t.shape, value.shape) is False:
        raise infer_error(
            f"{what} of {var_t.name!r}: shape {format_shape(value.shape)} does not match "
            f"{format_shape(var_t.shape)}."
        )
    return []


class _Update:
    differentiable = False
    stateful = True

    def prepare(node):
        return {"variable": _bound_variable(node.inputs[0].node, "var_node")}


@register_op
class Assign(_Update):
    """``var = value`` (in place)."""

    def infer(var, value):
        return _check_update(var, value, "Assign")

    def forward(var, value, *, variable):
        variable.assign(value)


@register_op
class AssignAdd(_Update):
    """``var += value`` (in place)."""

    def infer(var, value):
        return _check_update(var, value, "AssignAdd")

    def forward(var, value, *, variable):
        variable.assign_add(value)


@register_op
class AssignSub(_Update):
    """``var -= value`` (in place)."""

    def infer(var, value):
        return _check_update(var, value, "AssignSub")

    def forward(var, value, *, variable):
        variable.assign_sub(value)


@register_op
class ScatterSub(_Update):
    """``var[indices] -= updates`` with repeated indices accumulated (a sparse update)."""

    def infer(var, indices, updates):
        if var.node.op != "Variable":
            raise infer_error(f"ScatterSub needs a variable as its first input, got {var.name!r}.")
        if not indices.dtype.is_integer:
            raise infer_error(f"ScatterSub indices must be integers, got {indices.dtype.name}.")
        return []

    def forward(var, indices, updates, *, variable):
        variable.scatter_sub(indices, updates)


@register_op
class Group:
    """Runs its control inputs; produces nothing."""

    differentiable = False

    @staticmethod
    def infer():
        return []

    @staticmethod
    def forward():
        return None


def _var_tensor(var) -> Tensor:
    from hubkit.graph import convert_to_tensor

    return convert_to_tensor(var)


def assign(var, value, name: str | None = None) -> Node:
    """An op that sets ``var`` to ``value`` when run."""
    t = _var_tensor(var)
    return apply_op("Assign", [t, _cast_like(value, t)], name=name or "Assign")


def assign_add(var, value, name: str | None = None) -> Node:
    t = _var_tensor(var)
    return apply_op("AssignAdd", [t, _cast_like(value, t)], name=name or "AssignAdd")


def assign_sub(var, value, name: str | None = None) -> Node:
    t = _var_tensor(var)
    return apply_op("AssignSub", [t, _cast_like(value, t)], name=name or "AssignSub")


def scatter_sub(var, indices, updates, name: str | None = None) -> Node:
    t = _var_tensor(var)
    return apply_op("ScatterSub", [t, indices, _cast_like(updates, t)], name=name or "ScatterSub")


def _cast_like(value, t: Tensor):
    from hubkit.graph import convert_to_tensor

    if isinstance(value, Tensor):
        return value
    return convert_to_tensor(value, dtype=t.dtype, graph=t.graph)


def group(*ops, name: str | None = None) -> Node:
    """One op that runs all of ``ops`` (nodes or tensors)."""
    from hubkit.graph import get_default_graph

    items = [o for o in ops if o is not None]
    g = items[0].graph if items else get_default_graph()
    nodes = [o.node if isinstance(o, Tensor) else o for o in items]
    return g.create_node("Group", [], {}, [], name=name or "group", control_inputs=nodes)
