"""Symbolic tensors: the outputs of graph nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hubkit.graph.dtypes import DType
from hubkit.graph.shapes import Shape, format_shape

if TYPE_CHECKING:
    from hubkit.graph.graph import Graph, Node

__all__ = ["Tensor"]

# Operator overloads are filled in by hubkit.ops (the graph layer knows no ops): name -> function.
_OPERATORS: dict[str, Callable[..., Any]] = {}


def register_operator(name: str, fn: Callable[..., Any]) -> None:
    """Lets the ops layer supply the function behind a Python operator (``__add__``, ...)."""
    _OPERATORS[name] = fn


def _op(name: str) -> Callable[..., Any]:
    try:
        return _OPERATORS[name]
    except KeyError:
        raise NotImplementedError(f"Operator {name!r} needs hubkit.ops to be imported.") from None


class Tensor:
    """One output of a graph node: a symbolic value with a static dtype and shape.

    Attributes:
        node: the node producing this tensor.
        index: which output of the node it is.
        dtype: the element type.
        shape: a tuple with ``None`` for unknown dimensions, or ``None`` for unknown rank.
    """

    __slots__ = ("dtype", "index", "node", "shape")
    __array_priority__ = 100  # numpy defers `array + tensor` to Tensor.__radd__

    def __init__(self, node: Node, index: int, dtype: DType, shape: Shape) -> None:
        self.node = node
        self.index = index
        self.dtype = dtype
        self.shape = shape

    @property
    def name(self) -> str:
        return f"{self.node.name}:{self.index}"

    @property
    def graph(self) -> Graph:
        return self.node.graph

    @property
    def op(self) -> Node:
        return self.node

    @property
    def ndim(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def get_shape(self) -> Shape:
        return self.shape

    def __repr__(self) -> str:
        return f"<hubkit.Tensor {self.name!r} shape={format_shape(self.shape)} dtype={self.dtype.name}>"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:  # identity, so tensors work as dict keys (as in TF1)
        return self is other

    def __bool__(self) -> bool:
        raise TypeError(
            f"Using the symbolic tensor {self.name!r} as a Python bool is not allowed; "
            "use hubkit.where or run the graph first."
        )

    def __iter__(self):
        raise TypeError(f"Symbolic tensor {self.name!r} is not iterable; index it with t[i] instead.")

    def __len__(self) -> int:
        if self.shape is None or not self.shape or self.shape[0] is None:
            raise TypeError(f"len() of tensor {self.name!r} with shape {format_shape(self.shape)} is unknown.")
        return self.shape[0]

    def __add__(self, o): return _op("add")(self, o)
    def __radd__(self, o): return _op("add")(o, self)
    def __sub__(self, o): return _op("subtract")(self, o)
    def __rsub__(self, o): return _op("subtract")(o, self)
    def __mul__(self, o): return _op("multiply")(self, o)
    def __rmul__(self, o): return _op("multiply")(o, self)
    def __truediv__(self, o): return _op("divide")(self, o)
    def __rtruediv__(self, o): return _op("divide")(o, self)
    def __matmul__(self, o): return _op("matmul")(self, o)
    def __rmatmul__(self, o): return _op("matmul")(o, self)
    def __pow__(self, o): return _op("pow")(self, o)
    def __rpow__(self, o): return _op("pow")(o, self)
    def __neg__(self): return _op("negative")(self)
    def __abs__(self): return _op("abs")(self)
    def __lt__(self, o): return _op("less")(self, o)
    def __gt__(self, o): return _op("greater")(self, o)
    def __getitem__(self, key): return _op("getitem")(self, key)
