"""The executor: a small interpreter over a compiled, pruned, topologically ordered plan.

``Session.run`` compiles a :class:`Plan` once per (graph version, fetches, fed tensors), caches it
in the session, and then each call only converts feeds, walks the plan's steps over a list of
slots, and frees each intermediate after its last use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hubkit.errors import FeedError, GraphError, HubkitError, OpError
from hubkit.graph import Graph, Node, Tensor, get_default_graph
from hubkit.graph.values import convert_value
from hubkit.graph.walk import upstream
from hubkit.ops._numba import numba_enabled
from hubkit.ops.registry import get_op
from hubkit.runtime.dense_chain import DenseChain, dense_chain
from hubkit.runtime.fusion import fuse_plan
from hubkit.runtime.optimize import optimize_plan
from hubkit.runtime.steps import PlanStep

__all__ = ["Plan", "PlanStep", "Session", "compile_plan", "convert_feed"]


PLAN_SPIN_US = 1000.0
"""Microseconds hubkit's worker spins after a job while a plan with ``hold_blas`` runs (50 otherwise)."""


class Plan:
    """A compiled program: which nodes run, in what order, reading and writing which slots.

    Leaf nodes do not run as steps: constants sit in ``template`` (copied into each run's slots) and
    variable reads are looked up once at the start of a run (``var_reads``).
    """

    __slots__ = (
        "copy_slots", "dense", "feed_slots", "fetch_slots", "hold_blas", "leaf_names", "num_slots", "steps",
        "template", "unfused", "var_reads",
    )

    def __init__(self, steps, num_slots, feed_slots, fetch_slots, copy_slots) -> None:
        self.steps: list[PlanStep] = steps
        self.num_slots = num_slots
        self.feed_slots = feed_slots
        self.fetch_slots = fetch_slots  # slot per fetch, or -1 for a fetched op (returns None)
        self.copy_slots = copy_slots  # fetched slots whose arrays belong to a variable or a constant
        self.unfused: Plan | None = None  # this plan before fusion, which hides intermediates
        self.template: list[Any] = [None] * num_slots
        self.var_reads: tuple[tuple[int, Any], ...] = ()
        self.leaf_names: tuple[tuple[str, int], ...] = ()  # (tensor name, slot) of preloaded leaves
        self.dense: DenseChain | None = None  # set by compile_plan for a chain of fused dense layers
        # set by optimize_plan for channels-last regions: with 2+ BLAS threads on a host whose convolutions
        # split over hubkit's worker, OpenBLAS stays at one thread while the plan runs (see run_steps)
        self.hold_blas = False

    def preload_leaves(self) -> Plan:
        """Moves ``Const`` and ``Variable`` steps out of the step list (they cost a step each per run)."""
        template = list(self.template)
        var_reads = list(self.var_reads)
        names = list(self.leaf_names)
        steps = []
        for step in self.steps:
            kwargs, outs, node = step.kwargs, step.out_slots, step.node
            if node.op in ("Const", "Variable") and not node.control_inputs:
                if node.op == "Const":
                    template[outs[0]] = kwargs["value"]
                else:
                    var_reads.append((outs[0], kwargs["variable"]))
                names.append((node.outputs[0].name, outs[0]))
            else:
                steps.append(step)
        self.steps, self.template = steps, template
        self.var_reads, self.leaf_names = tuple(var_reads), tuple(names)
        return self

    def run(self, feed_values: list[Any], intermediates: dict[str, Any] | None = None) -> list[Any]:
        """The fetched values for ``feed_values``; every computed tensor into ``intermediates`` when given."""
        if self.dense is not None and intermediates is None:  # 1-2 rows through dense layers (dense_chain.py)
            out = self.dense(feed_values[0])
            if out is not None:
                return [out]
        return self.run_steps(feed_values, intermediates)

    def run_steps(self, feed_values: list[Any], intermediates: dict[str, Any] | None = None) -> list[Any]:
        """:meth:`run` by the step interpreter (never the dense chain).

        A plan with ``hold_blas`` runs with NumPy's OpenBLAS held at one thread when it has two or more and the
        host runs the tile kernels (:func:`hubkit.ops._packed_gemm.blas_one_thread`): its convolutions already
        use both cores, half of each on hubkit's worker thread, and one np.matmul of the plan (the classifier's)
        woke OpenBLAS's second thread, which then spun on the worker's core into the next layers. ResNet-50 at
        one image, two threads, on the Zen 3 (8 runs, alternating, twice): 87.4-88.1 ms, 57.4-58.7 held."""
        if self.hold_blas:
            from hubkit.ops import _packed_gemm

            if _packed_gemm.blas_threads() >= 2 and _packed_gemm._tile_host():
                from hubkit.ops._worker_pool import caller_off_worker, spin_for

                with _packed_gemm.blas_one_thread(), spin_for(PLAN_SPIN_US), caller_off_worker():
                    return self._run_steps(feed_values, intermediates)
        return self._run_steps(feed_values, intermediates)

    def _run_steps(self, feed_values: list[Any], intermediates: dict[str, Any] | None) -> list[Any]:
        values: list[Any] = self.template.copy()
        for slot, var in self.var_reads:
            values[slot] = var.value
        for slot, v in zip(self.feed_slots, feed_values):
            values[slot] = v
        if intermediates is not None:
            for name, slot in self.leaf_names:
                intermediates[name] = values[slot]
        for fn, kwargs, ins, outs, frees, node in self.steps:
            try:
                res = fn(*[values[i] for i in ins], **kwargs)
            except HubkitError:
                raise
            except Exception as e:  # a kernel failing on data: name the node, never a bare NumPy error
                raise OpError(f"Op {node.op} node {node.name!r} failed: {type(e).__name__}: {e}") from e
            if len(outs) == 1:
                values[outs[0]] = res
            elif outs:
                for o, r in zip(outs, res):
                    values[o] = r
            if intermediates is not None:
                for t, o in zip(node.outputs, outs):
                    intermediates[t.name] = values[o]
            for i in frees:
                values[i] = None
        out = []
        for s in self.fetch_slots:
            v = None if s < 0 else values[s]
            if s in self.copy_slots and isinstance(v, np.ndarray):
                v = np.array(v, copy=True)
            out.append(v)
        return out


def _order(graph: Graph, targets: list[Node], fed: set[Tensor]) -> list[Node]:
    """Nodes the targets need (fed tensors cut the graph), pure nodes before stateful ones."""
    needed = upstream(targets, lambda n: [t.node for t in n.inputs if t not in fed] + list(n.control_inputs))
    # Creation order is a topological order. Stateful nodes (variable updates) and whatever waits on
    # them go last, so no read in this run sees a half-applied update.
    ordered = [n for n in graph._nodes if n in needed]
    late: set[Node] = set()
    for n in ordered:
        if get_op(n.op).stateful or any(c in late for c in n.control_inputs) or any(
            t.node in late for t in n.inputs if t not in fed
        ):
            late.add(n)
    return [n for n in ordered if n not in late] + [n for n in ordered if n in late]


def compile_plan(graph: Graph, fetches: list[Tensor | Node], feeds: list[Tensor]) -> Plan:
    """Builds the plan computing ``fetches`` from ``feeds``; checks every needed placeholder is fed."""
    fed = set(feeds)
    if len(fed) != len(feeds):
        raise FeedError(f"A tensor is fed more than once: {sorted(t.name for t in feeds)}.")
    # A fetched tensor that is also fed is returned as fed: its node need not run.
    targets = [f.node if isinstance(f, Tensor) else f for f in fetches if f not in fed]
    nodes = _order(graph, targets, fed)
    slot_of: dict[Tensor, int] = {}
    for t in feeds:
        slot_of[t] = len(slot_of)
    compute = []
    for n in nodes:
        if all(t in fed for t in n.outputs) and n.outputs:
            continue
        if n.op == "Placeholder":
            fetch_names = sorted(f.name for f in fetches)
            raise FeedError(
                f"Placeholder {n.name!r} must be fed a value to compute {fetch_names}; "
                f"fed: {sorted(t.name for t in feeds)}."
            )
        compute.append(n)
        for t in n.outputs:
            slot_of[t] = len(slot_of)
    last_use: dict[int, int] = {}
    for i, n in enumerate(compute):
        for t in n.inputs:
            last_use[slot_of[t]] = i
    fetch_slots = []
    for f in fetches:
        fetch_slots.append(slot_of[f] if isinstance(f, Tensor) else -1)
    keep = set(fetch_slots) | {slot_of[t] for t in feeds}
    frees_at: dict[int, list[int]] = {}
    for slot, i in last_use.items():
        if slot not in keep:
            frees_at.setdefault(i, []).append(slot)
    # Slots never read (outputs nobody uses) are freed right after they are produced.
    steps = []
    copy_slots: set[int] = set()
    for i, n in enumerate(compute):
        opdef = get_op(n.op)
        kwargs = dict(n.attrs)
        if opdef.prepare is not None:
            kwargs.update(opdef.prepare(n))
        ins = tuple(slot_of[t] for t in n.inputs)
        outs = tuple(slot_of[t] for t in n.outputs)
        frees = list(frees_at.get(i, ()))
        frees.extend(s for s in outs if s not in last_use and s not in keep)
        steps.append(PlanStep(opdef.forward, kwargs, ins, outs, tuple(frees), n))
        if opdef.aliases_input:
            copy_slots.update(outs)
    plan = original = Plan(steps, len(slot_of), tuple(slot_of[t] for t in feeds), fetch_slots, copy_slots)
    plan = optimize_plan(plan)  # identities dropped, GEMM + bias + activation fused (runtime/optimize.py)
    if numba_enabled():  # elementwise chains run as one Numba kernel where measurement says it pays
        plan = fuse_plan(plan)
    if plan is not original:
        plan.unfused = original
    if plan.unfused is not None:
        plan.unfused.preload_leaves()
    plan.preload_leaves()
    plan.dense = dense_chain(plan)
    return plan


def convert_feed(t: Tensor, value: Any, what: str = "Placeholder") -> np.ndarray:
    """Converts a fed value to ``t``'s dtype, refusing lossy kinds and shapes contradicting ``t.shape``."""
    return convert_value(value, t.dtype, t.shape, f"{what} {t.node.name!r}", FeedError)


class _Fetches:
    """Flattens any nesting of lists, tuples and dicts of fetches, and rebuilds results in that shape."""

    def __init__(self, graph: Graph, fetches: Any) -> None:
        self.flat: list[Tensor | Node] = []
        self.build = self._walk(graph, fetches)

    def _walk(self, graph: Graph, f: Any) -> Callable[[list], Any]:
        if isinstance(f, (list, tuple)) and not hasattr(f, "_fields"):
            parts = [self._walk(graph, x) for x in f]
            kind = type(f)
            return lambda r: kind(p(r) for p in parts)
        if isinstance(f, Mapping):
            keys = list(f)
            parts = [self._walk(graph, f[k]) for k in keys]
            return lambda r: {k: p(r) for k, p in zip(keys, parts)}
        components = getattr(f, "_composite_components", None)
        if components is not None:  # a SparseTensor (or other composite): fetched as its value type
            parts = [self._walk(graph, c) for c in components()]
            return lambda r: f._composite_value([p(r) for p in parts])
        item = _as_fetch(graph, f)
        i = len(self.flat)
        self.flat.append(item)
        return lambda r: r[i]


def _as_fetch(graph: Graph, f: Any, what: str = "Fetch") -> Tensor | Node:
    if isinstance(f, str):
        return graph.get_tensor(f) if ":" in f else graph.get_node(f)
    if isinstance(f, (Tensor, Node)):
        if f.graph is not graph:
            raise GraphError(f"{what} {f.name!r} belongs to another graph than this session's.")
        return f
    hook = getattr(f, "_as_graph_tensor", None)
    if hook is not None:
        return hook(graph)
    raise GraphError(f"Cannot {what.lower()} {f!r}: expected a Tensor, a Node, a Variable or a name.")


def _expand_composite_feeds(feed_dict: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Feed pairs, a composite key (a SparseTensor fed a SparseTensorValue) replaced by its components' pairs."""
    pairs: list[tuple[Any, Any]] = []
    for k, v in feed_dict.items():
        split = getattr(k, "_composite_feed", None)
        pairs.extend(split(v) if split is not None else [(k, v)])
    return pairs


class Session:
    """Runs parts of a graph. Holds no values: variables hold their own.

    Args:
        graph: the graph to run; the default graph when None.

    >>> import hubkit as hk
    >>> g = hk.Graph()
    >>> with g.as_default():
    ...     x = hk.placeholder(hk.float32, [None])
    ...     y = x * 2.0
    >>> hk.Session(g).run(y, {x: [1.0, 2.0]})
    array([2., 4.], dtype=float32)
    """

    def __init__(self, graph: Graph | None = None) -> None:
        self.graph = graph or get_default_graph()
        # The session's own plan cache: (fetches, feeds) -> Plan, valid for one graph version.
        self._plans: dict[tuple[tuple[Any, ...], tuple[Tensor, ...]], Plan] = {}
        self._plans_version = self.graph.version

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def close(self) -> None:
        """Sessions hold no resources; kept for TensorFlow-1 familiarity."""

    def run(self, fetches: Any, feed_dict: Mapping[Any, Any] | None = None) -> Any:
        """Computes ``fetches`` (a tensor, op, name or any nesting of them) given ``feed_dict``.

        Raises:
            FeedError: a needed placeholder is not fed, or a fed value has the wrong dtype or shape.
            OpError: a kernel failed on the data (the message names the node).
        """
        return self._run(fetches, feed_dict, None)

    def run_with_intermediates(self, fetches: Any, feed_dict: Mapping[Any, Any] | None = None):
        """Like :meth:`run`, also returning ``{tensor name: value}`` of every tensor computed (debugging)."""
        inter: dict[str, Any] = {}
        return self._run(fetches, feed_dict, inter), inter

    def _run(self, fetches: Any, feed_dict: Mapping[Any, Any] | None, inter: dict | None) -> Any:
        g = self.graph
        flat: list[Tensor | Node]
        if isinstance(fetches, Tensor) and fetches.graph is g:
            flat, build = [fetches], None
        else:
            spec = _Fetches(g, fetches)
            flat, build = spec.flat, spec.build
        feeds: list[Tensor] = []
        values: list[Any] = []
        if feed_dict:
            for k, v in _expand_composite_feeds(feed_dict):
                t = _as_fetch(g, k, "Feed")
                if not isinstance(t, Tensor):
                    raise FeedError(f"Cannot feed {k!r}: only tensors can be fed.")
                if t in feeds:  # e.g. by tensor and by name: which value wins would be arbitrary
                    raise FeedError(f"Tensor {t.name!r} is fed twice (again as {k!r}); feed each tensor once.")
                feeds.append(t)
                values.append(convert_feed(t, v))
        plan = self.plan(flat, feeds)
        if inter is not None and plan.unfused is not None:
            plan = plan.unfused
        out = plan.run(values, inter)
        return out[0] if build is None else build(out)

    def plan(self, fetches: list[Tensor | Node], feeds: list[Tensor]) -> Plan:
        """The cached plan for these fetches and fed tensors (compiled on first use)."""
        cache = self._plans
        if self._plans_version != self.graph.version:
            # Nodes were added: plans stay valid, but drop them so the cache cannot grow without bound.
            cache.clear()
            self._plans_version = self.graph.version
        key = (tuple(fetches), tuple(feeds))
        plan = cache.get(key)
        if plan is None:
            if len(cache) > 256:
                cache.clear()
            plan = compile_plan(self.graph, list(fetches), list(feeds))
            cache[key] = plan
        return plan
