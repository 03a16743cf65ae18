"""The plan optimiser: rewrites a compiled plan once, before it first runs.

:func:`optimize_plan` takes the step list :func:`~hubkit.runtime.executor.compile_plan` built and
returns an equivalent, shorter one (the original stays in ``plan.unfused``, which
``Session.run_with_intermediates`` runs so every intermediate can still be seen). Rewrites:

- **Identities dropped.** ``Identity`` and ``StopGradient`` return their input (TF1 graphs read
  every variable through one); their readers read the input's slot directly. Exact.
- **Linear layers fused.** ``MatMul`` or ``Conv2D``, then a ``BiasAdd`` (or an ``Add`` of a 1-D
  tensor as long as the last axis), then ``Relu`` or ``Relu6``, any of the last two optional,
  become one step: the GEMM writes a fresh array, and the bias and activation are applied to it in
  place in one pass (a Numba kernel when Numba is on, :mod:`hubkit.ops._epilogue`). Convolutions
  apply that epilogue to each cache-sized output block right after its GEMM
  (:mod:`hubkit.ops.conv_fused`). Exact: the same float additions and comparisons, in the same
  order, as the separate ops.

- **Convolutional inference** (:mod:`hubkit.runtime.optimize_conv`, plans with no stateful step):
  constant folding into one cached step, batch norms and biases folded into the preceding ONNX
  (NCHW) or TF1 (NHWC) convolution's filter, which runs fused with its residual add, activation
  and (TF1) max pool; within a stated tolerance, not bit for bit.
- **Channels-last regions** (:mod:`hubkit.runtime.optimize_layout`): the ONNX convolutions, pools,
  channel concatenations and batch norms above run NHWC between one conversion in and one out;
  within the convolutions' tolerance (summation order).

A chain is fused only when its intermediates have no other reader, are not fetched and no
stateful step runs between its members. Graphs are unchanged: gradients, serialization and
``Session.run_with_intermediates`` never see the rewrites. ``HUBKIT_OPTIMIZE=0`` (or
:func:`set_optimize_enabled`) compiles plans without them.

:func:`describe_plan` prints a plan's steps; :func:`describe_signature_plan` the optimised plan
a module runs for one of its signatures::

    >>> import hubkit as hk
    >>> from hubkit.runtime.optimize import describe_signature_plan
    >>> def module_fn():
    ...     x = hk.placeholder(hk.float32, [None, 3], name="x")
    ...     hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, activation="relu"))
    >>> print(describe_signature_plan(hk.Module(hk.create_module_spec(module_fn))))
    signature 'default': inputs ['x:0'] -> outputs ['dense/Relu:0']
    1 step (3 before the optimiser), 2 preloaded constants and variables
    the steps also run as a chain: np.dot at 1-2 rows (a float32 chain of 196,608+ weights with 2+ BLAS threads: split by columns over the worker), the tile layers in one call from 9 rows (runtime/dense_chain.py)
       0  MatMul+BiasAdd+Relu  (x:0, dense/kernel:0, dense/bias:0) -> dense/Relu:0
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.ops._epilogue import ACTIVATIONS, bias_act_
from hubkit.ops._packed_gemm import DenseCall, PackedWeights, dense, prepare_dense
from hubkit.ops._small_linear import TransposedWeights, small_linear
from hubkit.ops.conv_fused import WinogradFilters, conv2d_bias_act, conv2d_bias_act_max_pool
from hubkit.ops.registry import get_op
from hubkit.ops.tf_text_buffers import buffer_text_steps
from hubkit.runtime.optimize_conv import rewrite_conv_plan
from hubkit.runtime.optimize_layout import ToNhwc, rewrite_layout_plan
from hubkit.runtime.optimize_pool import rewrite_pool_plan

__all__ = [
    "FusedLinear",
    "describe_plan",
    "describe_signature_plan",
    "optimize_enabled",
    "optimize_plan",
    "set_optimize_enabled",
]

_IDENTITIES = frozenset({"Identity", "StopGradient"})
_LINEAR = frozenset({"MatMul", "Conv2D"})
_OFF_VALUES = ("0", "false", "no", "off")
_forced: list[bool | None] = [None]


def optimize_enabled() -> bool:
    """Whether plans compiled from now on are optimised (``HUBKIT_OPTIMIZE`` not ``0``, unless forced)."""
    if _forced[0] is not None:
        return _forced[0]
    return os.environ.get("HUBKIT_OPTIMIZE", "1").strip().lower() not in _OFF_VALUES


def set_optimize_enabled(flag: bool | None) -> bool:
    """Forces the optimiser on or off for plans compiled from now on; ``None`` re-reads ``HUBKIT_OPTIMIZE``.

    Plans already compiled and cached keep what they were compiled with.

    Returns:
        Whether the optimiser is now enabled.
    """
    _forced[0] = flag
    return optimize_enabled()


class FusedLinear:
    """The kernel of a fused step: ``act(matmul(a, w) + bias)`` or ``act(conv2d(a, w) + bias)``.

    Attributes:
        nodes: the graph nodes the step stands for, in order (GEMM, bias, activation).
        label: ``"MatMul+BiasAdd+Relu"``-style name of the fused chain.
    """

    __slots__ = ("_dense", "act", "attrs", "filters", "has_bias", "kind", "label", "nodes", "packed", "pool", "small",
                 "transposes")

    def __init__(
        self,
        nodes: Sequence[Any],
        attrs: dict[str, Any],
        has_bias: bool,
        act: str | None,
        pool: dict[str, Any] | None = None,
        weights: Any = False,
    ) -> None:
        self.nodes = tuple(nodes)
        self.kind = self.nodes[0].op
        self.attrs = attrs
        self.has_bias = has_bias
        self.act = ACTIVATIONS[act]
        self.pool = pool  # a MaxPool's attributes, pooled chunk by chunk (convolutions only)
        self.label = "+".join(n.op for n in self.nodes)
        self.transposes = bool(attrs.get("transpose_a") or attrs.get("transpose_b"))
        # Few rows: the small-batch kernel (ops/_small_linear.py), for a MatMul whose weights are a
        # variable or a constant (``weights``: the Variable, None for a constant, False otherwise).
        self.small: tuple[TransposedWeights | None] | None = None
        self.packed: PackedWeights | None = None  # more rows: the LLVM tile GEMM on weights packed once
        self._dense: DenseCall | None = None  # its call prepared for the last input shape that ran it
        if self.kind == "MatMul" and weights is not False and not attrs.get("transpose_a"):
            self.small = (None,) if attrs.get("transpose_b") else (TransposedWeights(weights),)
            self.packed = PackedWeights(weights)
        # A convolution's Winograd filter transform, kept while its variable (or constant) is unchanged.
        self.filters = WinogradFilters(weights) if self.kind == "Conv2D" and weights is not False else None

    def __call__(self, a: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        prepared = self._dense
        if prepared is not None:  # checked when prepared: it runs only on the same shapes, bias and thread count
            out = prepared(a, w, bias)
            if out is not None:
                return out
            self._dense = None  # prepared again when dense() next runs the tile GEMM
        if bias is not None and (
            bias.ndim != 1 or ((bias.dtype != a.dtype or a.dtype != w.dtype) and bias.dtype != np.result_type(a, w))
        ):
            bias_node = self.nodes[1]
            raise ValueError(
                f"{bias_node.op} node {bias_node.name!r} got a bias of shape {bias.shape} and dtype "
                f"{bias.dtype}; a 1-D bias of the product's dtype was expected."
            )
        if self.kind == "Conv2D" and self.pool is not None:
            return conv2d_bias_act_max_pool(
                a,
                w,
                bias,
                self.act,
                self.attrs["strides"],
                self.attrs["dilations"],
                self.attrs["padding"],
                self.pool["ksize"],
                self.pool["strides"],
                self.pool["padding"],
                self.filters,
            )
        if self.kind == "Conv2D":
            return conv2d_bias_act(
                a, w, bias, self.act, self.attrs["strides"], self.attrs["dilations"], self.attrs["padding"],
                filters=self.filters,
            )
        if self.small is not None and a.ndim == 2 and a.shape[0] <= 8:
            out = small_linear(a, w, bias, self.act, self.small[0])
            if out is not None:
                return out
        if self.packed is not None and a.ndim == 2 and a.shape[0] > 8:
            transpose_b = bool(self.attrs.get("transpose_b"))
            out = dense(a, w, bias, self.act, self.packed, transpose_b)
            if out is not None:
                self._dense = prepare_dense(a, w, bias, self.act, self.packed, transpose_b)
                return out
        if self.transposes:
            if self.attrs.get("transpose_a"):
                a = np.swapaxes(a, -1, -2)
            if self.attrs.get("transpose_b"):
                w = np.swapaxes(w, -1, -2)
        out = np.matmul(a, w)
        if bias is not None and bias.shape[0] != out.shape[-1]:
            bias_node = self.nodes[1]
            raise ValueError(
                f"{bias_node.op} node {bias_node.name!r}: bias of length {bias.shape[0]} does not "
                f"match the last axis of the product, shaped {out.shape}."
            )
        return bias_act_(out, bias, self.act)

    def __repr__(self) -> str:
        return f"FusedLinear({self.label})"


def optimize_plan(plan: Any) -> Any:
    """Returns an optimised copy of ``plan`` (``plan`` itself when no rewrite applies).

    The copy's ``unfused`` is ``plan``. ``plan`` must not have had its leaves preloaded yet.
    """
    if not optimize_enabled():
        return plan
    keep = set(plan.fetch_slots) | set(plan.feed_slots)
    steps = [(fn, kwargs, tuple(ins), tuple(outs), node) for fn, kwargs, ins, outs, _, node in plan.steps]
    steps, dropped = _drop_identities(steps, keep)
    # Constant and batch-norm folding, fused NCHW convolutions (runtime/optimize_conv.py).
    steps, num_slots, conv = rewrite_conv_plan(steps, keep, plan.num_slots, [_stateful(s[4]) for s in steps])
    steps, pools = rewrite_pool_plan(steps, keep)  # pools and LRN on Numba kernels (runtime/optimize_pool.py)
    steps, num_slots, layout = rewrite_layout_plan(steps, keep, num_slots)  # NHWC regions (optimize_layout.py)
    steps, fused = _fuse_linear(steps, keep)
    steps, buffered = buffer_text_steps(steps, keep)  # TF string ops pass UTF-8 buffers (ops/tf_text_buffers.py)
    if not dropped and not fused and not conv and not buffered and not pools and not layout:
        return plan
    new = type(plan)(
        _with_frees(steps, keep, _step_maker(plan)),
        num_slots,
        plan.feed_slots,
        plan.fetch_slots,
        set(plan.copy_slots),
    )
    new.unfused = plan
    new.hold_blas = layout > 0  # its convolutions split over hubkit's own threads (executor.Plan.run_steps)
    return new


def _readers(steps) -> dict[int, list[int]]:
    readers: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        for s in step[2]:
            readers.setdefault(s, []).append(i)
    return readers


def _drop_identities(steps, keep: set[int]):
    """Readers of an identity's output read its input instead; the identity's step goes."""
    alias: dict[int, int] = {}
    out = []
    for fn, kwargs, ins, outs, node in steps:
        ins = tuple(alias.get(s, s) for s in ins)
        if (
            node.op in _IDENTITIES
            and len(ins) == 1
            and outs[0] not in keep
            and not node.control_inputs
            and not _stateful(node)
        ):
            alias[outs[0]] = ins[0]
            continue
        out.append((fn, kwargs, ins, outs, node))
    return out, len(steps) - len(out)


def _stateful(node: Any) -> bool:
    return get_op(node.op).stateful


def _fuse_linear(steps, keep: set[int]):
    readers = _readers(steps)
    stateful = [_stateful(step[4]) for step in steps]

    def sole_reader(slot: int) -> int | None:
        r = readers.get(slot, [])
        return r[0] if len(r) == 1 and slot not in keep else None

    replaced: dict[int, tuple] = {}  # index of the chain's last step -> the fused step
    # Slots holding a variable's value (-> the Variable) or a constant (-> None).
    leaf = {s[3][0]: s[1].get("variable") for s in steps if s[4].op in ("Variable", "Const") and s[3]}
    members: set[int] = set()
    for i, (_, kwargs, ins, outs, node) in enumerate(steps):
        if node.op not in _LINEAR or i in members or len(ins) != 2 or ins[0] == ins[1]:
            continue
        chain = [i]
        bias_slot = None
        j = sole_reader(outs[0])
        if j is not None and _is_bias(steps[j], outs[0], steps[i][4]):
            # The fused step runs where the chain's last step ran: every input is ready by then.
            bias_slot = next(s for s in steps[j][2] if s != outs[0])
            chain.append(j)
        j = sole_reader(steps[chain[-1]][3][0])
        act = None
        if j is not None and steps[j][4].op in ACTIVATIONS and len(steps[j][2]) == 1:
            chain.append(j)
            act = steps[j][4].op
        pool = None
        j = sole_reader(steps[chain[-1]][3][0])
        if node.op == "Conv2D" and j is not None and steps[j][4].op == "MaxPool" and len(steps[j][2]) == 1:
            chain.append(j)
            pool = dict(steps[j][1])
        if len(chain) == 1 or any(stateful[k] for k in range(i, chain[-1] + 1)):
            continue
        has_bias = (
            len(chain) > 1 and steps[chain[1]][4].op not in ACTIVATIONS and steps[chain[1]][4].op != "MaxPool"
        )
        nodes = [steps[k][4] for k in chain]
        fused = FusedLinear(nodes, dict(kwargs), has_bias, act, pool, leaf.get(ins[1], False))
        fused_ins = ins + ((bias_slot,) if has_bias else ())
        last = chain[-1]
        replaced[last] = (fused, {}, fused_ins, steps[last][3], steps[last][4])
        members.update(chain)
    out = []
    for k, step in enumerate(steps):
        if k in replaced:
            out.append(replaced[k])
        elif k not in members:
            out.append(step)
    return out, len(replaced)


def _is_bias(step, product_slot: int, gemm_node: Any) -> bool:
    """Whether ``step`` adds a 1-D bias along the last axis to the GEMM's product."""
    node, ins = step[4], step[2]
    if node.op == "BiasAdd":
        return ins[0] == product_slot and ins[1] != product_slot
    if node.op != "Add" or len(ins) != 2 or ins[0] == ins[1]:
        return False
    other = node.inputs[1] if ins[0] == product_slot else node.inputs[0]
    product = gemm_node.outputs[0]
    if other.dtype is not product.dtype or other.shape is None or len(other.shape) != 1:
        return False
    last = None if product.shape is None else product.shape[-1]
    return other.shape[0] is not None and other.shape[0] == last


def _step_maker(plan: Any):
    """Builds steps of the plan's own step type (a named tuple, or a bare tuple)."""
    kind = type(plan.steps[0]) if plan.steps else tuple
    make = getattr(kind, "_make", None)
    return make if make is not None else tuple


def _with_frees(steps, keep: set[int], make) -> list:
    """Full plan steps, each slot freed right after its last reader (or after its producer if unread)."""
    last_use: dict[int, int] = {}
    for i, step in enumerate(steps):
        for s in step[2]:
            last_use[s] = i
    frees_at: dict[int, list[int]] = {}
    for s, i in last_use.items():
        if s not in keep:
            frees_at.setdefault(i, []).append(s)
    full = []
    for i, (fn, kwargs, ins, outs, node) in enumerate(steps):
        frees = list(frees_at.get(i, ()))
        frees.extend(s for s in outs if s not in last_use and s not in keep)
        full.append(make((fn, kwargs, ins, outs, tuple(frees), node)))
    return full


# -- describing plans ---------------------------------------------------------------------------------
def _step_label(fn: Any, node: Any) -> str:
    label = getattr(fn, "label", None)
    if label is not None:
        return label
    inner = getattr(fn, "steps", None)  # an elementwise chain fused into one Numba kernel
    if inner is not None:
        return "Fused(" + "+".join(step[5].op for step in inner) + ")"
    return node.op


def describe_plan(plan: Any, feed_names: Sequence[str] = ()) -> str:
    """One line per step of ``plan``: the op (or fused chain), the tensors it reads and writes.

    Args:
        plan: a compiled plan (``Session.plan(...)`` or a module's).
        feed_names: names of the fed tensors, in the plan's feed order (else ``feed:<i>``).
    """
    names: dict[int, str] = {s: f"feed:{k}" for k, s in enumerate(plan.feed_slots)}
    names.update({s: n for s, n in zip(plan.feed_slots, feed_names)})
    source = plan if plan.unfused is None else plan.unfused
    while source is not None:  # the original plan names every tensor, fused or not
        for step in source.steps:
            names.update({s: t.name for s, t in zip(step[3], step[5].outputs)})
        names.update({s: n for n, s in source.leaf_names})
        source = source.unfused
    for fn, _, ins, outs, _, node in plan.steps:  # channels-last copies (runtime/optimize_layout.py)
        if outs and outs[0] not in names and (isinstance(fn, ToNhwc) or str(getattr(fn, "label", "")).endswith("(NHWC)")):
            base = names.get(ins[0], f"slot:{ins[0]}") if isinstance(fn, ToNhwc) else node.outputs[0].name
            names[outs[0]] = f"{base} (NHWC)"
    before = plan.unfused
    while before is not None and before.unfused is not None:
        before = before.unfused
    count = f"{len(plan.steps)} step{'s' if len(plan.steps) != 1 else ''}"
    if before is not None:
        count += f" ({len(before.steps)} before the optimiser)"
    lines = [f"{count}, {len(plan.leaf_names)} preloaded constants and variables"]
    if getattr(plan, "dense", None) is not None:
        from hubkit.runtime.dense_chain import MIN_COLS_WORK

        lines.append(
            f"the steps also run as a chain: np.dot at 1-2 rows (a float32 chain of {MIN_COLS_WORK:,}+ weights with"
            " 2+ BLAS threads: split by columns over the worker), the tile layers in one call from 9 rows"
            " (runtime/dense_chain.py)"
        )
    for i, (fn, _, ins, outs, _, node) in enumerate(plan.steps):
        reads = ", ".join(names.get(s, f"slot:{s}") for s in ins) if len(ins) <= 8 else f"{len(ins)} values"
        writes = ", ".join(names.get(s, f"slot:{s}") for s in outs) if len(outs) <= 8 else f"{len(outs)} values"
        writes = writes or "(no output)"
        lines.append(f"  {i:>2}  {_step_label(fn, node)}  ({reads}) -> {writes}")
    return "\n".join(lines)


def describe_signature_plan(module: Any, signature: str | None = None) -> str:
    """The optimised plan a :class:`~hubkit.Module` runs for ``signature`` (all its outputs), as text.

    Args:
        module: a ``hubkit.Module``.
        signature: the signature name (default ``"default"``).

    Raises:
        SignatureError: the module has no such signature.
    """
    sig = module._variant.signature(signature)
    plan, in_keys, out_keys = module._plans.get((sig.name, True)) or module._compile(sig, True)
    feeds = [sig.inputs[k].name for k in in_keys]
    fetches = [sig.outputs[k].name for k in out_keys]
    head = f"signature {sig.name!r}: inputs {feeds} -> outputs {fetches}"
    return head + "\n" + describe_plan(plan, feeds)
