"""Fusion of elementwise chains: an optional plan pass running each chain as one Numba kernel.

:func:`fuse_plan` rewrites a compiled :class:`~hubkit.runtime.executor.Plan`. It finds maximal
groups of elementwise steps (``relu(x + b)``, ``x * sigmoid(x)``, the pieces of ``gelu``, ...)
whose intermediates have a single reader, are not fetched and are not fed, and replaces each group
by one step running a small program: an int opcode array, operand slots and scalar constants.
One compiled kernel (:func:`run_program`) interprets every program. It is a *block* interpreter,
as numexpr's virtual machine: it walks the output in blocks of :data:`BLOCK` elements and runs each
instruction over a whole block held in L1-resident registers, so the dispatch costs once per block,
the inner loops vectorize, memory is read and written once, and no temporaries are allocated.
No code is generated from strings.

A group is fused only where measurement says it pays (:func:`_worth_fusing`, per-op costs measured
with ``scripts/bench_fusion.py``) and, at run time, only when the chain has at least
:data:`MIN_ELEMENTS` elements and its operands are C-contiguous arrays of the group's dtype shaped
like the output, like its trailing axes (a bias) or holding one element. Anything else runs the
group's original NumPy steps, so results never depend on the path beyond float rounding.

Graphs are unchanged: gradients and serialization never see fusion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.errors import HubkitError, OpError
from hubkit.ops import _numba
from hubkit.ops.fusion_forms import (
    ABS,
    ADD,
    CONST,
    CUBE,
    DIV,
    ERF,
    EXP,
    FIRST_BINARY,
    LOAD,
    LOG,
    LOG1P,
    MAX,
    MIN,
    MUL,
    NEG,
    POW,
    RELU,
    RELU6,
    RSQRT,
    SIGMOID,
    SOFTPLUS,
    SQRT,
    SQUARE,
    SUB,
    TANH,
    FusedForm,
)
from hubkit.ops.registry import get_op
from hubkit.runtime.steps import PlanStep

__all__ = ["BLOCK", "MIN_ELEMENTS", "FusedChain", "compiled_kernel", "fuse_plan", "run_program"]

BLOCK = 2048  # elements per register: a few registers stay in the L2 cache
MIN_ELEMENTS = 8192  # below this NumPy's per-op cost is lower than a kernel call (bench_fusion.py)
MAX_OPERANDS = 4  # array operands per kernel call: one Numba specialization per dtype
_MIN_PERIOD = 128  # a bias shorter than this is tiled, so blocks stay long

# -- the instruction set: opcodes live with the ops (hubkit/ops/fusion_forms.py); each elementwise op
# class declares its own ``fused = FusedForm(opcode, cost)``, so this module keeps no table of ops.
_FIRST_BINARY = FIRST_BINARY
FULL, SUFFIX, SCALAR = 0, 1, 2  # how an operand maps onto the output's flat index
# Constants every program starts with, typed like its registers (a bare 1.0 would promote float32).
_ZERO, _ONE, _HALF, _SIX = 0, 1, 2, 3
_BASE_CONSTANTS = (0.0, 1.0, 0.5, 6.0)


def run_program(program, constants, operands, kinds, out, period):  # pragma: no cover - compiled by Numba
    """Runs ``program`` over every element of ``out`` (flat, C order), one block at a time.

    Args:
        program: int32 [num_instructions, 4] rows of (opcode, destination, a, b); the last
            instruction's destination holds the result.
        constants: the program's scalar constants, of ``out``'s dtype (starting with 0, 1, 0.5, 6).
        operands: a tuple of :data:`MAX_OPERANDS` flat arrays of ``out``'s dtype (unused ones are dummies).
        kinds: int32 per operand: FULL (indexed like ``out``), SUFFIX (indexed modulo ``period``) or
            SCALAR (its one element everywhere).
        out: the flat output array.
        period: the length of SUFFIX operands (``out.size`` when there are none).
    """
    n = out.shape[0]
    num_regs = 0
    for i in range(program.shape[0]):
        num_regs = max(num_regs, program[i, 1] + 1)
    regs = np.empty((num_regs, BLOCK), out.dtype)
    zero, one, half, six = constants[0], constants[1], constants[2], constants[3]
    result = program[program.shape[0] - 1, 1]
    start = 0
    while start < n:
        offset = start % period
        m = min(BLOCK, n - start, period - offset)
        for i in range(program.shape[0]):
            code = program[i, 0]
            rd = regs[program[i, 1]]
            if code == LOAD:
                k = program[i, 2]
                src = operands[k]
                kind = kinds[k]
                if kind == FULL:
                    block = src[start:start + m]
                    for j in range(m):
                        rd[j] = block[j]
                elif kind == SUFFIX:
                    block = src[offset:offset + m]
                    for j in range(m):
                        rd[j] = block[j]
                else:
                    v = src[0]
                    for j in range(m):
                        rd[j] = v
            elif code == CONST:
                v = constants[program[i, 2]]
                for j in range(m):
                    rd[j] = v
            elif code < _FIRST_BINARY:
                ra = regs[program[i, 2]]
                if code == NEG:
                    for j in range(m):
                        rd[j] = -ra[j]
                elif code == ABS:
                    for j in range(m):
                        rd[j] = abs(ra[j])
                elif code == EXP:
                    for j in range(m):
                        rd[j] = np.exp(ra[j])
                elif code == LOG:
                    for j in range(m):
                        rd[j] = np.log(ra[j])
                elif code == LOG1P:
                    for j in range(m):
                        rd[j] = np.log1p(ra[j])
                elif code == SQRT:
                    for j in range(m):
                        rd[j] = np.sqrt(ra[j])
                elif code == RSQRT:
                    for j in range(m):
                        rd[j] = one / np.sqrt(ra[j])
                elif code == SQUARE:
                    for j in range(m):
                        rd[j] = ra[j] * ra[j]
                elif code == CUBE:
                    for j in range(m):
                        rd[j] = ra[j] * ra[j] * ra[j]
                elif code == TANH:
                    for j in range(m):
                        rd[j] = np.tanh(ra[j])
                elif code == SIGMOID:  # as the NumPy kernel: (1 + tanh(x / 2)) / 2 never overflows
                    for j in range(m):
                        rd[j] = half * (one + np.tanh(ra[j] * half))
                elif code == RELU:  # NaN stays NaN, as np.maximum(x, 0)
                    for j in range(m):
                        v = ra[j]
                        rd[j] = zero if v < zero else v
                elif code == RELU6:
                    for j in range(m):
                        v = ra[j]
                        rd[j] = zero if v < zero else (six if v > six else v)
                elif code == SOFTPLUS:  # np.logaddexp(0, x) without overflow
                    for j in range(m):
                        v = ra[j]
                        rd[j] = (zero if v < zero else v) + np.log1p(np.exp(-abs(v)))
                elif code == ERF:
                    for j in range(m):
                        rd[j] = math.erf(ra[j])
            else:
                ra = regs[program[i, 2]]
                rb = regs[program[i, 3]]
                if code == ADD:
                    for j in range(m):
                        rd[j] = ra[j] + rb[j]
                elif code == SUB:
                    for j in range(m):
                        rd[j] = ra[j] - rb[j]
                elif code == MUL:
                    for j in range(m):
                        rd[j] = ra[j] * rb[j]
                elif code == DIV:
                    for j in range(m):
                        rd[j] = ra[j] / rb[j]
                elif code == MAX:  # NaN-propagating, as np.maximum
                    for j in range(m):
                        a = ra[j]
                        b = rb[j]
                        rd[j] = a if (a >= b or a != a) else b
                elif code == MIN:
                    for j in range(m):
                        a = ra[j]
                        b = rb[j]
                        rd[j] = a if (a <= b or a != a) else b
                elif code == POW:
                    for j in range(m):
                        rd[j] = ra[j] ** rb[j]
        res = regs[result]
        dst = out[start:start + m]
        for j in range(m):
            dst[j] = res[j]
        start += m


# -- the chain step ---------------------------------------------------------------------------------------
_COMPILED: list[Any] = []


def compiled_kernel() -> Any:
    """:func:`run_program` compiled by Numba (cached on disk), or None when Numba is off or broken.

    Compiled with NumPy's error model, so ``x / 0`` gives inf or NaN as in NumPy instead of raising
    (which also lets the division loops vectorize).
    """
    if not _numba.numba_enabled():
        return None
    if _COMPILED:
        return _COMPILED[0]
    try:
        import numba
    except Exception:  # numba present but broken: the NumPy steps run
        return None
    if not numba.config.CACHE_DIR:  # type: ignore[attr-defined]  # set from the environment at run time
        numba.config.CACHE_DIR = _numba.cache_dir()  # type: ignore[attr-defined]
    _COMPILED.append(numba.njit(cache=True, nogil=True, error_model="numpy")(run_program))
    return _COMPILED[0]


_DUMMY = {np.dtype(np.float32): np.zeros(1, np.float32), np.dtype(np.float64): np.zeros(1, np.float64)}


class FusedChain:
    """One plan step computing a group of elementwise steps with :func:`run_program`.

    Called with the group's array operands (in ``in_slots`` order); returns the group's output.
    Falls back to the group's original steps when Numba is off, the output is small, or an operand
    is not a C-contiguous array of the group's dtype that maps onto the output's flat index.
    """

    __slots__ = ("constants", "dtype", "in_slots", "local_steps", "primary", "program", "steps", "values")

    def __init__(self, program, constants, dtype, steps, in_slots, constant_slots, primary) -> None:
        self.program = program  # int32 [n, 4]
        self.constants = constants  # the program's constants, of dtype
        self.dtype = dtype
        self.steps = steps  # the group's original plan steps, in order
        self.in_slots = in_slots  # slots of the array operands
        self.primary = primary  # the operand expected to be shaped like the output
        # The fallback runs the steps over a local list: operands, folded constants, then results.
        self.values = tuple(constant_slots.values())
        local = {s: i for i, s in enumerate([*in_slots, *constant_slots])}
        self.local_steps = []
        for fn, kwargs, ins, outs, _frees, _node in steps:
            self.local_steps.append((fn, kwargs, tuple(local[s] for s in ins)))
            local[outs[0]] = len(local)

    def __call__(self, *arrays: Any) -> Any:
        first = arrays[self.primary]
        if type(first) is np.ndarray and first.size >= MIN_ELEMENTS:
            out = self._fused(arrays)
            if out is not None:
                return out
        # The group's original NumPy steps, over a local list: operands, folded constants, results.
        # Inline (no further call): small batches come here on every run.
        values = [*arrays, *self.values]
        try:
            for fn, kwargs, ins in self.local_steps:
                values.append(fn(*[values[i] for i in ins], **kwargs))
        except HubkitError:
            raise
        except Exception as e:  # name the node that failed, as the executor does
            node = self.steps[len(values) - len(arrays) - len(self.values)].node
            raise OpError(f"Op {node.op} node {node.name!r} failed: {type(e).__name__}: {e}") from e
        return values[-1]

    def _fused(self, arrays: tuple) -> np.ndarray | None:
        """The output computed by the kernel, or None when the operands do not suit it."""
        kernel = compiled_kernel()
        if kernel is None:
            return None
        first = arrays[self.primary]
        shape = first.shape
        dtype = self.dtype
        for a in arrays:
            if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
                return None
            if a.size > first.size:
                first, shape = a, a.shape
        n = first.size
        period = n
        kinds = []
        flat = []
        for a in arrays:
            if a.shape == shape:
                kinds.append(FULL)
            elif a.size == 1 and a.ndim <= len(shape):
                kinds.append(SCALAR)
            else:
                core = a.shape
                while core and core[0] == 1:
                    core = core[1:]
                if shape[len(shape) - len(core):] != core or (period != n and period != a.size):
                    return None  # broadcasts along a middle axis: NumPy does it
                period = a.size
                kinds.append(SUFFIX)
            flat.append(a.reshape(-1))
        if period < _MIN_PERIOD:
            reps = -(-_MIN_PERIOD // period)
            period *= reps
            flat = [np.tile(a, reps) if k == SUFFIX else a for a, k in zip(flat, kinds)]
        flat.extend([_DUMMY[dtype]] * (MAX_OPERANDS - len(flat)))
        kinds.extend([SCALAR] * (MAX_OPERANDS - len(kinds)))
        out = np.empty(shape, dtype)
        kernel(self.program, self.constants, tuple(flat), np.array(kinds, np.int32), out.reshape(-1), period)
        return out


# -- the plan pass ------------------------------------------------------------------------------------------
def _is_fusible(step: PlanStep) -> bool:
    node = step.node
    if get_op(node.op).fused is None or len(node.outputs) != 1:
        return False
    if step.fn is not get_op(node.op).forward:  # a step another pass rewrote (runtime/optimize.py)
        return False
    dtype = node.outputs[0].dtype
    return dtype.name in ("float32", "float64") and all(t.dtype is dtype for t in node.inputs)


def _scalar_constant(step: PlanStep) -> Any:
    """The value of a Const step holding one float element, else None."""
    node = step.node
    if node.op != "Const" or not node.outputs[0].dtype.is_floating:
        return None
    value = np.asarray(node.attrs["value"])
    return value.reshape(-1)[0] if value.size == 1 else None


def _may_fit(shape: Any, out: Any) -> bool:
    """False when static shapes prove an operand broadcasts along an axis the kernel cannot index."""
    if shape is None or out is None:
        return True
    if len(shape) > len(out):
        return False
    core = tuple(shape)
    while core and core[0] == 1:
        core = core[1:]
    tail = tuple(out)[len(out) - len(core):]
    return all(a is None or b is None or a == b for a, b in zip(core, tail))


class _ProgramBuilder:
    """Emits the instructions of one group, from its sink back to its operands (a tree walk)."""

    def __init__(self, steps, producer, members, constant_slots) -> None:
        self.steps, self.producer, self.members = steps, producer, members
        self.constant_slots = constant_slots
        self.code: list[tuple[int, int, int, int]] = []
        self.constants: list[float] = list(_BASE_CONSTANTS)
        self.operands: list[int] = []  # operand slots in load order
        self.loaded: dict[int, int] = {}  # operand slot -> its register (kept to the end)
        self.free: list[int] = []
        self.num_regs = 0
        self.costs: list[tuple[float, float, float, float]] = []  # of each instruction, as its op declares

    def _alloc(self) -> int:
        if self.free:
            return self.free.pop()
        self.num_regs += 1
        return self.num_regs - 1

    def _release(self, reg: int, temporary: bool) -> None:
        if temporary:
            self.free.append(reg)
            self.free.sort(reverse=True)

    def _constant(self, value: float) -> int:
        self.constants.append(float(value))
        return len(self.constants) - 1

    def _leaf(self, slot: int) -> tuple[int, bool] | None:
        """The register of ``slot`` when it needs no instruction of the group (operand or constant), else None."""
        if slot in self.loaded:
            return self.loaded[slot], False
        if slot in self.constant_slots:
            reg = self._alloc()
            self.code.append((CONST, reg, self._constant(self.constant_slots[slot]), 0))
            return reg, True
        if self.producer.get(slot) not in self.members:
            reg = self._alloc()
            self.loaded[slot] = reg
            self.code.append((LOAD, reg, len(self.operands), 0))
            self.operands.append(slot)
            return reg, False
        return None

    def _sources(self, slot: int) -> tuple[FusedForm, list[int]]:
        """The fused form computing ``slot`` and the slots it reads, in evaluation order."""
        step = self.steps[self.producer[slot]]
        ins, opdef = step.in_slots, get_op(step.node.op)
        form = opdef.fused
        if form.code < FIRST_BINARY:
            return form, [ins[0]]
        special = (opdef.fused_powers or {}).get(self.constant_slots.get(ins[1]))
        if special is not None:  # x ** 2, x ** 3: a unary form of the constant exponent
            return special, [ins[0]]
        return form, [ins[0]] if ins[1] == ins[0] else [ins[0], ins[1]]

    def emit(self, root: int) -> tuple[int, bool]:
        """Emits code computing ``root``; returns its register and whether it is a temporary.

        A depth-first walk with an explicit stack, so chains of any length compile (no recursion).
        """
        values: list[tuple[int, bool]] = []  # (register, temporary) of the walked sources
        work: list[tuple[int, bool]] = [(root, False)]  # (slot, its sources are already on ``values``)
        while work:
            slot, ready = work.pop()
            if not ready:
                leaf = self._leaf(slot)
                if leaf is not None:
                    values.append(leaf)
                    continue
                work.append((slot, True))
                work.extend((src, False) for src in reversed(self._sources(slot)[1]))
                continue
            form, srcs = self._sources(slot)
            code = form.code
            if len(srcs) == 1:
                a, ta = values.pop()
                b, tb = (a, ta) if code >= FIRST_BINARY else (0, False)
            else:
                b, tb = values.pop()
                a, ta = values.pop()
            # A fresh destination: a loop writing over its own source fails LLVM's overlap check and
            # runs scalar (bench_fusion.py --ops), so sources are released only after it is taken.
            reg = self._alloc()
            self._release(a, ta)
            if b != a:
                self._release(b, tb)
            self.code.append((code, reg, a, b))
            self.costs.append(form.cost)
            values.append((reg, True))
        return values[-1]


def _worth_fusing(costs: Sequence[tuple[float, float, float, float]], dtype: np.dtype) -> bool:
    """Whether the per-element costs the ops declare say one kernel pass beats the NumPy steps.

    A lone op must be at least three times as fast in the kernel: fusion saves it no memory pass.
    """
    col = 0 if dtype == np.float32 else 2
    fused = sum(cost[col] for cost in costs)
    numpy = sum(cost[col + 1] for cost in costs)
    return fused < numpy if len(costs) > 1 else 3 * fused < numpy


def fuse_plan(plan: Any) -> Any:
    """Returns ``plan`` with its profitable elementwise chains fused, or ``plan`` itself if none is.

    The returned plan keeps the original in ``unfused`` (used when every intermediate is wanted).
    """
    steps = plan.steps
    producer: dict[int, int] = {}
    readers: dict[int, set[int]] = {}
    stateful_upto = [0]
    for i, step in enumerate(steps):
        for s in step.out_slots:
            producer[s] = i
        for s in step.in_slots:
            readers.setdefault(s, set()).add(i)
        stateful_upto.append(stateful_upto[-1] + bool(get_op(step.node.op).stateful))
    keep = set(plan.fetch_slots) | set(plan.feed_slots)
    fusible = [_is_fusible(step) for step in steps]
    constants = {}
    for step in steps:
        value = _scalar_constant(step)
        if value is not None and step.out_slots[0] not in keep:
            constants[step.out_slots[0]] = value
    taken: set[int] = set()
    chains: dict[int, tuple[FusedChain, set[int]]] = {}
    for sink in reversed(range(len(steps))):
        if not fusible[sink] or sink in taken:
            continue
        taken.add(sink)
        members = _grow(steps, sink, producer, readers, keep, fusible, taken, stateful_upto)
        chain = _make_chain(steps, sink, members, producer, constants)
        if chain is not None:
            taken |= members
            chains[sink] = (chain, members)
    if not chains:
        return plan
    return _rewrite(plan, chains, readers, constants)


def _grow(steps, sink, producer, readers, keep, fusible, taken, stateful_upto) -> set[int]:
    """The steps feeding ``sink`` only, transitively, that can run inside its kernel."""
    members = {sink}
    stack = [sink]
    while stack:
        k = stack.pop()
        for s in steps[k].in_slots:
            p = producer.get(s)
            if (p is None or p in members or p in taken or not fusible[p] or s in keep
                    or readers[s] != {k} or stateful_upto[sink] != stateful_upto[p]):
                continue  # a stateful step in between may change what p reads
            members.add(p)
            stack.append(p)
    return members


def _make_chain(steps, sink, members, producer, constants) -> FusedChain | None:
    out = steps[sink].node.outputs[0]
    if out.shape is not None and all(d is not None for d in out.shape) and math.prod(out.shape) < MIN_ELEMENTS:
        return None
    used_constants = {s: constants[s] for k in members for s in steps[k].in_slots if s in constants}
    builder = _ProgramBuilder(steps, producer, members, used_constants)
    builder.emit(steps[sink].out_slots[0])
    if len(builder.operands) > MAX_OPERANDS or not builder.operands:
        return None
    tensors = {s: t for k in members for s, t in zip(steps[k].in_slots, steps[k].node.inputs)}
    if not all(_may_fit(tensors[s].shape, out.shape) for s in builder.operands):
        return None
    dtype = np.dtype(out.dtype.np_dtype)
    if not _worth_fusing(builder.costs, dtype):
        return None
    ranks = [len(tensors[s].shape) if tensors[s].shape is not None else 0 for s in builder.operands]
    return FusedChain(
        program=np.array(builder.code, dtype=np.int32),
        constants=np.array(builder.constants, dtype=dtype),
        dtype=dtype,
        steps=[steps[k] for k in sorted(members)],
        in_slots=tuple(builder.operands),
        constant_slots=used_constants,
        primary=ranks.index(max(ranks)),
    )


def _rewrite(plan, chains, readers, constants):
    fused_members = set().union(*(members for _, members in chains.values()))
    # A folded constant's step goes when every reader now runs inside a kernel.
    dropped = {i for i, step in enumerate(plan.steps)
               if step.out_slots and step.out_slots[0] in constants and readers.get(step.out_slots[0], set()) <= fused_members}
    new_steps = []
    for i, step in enumerate(plan.steps):
        if i in chains:
            chain, members = chains[i]
            internal = {s for k in members for s in plan.steps[k].out_slots} - set(step.out_slots)
            frees = tuple(dict.fromkeys(
                s for k in sorted(members) for s in plan.steps[k].frees if s not in internal))
            new_steps.append(PlanStep(chain, {}, chain.in_slots, step.out_slots, frees, step.node))
        elif i not in fused_members and i not in dropped:
            new_steps.append(step)
    fused = type(plan)(new_steps, plan.num_slots, plan.feed_slots, plan.fetch_slots, plan.copy_slots)
    fused.unfused = plan
    return fused
