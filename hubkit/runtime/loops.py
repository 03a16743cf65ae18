"""Running function plans in loops: ``FastPlan`` and the kernels of the control-flow ops.

Each function attribute (:class:`~hubkit.ops.func_graph.Function`) is compiled once into a
:class:`~hubkit.runtime.executor.Plan` feeding its input placeholders and fetching its outputs; the
plan is cached on the function. Loops are Python ``while``/``for`` statements over those plans (no
recursion per iteration), reusing one slot list per plan across iterations.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np

from hubkit.errors import OpError
from hubkit.graph import Node
from hubkit.ops.func_graph import Function
from hubkit.runtime.executor import Plan, compile_plan

__all__ = [
    "FastPlan", "IfRunner", "ScanGradRunner", "ScanRunner", "WhileGradRunner", "WhileRunner", "fast_plan",
    "function_plan",
]


def function_plan(fn: Function) -> Plan:
    """The compiled plan of ``fn`` (inputs fed in order, outputs fetched in order), cached on ``fn``."""
    plan = fn.cache.get("plan")
    if plan is None:
        plan = fn.cache["plan"] = compile_plan(fn.graph, list(fn.output_tensors), list(fn.input_tensors))
    return plan


class FastPlan:
    """``plan.run`` without the per-call extras a loop iteration does not need.

    Function plans read no variables (enclosing values are captured as inputs) and keep no
    intermediates, so a run is: copy the constants, place the feeds, call each step, pick the
    outputs. When a step fails, the same feeds are run again through ``plan.run`` (the steps are
    pure), which raises the error naming the node.
    """

    __slots__ = ("fetch", "plan", "run", "steps")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        out: Any
        steps: list[tuple[Any, dict, tuple[int, ...], Any, int]] = []
        for fn, kwargs, ins, outs, _, _ in plan.steps:
            out = outs[0] if len(outs) == 1 else outs  # one slot, or the slots of a multi-output step
            steps.append((fn, kwargs, ins, out, len(outs)))
        self.steps = tuple(steps)
        self.fetch = tuple((s, s in plan.copy_slots) for s in plan.fetch_slots)
        if plan.var_reads or any(s < 0 for s in plan.fetch_slots):
            self.run = plan.run
        else:
            self.run = self._compile()

    def _compile(self) -> Any:
        """A closure over the plan's parts (local lookups only: it runs once per loop iteration)."""
        template, feed_slots, steps, slow = self.plan.template, self.plan.feed_slots, self.steps, self.plan.run
        copies = frozenset(s for s, copy in self.fetch if copy)
        slots = tuple(s for s, _ in self.fetch)
        single = all(step[4] == 1 for step in steps)

        def run(feeds: list) -> list:
            values = template.copy()
            for slot, v in zip(feed_slots, feeds):
                values[slot] = v
            try:
                if single:
                    for fn, kwargs, ins, out, _ in steps:
                        values[out] = fn(*[values[i] for i in ins], **kwargs)
                else:
                    for fn, kwargs, ins, out, n_out in steps:
                        res = fn(*[values[i] for i in ins], **kwargs)
                        if n_out == 1:
                            values[out] = res
                        elif n_out:
                            for o, r in zip(out, res):
                                values[o] = r
            except Exception:  # rerun the slow way: it names the failing node
                return slow(feeds)
            if copies:
                return [np.array(values[s], copy=True) if s in copies and isinstance(values[s], np.ndarray)
                        else values[s] for s in slots]
            return [values[s] for s in slots]

        return run


def fast_plan(fn: Function) -> FastPlan:
    """The :class:`FastPlan` of ``fn``, cached on it."""
    fp = fn.cache.get("fast")
    if fp is None:
        fp = fn.cache["fast"] = FastPlan(function_plan(fn))
    return fp


def _single(values: list) -> Any:
    return values[0] if len(values) == 1 else tuple(values)


# -- forward kernels -------------------------------------------------------------------------------------
class IfRunner:
    """Runs the taken branch of an ``If`` node."""

    def __init__(self, node: Node) -> None:
        self.then_plan = fast_plan(node.attrs["then_branch"])
        self.else_plan = fast_plan(node.attrs["else_branch"])

    def __call__(self, pred: np.ndarray, args: tuple) -> Any:
        plan = self.then_plan if bool(pred) else self.else_plan
        return _single(plan.run(list(args)))


class _Loop:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.n_vars = node.attrs["n_vars"]
        self.has_max = node.attrs["has_max"]
        self.cond = fast_plan(node.attrs["cond"])
        self.body = fast_plan(node.attrs["body"])

    def split(self, inputs: tuple) -> tuple[list, list, int | None]:
        end = len(inputs) - (1 if self.has_max else 0)
        limit = None
        if self.has_max:
            bound = np.asarray(inputs[end])
            if bound.shape != ():
                raise OpError(f"While node {self.node.name!r}: maximum_iterations must be a scalar, got shape "
                              f"{list(bound.shape)}.")
            limit = int(bound)
        return list(inputs[:self.n_vars]), list(inputs[self.n_vars:end]), limit

    def iterate(self, vals: list, caps: list, limit: int | None, record: list | None = None) -> list:
        crun, brun = self.cond.run, self.body.run
        i = 0
        while limit is None or i < limit:
            args = vals + caps
            if not crun(args)[0]:
                break
            if record is not None:
                record.append(vals)
            vals = brun(args)
            i += 1
        return vals


def _calls(plan: Plan) -> tuple[tuple[Any, Any, int], ...] | None:
    """``(kernel, argument getter, output slot)`` per step, or None when a step has several outputs."""
    calls = []
    for fn, kwargs, ins, outs, _, _ in plan.steps:
        if len(outs) != 1:
            return None
        kernel = functools.partial(fn, **kwargs) if kwargs else fn
        getter = operator.itemgetter(*ins) if len(ins) > 1 else (
            (lambda values, i=ins[0]: (values[i],)) if ins else (lambda values: ()))
        calls.append((kernel, getter, outs[0]))
    return tuple(calls)


class WhileRunner(_Loop):
    """Runs a ``While`` node: the condition and body plans alternately, at most ``maximum_iterations`` times.

    The loop reuses one slot list per plan for every iteration (the captured values are placed once,
    constants stay in their slots), so an iteration costs the steps' kernel calls and little else.
    A failing step re-runs that iteration through ``Plan.run``, which names the node.
    """

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        cplan, bplan = self.cond.plan, self.body.plan
        self.tight = None
        if not (cplan.var_reads or bplan.var_reads):
            ccalls, bcalls = _calls(cplan), _calls(bplan)
            if ccalls is not None and bcalls is not None and min(bplan.fetch_slots + cplan.fetch_slots) >= 0:
                self.tight = (ccalls, bcalls)

    def __call__(self, inputs: tuple) -> Any:
        vals, caps, limit = self.split(inputs)
        if self.tight is None:
            return _single(self.iterate(vals, caps, limit))
        return _single(self._tight(vals, caps, limit))

    def _tight(self, vals: list, caps: list, limit: int | None) -> list:
        cplan, bplan = self.cond.plan, self.body.plan
        ccalls, bcalls = self.tight  # type: ignore[misc]
        n = self.n_vars
        cv, bv = list(cplan.template), list(bplan.template)
        for s, v in zip(cplan.feed_slots[n:], caps):
            cv[s] = v
        for s, v in zip(bplan.feed_slots[n:], caps):
            bv[s] = v
        c_in, b_in, c_out, b_out = cplan.feed_slots[:n], bplan.feed_slots[:n], cplan.fetch_slots[0], bplan.fetch_slots
        i = 0
        try:
            while limit is None or i < limit:
                for s, v in zip(c_in, vals):
                    cv[s] = v
                for kernel, get, out in ccalls:
                    cv[out] = kernel(*get(cv))
                if not cv[c_out]:
                    break
                for s, v in zip(b_in, vals):
                    bv[s] = v
                for kernel, get, out in bcalls:
                    bv[out] = kernel(*get(bv))
                vals = [bv[s] for s in b_out]
                i += 1
        except Exception:  # the same iteration through Plan.run names the failing node
            args = vals + caps
            if cplan.run(args)[0]:
                bplan.run(args)
            raise
        copies = bplan.copy_slots | cplan.copy_slots
        return [np.array(v, copy=True) if isinstance(v, np.ndarray) and copies else v for v in vals]


class WhileGradRunner(_Loop):
    """Runs a ``WhileGrad`` node: the loop again (recording), then the body's gradient backwards."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.grad = fast_plan(node.attrs["body_grad"])
        self.fv, self.fc = node.attrs["float_vars"], node.attrs["float_caps"]

    def __call__(self, inputs: tuple) -> Any:
        n_in = len(inputs) - len(self.fv)
        vals, caps, limit = self.split(inputs[:n_in])
        states: list[list] = []
        self.iterate(vals, caps, limit, states)
        gv = list(inputs[n_in:])
        gc = [np.zeros_like(caps[j]) for j in self.fc]
        nv = len(self.fv)
        run = self.grad.run
        for state in reversed(states):
            res = run(state + caps + gv)
            gv = res[:nv]
            for k in range(len(gc)):
                gc[k] = gc[k] + res[nv + k]
        return _single(gv + gc)


class ScanRunner:
    """Runs a ``Scan`` node over the rows of its sequences."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.fn: Function = node.attrs["fn"]
        self.plan = fast_plan(self.fn)
        self.nc, self.ne, self.reverse = node.attrs["n_carry"], node.attrs["n_elems"], node.attrs["reverse"]

    def split(self, inputs: tuple) -> tuple[list, list, list, int]:
        nc, ne = self.nc, self.ne
        elems = list(inputs[nc:nc + ne])
        lengths = sorted({len(e) if np.ndim(e) else -1 for e in elems})
        if len(lengths) != 1 or lengths[0] < 0:
            raise OpError(f"Scan node {self.node.name!r}: the sequences must share their first dimension, got "
                          f"lengths {lengths}.")
        return list(inputs[:nc]), elems, list(inputs[nc + ne:]), lengths[0]

    def order(self, n: int) -> range:
        return range(n - 1, -1, -1) if self.reverse else range(n)

    def run(self, carries: list, elems: list, caps: list, n: int, record: list | None = None):
        run, nc = self.plan.run, self.nc
        ys: list[list] = [[] for _ in range(len(self.fn.output_tensors) - nc)]
        plan = self.plan.plan
        calls = _calls(plan) if record is None and not plan.var_reads and min(plan.fetch_slots, default=0) >= 0 else None
        if calls is not None:
            carries = self._tight(calls, carries, elems, caps, n, ys)
        else:
            for t in self.order(n):
                if record is not None:
                    record.append(carries)
                res = run(carries + [e[t] for e in elems] + caps)
                carries = res[:nc]
                for k, y in enumerate(ys):
                    y.append(res[nc + k])
        stacked = []
        for k, y in enumerate(ys):
            if self.reverse:
                y.reverse()
            if y:
                stacked.append(np.stack(y))
            else:
                t = self.fn.output_tensors[nc + k]
                row = tuple(0 if d is None else d for d in (t.shape or ()))
                stacked.append(np.zeros((0, *row), dtype=t.dtype.np_dtype))
        return carries, stacked

    def _tight(self, calls: Any, carries: list, elems: list, caps: list, n: int, ys: list[list]) -> list:
        """The rows through one reused slot list (as ``WhileRunner._tight``); returns the final carries."""
        plan, nc, ne = self.plan.plan, self.nc, self.ne
        values = list(plan.template)
        for s, v in zip(plan.feed_slots[nc + ne:], caps):
            values[s] = v
        c_in, e_in = plan.feed_slots[:nc], plan.feed_slots[nc:nc + ne]
        c_out, y_out = plan.fetch_slots[:nc], plan.fetch_slots[nc:]
        t = 0
        try:
            for t in self.order(n):
                for s, v in zip(c_in, carries):
                    values[s] = v
                for s, e in zip(e_in, elems):
                    values[s] = e[t]
                for kernel, get, out in calls:
                    values[out] = kernel(*get(values))
                carries = [values[s] for s in c_out]
                for y, s in zip(ys, y_out):
                    y.append(values[s])
        except Exception:  # the same row through Plan.run names the failing node
            plan.run(carries + [e[t] for e in elems] + caps)
            raise
        return [np.array(c, copy=True) if isinstance(c, np.ndarray) and plan.copy_slots else c for c in carries]

    def __call__(self, inputs: tuple) -> Any:
        carries, elems, caps, n = self.split(inputs)
        carries, stacked = self.run(carries, elems, caps, n)
        return _single(carries + stacked)


class ScanGradRunner(ScanRunner):
    """Runs a ``ScanGrad`` node: the scan again (recording carries), then ``fn_grad`` backwards."""

    def __init__(self, node: Node) -> None:
        super().__init__(node)
        self.grad = fast_plan(node.attrs["fn_grad"])
        a = node.attrs
        self.fcarry, self.fys, self.felems, self.fcaps = a["float_carry"], a["float_ys"], a["float_elems"], a["float_caps"]

    def __call__(self, inputs: tuple) -> Any:
        n_in = len(inputs) - len(self.fcarry) - len(self.fys)
        carries, elems, caps, n = self.split(inputs[:n_in])
        states: list[list] = []
        self.run(carries, elems, caps, n, states)
        gc = list(inputs[n_in:n_in + len(self.fcarry)])
        gys = list(inputs[n_in + len(self.fcarry):])
        g_elems = [np.zeros_like(elems[i]) for i in self.felems]
        g_caps = [np.zeros_like(caps[j]) for j in self.fcaps]
        nfc, nfe = len(self.fcarry), len(self.felems)
        run = self.grad.run
        for state, t in zip(reversed(states), reversed(self.order(n))):
            res = run(state + [e[t] for e in elems] + caps + gc + [g[t] for g in gys])
            gc = res[:nfc]
            for k in range(nfe):
                g_elems[k][t] = res[nfc + k]
            for k in range(len(g_caps)):
                g_caps[k] = g_caps[k] + res[nfc + nfe + k]
        return _single(gc + g_elems + g_caps)
