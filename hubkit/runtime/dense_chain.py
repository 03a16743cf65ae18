"""A plan that is a chain of fused dense layers, run without the interpreter at 1-2 rows and from 9 rows.

A module such as an MLP compiles (after :mod:`hubkit.runtime.optimize`) to a plan whose every step
is a fused ``MatMul`` + bias + activation (:class:`~hubkit.runtime.optimize.FusedLinear`), each
reading the previous one's output. At one or two rows each layer is a matrix-vector product of a
few tens of microseconds, and the plan's interpreter, the fused steps' checks and the epilogue's
dispatch added about as much again as the products' own time (the third session's figures: 12-20 us
above the bare GEMMs for MLP 784-512-512-10). :class:`DenseChain` runs such a plan as one loop:

- the products are ``np.dot(h, w)``: for a C-contiguous ``h`` the same BLAS call, and the same
  bits, as the plan's ``np.matmul`` (tested), with less call overhead (MLP 784-512-512-10 at batch
  1: the three ``np.dot`` took 0.97-0.98x the time of the three ``np.matmul(..., out=)``);
- the bias and activation are the fused steps' own epilogue kernel (:mod:`hubkit.ops._epilogue`),
  called directly, in place on each fresh product;
- the weights, biases and the input's dtype and width are checked when a variable's array, the
  dtype or the width changes; a call only checks that each variable still holds the array checked.

Buffers kept per chain for the intermediate products (with a lock, so that concurrent calls never
share them) were measured and not kept: 0.9 us slower per call than fresh arrays (NumPy's small
allocations are cached; the lock is not free). Every call allocates its own arrays, so concurrent
calls from several threads need no lock.

With two or more BLAS threads (:func:`hubkit.ops._packed_gemm.blas_threads`: hubkit takes the BLAS's
thread count as its own), a float32 chain of at least :data:`MIN_COLS_WORK` weights runs at 1-2 rows split by
columns between the calling thread and a native worker (:mod:`hubkit.ops._chain_cols`,
:mod:`hubkit.ops._worker_pool`): OpenBLAS runs a GEMV of the MLP's size on one thread whatever its thread count,
and two cores stream the weights from L3 faster than one. MLP 784-512-512-10 at batch 1, 2 threads: 37.6 against
49.0 us for ``np.dot`` (0.77x). Each output is then the float32 sum of its products in the order of the depth
(what a loop over the depth in NumPy gives, tested), not ``np.dot``'s order; with one BLAS thread nothing
changes. The weights are kept in the split's own blocks (:class:`~hubkit.ops._chain_cols.ColumnBlocks`, made on
the first such call, again after a write, and not while they are written between every two calls). A call that
finds the worker busy with another thread's call runs unsplit.

From 9 rows (:data:`MIN_TILE_ROWS`) of a float32 input, on a host whose tile GEMM the fused steps run
(:mod:`hubkit.ops._packed_gemm`), the layers the steps would give the tile kernel with the BLAS's thread count
(:func:`hubkit.ops._packed_gemm.takes`) run in one compiled call per run of such layers
(:func:`hubkit.ops._packed_gemm.run_chain`), the others as ``np.dot`` and the epilogue, as above. The same kernel
calls as the steps, so the same bits; with two or more threads the worker runs the second half of the rows
through every layer of a run, each row computed as by the steps' own halves. Three prepared steps of the MLP
784-512-512-10 at 64 rows cost 25-30 us more than the one call (their checks, their dispatches, the
interpreter). Each run keeps its table of the packed forms (whatever the row count) while the weights are the
arrays checked, at the same versions; weights written since they were packed (training) leave the call to the
plan, whose fused steps decide when to pack them again.

Anything else (3-8 rows, which the small-batch kernel takes, a non-contiguous input, a variable not
initialised yet, weights that do not fit or not packed yet, the worker busy with another thread's call on two
threads) makes :meth:`DenseChain.__call__` return None, and the caller runs the plan, which computes the same
values or raises its usual error.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from hubkit.ops import _chain_cols, _numba, _packed_gemm, _worker_pool
from hubkit.ops._epilogue import NONE, bias_act_, bias_act_kernel
from hubkit.ops._packed_gemm import PackedWeights, blas_threads
from hubkit.ops._small_linear import MIN_ROWS_ONE_THREAD

__all__ = ["DenseChain", "dense_chain"]

MIN_TILE_ROWS = _packed_gemm.MIN_ROWS
"""Fewest rows of a float32 input whose tile-GEMM layers the chain runs in one call (3-8 rows: the plan's small-batch
kernel)."""

MIN_COLS_WORK = 192 * 1024
"""Fewest weights (all layers') of a chain split by columns at 1-2 rows. One row, 2 threads, Zen 3, split against
``np.dot`` (minimum of three rounds): 384x512 0.95x, 512x512 0.96x, 256x1024 0.95x, 1024x256 0.85x, 784x512 0.81x;
at 131,072 weights 0.95-1.10x (256x512, 512-256-10, 128x1024, 1024x128), below it 1.30-1.52x (256-256-10,
128-128-128, 64-64-64)."""

_F32 = np.dtype(np.float32)
_DTYPES = (_F32, np.dtype(np.float64))  # the epilogue kernel's
_NO_BIAS = {dt: np.empty(0, dt) for dt in _DTYPES}


class _Const:
    """A constant weight or bias, read like a variable (``_value``)."""

    __slots__ = ("_value",)
    _version = 0  # never written

    def __init__(self, value: Any) -> None:
        self._value = value


_NO_BIAS_SOURCE = _Const(np.empty(0, np.float64))  # a layer without bias (the epilogue gets an empty bias)
_VALUE = operator.attrgetter("_value")  # a Variable's current array (None until it is initialised)
_VERSION = operator.attrgetter("_version")  # its writes so far (a constant's holder: always 0)
_IS = operator.is_


def _numpy_epilogue(out: np.ndarray, bias: np.ndarray, act: int) -> None:
    """The epilogue with Numba off (``bias`` empty for a layer without bias, as the kernel takes it)."""
    bias_act_(out, bias if bias.shape[0] else None, act)


class _Checked:
    """What the last check proved: these arrays fit an input of this dtype and width; the layers to run."""

    __slots__ = ("arrays", "dtype", "layers", "width", "work")

    def __init__(self, dtype: np.dtype, arrays: tuple[Any, ...], layers: list[tuple[Any, Any, int | None]]) -> None:
        self.dtype = dtype
        self.arrays = arrays  # the sources' arrays when checked: the same objects unchanged since
        self.width = layers[0][0].shape[0]
        self.layers = tuple(layers)  # (w, bias, act) of each layer
        self.work = sum(w.size for w, _, _ in layers)  # multiply-adds a row


class _Prepared:
    """What layers ``start .. end - 1`` of a chain are prepared as from their weights' derived forms, kept while the
    weights are the arrays a check proved at the same versions (their forms are then the same), made again when
    they change."""

    __slots__ = ("_kept", "end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self._kept: tuple[Any, ...] = (None, (), None)  # (checked, versions, what was built)

    def get(self, checked: _Checked, sources: tuple[Any, ...], form: Callable[[int, np.ndarray], Any],
            build: Callable[[list[tuple[Any, int, np.ndarray | None, int]]], Any]) -> Any:
        """``build`` of the layers ``(form(i, w), n, bias or None, act)``; None, and nothing kept, when a form or
        ``build`` gives None."""
        versions = tuple(map(_VERSION, sources[2 * self.start : 2 * self.end : 2]))
        kept = self._kept
        if kept[0] is checked and kept[1] == versions:
            return kept[2]
        layers = checked.layers[self.start : self.end]
        forms = [form(i, w) for i, (w, _, _) in enumerate(layers, self.start)]
        built = None if any(f is None for f in forms) else build([
            (f, w.shape[1], b if b.shape[0] else None, NONE if act is None else act)
            for f, (w, b, act) in zip(forms, layers, strict=True)
        ])
        self._kept = (checked, versions, built) if built is not None else (None, (), None)  # (old forms not kept)
        return built


class _TileRun(_Prepared):
    """Layers ``start .. end - 1`` of a chain, run on the tile kernel in one call, and the table of the packed forms
    it last ran them with (made again when the weights change)."""

    __slots__ = ()

    def table(self, checked: _Checked, packed: tuple[Any, ...], sources: tuple[Any, ...]) -> _packed_gemm.ChainTable | None:
        """The table for the current weights' packed forms (:meth:`PackedWeights.ready`: None for weights written
        since they were packed, which the fused steps pack again or not)."""
        return self.get(checked, sources, lambda i, w: packed[i].ready(w), _packed_gemm.chain_table)  # type: ignore[no-any-return]


class DenseChain:
    """Runs a plan made only of fused dense layers on 1-2 rows, and its tile-GEMM layers from 9 rows (see the module
    docstring).

    Args:
        sources: where each layer's weights and bias are read: two per layer, a ``Variable`` or a
            constant's holder (:data:`_NO_BIAS_SOURCE` for a layer without bias).
        acts: each layer's epilogue activation code, or None for a bare ``MatMul`` (no epilogue).
    """

    __slots__ = ("_acts", "_blocks", "_checked", "_cols", "_packed", "_rows_groups", "_runs", "_sources")

    def __init__(self, sources: list[Any], acts: list[int | None], packed: list[PackedWeights | None] | None = None) -> None:
        self._sources = tuple(sources)
        self._acts = tuple(acts)
        # the fused steps' packed weights (None for a bare MatMul), shared with them: from MIN_TILE_ROWS rows on
        self._packed: tuple[PackedWeights | None, ...] | None = (
            None if packed is None or all(p is None for p in packed) else tuple(packed)
        )
        self._rows_groups: tuple[tuple[int, int], _Checked, tuple[Any, ...] | None] | None = None
        self._runs: dict[tuple[int, int], _TileRun] = {}  # by layer range: their tables do not depend on the rows
        self._checked: _Checked | None = None
        # at 1-2 rows on two threads: each layer's column blocks (made on the first such call, remade when its
        # weights change), and the column split's call prepared for them
        self._blocks = tuple(_chain_cols.ColumnBlocks(w if type(w) is not _Const else None) for w in self._sources[::2])
        self._cols = _Prepared(0, len(self._acts))

    def _check(self, dtype: np.dtype, arrays: tuple[Any, ...], width: int) -> _Checked | None:
        """The layers to run, if they fit: 2-D C-contiguous weights and 1-D biases of ``dtype``, chained shapes."""
        if dtype not in _DTYPES:
            return None
        layers = []
        for i, act in enumerate(self._acts):
            w, b = arrays[2 * i], arrays[2 * i + 1]
            if (
                type(w) is not np.ndarray
                or w.dtype != dtype
                or w.ndim != 2
                or w.shape[0] != width
                or not w.flags.c_contiguous
            ):
                return None
            width = w.shape[1]
            if b is _NO_BIAS_SOURCE._value:
                b = _NO_BIAS[dtype]
            elif type(b) is not np.ndarray or b.dtype != dtype or b.shape != (width,) or not b.flags.c_contiguous:
                return None
            layers.append((w, b, act))
        return _Checked(dtype, arrays, layers)

    def _recheck(self, x: np.ndarray) -> _Checked | None:
        """Checks the sources' current arrays against ``x`` (remembered when they fit)."""
        checked = self._check(x.dtype, tuple(map(_VALUE, self._sources)), x.shape[1])
        if checked is not None:
            self._checked = checked
        return checked

    def __call__(self, x: Any) -> np.ndarray | None:
        """The chain's output for the rows ``x``, or None when the plan must run instead."""
        if type(x) is not np.ndarray or x.ndim != 2 or not x.flags.c_contiguous:
            return None  # np.matmul's loop for strided operands is not BLAS: its sums differ from np.dot's
        rows = x.shape[0]
        if not 0 < rows < MIN_ROWS_ONE_THREAD and (rows < MIN_TILE_ROWS or x.dtype != _F32 or self._packed is None):
            return None
        checked = self._checked
        if (
            checked is None
            or checked.dtype != x.dtype
            or checked.width != x.shape[1]
            or not all(map(_IS, map(_VALUE, self._sources), checked.arrays))
        ):
            checked = self._recheck(x)
            if checked is None:
                return None
        if rows >= MIN_TILE_ROWS:
            return self._run_tiles(x, checked)
        if (
            rows <= _chain_cols.MAX_ROWS
            and checked.work >= MIN_COLS_WORK
            and x.dtype == _F32
            and blas_threads() >= 2
            and _chain_cols.available()
        ):
            out = self._run_cols(x, checked)
            if out is not None:
                return out
        kernel = _numba.kernel(bias_act_kernel)
        epilogue = _numpy_epilogue if kernel is None else kernel
        h = x
        for w, b, act in checked.layers:
            h = np.dot(h, w)
            if act is not None:
                epilogue(h, b, act)
        return h

    def _groups(self, rows: int, checked: _Checked, threads: int) -> tuple[Any, ...] | None:
        """For ``rows`` rows and ``threads`` BLAS threads: the layers in runs, a :class:`_TileRun` for layers the
        fused steps run on the tile kernel (:func:`hubkit.ops._packed_gemm.takes`), the index of each layer they
        leave to NumPy; None when no layer takes the tile. Remembered for the last row and thread count."""
        known = self._rows_groups
        if known is not None and known[0] == (rows, threads) and known[1] is checked:
            return known[2]
        takes = _packed_gemm.takes
        tiled = [
            packed is not None and takes(rows, w.shape[0], w.shape[1], threads)
            for (w, _, _), packed in zip(checked.layers, self._packed or (), strict=True)
        ]
        groups: list[Any] = []
        start = 0
        while start < len(tiled):
            end = start + 1
            if tiled[start]:
                while end < len(tiled) and tiled[end]:
                    end += 1
                run = self._runs.get((start, end))
                if run is None:  # (a race makes two: the one kept is as good as the other)
                    run = self._runs[start, end] = _TileRun(start, end)
                groups.append(run)
            else:
                groups.append(start)
            start = end
        result = tuple(groups) if any(tiled) else None
        self._rows_groups = ((rows, threads), checked, result)
        return result

    def _run_tiles(self, x: np.ndarray, checked: _Checked) -> np.ndarray | None:
        """The chain at :data:`MIN_TILE_ROWS` rows or more: each run of layers the fused steps would give the tile
        kernel with this many BLAS threads in one compiled call (:func:`hubkit.ops._packed_gemm.run_chain`, the
        same calls, so the same bits), the others as ``np.dot`` and the epilogue."""
        threads = blas_threads()
        if threads < 1 or not _packed_gemm._tile_host() or not _packed_gemm.available():
            return None
        groups = self._groups(x.shape[0], checked, min(threads, 2))
        if groups is None:
            return None
        packed: tuple[Any, ...] = self._packed or ()  # (groups is None without it)
        if len(groups) == 1:  # every layer on the tile kernel
            table = groups[0].table(checked, packed, self._sources)
            return None if table is None else _packed_gemm.run_chain(x, table, threads)
        tables = []
        for run in groups:  # every run's table first: a missing packed form leaves it all to the plan
            if type(run) is _TileRun:
                table = run.table(checked, packed, self._sources)
                if table is None:
                    return None  # written weights: the fused steps decide whether to pack them again
                tables.append(table)
        kernel = _numba.kernel(bias_act_kernel)
        epilogue = _numpy_epilogue if kernel is None else kernel
        next_table = iter(tables)
        h = x
        for run in groups:
            if type(run) is _TileRun:
                out = _packed_gemm.run_chain(h, next(next_table), threads)
                if out is None:
                    return None
                h = out
            else:
                w, b, act = checked.layers[run]
                h = np.dot(h, w)
                if act is not None:
                    epilogue(h, b, act)
        return h

    def _run_cols(self, x: np.ndarray, checked: _Checked) -> np.ndarray | None:
        """The chain split by columns between this thread and the pool's worker (:mod:`hubkit.ops._chain_cols`);
        None when weights were written since the call before (training: their blocks are not made for each call)
        or another thread's call has the worker."""
        blocks = self._blocks
        call = self._cols.get(checked, self._sources, lambda i, w: blocks[i].get(w, settled=True), _chain_cols.prepare)
        if call is None:
            return None
        pool = _worker_pool.get_pool()
        if not pool.acquire():  # another thread's call has the worker: this one runs on one thread
            return None
        try:
            return _chain_cols.run(x, call, pool)
        finally:
            pool.release()


def dense_chain(plan: Any) -> DenseChain | None:
    """A :class:`DenseChain` for ``plan`` (compiled, leaves preloaded), or None when it is not such a chain.

    The plan must take one fed array and return one array, and its steps must be fused ``MatMul``
    layers (no transposes) each reading the previous one's output (the first reads the feed), with
    weights and biases read from variables or constants.
    """
    from hubkit.ops.registry import get_op
    from hubkit.runtime.optimize import FusedLinear
    from hubkit.runtime.variables import Variable

    if len(plan.feed_slots) != 1 or len(plan.fetch_slots) != 1 or not plan.steps:
        return None
    variables = dict(plan.var_reads)
    fetch = plan.fetch_slots[0]
    if fetch in plan.copy_slots or fetch < 0:
        return None

    def leaf(slot: int) -> Any:
        if slot in variables:
            return variables[slot] if type(variables[slot]) is Variable else None
        value = plan.template[slot]
        return _Const(value) if isinstance(value, np.ndarray) else None

    current = plan.feed_slots[0]
    sources: list[Any] = []
    acts: list[int | None] = []
    packed: list[PackedWeights | None] = []
    matmul = get_op("MatMul").forward
    for step in plan.steps:
        fn, kwargs, ins, outs = step[0], step[1], step[2], step[3]
        if len(outs) != 1 or not ins or ins[0] != current:
            return None
        if fn is matmul and len(ins) == 2 and not kwargs.get("transpose_a") and not kwargs.get("transpose_b"):
            has_bias, act = False, None  # a MatMul alone (no bias, no activation to fuse with)
        elif (
            type(fn) is FusedLinear
            and fn.kind == "MatMul"
            and not fn.transposes
            and fn.pool is None
            and not kwargs
            and len(ins) == (3 if fn.has_bias else 2)
        ):
            has_bias, act = fn.has_bias, fn.act
        else:
            return None
        w = leaf(ins[1])
        b = leaf(ins[2]) if has_bias else _NO_BIAS_SOURCE
        if w is None or b is None:
            return None
        sources += (w, b)
        acts.append(act)
        packed.append(fn.packed if type(fn) is FusedLinear and not fn.transposes else None)
        current = outs[0]
    if current != fetch:
        return None
    return DenseChain(sources, acts, packed)
