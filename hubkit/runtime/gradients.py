"""Reverse-mode differentiation over the graph: gradients are new nodes, fetched like any tensor."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Node, Tensor, convert_to_tensor, format_shape
from hubkit.graph.shapes import merge_shapes
from hubkit.graph.walk import upstream
from hubkit.ops.indexed_slices import IndexedSlices
from hubkit.ops.registry import get_op

__all__ = ["IndexedSlices", "gradients"]


def upstream_nodes(nodes: Iterable[Node]) -> set[Node]:
    """``nodes`` and every node they read data from, transitively (control inputs are not followed).

    Both differentiation and the optimizers' choice of variables ask what a value depends on.
    """
    return upstream(nodes, lambda n: [t.node for t in n.inputs])


def _as_x(graph, x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    hook = getattr(x, "_as_graph_tensor", None)
    if hook is None:
        raise GraphError(f"Cannot differentiate with respect to {x!r}: expected a Tensor or a Variable.")
    return hook(graph)


def _aggregate(parts: list[Any]) -> Any:
    from hubkit.ops import api

    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, IndexedSlices) for p in parts):
        return IndexedSlices(
            api.concat([p.values for p in parts], axis=0),
            api.concat([p.indices for p in parts], axis=0),
            parts[0].dense,
        )
    dense = [p.to_dense() if isinstance(p, IndexedSlices) else p for p in parts]
    return api.add_n(dense)


def gradients(ys: Any, xs: Any, grad_ys: Any = None, name: str = "gradients") -> list[Any]:
    """Symbolic gradients of ``sum(ys)`` with respect to each of ``xs``.

    Args:
        ys: a tensor or a list of tensors.
        xs: a tensor or Variable, or a list of them.
        grad_ys: optional upstream gradients, one per y (default: ones).
        name: name scope of the gradient nodes.

    Returns:
        One entry per x: a Tensor, an :class:`IndexedSlices` (sparse rows, e.g. from a gather), or
        None when y does not depend on x.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     x = hk.placeholder(hk.float64, [])
    ...     (dx,) = hk.gradients(x * x, [x])
    >>> float(hk.Session(g).run(dx, {x: 3.0}))
    6.0
    """
    ys_list = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    xs_list = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    if not ys_list:
        raise GraphError("gradients() needs at least one y.")
    graph = ys_list[0].graph
    from hubkit.ops import api

    with graph.as_default(), graph.name_scope(name):
        ys_t = [convert_to_tensor(y, graph=graph) for y in ys_list]
        xs_t = [_as_x(graph, x) for x in xs_list]
        xset = set(xs_t)
        # Nodes downstream of some x ...
        depends: set[Node] = set()
        for n in graph._nodes:
            if any(t in xset or t.node in depends for t in n.inputs):
                depends.add(n)
        # ... and upstream of some y.
        relevant = depends & upstream_nodes(y.node for y in ys_t)
        grads: dict[Tensor, list[Any]] = {}
        if grad_ys is None:
            gys = [None] * len(ys_t)
        elif isinstance(grad_ys, (list, tuple)) and len(grad_ys) == len(ys_t):
            gys = list(grad_ys)
        elif not isinstance(grad_ys, (list, tuple)) and len(ys_t) == 1:
            gys = [grad_ys]
        else:
            n = len(grad_ys) if isinstance(grad_ys, (list, tuple)) else 1
            raise GraphError(f"gradients() got {n} grad_ys for {len(ys_t)} ys; give one per y (or None).")
        for y, gy in zip(ys_t, gys):
            if not y.dtype.is_floating:
                raise GraphError(f"Cannot differentiate {y.name!r} of dtype {y.dtype.name}; it must be float.")
            g0 = api.ones_like(y) if gy is None else convert_to_tensor(gy, dtype=y.dtype, graph=graph)
            if merge_shapes(g0.shape, y.shape) is False:
                raise GraphError(
                    f"grad_ys entry for {y.name!r} has shape {format_shape(g0.shape)}; "
                    f"it must match the shape of y, {format_shape(y.shape)}."
                )
            grads.setdefault(y, []).append(g0)
        for n in reversed(graph._nodes):
            if n not in relevant:
                continue
            outs = [grads.get(t) for t in n.outputs]
            if all(o is None for o in outs):
                continue
            opdef = get_op(n.op)
            if not opdef.differentiable:
                continue
            vjp = opdef.vjp
            assert vjp is not None  # register_op requires a vjp of every differentiable op
            agg = [None if o is None else _aggregate(o) for o in outs]
            for i, t in enumerate(n.outputs):
                if agg[i] is not None:
                    grads[t] = [agg[i]]
            agg = [a.to_dense() if isinstance(a, IndexedSlices) else a for a in agg]
            if len(n.outputs) == 1:
                in_grads = vjp(agg[0], n.outputs[0], *n.inputs, **n.attrs)
            else:
                in_grads = vjp(tuple(agg), n.outputs, *n.inputs, **n.attrs)
            if len(in_grads) != len(n.inputs):
                raise GraphError(f"Gradient of op {n.op!r} returned {len(in_grads)} values for {len(n.inputs)} inputs.")
            for t, gt in zip(n.inputs, in_grads):
                if gt is None or not t.dtype.is_floating:
                    continue
                if t.node not in relevant and t not in xset:
                    continue
                grads.setdefault(t, []).append(gt)
        result = []
        for x in xs_t:
            parts = grads.get(x)
            result.append(None if not parts else _aggregate(parts))
    return result


