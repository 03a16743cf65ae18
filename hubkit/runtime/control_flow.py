"""The control-flow ops (``If``, ``While``, ``Scan`` and their gradients): rules, kernels, gradients.

The user functions that build these nodes (``hubkit.cond``, ``while_loop``, ``map_fn``, ...) are in
:mod:`hubkit.ops.control_flow`; the ops are declared here, beside the runtime they need.

Each function attribute (:class:`~hubkit.ops.func_graph.Function`) is compiled once into a
:class:`~hubkit.runtime.executor.Plan` feeding its input placeholders and fetching its outputs; the
plan is cached on the function. Loops are Python ``while``/``for`` statements over those plans (no
recursion per iteration). Gradient functions are built by differentiating a function's graph with
:func:`hubkit.runtime.gradients.gradients`, so nested control flow differentiates recursively.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np

from hubkit.errors import OpError
from hubkit.graph import Node, Tensor, format_shape, placeholder
from hubkit.graph import bool_ as _bool
from hubkit.ops.func_graph import Function, as_function, merge_output_shape
from hubkit.ops.registry import apply_op, infer_error, register_op
from hubkit.runtime.executor import Plan, compile_plan
from hubkit.runtime.gradients import IndexedSlices, gradients

__all__ = [
    "FastPlan", "IfRunner", "ScanGradRunner", "ScanRunner", "WhileGradRunner", "WhileRunner", "fast_plan",
    "function_plan", "grad_function", "if_vjp", "scan_vjp", "while_vjp",
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


# -- gradients ---------------------------------------------------------------------------------------------
def grad_function(fn: Function, wrt: list[int], outs: list[int]) -> Function:
    """A function of ``(fn's inputs, gradients of outputs outs) -> gradients of inputs wrt``.

    Unused inputs get zero gradients, so every call returns dense values of the inputs' shapes.
    """
    key = ("grad", tuple(wrt), tuple(outs))
    cached = fn.cache.get(key)
    if cached is not None:
        return cached
    from hubkit.ops import api

    g = fn.graph
    with g.as_default(), g.name_scope(None):
        gys = [placeholder(fn.output_tensors[o].dtype, fn.output_tensors[o].shape, name="grad_in") for o in outs]
        xs = [fn.input_tensors[w] for w in wrt]
        ys = [fn.output_tensors[o] for o in outs]
        grads = gradients(ys, xs, grad_ys=gys, name="grad") if ys else [None] * len(xs)
        dense: list[Tensor] = []
        for x, gr in zip(xs, grads):
            if gr is None:
                gr = api.zeros_like(x)
            elif isinstance(gr, IndexedSlices):
                gr = gr.to_dense()
            dense.append(gr)
    out = Function.from_graph(g, [*fn.input_tensors, *gys], dense)
    fn.cache[key] = out
    return out


def _as_lists(g: Any, out: Any) -> tuple[list, list]:
    if isinstance(out, Tensor):
        return [out], [g]
    return list(out), list(g)


def if_vjp(g: Any, out: Any, pred: Tensor, args: tuple, then_branch: Any, else_branch: Any) -> tuple:
    """The ``If`` gradient: an ``If`` on the same predicate over the branches' gradient functions."""
    from hubkit.ops import api

    outs, gs = _as_lists(g, out)
    fo = [i for i, t in enumerate(outs) if t.dtype.is_floating]
    fa = [j for j, t in enumerate(args) if t.dtype.is_floating]
    if not fo or not fa:
        return (None,) * (1 + len(args))
    g_outs = [gs[i] if gs[i] is not None else api.zeros_like(outs[i]) for i in fo]
    attrs = {
        "then_branch": grad_function(as_function(then_branch), fa, fo),
        "else_branch": grad_function(as_function(else_branch), fa, fo),
    }
    node = apply_op("If", [pred, *args, *g_outs], attrs, name=f"{pred.node.name.rsplit('/', 1)[-1]}_grad")
    res: list[Any] = [None] * (1 + len(args))
    for k, j in enumerate(fa):
        res[1 + j] = node.outputs[k]
    return tuple(res)


def while_vjp(g: Any, out: Any, inputs: tuple, cond: Any, body: Any, n_vars: int, has_max: bool) -> tuple:
    """The ``While`` gradient: a ``WhileGrad`` node over the body's gradient function."""
    from hubkit.ops import api

    outs, gs = _as_lists(g, out)
    end = len(inputs) - (1 if has_max else 0)
    loop_vars, caps = inputs[:n_vars], inputs[n_vars:end]
    fv = [i for i, t in enumerate(loop_vars) if t.dtype.is_floating]
    fc = [j for j, t in enumerate(caps) if t.dtype.is_floating]
    if not fv:
        return (None,) * len(inputs)
    body_grad = grad_function(as_function(body), fv + [n_vars + j for j in fc], fv)
    g_outs = [gs[i] if gs[i] is not None else api.zeros_like(outs[i]) for i in fv]
    attrs = {"cond": cond, "body": body, "body_grad": body_grad, "n_vars": n_vars, "has_max": has_max,
             "float_vars": fv, "float_caps": fc}
    node = apply_op("WhileGrad", [*inputs, *g_outs], attrs, name="while_grad")
    res: list[Any] = [None] * len(inputs)
    for k, i in enumerate(fv):
        res[i] = node.outputs[k]
    for k, j in enumerate(fc):
        res[n_vars + j] = node.outputs[len(fv) + k]
    return tuple(res)


def scan_vjp(g: Any, out: Any, inputs: tuple, fn: Any, n_carry: int, n_elems: int, reverse: bool) -> tuple:
    """The ``Scan`` gradient: a ``ScanGrad`` node over the step function's gradient function."""
    from hubkit.ops import api

    outs, gs = _as_lists(g, out)
    nc, ne = n_carry, n_elems
    f = as_function(fn)
    fcarry = [i for i in range(nc) if inputs[i].dtype.is_floating]
    fys = [k for k in range(len(outs) - nc) if outs[nc + k].dtype.is_floating]
    felems = [i for i in range(ne) if inputs[nc + i].dtype.is_floating]
    fcaps = [j for j in range(len(inputs) - nc - ne) if inputs[nc + ne + j].dtype.is_floating]
    if not fcarry and not fys:
        return (None,) * len(inputs)
    wrt = fcarry + [nc + i for i in felems] + [nc + ne + j for j in fcaps]
    fn_grad = grad_function(f, wrt, fcarry + [nc + k for k in fys])
    g_in = [gs[i] if gs[i] is not None else api.zeros_like(outs[i]) for i in fcarry]
    g_in += [gs[nc + k] if gs[nc + k] is not None else api.zeros_like(outs[nc + k]) for k in fys]
    attrs = {"fn": fn, "fn_grad": fn_grad, "n_carry": nc, "n_elems": ne, "reverse": reverse,
             "float_carry": fcarry, "float_ys": fys, "float_elems": felems, "float_caps": fcaps}
    node = apply_op("ScanGrad", [*inputs, *g_in], attrs, name="scan_grad")
    res: list[Any] = [None] * len(inputs)
    k = 0
    for i in fcarry:
        res[i] = node.outputs[k]
        k += 1
    for i in felems:
        res[nc + i] = node.outputs[k]
        k += 1
    for j in fcaps:
        res[nc + ne + j] = node.outputs[k]
        k += 1
    return tuple(res)


# -- the op declarations (their kernels and gradient rules above) ------------------------------------------
def _check_args(fn: Function, args: tuple, what: str) -> None:
    if len(args) != len(fn.input_tensors):
        raise infer_error(f"{what} takes {len(fn.input_tensors)} inputs; the node gives it {len(args)}.")
    for t, ph in zip(args, fn.input_tensors):
        if t.dtype is not ph.dtype:
            raise infer_error(f"{what} input {ph.name!r} is {ph.dtype.name}; the node gives it {t.dtype.name}.")


def _live(node, *keys: str) -> None:
    """Replaces a node's function attributes by their live form (built once, then cached on the node)."""
    for k in keys:
        node.attrs[k] = as_function(node.attrs[k], f"{node.op} node {node.name!r} attribute {k!r}")


# -- If ------------------------------------------------------------------------------------------------
@register_op
class If:
    """Runs ``then_branch`` or ``else_branch`` on the inputs after ``pred``; only that branch runs."""

    def infer(pred, *args, then_branch, else_branch):
        if pred.dtype is not _bool or (pred.shape is not None and pred.shape != ()):
            raise infer_error(f"the predicate must be a bool scalar, got {pred.dtype.name} {format_shape(pred.shape)}.")
        then_fn, else_fn = as_function(then_branch, "then_branch"), as_function(else_branch, "else_branch")
        _check_args(then_fn, args, "then_branch")
        _check_args(else_fn, args, "else_branch")
        if len(then_fn.output_tensors) != len(else_fn.output_tensors):
            raise infer_error(
                f"the branches return {len(then_fn.output_tensors)} and {len(else_fn.output_tensors)} values."
            )
        specs = []
        for i, (a, b) in enumerate(zip(then_fn.output_tensors, else_fn.output_tensors)):
            if a.dtype is not b.dtype:
                raise infer_error(f"output {i} is {a.dtype.name} in one branch and {b.dtype.name} in the other.")
            specs.append((a.dtype, merge_output_shape(a.shape, b.shape)))
        return specs

    def prepare(node):
        _live(node, "then_branch", "else_branch")
        return {"runner": IfRunner(node)}

    def forward(pred, *args, then_branch, else_branch, runner):
        return runner(pred, args)

    def vjp(g, out, pred, *args, then_branch, else_branch):
        return if_vjp(g, out, pred, args, then_branch, else_branch)


# -- While ---------------------------------------------------------------------------------------------
def _split_while(inputs: tuple, n_vars: int, has_max: bool):
    end = len(inputs) - (1 if has_max else 0)
    return inputs[:n_vars], inputs[n_vars:end], (inputs[end] if has_max else None)


@register_op
class While:
    """Repeats ``body`` on the loop variables while ``cond`` holds (at most the optional last input times).

    Inputs: the loop variables, the captured tensors, then (when ``has_max``) the iteration bound.
    """

    def infer(*inputs, cond, body, n_vars, has_max):
        loop_vars, caps, max_it = _split_while(inputs, n_vars, has_max)
        cond_fn, body_fn = as_function(cond, "cond"), as_function(body, "body")
        args = (*loop_vars, *caps)
        _check_args(cond_fn, args, "cond")
        _check_args(body_fn, args, "body")
        if len(cond_fn.output_tensors) != 1 or cond_fn.output_tensors[0].dtype is not _bool:
            raise infer_error("cond must return one bool scalar.")
        if len(body_fn.output_tensors) != n_vars:
            raise infer_error(f"body returns {len(body_fn.output_tensors)} values for {n_vars} loop variables.")
        if max_it is not None and not max_it.dtype.is_integer:
            raise infer_error(f"maximum_iterations must be an integer, got {max_it.dtype.name}.")
        for out, ph in zip(body_fn.output_tensors, body_fn.input_tensors):
            if out.dtype is not ph.dtype:
                raise infer_error(f"body returns {out.dtype.name} for the {ph.dtype.name} loop variable {ph.name!r}.")
        return [(t.dtype, t.shape) for t in body_fn.input_tensors[:n_vars]]

    def prepare(node):
        _live(node, "cond", "body")
        return {"runner": WhileRunner(node)}

    def forward(*inputs, cond, body, n_vars, has_max, runner):
        return runner(inputs)

    def vjp(g, out, *inputs, cond, body, n_vars, has_max):
        return while_vjp(g, out, inputs, cond, body, n_vars, has_max)


@register_op
class WhileGrad:
    """The gradient of a ``While``: re-runs it recording each iteration, then runs ``body_grad`` backwards.

    Inputs: the ``While``'s inputs, then the gradients of its floating outputs (``float_vars``).
    Outputs: the gradients of the floating loop variables, then of the floating captures.
    """

    differentiable = False

    def infer(*inputs, cond, body, body_grad, n_vars, has_max, float_vars, float_caps):
        n_in = len(inputs) - len(float_vars)
        loop_vars, caps, _ = _split_while(inputs[:n_in], n_vars, has_max)
        as_function(body_grad, "body_grad")
        return [(loop_vars[i].dtype, loop_vars[i].shape) for i in float_vars] + [
            (caps[j].dtype, caps[j].shape) for j in float_caps
        ]

    def prepare(node):
        _live(node, "cond", "body", "body_grad")
        return {"runner": WhileGradRunner(node)}

    def forward(*inputs, cond, body, body_grad, n_vars, has_max, float_vars, float_caps, runner):
        return runner(inputs)


# -- Scan ----------------------------------------------------------------------------------------------
@register_op
class Scan:
    """Runs ``fn(carries, rows of elems, captures) -> (new carries, output rows)`` over the rows.

    Inputs: the initial carries (``n_carry``), the sequences (``n_elems``, same first dimension),
    the captured tensors. Outputs: the final carries, then each output stacked over the rows.
    """

    def infer(*inputs, fn, n_carry, n_elems, reverse):
        f = as_function(fn, "fn")
        carries, elems = inputs[:n_carry], inputs[n_carry:n_carry + n_elems]
        if not elems:
            raise infer_error("Scan needs at least one sequence.")
        n = None
        for e in elems:
            if e.shape is None or not e.shape:
                raise infer_error(f"sequence {e.name!r} must have a first dimension, got {format_shape(e.shape)}.")
            if n is not None and e.shape[0] is not None and e.shape[0] != n:
                raise infer_error(f"sequences have different lengths ({n} and {e.shape[0]}).")
            n = e.shape[0] if e.shape[0] is not None else n
        _check_args(f, inputs, "fn")
        outs = f.output_tensors
        if len(outs) < n_carry:
            raise infer_error(f"fn returns {len(outs)} values for {n_carry} carries.")
        for out, c in zip(outs, carries):
            if out.dtype is not c.dtype:
                raise infer_error(f"fn returns {out.dtype.name} for the {c.dtype.name} carry {c.name!r}.")
        ys = outs[n_carry:]
        return [(t.dtype, t.shape) for t in f.input_tensors[:n_carry]] + [
            (t.dtype, None if t.shape is None else (n, *t.shape)) for t in ys
        ]

    def prepare(node):
        _live(node, "fn")
        return {"runner": ScanRunner(node)}

    def forward(*inputs, fn, n_carry, n_elems, reverse, runner):
        return runner(inputs)

    def vjp(g, out, *inputs, fn, n_carry, n_elems, reverse):
        return scan_vjp(g, out, inputs, fn, n_carry, n_elems, reverse)


@register_op
class ScanGrad:
    """The gradient of a ``Scan``: re-runs it recording the carries, then runs ``fn_grad`` backwards.

    Inputs: the ``Scan``'s inputs, the gradients of its floating final carries (``float_carry``),
    the gradients of its floating stacked outputs (``float_ys``). Outputs: the gradients of the
    floating initial carries, sequences (``float_elems``) and captures (``float_caps``).
    """

    differentiable = False

    def infer(*inputs, fn, fn_grad, n_carry, n_elems, reverse, float_carry, float_ys, float_elems, float_caps):
        n_in = len(inputs) - len(float_carry) - len(float_ys)
        ins = inputs[:n_in]
        as_function(fn_grad, "fn_grad")
        caps = ins[n_carry + n_elems:]
        return (
            [(ins[i].dtype, ins[i].shape) for i in float_carry]
            + [(ins[n_carry + i].dtype, ins[n_carry + i].shape) for i in float_elems]
            + [(caps[j].dtype, caps[j].shape) for j in float_caps]
        )

    def prepare(node):
        _live(node, "fn", "fn_grad")
        return {"runner": ScanGradRunner(node)}

    def forward(*inputs, fn, fn_grad, n_carry, n_elems, reverse, float_carry, float_ys, float_elems, float_caps,
                runner):
        return runner(inputs)
