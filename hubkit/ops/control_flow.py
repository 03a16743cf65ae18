"""Op family: control flow. ``cond``, ``while_loop``, ``map_fn``, ``foldl``, ``foldr`` and ``scan``.

Control flow is data: an ``If`` node holds its two branches, a ``While`` node its condition and body,
a ``Scan`` node its step function, each as a :class:`~hubkit.ops.func_graph.Function` attribute, so
``graph.pb`` stores them like any attribute. Tensors of the enclosing graph used inside a function
(variable reads included) are captured as extra inputs of the node, so gradients reach them.

This file builds the nodes. The op declarations (shape rules, kernels running the functions through
compiled sub-plans, gradient rules) live in :mod:`hubkit.runtime.control_flow`, because running
and differentiating a function needs the executor and autodiff of the runtime layer: only
the taken branch runs, and a loop is a Python ``while`` over plans, never recursion, so 100,000
iterations are fine. Gradients: the ``If`` gradient is another ``If`` over the branches' gradient
functions; ``While`` and ``Scan`` gradients re-run the loop recording each iteration's values, then
run the body's gradient function backwards over them.

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     i = hk.constant(0)
...     total = hk.constant(0.0)
...     _, out = hk.while_loop(lambda i, t: i < 4, lambda i, t: (i + 1, t + 2.5), [i, total])
>>> float(hk.Session(g).run(out))
10.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Graph, Tensor, as_dtype, constant, convert_to_tensor, format_shape, get_default_graph
from hubkit.graph import bool_ as _bool
from hubkit.graph.shapes import normalize_shape
from hubkit.ops.func_graph import Function, flatten, pack_as, same_structure, trace_function
from hubkit.ops.registry import apply_op

__all__ = ["cond", "foldl", "foldr", "map_fn", "scan", "while_loop"]

CONTROL_FLOW_OPS = frozenset({"If", "Scan", "ScanGrad", "While", "WhileGrad"})
CONTROL_FLOW_FEATURE = "control_flow"


# -- building functions --------------------------------------------------------------------------------
def _as_outputs(graph: Graph, values: list[Any], dtypes: list | None, what: str) -> list[Tensor]:
    """Function results as tensors of ``graph`` (outer tensors captured, Python values made constants)."""
    out = []
    with graph.as_default():
        for i, v in enumerate(values):
            if v is None:
                raise GraphError(f"{what} returned None as value {i}; every value must be a tensor or a number.")
            dt = dtypes[i] if dtypes is not None else None
            if isinstance(v, Tensor) or hasattr(v, "_as_graph_tensor"):
                t = convert_to_tensor(v, graph=graph)
            else:
                t = constant(v, dtype=dt)
            out.append(t)
    return out


def _unify_captures(fgs: list) -> list[Tensor]:
    """Captured outer tensors of all ``fgs`` (in first-seen order); each graph gets a placeholder for each."""
    caps: list[Tensor] = []
    for fg in fgs:
        for t in fg.captures:
            if t not in caps:
                caps.append(t)
    for fg in fgs:
        for t in caps:
            fg.capture(t)
    return caps


def _function(fg, inputs: list[Tensor], caps: list[Tensor], outputs: list[Tensor]) -> Function:
    return Function.from_graph(fg, [*inputs, *(fg.captures[t] for t in caps)], outputs)


def _fits(shape, invariant) -> bool:
    """True when ``shape`` satisfies ``invariant`` (unknown entries of the invariant allow anything)."""
    if invariant is None:
        return True
    if shape is None or len(shape) != len(invariant):
        return False
    return all(i is None or i == s for s, i in zip(shape, invariant))


def _scope_name(name: str | None, default: str) -> str:
    return name or default


# -- cond ----------------------------------------------------------------------------------------------
def cond(pred: Any, true_fn: Callable[[], Any] | None = None, false_fn: Callable[[], Any] | None = None,
         name: str | None = None, strict: bool = False) -> Any:
    """``true_fn()`` if ``pred`` else ``false_fn()``, as one node; only the taken branch runs.

    Args:
        pred: a bool scalar tensor (or a Python bool).
        true_fn, false_fn: functions of no arguments returning the same nested structure of tensors
            (or numbers) with the same dtypes; tensors from outside may be used freely.
        name: name of the node.
        strict: accepted for TensorFlow 1 compatibility; single values are never unpacked from lists.

    Returns:
        The nested structure the branches return, as tensors.

    Raises:
        GraphError: a function is missing or not callable, the branches return different structures
            or dtypes, or ``pred`` is not a bool scalar.
    """
    if not callable(true_fn) or not callable(false_fn):
        raise GraphError("cond() needs callable true_fn and false_fn.")
    outer = get_default_graph()
    p = convert_to_tensor(pred, graph=outer)
    node_name = _scope_name(name, "cond")
    t_graph, _, t_res = trace_function(outer, lambda: true_fn(), [], lambda _: (), f"{node_name}_true")
    f_graph, _, f_res = trace_function(outer, lambda: false_fn(), [], lambda _: (), f"{node_name}_false")
    if not same_structure(t_res, f_res):
        raise GraphError(f"cond(): true_fn returned {t_res!r} and false_fn {f_res!r}; they must have one structure.")
    t_out = _as_outputs(t_graph, flatten(t_res), None, "true_fn")
    f_out = _as_outputs(f_graph, flatten(f_res), [t.dtype for t in t_out], "false_fn")
    if not t_out:
        raise GraphError("cond(): the branches return no values; return at least one tensor.")
    for i, (a, b) in enumerate(zip(t_out, f_out)):
        if a.dtype is not b.dtype:
            raise GraphError(f"cond(): output {i} is {a.dtype.name} in true_fn but {b.dtype.name} in false_fn.")
    caps = _unify_captures([t_graph, f_graph])
    attrs = {
        "then_branch": _function(t_graph, [], caps, t_out),
        "else_branch": _function(f_graph, [], caps, f_out),
    }
    node = apply_op("If", [p, *caps], attrs, name=node_name, graph=outer)
    return pack_as(t_res, list(node.outputs))


# -- while_loop ----------------------------------------------------------------------------------------
def _call(fn: Callable, structure: Any, args: list) -> Any:
    packed = pack_as(structure, args)
    if isinstance(packed, (list, tuple)):
        return fn(*packed)
    return fn(packed)


def while_loop(
    cond: Callable[..., Any],
    body: Callable[..., Any],
    loop_vars: Any,
    shape_invariants: Any = None,
    maximum_iterations: Any = None,
    name: str | None = None,
    parallel_iterations: int = 10,
    back_prop: bool = True,
    swap_memory: bool = False,
    return_same_structure: bool = False,
) -> Any:
    """Repeats ``body`` while ``cond`` is true, as TensorFlow 1's ``tf.while_loop``.

    Args:
        cond: ``cond(*loop_vars) -> bool scalar``.
        body: ``body(*loop_vars) -> loop_vars`` (the same nested structure and dtypes).
        loop_vars: a (nested) list, tuple, namedtuple or dict of tensors or numbers.
        shape_invariants: the same structure of shapes (``None`` entries vary between iterations);
            by default each variable keeps its initial shape.
        maximum_iterations: an optional bound on the number of iterations.
        name: name of the node.
        parallel_iterations, back_prop, swap_memory: accepted for TensorFlow 1 compatibility.
        return_same_structure: return a one-variable result as a list too.

    Returns:
        The final loop variables in the structure of ``loop_vars`` (a single one unpacked unless
        ``return_same_structure``).

    Raises:
        GraphError: the body returns another structure, dtype or a shape that breaks its invariant.
    """
    if not callable(cond) or not callable(body):
        raise GraphError("while_loop() needs callable cond and body.")
    outer = get_default_graph()
    flat = [convert_to_tensor(v, graph=outer) for v in flatten(loop_vars)]
    if not flat:
        raise GraphError("while_loop() needs at least one loop variable.")
    if shape_invariants is None:
        invariants = [t.shape for t in flat]
    else:
        if not same_structure(loop_vars, _shape_structure(shape_invariants)):
            raise GraphError("while_loop(): shape_invariants must have the structure of loop_vars.")
        invariants = [normalize_shape(leaf.value) for leaf in flatten(_shape_structure(shape_invariants))]
    for t, inv in zip(flat, invariants):
        if not _fits(t.shape, inv):
            raise GraphError(
                f"while_loop(): loop variable {t.name!r} has shape {format_shape(t.shape)}, which does not "
                f"satisfy its shape invariant {format_shape(inv)}."
            )
    node_name = _scope_name(name, "while")
    specs = [(t.dtype, inv) for t, inv in zip(flat, invariants)]
    c_graph, c_in, c_res = trace_function(outer, lambda *a: _call(cond, loop_vars, list(a)), specs,
                                          lambda ins: tuple(ins), f"{node_name}_cond")
    b_graph, b_in, b_res = trace_function(outer, lambda *a: _call(body, loop_vars, list(a)), specs,
                                          lambda ins: tuple(ins), f"{node_name}_body")
    c_out = _as_outputs(c_graph, [c_res], [_bool], "cond")
    if c_out[0].dtype is not _bool or (c_out[0].shape is not None and c_out[0].shape != ()):
        raise GraphError(f"while_loop(): cond must return a bool scalar, got {c_out[0].dtype.name} "
                         f"{format_shape(c_out[0].shape)}.")
    b_flat = flatten(b_res)
    if len(flat) == 1 and len(b_flat) == 1:
        pass
    elif not same_structure(_top_list(loop_vars), _top_list(b_res)) or len(b_flat) != len(flat):
        raise GraphError(f"while_loop(): body must return the structure of loop_vars; it returned {b_res!r}.")
    b_out = _as_outputs(b_graph, b_flat, [t.dtype for t in flat], "body")
    for t, out, inv in zip(flat, b_out, invariants):
        if out.dtype is not t.dtype:
            raise GraphError(
                f"while_loop(): loop variable {t.name!r} is {t.dtype.name} but body returns {out.dtype.name}."
            )
        if not _fits(out.shape, inv):
            raise GraphError(
                f"while_loop(): loop variable {t.name!r} enters the loop with shape {format_shape(inv)} but has "
                f"shape {format_shape(out.shape)} after one iteration; to let its shape vary, pass "
                "shape_invariants."
            )
    caps = _unify_captures([c_graph, b_graph])
    inputs = [*flat, *caps]
    has_max = maximum_iterations is not None
    if has_max:
        inputs.append(convert_to_tensor(maximum_iterations, graph=outer))
    attrs = {
        "cond": _function(c_graph, c_in, caps, c_out),
        "body": _function(b_graph, b_in, caps, b_out),
        "n_vars": len(flat),
        "has_max": has_max,
    }
    node = apply_op("While", inputs, attrs, name=node_name, graph=outer)
    results = list(node.outputs)
    if len(results) == 1 and not return_same_structure:
        return results[0]
    return pack_as(loop_vars, results)


def _top_list(x: Any) -> list:
    """The outer level as a list (TF1 compares loop_vars and body results so: lists in, tuples out)."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _shape_structure(shape_invariants: Any) -> Any:
    """Shapes are lists too: mark each leaf shape so flatten/pack treat it as one value."""
    if isinstance(shape_invariants, dict):
        return {k: _shape_structure(v) for k, v in shape_invariants.items()}
    if isinstance(shape_invariants, (list, tuple)) and not _is_shape(shape_invariants):
        return type(shape_invariants)(_shape_structure(v) for v in shape_invariants) if not hasattr(
            shape_invariants, "_fields") else type(shape_invariants)(*[_shape_structure(v) for v in shape_invariants])
    return _Leaf(shape_invariants)


class _Leaf:
    def __init__(self, value: Any) -> None:
        self.value = value


def _is_shape(x: Any) -> bool:
    return isinstance(x, (list, tuple)) and all(d is None or isinstance(d, int) for d in x)


# -- scan family ---------------------------------------------------------------------------------------
def _scan(fn: Callable[[list, list], tuple[list, list]], carries: list[Tensor], elems: list[Tensor],
          reverse: bool, name: str) -> tuple[list[Tensor], list[Tensor]]:
    """Builds a ``Scan`` node; ``fn(carries, rows) -> (new carries, output rows)`` on flat lists."""
    outer = get_default_graph()
    specs = [(c.dtype, c.shape) for c in carries] + [
        (e.dtype, None if e.shape is None else tuple(e.shape[1:])) for e in elems
    ]
    nc = len(carries)
    result: dict[str, Any] = {}

    def traced(*args):
        new, ys = fn(list(args[:nc]), list(args[nc:]))
        result["new"], result["ys"] = new, ys
        return None

    fg, ins, _ = trace_function(outer, traced, specs, lambda a: tuple(a), name)
    new = _as_outputs(fg, result["new"], [c.dtype for c in carries], "fn")
    ys = _as_outputs(fg, result["ys"], None, "fn")
    for c, t in zip(carries, new):
        if t.dtype is not c.dtype:
            raise GraphError(f"{name}: fn returns {t.dtype.name} for the {c.dtype.name} accumulator.")
        if not _fits(t.shape, c.shape):
            raise GraphError(
                f"{name}: fn returns shape {format_shape(t.shape)} for the accumulator of shape {format_shape(c.shape)}."
            )
    caps = _unify_captures([fg])
    attrs = {"fn": _function(fg, ins, caps, [*new, *ys]), "n_carry": nc, "n_elems": len(elems),
             "reverse": bool(reverse)}
    node = apply_op("Scan", [*carries, *elems, *caps], attrs, name=name, graph=outer)
    return list(node.outputs[:nc]), list(node.outputs[nc:])


def _elems(elems: Any) -> list[Tensor]:
    g = get_default_graph()
    flat = [convert_to_tensor(e, graph=g) for e in flatten(elems)]
    if not flat:
        raise GraphError("elems must hold at least one tensor.")
    return flat


def map_fn(fn: Callable[[Any], Any], elems: Any, dtype: Any = None, name: str | None = None,
           parallel_iterations: int | None = None, back_prop: bool = True, swap_memory: bool = False,
           infer_shape: bool = True) -> Any:
    """Applies ``fn`` to each row of ``elems`` (a tensor or nested structure of tensors) and stacks results.

    Args:
        fn: ``fn(row) -> nested structure of tensors``; ``row`` has the structure of ``elems``.
        elems: tensors sharing their first dimension.
        dtype: the structure of dtypes ``fn`` returns, when it differs from ``elems`` (checked when given).
        name: name of the node.
        parallel_iterations, back_prop, swap_memory, infer_shape: accepted for TensorFlow 1 compatibility.

    Returns:
        The results of ``fn`` stacked along a new first dimension, in ``fn``'s structure.
    """
    flat = _elems(elems)
    out_structure: dict[str, Any] = {}

    def step(_carries, rows):
        res = fn(pack_as(elems, rows))
        out_structure["s"] = res
        return [], flatten(res)

    _, ys = _scan(step, [], flat, False, name or "map")
    if dtype is not None:
        wanted = [as_dtype(d) for d in flatten(dtype)]
        got = [y.dtype for y in ys]
        if wanted != got:
            raise GraphError(
                f"map_fn(): dtype says fn returns {[d.name for d in wanted]}, but it returns {[d.name for d in got]}."
            )
    return pack_as(out_structure["s"], ys)


def _fold(fn: Callable, elems: Any, initializer: Any, reverse: bool, name: str, keep: bool) -> Any:
    flat = _elems(elems)
    g = get_default_graph()
    first = None
    if initializer is None:
        idx = -1 if reverse else 0
        init = [e[idx] for e in flat]
        first = init
        flat = [e[:-1] if reverse else e[1:] for e in flat]
        init_structure = elems
    else:
        init = [convert_to_tensor(v, graph=g) for v in flatten(initializer)]
        init_structure = initializer

    def step(carries, rows):
        res = fn(pack_as(init_structure, carries), pack_as(elems, rows))
        new = flatten(res)
        if len(new) != len(carries):
            raise GraphError(f"{name}: fn must return the structure of the accumulator; it returned {res!r}.")
        return new, (new if keep else [])

    carries, ys = _scan(step, init, flat, reverse, name)
    if not keep:
        return pack_as(init_structure, carries)
    if first is not None:
        from hubkit.ops.shape import concat, expand_dims

        ys = [concat([y, expand_dims(f, 0)] if reverse else [expand_dims(f, 0), y], axis=0)
              for y, f in zip(ys, first)]
    return pack_as(init_structure, ys)


def foldl(fn: Callable[[Any, Any], Any], elems: Any, initializer: Any = None, name: str | None = None,
          parallel_iterations: int | None = None, back_prop: bool = True, swap_memory: bool = False) -> Any:
    """``fn(...fn(fn(initializer, elems[0]), elems[1])..., elems[n-1])``; without ``initializer``, ``elems[0]`` starts.

    Args:
        fn: ``fn(accumulator, row) -> accumulator``.
        elems: a tensor or nested structure of tensors sharing their first dimension.
        initializer: the first accumulator (a nested structure of tensors).
        name: name of the node.

    Returns:
        The final accumulator.
    """
    return _fold(fn, elems, initializer, False, name or "foldl", keep=False)


def foldr(fn: Callable[[Any, Any], Any], elems: Any, initializer: Any = None, name: str | None = None,
          parallel_iterations: int | None = None, back_prop: bool = True, swap_memory: bool = False) -> Any:
    """As :func:`foldl`, from the last row to the first."""
    return _fold(fn, elems, initializer, True, name or "foldr", keep=False)


def scan(fn: Callable[[Any, Any], Any], elems: Any, initializer: Any = None, parallel_iterations: int | None = None,
         back_prop: bool = True, swap_memory: bool = False, infer_shape: bool = True, reverse: bool = False,
         name: str | None = None) -> Any:
    """Every accumulator of a fold, stacked: ``out[i] = fn(out[i-1], elems[i])``.

    Without ``initializer`` the first row is the first accumulator (and the first output).

    Returns:
        The accumulators stacked along a new first dimension, in the accumulator's structure.
    """
    return _fold(fn, elems, initializer, reverse, name or "scan", keep=True)
