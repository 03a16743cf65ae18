"""The functions behind Tensor's Python operators (``+ - * / @ ** -x abs() < > []``)."""

from collections.abc import Callable
from typing import Any

from hubkit.graph.tensor import register_operator
from hubkit.ops import elementwise as _ew
from hubkit.ops.shape import getitem

__all__: list[str] = []

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "add": _ew.add,
    "subtract": _ew.subtract,
    "multiply": _ew.multiply,
    "divide": _ew.divide,
    "matmul": _ew.matmul,
    "pow": _ew.pow,
    "negative": _ew.negative,
    "abs": _ew.abs,
    "less": _ew.less,
    "greater": _ew.greater,
    "getitem": getitem,
}
for _name, _fn in _FUNCTIONS.items():
    register_operator(_name, _fn)
