"""The fused forms elementwise ops declare: an opcode of the fusion kernel's instruction set and its cost.

An op class opts into fusion with ``fused = FusedForm(<opcode>, <cost>)`` beside its ``forward`` and
``vjp``; ``hubkit.runtime.fusion`` reads it from the registry (``get_op(name).fused``) and keeps no
table of its own. The instruction set lives here, in the ops layer, because the op classes name it.

Costs are ns per element ``(fused float32, NumPy float32, fused float64, NumPy float64)``: inside the
kernel, and as a NumPy step (which also pays a memory pass and a temporary). They are measured with
``scripts/bench_fusion.py --ops`` (for cheap ops, from whole chains). Numba calls the C library's
scalar exp/log/tanh where NumPy has SIMD versions, so chains of those stay NumPy; NumPy's erf
(float64 through Python's ``math.erf``), softplus and ``x ** 3`` are slower than the kernel's.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CHEAP", "FusedForm"]

# An instruction is (opcode, destination register, source a, source b). LOAD's a is an operand
# index, CONST's a is an index into the constants array; other sources are registers.
(LOAD, CONST, NEG, ABS, EXP, LOG, LOG1P, SQRT, RSQRT, SQUARE, TANH, SIGMOID, RELU, RELU6, SOFTPLUS, ERF,
 CUBE, ADD, SUB, MUL, DIV, MAX, MIN, POW) = range(24)
FIRST_BINARY = ADD  # opcodes from here on read two sources


class FusedForm(NamedTuple):
    """How an elementwise op runs inside the fusion kernel."""

    code: int  # its opcode (unary below FIRST_BINARY, binary from it)
    cost: tuple[float, float, float, float]  # ns/element: fused f32, NumPy f32, fused f64, NumPy f64


CHEAP = (0.1, 0.25, 0.15, 0.35)  # a memory-bound op: one pass saved is what fusion gains
