"""Plan rewrites for convolutional inference: constant folding, batch-norm folding, fused NCHW convolutions.

Called by :func:`hubkit.runtime.optimize.optimize_plan` on plans with no stateful step (a plan that
trains, or updates any variable, is left as it is):

- **Constant folding.** Pure steps (reshapes, casts, arithmetic, ``Rsqrt``...) whose inputs are all
  constants and variables, directly or through other such steps, move into one :class:`FoldedConstants`
  step at the start of the plan. It computes them on its first run and returns the same (read-only)
  arrays afterwards, until a variable it reads is assigned or updated (each variable counts its
  writes through ``assign``, ``assign_add``/``assign_sub``, optimizers and checkpoint restores): then it
  computes them again. Writing into the array ``Variable.value`` returns bypasses that count; compile
  with ``HUBKIT_OPTIMIZE=0`` to do so. Exact: the same kernels on the same values.
- **ONNX convolution chains.** ``OnnxConv`` (2-D, group 1) followed by per-channel ``Add``/``Sub``/``Mul``
  by folded constants (an imported ``BatchNormalization`` is ``(x - mean) * (scale / sqrt(var + eps))
  + bias``; a bias ``Add``), then optionally a residual ``Add`` of a tensor of the output's shape, then
  optionally ``Relu`` (or ``Maximum(., 0)``, and ``Minimum(., 6)`` after it: ``Clip(0, 6)``), become one
  :class:`FusedOnnxConv` step (:func:`hubkit.ops.conv_nchw.conv_nchw_fused`). The per-channel affine
  map is folded into the filter and bias by the fold step (in float64, rounded once to the filter's
  dtype), so it is not bit-exact: the tests check it within a few float32 ulps of the products' scale.
  Without a folded affine map the arithmetic is the unoptimised plan's, up to the GEMM's blocking.
- **TF1 convolution chains.** ``TfConv2D`` (NHWC, not depthwise), then ``BiasAdd``, inference-mode
  ``TfFusedBatchNorm`` (its statistics outputs unread) or per-channel ``Mul``/``Add``/``Sub``, then
  ``Relu``/``Relu6``, then a max ``TfPool``, become one :class:`FusedTfConv` step on the kernels of
  hubkit's own fused ``Conv2D`` (:mod:`hubkit.ops.conv_fused`: 1x1 as a GEMM, Winograd, blocked
  im2col with the epilogue per block, the pool per chunk of images); the bias and batch norm are
  folded into the filter as above.
- **Concatenated convolutions.** A ``Concat`` along the channels of rank-4 values whose inputs include
  fused convolutions read by nothing else becomes one :class:`ConcatConvs` step: those convolutions
  run at the ``Concat``'s place and write straight into their channel slice of its output (Inception
  and SqueezeNet branches, DenseNet's new features), so no copy of them is made. Exact.
- **Per-channel affine chains** left over (a pre-activation batch norm, as in DenseNet) and an
  activation after them become one :class:`ChannelAffine` step (one Numba pass, ``x * scale + shift``).

Intermediates of a chain must have no other reader and not be fetched, as for the other fusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.ops.conv_fused import WinogradFilters, conv2d_bias_act, conv2d_bias_act_max_pool
from hubkit.ops.conv_nchw import PreparedConv, channel_affine_act, conv_nchw_fused, outputs
from hubkit.ops.onnx_conv import check_window_sizes, window_geometry

__all__ = ["ChannelAffine", "ConcatConvs", "FoldedConstants", "FusedOnnxConv", "FusedTfConv", "rewrite_concat",
           "rewrite_conv_plan"]

# Pure, deterministic ops whose values depend only on their inputs: folded when those are constants.
FOLDABLE_OPS = frozenset({
    "Add", "Sub", "Mul", "RealDiv", "Neg", "Sqrt", "Rsqrt", "Reciprocal", "Square", "Maximum", "Minimum",
    "Cast", "Reshape", "Transpose", "Squeeze", "ExpandDims", "Identity", "StopGradient", "OnnxUnsqueeze",
    "OnnxSqueeze",
})
_LEAVES = ("Const", "Variable")


class FoldedConstants:
    """One step computing every folded value of a plan, again only when a variable it reads changed.

    Attributes:
        label: ``"Fold(N steps)"``, what plan descriptions show.
    """

    def __init__(self, program, in_slots: Sequence[int], out_slots: Sequence[int], variables: Sequence[Any]):
        self.program = list(program)  # (fn, kwargs, ins, outs) in plan slots, in order
        self.in_slots = tuple(in_slots)
        self.out_slots = tuple(out_slots)
        self.variables = tuple(variables)  # the Variable objects among the inputs (their writes count)
        self.label = f"Fold({len(self.program)} step{'s' if len(self.program) != 1 else ''})"
        self._cache: tuple[tuple, tuple, Any] | None = None  # (inputs, variable versions, result)

    def __call__(self, *arrays: Any) -> Any:
        versions = tuple(getattr(v, "_version", 0) for v in self.variables)
        cache = self._cache
        if cache is not None and cache[1] == versions and all(a is b for a, b in zip(cache[0], arrays)):
            return cache[2]
        values = dict(zip(self.in_slots, arrays))
        for fn, kwargs, ins, outs in self.program:
            res = fn(*[values[i] for i in ins], **kwargs)
            if len(outs) == 1:
                values[outs[0]] = res
            else:
                values.update(zip(outs, res))
        outs = []
        for s in self.out_slots:
            v = values[s]
            if isinstance(v, np.ndarray) and v.flags.writeable:
                v = v.view()
                v.flags.writeable = False  # shared by every run: a kernel writing into it would fail loudly
            outs.append(v)
        result = outs[0] if len(outs) == 1 else tuple(outs)
        self._cache = (arrays, versions, result)
        return result

    def __repr__(self) -> str:
        return f"FoldedConstants({self.label})"


def _fold_affine(ops, consts, m: int, shift: np.ndarray | None):
    """``(scale, shift)`` in float64 of the per-channel ``Add``/``Sub``/``Mul`` steps ``ops`` applied to ``v + shift``.

    ``ops`` are ``(op, chain value on the left)``, or ``("BN", epsilon)`` taking four constants.
    """
    scale = np.ones(m)
    shift = np.zeros(m) if shift is None else shift.astype(np.float64).reshape(m)
    consts = list(consts)
    for op, left in ops:
        if op == "BN":  # TF FusedBatchNorm, inference: x * mul + (offset - mean * mul), mul = scale / sqrt(var + eps)
            gamma, beta, mean, var = (np.asarray(consts.pop(0), dtype=np.float64).reshape(m) for _ in range(4))
            mul = gamma / np.sqrt(var + left)
            scale, shift = scale * mul, shift * mul + (beta - mean * mul)
            continue
        c = np.broadcast_to(np.asarray(consts.pop(0), dtype=np.float64).reshape(-1), (m,))
        if op == "Add":
            shift = shift + c
        elif op == "Mul":
            scale, shift = scale * c, shift * c
        elif left:  # chain - c
            shift = shift - c
        else:  # c - chain
            scale, shift = -scale, c - shift
    return scale, shift


class _Prepare:
    """Fold-program step: ``PreparedConv`` of a filter, its bias and the per-channel affine ops after it."""

    def __init__(self, has_bias: bool, ops: Sequence[tuple[str, bool]], m: int) -> None:
        self.has_bias = has_bias
        self.ops = tuple(ops)  # (op, chain value on the left) per affine step, in order
        self.m = m

    def __call__(self, w: np.ndarray, *params: np.ndarray) -> PreparedConv:
        bias = params[0] if self.has_bias else None
        if not self.ops:
            return PreparedConv(w, bias)
        scale, shift = _fold_affine(self.ops, params[1:] if self.has_bias else params, self.m, bias)
        w2 = (w.astype(np.float64) * scale.reshape(self.m, *([1] * (w.ndim - 1)))).astype(w.dtype)
        return PreparedConv(w2, shift.astype(w.dtype))


class _PrepareTf:
    """Fold-program step: ``(HWIO filter, bias or None, its Winograd transform's cache)`` of a TF convolution
    with its bias and batch norm folded in (each fold makes a new cache, so it never outlives its filter)."""

    def __init__(self, has_bias: bool, ops: Sequence[tuple[str, Any]], k: int) -> None:
        self.has_bias, self.ops, self.k = has_bias, tuple(ops), k

    def __call__(self, w: np.ndarray, *params: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, WinogradFilters]:
        bias = params[0] if self.has_bias else None
        if not self.ops:
            if bias is None:
                return np.ascontiguousarray(w), None, WinogradFilters()
            bias = np.ascontiguousarray(np.broadcast_to(bias.reshape(-1), (self.k,)), w.dtype)
            return np.ascontiguousarray(w), bias, WinogradFilters()
        scale, shift = _fold_affine(self.ops, params[1:] if self.has_bias else params, self.k, bias)
        return (w.astype(np.float64) * scale).astype(w.dtype), shift.astype(w.dtype), WinogradFilters()


class FusedTfConv:
    """The kernel of a fused TF1 ``Conv2D`` (+ bias, inference batch norm, ReLU/ReLU6, max pool) step, NHWC."""

    __slots__ = ("act", "conv", "label", "nodes", "pool")

    def __init__(self, nodes: Sequence[Any], conv: dict[str, Any], act: int, pool: dict[str, Any] | None) -> None:
        self.nodes = tuple(nodes)
        self.conv = conv  # strides, dilations, padding in hubkit's Conv2D form
        self.act = act
        self.pool = pool  # ksize, strides, padding of a following max pool, or None
        self.label = "+".join(n.op for n in self.nodes)

    def __call__(self, x: np.ndarray, prepared: tuple[np.ndarray, np.ndarray | None, WinogradFilters]) -> np.ndarray:
        w, bias, filters = prepared
        c = self.conv
        if self.pool is None:
            return conv2d_bias_act(x, w, bias, self.act, c["strides"], c["dilations"], c["padding"], filters=filters)
        p = self.pool
        return conv2d_bias_act_max_pool(
            x, w, bias, self.act, c["strides"], c["dilations"], c["padding"], p["ksize"], p["strides"], p["padding"],
            filters,
        )

    def __repr__(self) -> str:
        return f"FusedTfConv({self.label})"


class _PrepareAffine:
    """Fold-program step: ``(scale, shift)`` of a chain of per-channel affine ops, in the values' dtype."""

    def __init__(self, ops: Sequence[tuple[str, bool]], m: int, dtype: np.dtype) -> None:
        self.ops, self.m, self.dtype = tuple(ops), m, dtype

    def __call__(self, *consts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale, shift = _fold_affine(self.ops, consts, self.m, None)
        return scale.astype(self.dtype), shift.astype(self.dtype)


class ChannelAffine:
    """The kernel of a fused per-channel affine chain (an imported batch norm) and activation on NCHW values."""

    __slots__ = ("act", "label", "nodes")

    def __init__(self, nodes: Sequence[Any], act: int) -> None:
        self.nodes = tuple(nodes)
        self.act = act
        self.label = "+".join(n.op for n in self.nodes)

    def __call__(self, x: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return channel_affine_act(x, params[0], params[1], self.act)

    def __repr__(self) -> str:
        return f"ChannelAffine({self.label})"


class FusedOnnxConv:
    """The kernel of a fused ONNX convolution step: ``act(conv(x) + bias + residual)``.

    Attributes:
        nodes: the graph nodes the step stands for, in order.
        label: ``"OnnxConv+Sub+Mul+Add+Relu"``-style name of the fused chain.
    """

    __slots__ = ("act", "attrs", "label", "nodes")

    def __init__(self, nodes: Sequence[Any], attrs: dict[str, Any], act: int) -> None:
        self.nodes = tuple(nodes)
        self.attrs = attrs
        self.act = act
        self.label = "+".join(n.op for n in self.nodes)

    def __call__(
        self, x: np.ndarray, prep: PreparedConv, res: np.ndarray | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The fused chain's value; written into ``out`` (see :func:`conv_nchw_fused`) when given."""
        a = self.attrs
        if x.ndim != 4:
            raise ValueError(f"a 2-D convolution needs a 4-D input, got shape {x.shape}.")
        out_hw, begin, end = window_geometry(
            x.shape[2:], prep.kernel, a["strides"], a["dilations"], a["pads"], a.get("auto_pad", "NOTSET")
        )
        geometry = (tuple(a["strides"]), tuple(a["dilations"]), begin, end, out_hw)
        m = prep.w2.shape[0]
        check_window_sizes(x.shape, out_hw, begin, end, m, prep.w2.shape[1] // max(1, x.shape[1]))
        if res is not None and res.shape != (x.shape[0], m, *out_hw):  # a broadcasting residual: as the ops do it
            y = _act(conv_nchw_fused(x, prep, None, 0, *geometry) + res, self.act)
            if out is None:
                return y
            out[...] = y
            return out
        return conv_nchw_fused(x, prep, res, self.act, *geometry, out=out)

    def result_shape(self, x: np.ndarray, prep: PreparedConv) -> tuple[int, ...] | None:
        """The output's shape for input ``x`` (None when ``x`` is not 4-D)."""
        if x.ndim != 4:
            return None
        a = self.attrs
        out_hw, _, _ = window_geometry(
            x.shape[2:], prep.kernel, a["strides"], a["dilations"], a["pads"], a.get("auto_pad", "NOTSET")
        )
        return (x.shape[0], prep.w2.shape[0], *out_hw)

    def __repr__(self) -> str:
        return f"FusedOnnxConv({self.label})"


class ConcatConvs:
    """A channel ``Concat`` of NCHW values whose fused-convolution inputs write into their slice of its output.

    ``parts`` are ``(FusedOnnxConv, 2)`` for a convolution run here on its ``(x, prepared)`` arguments,
    or ``(None, 1)`` for a value copied in. The convolutions run when the ``Concat`` would have, in
    part order; values that do not fit (another rank or dtype, or batch and map sizes that differ) go
    the way the ``Concat`` op goes (each part computed, then ``concat_fn``). Exact: the same kernels.
    """

    __slots__ = ("concat_fn", "concat_kwargs", "label", "nodes", "parts")

    def __init__(self, parts: Sequence[tuple[Any, int]], nodes: Sequence[Any], concat_fn, concat_kwargs) -> None:
        self.parts = tuple(parts)
        self.nodes = tuple(nodes)
        self.concat_fn = concat_fn
        self.concat_kwargs = dict(concat_kwargs)
        inner = ", ".join("copy" if fn is None else fn.label for fn, _ in self.parts)
        self.label = f"Concat({inner})"

    def __call__(self, *args: Any) -> np.ndarray:
        groups, shapes, dtypes = concat_parts(self.parts, args)
        first = shapes[0]
        if first is None or any(
            sh is None or len(sh) != 4 or sh[0] != first[0] or sh[2:] != first[2:] or dt != dtypes[0]
            for sh, dt in zip(shapes, dtypes)
        ):
            values = [g[0] if fn is None else fn(*g) for (fn, _), g in zip(self.parts, groups)]
            return self.concat_fn(*values, **self.concat_kwargs)
        out: Any = outputs.empty((first[0], sum(sh[1] for sh in shapes), *first[2:]), dtypes[0])
        c0 = 0
        for (fn, _), g, sh in zip(self.parts, groups, shapes):
            dst = out[:, c0 : c0 + sh[1]]
            if fn is None:
                dst[...] = g[0]
            else:
                fn(g[0], g[1], out=dst)
            c0 += sh[1]
        return out

    def __repr__(self) -> str:
        return f"ConcatConvs({self.label})"


def concat_parts(parts: Sequence[tuple[Any, int]], args: Sequence[Any]) -> tuple[list, list, list]:
    """A concatenation step's arguments grouped by part, with each part's result shape and dtype (None when
    not an array): a convolution's from its ``result_shape``, a copied value's its own."""
    groups = []
    k = 0
    for _, count in parts:
        groups.append(tuple(args[k : k + count]))
        k += count
    shapes: list[Any] = []
    dtypes: list[Any] = []
    for (fn, _), g in zip(parts, groups):
        if fn is None:
            v = g[0]
            shapes.append(v.shape if isinstance(v, np.ndarray) else None)
            dtypes.append(v.dtype if isinstance(v, np.ndarray) else None)
        else:
            shapes.append(fn.result_shape(g[0], g[1]) if isinstance(g[0], np.ndarray) else None)
            dtypes.append(g[1].w2.dtype)
    return groups, shapes, dtypes


def rewrite_concat(steps: list, keep: set[int]):
    """``Concat`` steps along the channel axis of rank-4 values whose inputs include fused convolutions (no
    residual) read by nothing else become :class:`ConcatConvs` steps; the convolutions' own steps go.

    Returns:
        (new steps, number of rewrites).
    """
    producer: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        for s in step[3]:
            producer[s] = i
        for s in step[2]:
            readers.setdefault(s, []).append(i)
    replaced: dict[int, tuple] = {}
    taken: set[int] = set()
    for i, (fn, kwargs, ins, outs, node) in enumerate(steps):
        if node.op != "Concat" or node.control_inputs or len(outs) != 1 or len(ins) < 2:
            continue
        if any(t.shape is None or len(t.shape) != 4 for t in node.inputs) or int(kwargs.get("axis", 0)) % 4 != 1:
            continue
        parts: list[tuple[Any, int]] = []
        flat: list[int] = []
        convs: list[int] = []
        for s in ins:
            j = producer.get(s)
            if (
                j is not None and j not in taken and isinstance(steps[j][0], FusedOnnxConv) and len(steps[j][2]) == 2
                and readers.get(s) == [i] and s not in keep and ins.count(s) == 1
            ):
                parts.append((steps[j][0], 2))
                flat.extend(steps[j][2])
                convs.append(j)
            else:
                parts.append((None, 1))
                flat.append(s)
        if not convs:
            continue
        taken.update(convs)
        nodes = [n for j in convs for n in steps[j][0].nodes] + [node]
        replaced[i] = (ConcatConvs(parts, nodes, fn, kwargs), {}, tuple(flat), outs, node)
    if not replaced:
        return steps, 0
    new = [replaced.get(i, step) for i, step in enumerate(steps) if i not in taken]
    return new, len(replaced)


def _act(y: np.ndarray, act: int) -> np.ndarray:
    if act == 1:
        np.maximum(y, 0, out=y)
    elif act == 2:
        np.clip(y, 0, 6, out=y)
    return y


# -- the pass -------------------------------------------------------------------------------------------
def rewrite_conv_plan(steps: list, keep: set[int], num_slots: int, stateful: Sequence[bool]):
    """Constant folding and fused ONNX convolutions over ``steps`` (5-tuples: fn, kwargs, ins, outs, node).

    Returns:
        (new steps, new number of slots, number of rewrites).
    """
    if any(stateful):
        return steps, num_slots, 0
    foldable: set[int] = set()
    variables: dict[int, Any] = {}
    consts: dict[int, Any] = {}
    fold_idx: list[int] = []
    for i, (_, kwargs, ins, outs, node) in enumerate(steps):
        if node.control_inputs:
            continue
        if node.op in _LEAVES and len(outs) == 1:
            foldable.add(outs[0])
            if node.op == "Variable":
                variables[outs[0]] = kwargs["variable"]
            else:
                consts[outs[0]] = kwargs["value"]
        elif node.op in FOLDABLE_OPS and ins and all(s in foldable for s in ins) and not (set(outs) & keep):
            foldable.update(outs)
            fold_idx.append(i)
    readers: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        for s in step[2]:
            readers.setdefault(s, []).append(i)

    replaced: dict[int, tuple] = {}
    members: set[int] = set()

    def sole_reader(slot: int) -> int | None:  # a step not already in another fused chain
        r = readers.get(slot, [])
        return r[0] if len(r) == 1 and slot not in keep and r[0] not in members else None

    prepares: list[tuple[Any, tuple[int, ...], int]] = []  # (fn, ins, out slot) added to the fold program
    for i, (_, kwargs, ins, _outs, node) in enumerate(steps):
        chain = _match_chain(steps, i, foldable, consts, sole_reader)
        if chain is None:
            continue
        idx, has_bias, affine, res_slot, act = chain
        m = node.inputs[1].shape[0]
        param_slots = ins[1:2] + (ins[2:3] if has_bias else ()) + tuple(s for _, _, s in affine)
        slot = num_slots
        num_slots += 1
        prepares.append((_Prepare(has_bias, [(op, left) for op, left, _ in affine], m), param_slots, slot))
        fused = FusedOnnxConv([steps[k][4] for k in idx], {k: kwargs[k] for k in kwargs}, act)
        last = idx[-1]
        fused_ins = (ins[0], slot) + ((res_slot,) if res_slot is not None else ())
        replaced[last] = (fused, {}, fused_ins, steps[last][3], steps[last][4])
        members.update(idx)
    for i, (_, kwargs, ins, _outs, _node) in enumerate(steps):
        tf = _match_tf_chain(steps, i, foldable, consts, sole_reader, readers, keep)
        if tf is None:
            continue
        idx, has_bias, affine, act, pool, k = tf
        slot = num_slots
        num_slots += 1
        param_slots = ins[1:2] + tuple(p for _, _, ps in affine for p in ps)
        ops = [(op, arg) for op, arg, _ in affine]
        if has_bias:  # the first affine entry is the bias: it goes first, as the shift the rest apply to
            param_slots = ins[1:2] + affine[0][2] + tuple(p for _, _, ps in affine[1:] for p in ps)
            ops = ops[1:]
        prepares.append((_PrepareTf(has_bias, ops, k), param_slots, slot))
        last = idx[-1]
        tf_fn = FusedTfConv([steps[j][4] for j in idx], _tf_conv_attrs(kwargs), act, pool)
        replaced[last] = (tf_fn, {}, (ins[0], slot), steps[last][3][:1], steps[last][4])
        members.update(idx)
    for i, step in enumerate(steps):
        node = step[4]
        if i in members:
            continue
        found = _match_affine(steps, i, foldable, consts, sole_reader)
        if found is None:
            continue
        idx, x_slot, affine, act, m = found
        slot = num_slots
        num_slots += 1
        dtype = node.outputs[0].dtype.np_dtype
        prepares.append((_PrepareAffine([(op, left) for op, left, _ in affine], m, dtype),
                         tuple(c for _, _, c in affine), slot))
        last = idx[-1]
        fn = ChannelAffine([steps[k][4] for k in idx], act)
        replaced[last] = (fn, {}, (x_slot, slot), steps[last][3], steps[last][4])
        members.update(idx)
    if not fold_idx and not prepares:
        return steps, num_slots, 0
    # The fold program: folded steps read only by other folded steps, prepares and removed members
    # stay inside it; the rest of its values become the fold step's outputs.
    fold_set = set(fold_idx)
    program = [(steps[k][0], steps[k][1], steps[k][2], steps[k][3]) for k in fold_idx]
    program += [(fn, {}, p_ins, (out,)) for fn, p_ins, out in prepares]
    produced = {s for k in fold_idx for s in steps[k][3]} | {out for _, _, out in prepares}
    outside_reads: set[int] = set()
    for k, step in enumerate(steps):
        if k in fold_set or (k in members and k not in replaced):
            continue
        ins_k = replaced[k][2] if k in replaced else step[2]
        outside_reads.update(s for s in ins_k if s in produced)
    out_slots = sorted(outside_reads)
    # Program steps whose values nobody reads any more are dropped (a chain's folded constants).
    needed = set(out_slots)
    kept_program = []
    for fn, kw, p_ins, p_outs in reversed(program):
        if needed & set(p_outs):
            kept_program.append((fn, kw, p_ins, p_outs))
            needed.update(p_ins)
    kept_program.reverse()
    in_slots = sorted({s for _, _, p_ins, _ in kept_program for s in p_ins if s not in produced})
    fold_step: tuple | None = None
    if kept_program:
        fold = FoldedConstants(kept_program, in_slots, out_slots, [variables[s] for s in in_slots if s in variables])
        first = steps[fold_idx[0]][4] if fold_idx else steps[next(iter(sorted(replaced)))][4]
        fold_step = (fold, {}, tuple(in_slots), tuple(out_slots), first)
    new = []
    # Leaves first (they are preloaded anyway), then the fold step, then everything else in order.
    for step in steps:
        if step[4].op in _LEAVES and not step[4].control_inputs:
            new.append(step)
    if fold_step is not None:
        new.append(fold_step)
    for k, step in enumerate(steps):
        if step[4].op in _LEAVES and not step[4].control_inputs:
            continue
        if k in replaced:
            new.append(replaced[k])
        elif k not in members and k not in fold_set:
            new.append(step)
    new, concats = rewrite_concat(new, keep)
    return new, num_slots, len(replaced) + concats + (1 if fold_step is not None else 0)


def _per_channel(t: Any, m: int) -> bool:
    """Whether tensor ``t`` broadcasts as one value per channel (axis 1) of an ``(N, m, H, W)`` value."""
    shape = t.shape
    if shape is None or None in shape or len(shape) > 4:
        return False
    full = (1,) * (4 - len(shape)) + tuple(shape)
    return full[0] == 1 and full[1] in (1, m) and full[2] == 1 and full[3] == 1


def _scalar_value(slot: int, consts: dict[int, Any]) -> float | None:
    v = consts.get(slot)
    if v is None:
        return None
    a = np.asarray(v)
    return float(a.reshape(-1)[0]) if a.size == 1 else None


def _match_chain(steps, i: int, foldable: set[int], consts: dict[int, Any], sole_reader):
    """``(indices, has_bias, affine ops, residual slot, act)`` of the fusible chain starting at step ``i``."""
    _, kwargs, ins, outs, node = steps[i]
    if node.op != "OnnxConv" or kwargs.get("group", 1) != 1 or len(ins) not in (2, 3):
        return None
    w = node.inputs[1]
    y = node.outputs[0]
    if (
        w.shape is None or len(w.shape) != 4 or y.dtype.np_dtype not in (np.float32, np.float64)
        or not all(s in foldable for s in ins[1:]) or ins[0] in ins[1:]
    ):
        return None
    m = w.shape[0]
    idx = [i]
    affine: list[tuple[str, bool, int]] = []
    res_slot = None
    act = 0
    cur = outs[0]
    shape = y.shape
    while True:
        j = sole_reader(cur)
        if j is None:
            break
        _, _, jins, jouts, jnode = steps[j]
        if len(jins) != 2 or len(jouts) != 1 or jnode.control_inputs or jins[0] == jins[1]:
            break
        left = jins[0] == cur
        other = jins[1] if left else jins[0]
        other_t = jnode.inputs[1] if left else jnode.inputs[0]
        if jnode.outputs[0].shape != shape or jnode.outputs[0].dtype is not y.dtype:
            break
        if jnode.op in ("Add", "Sub", "Mul") and res_slot is None and other in foldable and _per_channel(other_t, m):
            affine.append((jnode.op, left, other))
        elif jnode.op == "Add" and res_slot is None and other not in foldable and other_t.shape == shape:
            res_slot = other
        else:
            break
        idx.append(j)
        cur = jouts[0]
    act = _match_act(steps, cur, shape, consts, sole_reader, idx)
    return idx, len(ins) == 3, affine, res_slot, act  # a bare convolution too: still the faster kernel


def _match_act(steps, cur: int, shape, consts: dict[int, Any], sole_reader, idx: list[int]) -> int:
    """The activation code of a ``Relu`` (or ``Maximum(., 0)``, then maybe ``Minimum(., 6)``) reading ``cur``.

    Appends the steps it takes to ``idx``.
    """
    j = sole_reader(cur)
    if j is None:
        return 0
    _, _, jins, jouts, jnode = steps[j]
    if jnode.op == "Relu" and len(jins) == 1:
        idx.append(j)
        return 1
    if jnode.op != "Maximum" or len(jins) != 2 or cur not in jins or jnode.outputs[0].shape != shape:
        return 0
    other = jins[1] if jins[0] == cur else jins[0]
    if other == cur or _scalar_value(other, consts) != 0.0:
        return 0
    idx.append(j)
    k = sole_reader(jouts[0])
    if k is not None and len(steps[k][2]) == 2:  # a one-input reader (a pool) is no Minimum
        _, _, kins, _, knode = steps[k]
        o2 = kins[1] if kins[0] == jouts[0] else kins[0]
        if (
            knode.op == "Minimum" and len(kins) == 2 and o2 != jouts[0] and _scalar_value(o2, consts) == 6.0
            and knode.outputs[0].shape == shape
        ):
            idx.append(k)
            return 2
    return 1


def _match_affine(steps, i: int, foldable: set[int], consts: dict[int, Any], sole_reader):
    """``(indices, input slot, affine ops, act, channels)`` of a per-channel affine chain starting at step ``i``.

    At least two steps (two affine ops, or one and an activation), on a value of static rank 4 and
    known channel count whose shape no step broadcasts.
    """
    _, _, ins, outs, node = steps[i]
    if node.op not in ("Add", "Sub", "Mul") or len(ins) != 2 or ins[0] == ins[1] or node.control_inputs:
        return None
    y = node.outputs[0]
    shape = y.shape
    if shape is None or len(shape) != 4 or shape[1] is None or y.dtype.np_dtype not in (np.float32, np.float64):
        return None
    m = shape[1]
    left = ins[0] not in foldable
    x_slot, c_slot = (ins[0], ins[1]) if left else (ins[1], ins[0])
    x_t, c_t = (node.inputs[0], node.inputs[1]) if left else (node.inputs[1], node.inputs[0])
    if x_slot in foldable or c_slot not in foldable or x_t.shape != shape or not _per_channel(c_t, m):
        return None
    idx = [i]
    affine: list[tuple[str, bool, int]] = [(node.op, left, c_slot)]
    cur = outs[0]
    while True:
        j = sole_reader(cur)
        if j is None:
            break
        _, _, jins, jouts, jnode = steps[j]
        if (
            jnode.op not in ("Add", "Sub", "Mul") or len(jins) != 2 or jins[0] == jins[1] or jnode.control_inputs
            or jnode.outputs[0].shape != shape or jnode.outputs[0].dtype is not y.dtype
        ):
            break
        jleft = jins[0] == cur
        other = jins[1] if jleft else jins[0]
        if other not in foldable or not _per_channel(jnode.inputs[1] if jleft else jnode.inputs[0], m):
            break
        affine.append((jnode.op, jleft, other))
        idx.append(j)
        cur = jouts[0]
    act = _match_act(steps, cur, shape, consts, sole_reader, idx)
    if len(idx) < 2:
        return None
    return idx, x_slot, affine, act, m


def _tf_conv_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """A TF ``Conv2D`` node's strides, dilations and padding in the form hubkit's ``Conv2D`` kernels take."""
    s, d = attrs["strides"], attrs.get("dilations") or [1, 1, 1, 1]
    padding: Any = attrs["padding"]
    if padding == "EXPLICIT":
        p = [int(v) for v in attrs["explicit_paddings"]]
        padding = [(p[2], p[3]), (p[4], p[5])]
    return {"strides": (int(s[1]), int(s[2])), "dilations": (int(d[1]), int(d[2])), "padding": padding}


def _per_last(t: Any, k: int) -> bool:
    """Whether ``t`` broadcasts as one value per channel (last axis) of an ``(N, H, W, k)`` value."""
    shape = t.shape
    if shape is None or None in shape or len(shape) > 4:
        return False
    return all(v == 1 for v in shape[:-1]) and (not shape or shape[-1] in (1, k))


def _match_tf_chain(steps, i: int, foldable: set[int], consts, sole_reader, readers, keep):
    """``(indices, has_bias, affine, act, pool, channels)`` of a fusible TF1 convolution chain at step ``i``.

    ``TfConv2D`` (not depthwise, NHWC), then bias adds, per-channel ``Mul``/``Add``/``Sub`` and inference
    ``TfFusedBatchNorm`` steps (its statistics outputs unread), an activation, and a max pool. ``affine``
    holds ``(op, arg, constant slots)``; with ``has_bias`` its first entry is the bias.
    """
    _, kwargs, ins, outs, node = steps[i]
    if node.op != "TfConv2D" or kwargs.get("depthwise") or kwargs.get("data_format", "NHWC") != "NHWC":
        return None
    w, y = node.inputs[1], node.outputs[0]
    if (
        len(ins) != 2 or ins[1] not in foldable or ins[0] == ins[1] or w.shape is None or None in w.shape
        or y.dtype.np_dtype not in (np.float32, np.float64) or y.shape is None or len(y.shape) != 4
    ):
        return None
    k = w.shape[3]
    shape = y.shape
    idx = [i]
    affine: list[tuple[str, Any, tuple[int, ...]]] = []
    has_bias = False
    cur = outs[0]
    while True:
        j = sole_reader(cur)
        if j is None:
            break
        _, jkw, jins, jouts, jnode = steps[j]
        if jnode.control_inputs or jnode.outputs[0].shape != shape or jnode.outputs[0].dtype is not y.dtype:
            break
        if jnode.op == "TfFusedBatchNorm":
            if (
                jkw.get("is_training", True) or jins[0] != cur or len(jins) != 5
                or not all(s in foldable for s in jins[1:])
                or any(readers.get(s) or s in keep for s in jouts[1:])
            ):
                break
            affine.append(("BN", float(jkw.get("epsilon", 1e-4)), tuple(jins[1:])))
        elif jnode.op in ("BiasAdd", "Add", "Sub", "Mul") and len(jins) == 2 and jins[0] != jins[1]:
            left = jins[0] == cur
            other = jins[1] if left else jins[0]
            if jnode.op == "BiasAdd" and not left:
                break
            if other not in foldable or not _per_last(jnode.inputs[1] if left else jnode.inputs[0], k):
                break
            op = "Add" if jnode.op == "BiasAdd" else jnode.op
            if not affine and op == "Add" and len(idx) == 1:
                has_bias = True
            affine.append((op, left, (other,)))
        else:
            break
        idx.append(j)
        cur = jouts[0]
    act = _match_act(steps, cur, shape, consts, sole_reader, idx)
    if act == 0:
        j = sole_reader(cur)
        if j is not None and steps[j][4].op == "Relu6" and len(steps[j][2]) == 1:
            idx.append(j)
            act = 2
    pool = None
    j = sole_reader(steps[idx[-1]][3][0])
    if j is not None:
        _, pkw, pins, _, pnode = steps[j]
        if pnode.op == "TfPool" and pkw.get("kind") == "max" and len(pins) == 1 and pkw.get("padding") in ("SAME", "VALID"):
            ks, st = pkw["ksize"], pkw["strides"]
            if len(ks) == 4 and len(st) == 4 and ks[0] == ks[3] == st[0] == st[3] == 1:
                idx.append(j)
                pool = {"ksize": (int(ks[1]), int(ks[2])), "strides": (int(st[1]), int(st[2])), "padding": pkw["padding"]}
    return idx, has_bias, affine, act, pool, k
