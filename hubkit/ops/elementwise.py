"""Op family: elementwise math, comparisons, casts and matrix multiplication.

Each op is declared once: its shape/dtype rule (``infer``), its NumPy kernel (``forward``) and its
gradient (``vjp``) side by side. Binary ops broadcast as NumPy does and never promote dtypes
between tensors; Python scalars and lists take the dtype of the tensor they meet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.graph import DType, Tensor, as_dtype, bool_, format_shape
from hubkit.graph.shapes import broadcast_shapes, merge_shapes
from hubkit.ops._helpers import as_tensor, broadcast_infer, check_dtype, describe, operands, unbroadcast
from hubkit.ops.fusion_forms import (
    ABS,
    ADD,
    CHEAP,
    CUBE,
    DIV,
    ERF,
    EXP,
    LOG,
    LOG1P,
    MAX,
    MIN,
    MUL,
    NEG,
    POW,
    RSQRT,
    SIGMOID,
    SOFTPLUS,
    SQRT,
    SQUARE,
    SUB,
    TANH,
    FusedForm,
)
from hubkit.ops.registry import apply, infer_error, register_op

__all__ = [
    "abs",
    "add",
    "add_n",
    "cast",
    "clip_by_value",
    "divide",
    "equal",
    "erf",
    "exp",
    "floor",
    "greater",
    "greater_equal",
    "identity",
    "less",
    "less_equal",
    "log",
    "log1p",
    "logical_and",
    "logical_not",
    "logical_or",
    "matmul",
    "maximum",
    "minimum",
    "multiply",
    "negative",
    "not_equal",
    "ones_like",
    "pow",
    "rsqrt",
    "sigmoid",
    "sign",
    "softplus",
    "sqrt",
    "square",
    "stop_gradient",
    "subtract",
    "tanh",
    "where",
    "zeros_like",
]


def _same(kinds: str):
    """The rule of a unary op whose output has its input's dtype and shape."""

    def infer(x: Tensor):
        check_dtype(x, kinds, "the input")
        return x.dtype, x.shape

    return infer


def _binary(kinds: str, out_dtype: DType | None = None):
    def infer(x: Tensor, y: Tensor):
        return broadcast_infer(x, y, kinds=kinds, out_dtype=out_dtype)

    return infer


# -- arithmetic --------------------------------------------------------------------------------------
@register_op
class Add:
    """``x + y``."""

    fused = FusedForm(ADD, CHEAP)

    infer = _binary("fi")
    forward = np.add

    def vjp(g, out, x, y):
        return unbroadcast(g, x, y), unbroadcast(g, y, x)


@register_op
class Sub:
    """``x - y``."""

    fused = FusedForm(SUB, CHEAP)

    infer = _binary("fi")
    forward = np.subtract

    def vjp(g, out, x, y):
        return unbroadcast(g, x, y), unbroadcast(negative(g), y, x)


@register_op
class Mul:
    """``x * y``."""

    fused = FusedForm(MUL, CHEAP)

    infer = _binary("fi")
    forward = np.multiply

    def vjp(g, out, x, y):
        return unbroadcast(multiply(g, y), x, y), unbroadcast(multiply(g, x), y, x)


@register_op
class RealDiv:
    """``x / y`` for floating-point tensors."""

    fused = FusedForm(DIV, CHEAP)

    infer = _binary("f")
    forward = np.true_divide

    def vjp(g, out, x, y):
        gx = divide(g, y)
        return unbroadcast(gx, x, y), unbroadcast(negative(multiply(gx, out)), y, x)


@register_op
class Pow:
    """``x ** y``."""

    fused = FusedForm(POW, (5.1, 1.0, 8.9, 1.6))
    # x ** 2 and x ** 3 (a constant exponent) have cheaper forms; x ** 3 is the tanh gelu's
    fused_powers = {2.0: FusedForm(SQUARE, CHEAP), 3.0: FusedForm(CUBE, (0.1, 40.0, 0.15, 40.0))}

    infer = _binary("fi")
    forward = np.power

    def vjp(g, out, x, y):
        gx = multiply(g, multiply(y, pow(x, subtract(y, 1))))
        # d/dy x**y = x**y * log(x), taken as 0 where x <= 0 (log is not real there).
        safe_x = where(greater(x, 0), x, ones_like(x))
        gy = multiply(g, multiply(out, log(safe_x)))
        return unbroadcast(gx, x, y), unbroadcast(gy, y, x)


@register_op
class Maximum:
    """Elementwise ``max(x, y)``; the gradient goes to ``x`` on ties."""

    fused = FusedForm(MAX, CHEAP)

    infer = _binary("fi")
    forward = np.maximum

    def vjp(g, out, x, y):
        gx = multiply(g, cast(greater_equal(x, y), g.dtype))
        return unbroadcast(gx, x, y), unbroadcast(subtract(g, gx), y, x)


@register_op
class Minimum:
    """Elementwise ``min(x, y)``; the gradient goes to ``x`` on ties."""

    fused = FusedForm(MIN, CHEAP)

    infer = _binary("fi")
    forward = np.minimum

    def vjp(g, out, x, y):
        gx = multiply(g, cast(less_equal(x, y), g.dtype))
        return unbroadcast(gx, x, y), unbroadcast(subtract(g, gx), y, x)


@register_op
class AddN:
    """The sum of several tensors of one shape and dtype."""

    def infer(*xs: Tensor):
        if not xs:
            raise infer_error("needs at least one input.")
        shape = xs[0].shape
        for t in xs:
            check_dtype(t, "fi", "input " + repr(t.name))
            if t.dtype is not xs[0].dtype:
                raise infer_error(f"inputs have different dtypes: {describe(xs[0])} and {describe(t)}.")
            merged = merge_shapes(shape, t.shape)
            if merged is False:
                raise infer_error(f"inputs have different shapes: {describe(xs[0])} and {describe(t)}.")
            shape = merged
        return xs[0].dtype, shape

    def forward(*xs):
        if len(xs) == 1:
            return np.array(xs[0], copy=True)
        out = np.add(xs[0], xs[1])
        if len(xs) > 2:
            out = np.asarray(out)  # a reduction may hand us NumPy scalars; accumulate in place
            for x in xs[2:]:
                np.add(out, x, out=out)
        return out

    def vjp(g, out, *xs):
        return (g,) * len(xs)


# -- unary math --------------------------------------------------------------------------------------
@register_op
class Neg:
    """``-x``."""

    fused = FusedForm(NEG, CHEAP)

    infer = _same("fi")
    forward = np.negative

    def vjp(g, out, x):
        return (negative(g),)


@register_op
class Abs:
    """``|x|``; the gradient at 0 is 0."""

    fused = FusedForm(ABS, CHEAP)

    infer = _same("fi")
    forward = np.abs

    def vjp(g, out, x):
        return (multiply(g, sign(x)),)


@register_op
class Sign:
    """-1, 0 or 1 by the sign of ``x`` (piecewise constant: no gradient)."""

    differentiable = False
    infer = _same("fi")
    forward = np.sign


@register_op
class Floor:
    """Largest integer not greater than ``x`` (piecewise constant: no gradient)."""

    differentiable = False
    infer = _same("f")
    forward = np.floor


@register_op
class Square:
    """``x * x``."""

    fused = FusedForm(SQUARE, CHEAP)

    infer = _same("fi")
    forward = np.square

    def vjp(g, out, x):
        return (multiply(g, multiply(x, 2)),)


@register_op
class Sqrt:
    """Square root."""

    fused = FusedForm(SQRT, CHEAP)

    infer = _same("f")
    forward = np.sqrt

    def vjp(g, out, x):
        return (multiply(divide(g, out), 0.5),)


@register_op
class Rsqrt:
    """``1 / sqrt(x)``."""

    fused = FusedForm(RSQRT, CHEAP)

    infer = _same("f")

    def forward(x):
        out = np.sqrt(x)
        return np.reciprocal(out, out=out)

    def vjp(g, out, x):
        return (multiply(g, multiply(multiply(out, square(out)), -0.5)),)


@register_op
class Exp:
    """``e ** x``."""

    fused = FusedForm(EXP, (2.9, 0.34, 3.3, 0.63))

    infer = _same("f")
    forward = np.exp

    def vjp(g, out, x):
        return (multiply(g, out),)


@register_op
class Log:
    """Natural logarithm."""

    fused = FusedForm(LOG, (2.8, 0.25, 3.1, 0.58))

    infer = _same("f")
    forward = np.log

    def vjp(g, out, x):
        return (divide(g, x),)


@register_op
class Log1p:
    """``log(1 + x)``, accurate for small ``x``."""

    fused = FusedForm(LOG1P, (9.0, 0.29, 6.0, 0.60))

    infer = _same("f")
    forward = np.log1p

    def vjp(g, out, x):
        return (divide(g, add(x, 1)),)


@register_op
class Tanh:
    """Hyperbolic tangent."""

    fused = FusedForm(TANH, (17.3, 0.17, 9.2, 0.83))

    infer = _same("f")
    forward = np.tanh

    def vjp(g, out, x):
        return (multiply(g, subtract(1, square(out))),)


@register_op
class Sigmoid:
    """``1 / (1 + exp(-x))``, computed as ``(1 + tanh(x / 2)) / 2`` so it never overflows."""

    fused = FusedForm(SIGMOID, (11.0, 0.32, 8.7, 1.25))

    infer = _same("f")

    def forward(x):
        t = np.multiply(x, 0.5)
        np.tanh(t, out=t)
        t += 1
        t *= 0.5
        return t

    def vjp(g, out, x):
        return (multiply(g, multiply(out, subtract(1, out))),)


@register_op
class Softplus:
    """``log(1 + exp(x))``, computed without overflow."""

    fused = FusedForm(SOFTPLUS, (18.4, 24.3, 14.8, 25.0))

    infer = _same("f")

    def forward(x):
        return np.logaddexp(0, x)

    def vjp(g, out, x):
        return (multiply(g, sigmoid(x)),)


# Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), used for float32 where it is within a few ulps.
_AS_P = 0.3275911
_AS_A = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)
_erf64 = np.frompyfunc(math.erf, 1, 1)


def _erf32(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    t = 1 / (1 + np.float32(_AS_P) * a)
    poly = np.full_like(t, _AS_A[0])
    for c in _AS_A[1:]:
        poly *= t
        poly += np.float32(c)
    poly *= t
    far = 1 - poly * np.exp(-a * a)
    # Near 0 the Maclaurin series keeps the relative error small.
    x2 = x * x
    near = x * (np.float32(2 / math.sqrt(math.pi)) * (1 + x2 * (-1 / 3 + x2 * (1 / 10 + x2 * (-1 / 42 + x2 / 216)))))
    return np.where(a < 0.25, near, np.copysign(far, x)).astype(x.dtype, copy=False)


@register_op
class Erf:
    """The error function (exact ``gelu`` is built from it)."""

    fused = FusedForm(ERF, (6.9, 18.5, 9.1, 79.3))

    infer = _same("f")

    def forward(x):
        if x.dtype == np.float64:  # exact, through the C library's erf
            return _erf64(x).astype(np.float64) if x.ndim else np.float64(math.erf(x))
        return _erf32(x)

    def vjp(g, out, x):
        return (multiply(g, multiply(exp(negative(square(x))), 2 / math.sqrt(math.pi))),)


# -- identity, gradient stop, casts, constants shaped like a tensor -------------------------------------
@register_op
class Identity:
    """Returns its input."""

    aliases_input = True

    def infer(x):
        return x.dtype, x.shape

    def forward(x):
        return x

    def vjp(g, out, x):
        return (g,)


@register_op
class StopGradient:
    """Returns its input; gradients do not flow through it."""

    differentiable = False
    aliases_input = True

    def infer(x):
        return x.dtype, x.shape

    def forward(x):
        return x


@register_op
class Cast:
    """Converts to another dtype (float to int truncates toward zero, as in TensorFlow)."""

    aliases_input = True  # a cast to the same dtype returns the input

    def infer(x, *, dtype):
        if (x.dtype.name == "string") != (dtype.name == "string"):
            raise infer_error(f"cannot cast {describe(x)} to {dtype.name}.")
        return dtype, x.shape

    def prepare(node):
        return {"np_dtype": node.attrs["dtype"].np_dtype}

    def forward(x, *, dtype, np_dtype):
        return x.astype(np_dtype, copy=False)

    def vjp(g, out, x, *, dtype):
        if x.dtype.is_floating and dtype.is_floating:
            return (cast(g, x.dtype),)
        return (None,)


@register_op
class ZerosLike:
    """Zeros of the input's shape and dtype."""

    differentiable = False
    infer = _same("fib")
    forward = np.zeros_like


@register_op
class OnesLike:
    """Ones of the input's shape and dtype."""

    differentiable = False
    infer = _same("fib")
    forward = np.ones_like


# -- selection, comparisons and logic ------------------------------------------------------------------
@register_op
class Select:
    """``where(condition, x, y)``: elements of ``x`` where ``condition`` holds, else of ``y``."""

    def infer(condition, x, y):
        check_dtype(condition, "b", "the condition")
        dtype, shape = broadcast_infer(x, y, kinds="fibs")
        shape = broadcast_shapes(condition.shape, shape)
        if shape is False:
            raise infer_error(
                f"condition {describe(condition)} cannot be broadcast with {describe(x)} and {describe(y)}."
            )
        return dtype, shape

    forward = np.where

    def vjp(g, out, condition, x, y):
        zeros = zeros_like(g)
        return None, unbroadcast(where(condition, g, zeros), x), unbroadcast(where(condition, zeros, g), y)


def _comparison(name: str, ufunc: Any, kinds: str, doc: str) -> type:
    cls = type(name, (), {"__doc__": doc, "__module__": __name__, "differentiable": False,
                          "infer": _binary(kinds, bool_), "forward": ufunc})
    return register_op(cls)


_comparison("Equal", np.equal, "fibs", "``x == y`` elementwise.")
_comparison("NotEqual", np.not_equal, "fibs", "``x != y`` elementwise.")
_comparison("Less", np.less, "fi", "``x < y`` elementwise.")
_comparison("LessEqual", np.less_equal, "fi", "``x <= y`` elementwise.")
_comparison("Greater", np.greater, "fi", "``x > y`` elementwise.")
_comparison("GreaterEqual", np.greater_equal, "fi", "``x >= y`` elementwise.")
_comparison("LogicalAnd", np.logical_and, "b", "``x and y`` elementwise.")
_comparison("LogicalOr", np.logical_or, "b", "``x or y`` elementwise.")


@register_op
class LogicalNot:
    """``not x`` elementwise."""

    differentiable = False
    infer = _same("b")
    forward = np.logical_not


# -- matrix multiplication ---------------------------------------------------------------------------
@register_op
class MatMul:
    """Matrix product of the last two axes; leading (batch) axes broadcast."""

    def infer(a, b, *, transpose_a=False, transpose_b=False):
        for t in (a, b):
            check_dtype(t, "fi", "input " + repr(t.name))
            if t.shape is not None and len(t.shape) < 2:
                raise infer_error(f"needs inputs of rank 2 or more, got {describe(t)}.")
        if a.dtype is not b.dtype:
            raise infer_error(f"inputs have different dtypes: {describe(a)} and {describe(b)}.")
        if a.shape is None or b.shape is None:
            return a.dtype, None
        m, ka = (a.shape[-1], a.shape[-2]) if transpose_a else (a.shape[-2], a.shape[-1])
        kb, n = (b.shape[-1], b.shape[-2]) if transpose_b else (b.shape[-2], b.shape[-1])
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        if (ka is not None and kb is not None and ka != kb) or batch is False:
            ta = " (transposed)" if transpose_a else ""
            tb = " (transposed)" if transpose_b else ""
            raise infer_error(
                f"cannot multiply {format_shape(a.shape)}{ta} by {format_shape(b.shape)}{tb} "
                f"(inputs {a.name!r} and {b.name!r})."
            )
        return a.dtype, (*batch, m, n)

    def forward(a, b, *, transpose_a=False, transpose_b=False):
        if transpose_a:
            a = np.swapaxes(a, -1, -2)
        if transpose_b:
            b = np.swapaxes(b, -1, -2)
        return np.matmul(a, b)

    def vjp(g, out, a, b, *, transpose_a=False, transpose_b=False):
        if not transpose_a and not transpose_b:
            ga, gb = matmul(g, b, transpose_b=True), matmul(a, g, transpose_a=True)
        elif not transpose_a:
            ga, gb = matmul(g, b), matmul(g, a, transpose_a=True)
        elif not transpose_b:
            ga, gb = matmul(b, g, transpose_b=True), matmul(a, g)
        else:
            ga, gb = matmul(b, g, transpose_a=True, transpose_b=True), matmul(g, a, transpose_a=True, transpose_b=True)
        if a.ndim == 2 and b.ndim == 2:  # no batch axes: nothing was broadcast
            return ga, gb
        return unbroadcast(ga, a), unbroadcast(gb, b)


# -- public functions ---------------------------------------------------------------------------------
def add(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x + y`` with NumPy broadcasting.

    >>> import hubkit as hk
    >>> with hk.Graph().as_default():
    ...     z = hk.add(hk.placeholder(hk.float32, [None, 3]), 1.0)
    >>> z.shape, z.dtype
    ((None, 3), hubkit.float32)
    """
    return apply("Add", *operands(x, y), name=name)


def subtract(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x - y`` with NumPy broadcasting."""
    return apply("Sub", *operands(x, y), name=name)


def multiply(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x * y`` with NumPy broadcasting."""
    return apply("Mul", *operands(x, y), name=name)


def divide(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x / y`` for floating-point tensors, with NumPy broadcasting."""
    return apply("RealDiv", *operands(x, y), name=name)


def pow(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x ** y`` with NumPy broadcasting."""
    return apply("Pow", *operands(x, y), name=name)


def maximum(x: Any, y: Any, name: str | None = None) -> Tensor:
    """Elementwise maximum with NumPy broadcasting."""
    return apply("Maximum", *operands(x, y), name=name)


def minimum(x: Any, y: Any, name: str | None = None) -> Tensor:
    """Elementwise minimum with NumPy broadcasting."""
    return apply("Minimum", *operands(x, y), name=name)


def add_n(inputs: Sequence[Any], name: str | None = None) -> Tensor:
    """The sum of a list of tensors of one shape and dtype (one input is returned as is)."""
    tensors = operands(*inputs)
    if len(tensors) == 1:
        return tensors[0]
    return apply("AddN", *tensors, name=name)


def negative(x: Any, name: str | None = None) -> Tensor:
    """``-x``."""
    return apply("Neg", x, name=name)


def abs(x: Any, name: str | None = None) -> Tensor:
    """``|x|``."""
    return apply("Abs", x, name=name)


def sign(x: Any, name: str | None = None) -> Tensor:
    """-1, 0 or 1 by the sign of each element."""
    return apply("Sign", x, name=name)


def floor(x: Any, name: str | None = None) -> Tensor:
    """Elementwise floor of a floating-point tensor."""
    return apply("Floor", x, name=name)


def square(x: Any, name: str | None = None) -> Tensor:
    """``x * x``."""
    return apply("Square", x, name=name)


def sqrt(x: Any, name: str | None = None) -> Tensor:
    """Elementwise square root."""
    return apply("Sqrt", x, name=name)


def rsqrt(x: Any, name: str | None = None) -> Tensor:
    """Elementwise ``1 / sqrt(x)``."""
    return apply("Rsqrt", x, name=name)


def exp(x: Any, name: str | None = None) -> Tensor:
    """Elementwise ``e ** x``."""
    return apply("Exp", x, name=name)


def log(x: Any, name: str | None = None) -> Tensor:
    """Elementwise natural logarithm."""
    return apply("Log", x, name=name)


def log1p(x: Any, name: str | None = None) -> Tensor:
    """Elementwise ``log(1 + x)``."""
    return apply("Log1p", x, name=name)


def tanh(x: Any, name: str | None = None) -> Tensor:
    """Elementwise hyperbolic tangent."""
    return apply("Tanh", x, name=name)


def sigmoid(x: Any, name: str | None = None) -> Tensor:
    """Elementwise logistic function ``1 / (1 + exp(-x))``."""
    return apply("Sigmoid", x, name=name)


def softplus(x: Any, name: str | None = None) -> Tensor:
    """Elementwise ``log(1 + exp(x))``."""
    return apply("Softplus", x, name=name)


def erf(x: Any, name: str | None = None) -> Tensor:
    """Elementwise error function."""
    return apply("Erf", x, name=name)


def identity(x: Any, name: str | None = None) -> Tensor:
    """A new tensor with the value of ``x``."""
    return apply("Identity", x, name=name)


def stop_gradient(x: Any, name: str | None = None) -> Tensor:
    """The value of ``x``, treated as a constant by :func:`hubkit.gradients`."""
    return apply("StopGradient", x, name=name)


def cast(x: Any, dtype: Any, name: str | None = None) -> Tensor:
    """``x`` converted to ``dtype`` (returned as is when it already has that dtype).

    >>> import hubkit as hk
    >>> with hk.Graph().as_default():
    ...     hk.cast(hk.constant([1.5]), hk.int32).dtype
    hubkit.int32
    """
    dt = as_dtype(dtype)
    t = as_tensor(x)
    if t.dtype is dt:
        return t
    return apply("Cast", t, dtype=dt, name=name)


def zeros_like(x: Any, name: str | None = None) -> Tensor:
    """Zeros with the shape and dtype of ``x``."""
    return apply("ZerosLike", x, name=name)


def ones_like(x: Any, name: str | None = None) -> Tensor:
    """Ones with the shape and dtype of ``x``."""
    return apply("OnesLike", x, name=name)


def where(condition: Any, x: Any, y: Any, name: str | None = None) -> Tensor:
    """Elements of ``x`` where ``condition`` is true, else of ``y`` (all three broadcast)."""
    x, y = operands(x, y)
    return apply("Select", as_tensor(condition, graph=x.graph), x, y, name=name)


def equal(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x == y`` elementwise (a bool tensor)."""
    return apply("Equal", *operands(x, y), name=name)


def not_equal(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x != y`` elementwise (a bool tensor)."""
    return apply("NotEqual", *operands(x, y), name=name)


def less(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x < y`` elementwise (a bool tensor)."""
    return apply("Less", *operands(x, y), name=name)


def less_equal(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x <= y`` elementwise (a bool tensor)."""
    return apply("LessEqual", *operands(x, y), name=name)


def greater(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x > y`` elementwise (a bool tensor)."""
    return apply("Greater", *operands(x, y), name=name)


def greater_equal(x: Any, y: Any, name: str | None = None) -> Tensor:
    """``x >= y`` elementwise (a bool tensor)."""
    return apply("GreaterEqual", *operands(x, y), name=name)


def logical_and(x: Any, y: Any, name: str | None = None) -> Tensor:
    """Elementwise ``x and y`` of bool tensors."""
    return apply("LogicalAnd", *operands(x, y), name=name)


def logical_or(x: Any, y: Any, name: str | None = None) -> Tensor:
    """Elementwise ``x or y`` of bool tensors."""
    return apply("LogicalOr", *operands(x, y), name=name)


def logical_not(x: Any, name: str | None = None) -> Tensor:
    """Elementwise ``not x`` of a bool tensor."""
    return apply("LogicalNot", x, name=name)


def clip_by_value(x: Any, clip_value_min: Any, clip_value_max: Any, name: str | None = None) -> Tensor:
    """``x`` limited to ``[clip_value_min, clip_value_max]`` (built from maximum and minimum)."""
    t = as_tensor(x)
    with t.graph.name_scope(name or "clip_by_value"):
        return minimum(maximum(t, clip_value_min), clip_value_max)


def matmul(
    a: Any, b: Any, transpose_a: bool = False, transpose_b: bool = False, name: str | None = None
) -> Tensor:
    """Matrix product of the last two axes of ``a`` and ``b``; batch axes broadcast.

    Raises:
        GraphError: the inner dimensions differ, e.g. ``[None, 4]`` by ``[3, 2]``.

    >>> import hubkit as hk
    >>> with hk.Graph().as_default():
    ...     y = hk.matmul(hk.placeholder(hk.float32, [None, 4]), hk.ones([4, 2]))
    >>> y.shape
    (None, 2)
    """
    a, b = operands(a, b)
    return apply("MatMul", a, b, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b), name=name)
