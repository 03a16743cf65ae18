"""Helpers shared by the op families: operand conversion, shape rules, axis handling, unbroadcast."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.graph import DType, Graph, Tensor, convert_to_tensor, get_default_graph, int64
from hubkit.graph.shapes import Shape, broadcast_shapes
from hubkit.ops.registry import apply, describe, infer_error

__all__ = [
    "MAX_OUTPUT_ELEMENTS",
    "as_tensor",
    "broadcast_infer",
    "check_dtype",
    "check_output_size",
    "describe",
    "normalize_axes",
    "operands",
    "reshape_like",
    "tiled_shape",
    "unbroadcast",
]


# The most elements an op that multiplies sizes (Tile, Expand, Pad, Fill, Resize and their TF and ONNX forms)
# may produce: 2**31 (8 GiB of float32). A module file's few bytes (Resize scales of 16384, a Tile of
# [2**20, 2**20]) could otherwise make the first call allocate tens of GB. The ONNX importer refuses a static
# shape over the same limit at import.
MAX_OUTPUT_ELEMENTS = 1 << 31


def check_output_size(shape: Sequence[Any], what: str) -> None:
    """Refuses to build an output of ``shape`` (Python integers: no wrap-around) beyond :data:`MAX_OUTPUT_ELEMENTS`.

    Raises:
        OpError: the output would hold more elements than the limit (the message names ``what`` and the shape).
    """
    elements = 1
    for d in shape:
        elements *= int(d)
    if elements > MAX_OUTPUT_ELEMENTS:
        from hubkit.errors import OpError

        raise OpError(f"{what}: an output of shape {[int(d) for d in shape]} would hold {elements} elements; "
                      f"the limit is {MAX_OUTPUT_ELEMENTS}.")


def tiled_shape(shape: Sequence[int], reps: Sequence[Any]) -> list[int]:
    """The shape ``np.tile`` gives (the shorter of ``shape`` and ``reps`` is padded with leading ones)."""
    n = max(len(shape), len(reps))
    s = [1] * (n - len(shape)) + [int(d) for d in shape]
    r = [1] * (n - len(reps)) + [int(k) for k in reps]
    return [a * b for a, b in zip(s, r)]


def _is_symbolic(value: Any) -> bool:
    return isinstance(value, Tensor) or hasattr(value, "_as_graph_tensor")


def _tracing(graph: Graph) -> Graph:
    """While a cond branch or loop body is traced, ops go to its function graph (outer tensors are captured)."""
    default = get_default_graph()
    return default if graph is not default and hasattr(default, "capture") else graph


def _graph_of(values: Sequence[Any]) -> Graph:
    for v in values:
        if isinstance(v, Tensor):
            return _tracing(v.graph)
    return get_default_graph()


def as_tensor(value: Any, dtype: Any = None, graph: Graph | None = None) -> Tensor:
    """``value`` as a tensor of ``graph`` (a tensor's own graph, else the default graph); Python data
    becomes a constant of ``dtype``."""
    if graph is None and isinstance(value, Tensor):
        graph = value.graph
    if graph is not None:
        graph = _tracing(graph)
    return convert_to_tensor(value, dtype=dtype if not _is_symbolic(value) else None, graph=graph)


def operands(*values: Any) -> list[Tensor]:
    """Converts op operands to tensors of one graph.

    Tensors and variables keep their dtype; Python scalars, lists and arrays take the dtype of the
    first symbolic operand, so ``x * 2`` works for a float ``x`` without implicit promotion
    between tensors.
    """
    graph = _graph_of(values)
    tensors: list[Tensor | None] = [
        convert_to_tensor(v, graph=graph) if _is_symbolic(v) else None for v in values
    ]
    dtype = next((t.dtype for t in tensors if t is not None), None)
    return [
        t if t is not None else convert_to_tensor(v, dtype=dtype, graph=graph) for t, v in zip(tensors, values)
    ]


def check_dtype(t: Tensor, kinds: str, what: str) -> None:
    """Raises an inference error unless ``t``'s dtype is of one of ``kinds``.

    ``kinds`` holds letters: ``f`` floating, ``i`` integer, ``b`` bool, ``s`` string.
    """
    dt = t.dtype
    kind = "f" if dt.is_floating else "i" if dt.is_integer else "b" if dt.name == "bool" else "s"
    if kind not in kinds:
        names = {"f": "floating-point", "i": "integer", "b": "bool", "s": "string"}
        expected = " or ".join(names[k] for k in kinds)
        raise infer_error(f"{what} must be {expected}, got {describe(t)}.")


def broadcast_infer(*inputs: Tensor, kinds: str = "fi", out_dtype: DType | None = None) -> tuple[DType, Shape]:
    """Shape and dtype rule of an elementwise op: equal dtypes, NumPy-broadcast shapes."""
    first = inputs[0]
    for t in inputs:
        check_dtype(t, kinds, "input " + repr(t.name))
        if t.dtype is not first.dtype:
            raise infer_error(
                f"inputs have different dtypes: {describe(first)} and {describe(t)}; "
                "cast one of them explicitly (no implicit promotion)."
            )
    shape = first.shape
    for t in inputs[1:]:
        merged = broadcast_shapes(shape, t.shape)
        if merged is False:
            shapes = " and ".join(describe(x) for x in inputs)
            raise infer_error(f"shapes cannot be broadcast together: {shapes}.")
        shape = merged
    return (out_dtype or first.dtype), shape


def plain_axis(axis: Any) -> Any:
    """``axis`` with NumPy integers turned into Python ints (attrs must be plain data); anything else
    is returned as given, for the op's ``infer`` to accept or refuse with the node named."""
    if isinstance(axis, np.integer):
        return int(axis)
    if isinstance(axis, (list, tuple)):
        return [int(a) if isinstance(a, np.integer) else a for a in axis]
    return axis


def normalize_axes(axis: Any, rank: int | None, what: str = "axis") -> tuple[int, ...] | None:
    """``axis`` (None, an int or a list of ints) as a sorted tuple of non-negative axes when ``rank``
    is known (negative ones kept as given when it is not); None means every axis."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int):
            raise infer_error(f"{what} must be an int or a list of ints, got {axis!r}.")
    if rank is None:
        return axes
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise infer_error(f"{what} {a} is out of range for a tensor of rank {rank}.")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise infer_error(f"{what} {axis!r} repeats an axis.")
    return tuple(sorted(out))


def _never_broadcast(x: Tensor, other: Tensor | None) -> bool:
    """Whether ``x`` provably has the runtime shape of ``broadcast(x, other)``."""
    if other is None or x.shape is None or other.shape is None or len(other.shape) > len(x.shape):
        return False
    offset = len(x.shape) - len(other.shape)
    for i, d in enumerate(x.shape):
        o = other.shape[i - offset] if i >= offset else 1
        if o != 1 and (d is None or d == 1):  # x may be 1 where the other side is larger
            return False
    return True


def unbroadcast(g: Tensor, x: Tensor, other: Tensor | None = None) -> Tensor:
    """Reduces the gradient ``g`` of a broadcast result to the shape of the operand ``x``.

    Every broadcasting op's gradient goes through here. ``g`` is returned unchanged when the static
    shapes prove no broadcasting happened (equal and fully known, or ``other``, the operand ``x`` was
    broadcast against, never enlarges ``x``); otherwise a ``SumToShape`` node sums at run time.
    """
    if g.shape is not None and g.shape == x.shape and None not in g.shape:
        return g
    if _never_broadcast(x, other):
        return g
    return apply("SumToShape", g, x)


def reshape_like(g: Tensor, x: Tensor) -> Tensor:
    """``g`` reshaped to ``x``'s shape: a static reshape when it is known, else ``x``'s runtime shape."""
    if x.shape is not None and None not in x.shape:
        return apply("Reshape", g, shape=list(x.shape))
    return apply("Reshape", g, apply("Shape", x, out_type=int64), shape=None)
