"""The control-flow ops (``If``, ``While``, ``Scan`` and their gradients): rules, kernels, gradients.

The user functions that build these nodes (``hubkit.cond``, ``while_loop``, ``map_fn``, ...) are in
:mod:`hubkit.ops.control_flow`; the ops are declared here, beside the runtime they need: their
kernels run function plans in loops (:mod:`hubkit.runtime.loops`), and their gradient functions are
built by differentiating a function's graph with :func:`hubkit.runtime.gradients.gradients`, so
nested control flow differentiates recursively.
"""

from __future__ import annotations

from typing import Any

from hubkit.graph import Tensor, format_shape, placeholder
from hubkit.graph import bool_ as _bool
from hubkit.ops.func_graph import Function, as_function, merge_output_shape
from hubkit.ops.registry import apply_op, infer_error, register_op
from hubkit.runtime.gradients import IndexedSlices, gradients
from hubkit.runtime.loops import IfRunner, ScanGradRunner, ScanRunner, WhileGradRunner, WhileRunner

__all__ = ["grad_function", "if_vjp", "scan_vjp", "while_vjp"]


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
