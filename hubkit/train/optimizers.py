"""Optimizers, TensorFlow-1 style: ``train_op = hubkit.train.Adam(1e-3).minimize(loss)``.

``minimize`` = ``compute_gradients`` (symbolic gradients, one per variable) + ``apply_gradients``
(one fused, in-place update op per variable, grouped into the returned op). Running the op in a
``Session`` applies one step. Slot variables (Adam's moments, Momentum's accumulator, ...) are real
``hubkit.Variable`` objects named after the variable and the optimizer: ``dense/kernel/Adam`` and
``dense/kernel/Adam_1``. Sparse gradients (``IndexedSlices``, e.g. from an embedding lookup) update
only the rows they name; sparse Adam is "lazy Adam" (absent rows' moments are not decayed).

>>> import numpy as np, hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     w = hk.Variable([1.0, -2.0], name="w")
...     loss = hk.reduce_sum(hk.square(w))
...     step = hk.train.GradientDescent(0.25).minimize(loss)
>>> hk.Session(g).run(step); w.value
array([ 0.5, -1. ], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import (
    DType,
    Graph,
    Node,
    Tensor,
    as_dtype,
    constant,
    control_dependencies,
    convert_to_tensor,
    get_default_graph,
)
from hubkit.ops import api
from hubkit.ops.registry import apply_op
from hubkit.runtime import initializers
from hubkit.runtime.gradients import IndexedSlices, gradients, upstream_nodes
from hubkit.runtime.variables import Variable, register_in_collections

__all__ = [
    "Adagrad",
    "Adam",
    "GradientDescent",
    "Momentum",
    "Optimizer",
    "RMSProp",
    "create_global_step",
    "get_global_step",
]

GLOBAL_STEP = "global_step"


def _reachable_trainable(loss: Tensor) -> list[Variable]:
    """Trainable variables bound in ``loss.graph`` whose read node ``loss`` depends on (graph order)."""
    graph = loss.graph
    seen = upstream_nodes([loss.node])
    out = []
    for name, t in graph.variable_tensors.items():
        var = graph.variables.get(name)
        if t.node in seen and var is not None and var.trainable:
            out.append(var)
    return out


def _as_variable(graph: Graph, v: Any) -> Variable:
    if isinstance(v, Variable):
        return v
    if isinstance(v, Tensor) and v.node.op == "Variable" and v.node.name in graph.variables:
        return graph.variables[v.node.name]
    raise GraphError(f"Optimizers update hubkit.Variable objects; {v!r} is not one.")


def _refuse_non_trainable(variables: Sequence[Variable], what: str) -> None:
    """Non-trainable variables (a frozen layer's, a ``Module(trainable=False)``'s) must never change."""
    frozen = sorted({v.name for v in variables if not v.trainable})
    if frozen:
        raise GraphError(
            f"{what} holds non-trainable variables {frozen}; optimizers update only trainable variables "
            "(those of a frozen layer or a Module(trainable=False) never change)."
        )


def _check_rate(value: Any, what: str) -> Any:
    if isinstance(value, Tensor):
        return value
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise GraphError(f"{what} must be a number or a scalar tensor, got {value!r}.") from None
    if not rate >= 0:
        raise GraphError(f"{what} must be a non-negative number, got {value!r}.")
    return rate


class Optimizer:
    """Base class of the optimizers.

    Subclasses list their slots in ``slot_specs`` ((name, initializer) pairs, first slot named
    ``<var>/<Optimizer>``, the next ``<var>/<Optimizer>_1``, ...) and build the update of one variable
    in ``_apply_dense`` / ``_apply_sparse``.

    Args:
        learning_rate: a non-negative number or a scalar float tensor.
        name: the optimizer's name: the name scope of its ops and the suffix of its slot variables.
    """

    slot_specs: tuple[tuple[str, Any], ...] = ()

    def __init__(self, learning_rate: Any, name: str) -> None:
        self.learning_rate = _check_rate(learning_rate, "learning_rate")
        self.name = name
        self._slots: dict[str, dict[Variable, Variable]] = {slot: {} for slot, _ in self.slot_specs}
        self._non_slot: dict[str, Variable] = {}
        self._created: list[Variable] = []

    # -- public API --------------------------------------------------------------------------------
    def compute_gradients(self, loss: Tensor, var_list: Sequence[Any] | None = None) -> list[tuple[Any, Variable]]:
        """Gradients of ``loss`` for each variable.

        Args:
            loss: a float tensor (summed when not a scalar).
            var_list: variables to differentiate, all trainable; default: every trainable variable
                of ``loss.graph`` that ``loss`` depends on.

        Returns:
            ``(gradient, variable)`` pairs; a gradient is a Tensor, an ``IndexedSlices`` or None.

        Raises:
            GraphError: ``var_list`` holds a non-trainable variable (all such are named, sorted), or
                there is no variable to optimize.
        """
        loss = convert_to_tensor(loss)
        graph = loss.graph
        variables = _reachable_trainable(loss) if var_list is None else [_as_variable(graph, v) for v in var_list]
        _refuse_non_trainable(variables, "var_list")
        if not variables:
            raise GraphError(f"Loss {loss.name!r} depends on no trainable variable; there is nothing to optimize.")
        grads = gradients(loss, variables)
        return list(zip(grads, variables))

    def apply_gradients(
        self, grads_and_vars: Sequence[tuple[Any, Variable]], global_step: Variable | None = None, name: str | None = None
    ) -> Node:
        """An op that applies each gradient to its variable, in place, and increments ``global_step``.

        Raises:
            GraphError: every gradient is None (the loss does not depend on the variables), or a
                variable is not trainable.
        """
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            names = sorted(getattr(v, "name", repr(v)) for _, v in grads_and_vars)
            raise GraphError(f"No gradient flows to any of the variables {names}; check the loss depends on them.")
        first = pairs[0][0]
        graph = (first.values if isinstance(first, IndexedSlices) else first).graph
        _refuse_non_trainable([_as_variable(graph, v) for _, v in pairs], "grads_and_vars")
        updates: list[Node] = []
        with graph.as_default(), graph.name_scope(name or self.name):
            lr_cache: dict[DType, Tensor] = {}
            for grad, var in pairs:
                var = _as_variable(graph, var)
                var_t = var._as_graph_tensor(graph)
                slots = [self._slot(graph, var, slot, init) for slot, init in self.slot_specs]
                slot_ts = [s._as_graph_tensor(graph) for s in slots]
                lr = lr_cache.get(var.dtype)
                if lr is None:
                    lr = lr_cache[var.dtype] = self._rate(self.learning_rate, var.dtype)
                if isinstance(grad, IndexedSlices):
                    updates.append(self._apply_sparse(grad.values, grad.indices, var_t, slot_ts, lr, graph))
                else:
                    grad = convert_to_tensor(grad, graph=graph)
                    updates.append(self._apply_dense(grad, var_t, slot_ts, lr, graph))
            with control_dependencies(updates):
                updates.extend(self._finish(graph))
                if global_step is not None:
                    step = global_step._as_graph_tensor(graph)
                    updates.append(api.assign_add(step, constant(1, dtype=step.dtype)))
            return api.group(*updates, name="update")

    def minimize(
        self,
        loss: Tensor,
        var_list: Sequence[Any] | None = None,
        global_step: Variable | None = None,
        name: str | None = None,
    ) -> Node:
        """``apply_gradients(compute_gradients(loss, var_list), global_step)``: one training step op."""
        return self.apply_gradients(self.compute_gradients(loss, var_list), global_step=global_step, name=name)

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        """The slot variable ``name`` ("m", "momentum", ...) of ``var``, or None when not created yet."""
        if name not in self._slots:
            raise GraphError(f"{type(self).__name__} has no slot {name!r}; expected one of {sorted(self._slots)}.")
        return self._slots[name].get(var)

    def get_slot_names(self) -> list[str]:
        return sorted(self._slots)

    def variables(self) -> list[Variable]:
        """Every variable this optimizer created: slots (per variable) and its own (e.g. beta powers)."""
        own = list(self._non_slot.values())
        return [v for v in self._created if not any(v is o for o in own)] + own

    # -- helpers for subclasses -----------------------------------------------------------------
    def _rate(self, value: Any, dtype: DType) -> Tensor:
        if isinstance(value, Tensor):
            return value if value.dtype is dtype else api.cast(value, dtype)
        return constant(value, dtype=dtype)

    def _new_variable(self, graph: Graph, base: str, value_or_init: Any, like: Variable | None) -> Variable:
        with graph.name_scope(None):
            name = graph.unique_name(base)
        if like is None:
            var = Variable(np.asarray(value_or_init, dtype=np.float64), name=name, trainable=False, dtype="float64")
        else:
            var = Variable(name=name, shape=like.shape, dtype=like.dtype, initializer=value_or_init, trainable=False)
        var._as_graph_tensor(graph)
        register_in_collections(graph, var)
        self._created.append(var)
        return var

    def _slot(self, graph: Graph, var: Variable, slot: str, init: Any) -> Variable:
        table = self._slots[slot]
        found = table.get(var)
        if found is None:
            index = [s for s, _ in self.slot_specs].index(slot)
            base = f"{var.name}/{self.name}" + (f"_{index}" if index else "")
            found = table[var] = self._new_variable(graph, base, init, var)
        else:
            found._as_graph_tensor(graph)
        return found

    def _non_slot_variable(self, graph: Graph, name: str, value: float) -> Tensor:
        var = self._non_slot.get(name)
        if var is None:
            var = self._non_slot[name] = self._new_variable(graph, name, value, None)
        return var._as_graph_tensor(graph)

    def _apply_dense(self, grad: Tensor, var: Tensor, slots: list[Tensor], lr: Tensor, graph: Graph) -> Node:
        raise NotImplementedError

    def _apply_sparse(
        self, values: Tensor, indices: Tensor, var: Tensor, slots: list[Tensor], lr: Tensor, graph: Graph
    ) -> Node:
        raise NotImplementedError

    def _finish(self, graph: Graph) -> list[Node]:
        """Ops to run after every variable's update (e.g. Adam's beta powers)."""
        return []

    def __repr__(self) -> str:
        return f"<hubkit.train.{type(self).__name__} {self.name!r} learning_rate={self.learning_rate!r}>"


class GradientDescent(Optimizer):
    """``var -= learning_rate * grad``.

    Args:
        learning_rate: step size.
        name: name scope of its ops.
    """

    def __init__(self, learning_rate: Any, name: str = "GradientDescent") -> None:
        super().__init__(learning_rate, name)

    def _apply_dense(self, grad, var, slots, lr, graph):
        return apply_op("ApplyGradientDescent", [var, lr, grad], name="ApplyGradientDescent", graph=graph)

    def _apply_sparse(self, values, indices, var, slots, lr, graph):
        return apply_op(
            "SparseApplyGradientDescent", [var, lr, values, indices], name="SparseApplyGradientDescent", graph=graph
        )


class Momentum(Optimizer):
    """``accum = momentum * accum + grad; var -= learning_rate * accum`` (slot "momentum").

    Args:
        learning_rate: step size.
        momentum: decay of the accumulator.
        use_nesterov: Nesterov's variant: ``var -= learning_rate * (grad + momentum * accum)``.
        name: name scope of its ops and suffix of its slot ("dense/kernel/Momentum").
    """

    slot_specs = (("momentum", initializers.zeros()),)

    def __init__(self, learning_rate: Any, momentum: float, use_nesterov: bool = False, name: str = "Momentum") -> None:
        super().__init__(learning_rate, name)
        self.momentum = float(_check_rate(momentum, "momentum"))
        self.use_nesterov = bool(use_nesterov)

    def _attrs(self):
        return {"momentum": self.momentum, "use_nesterov": self.use_nesterov}

    def _apply_dense(self, grad, var, slots, lr, graph):
        return apply_op("ApplyMomentum", [var, slots[0], lr, grad], self._attrs(), name="ApplyMomentum", graph=graph)

    def _apply_sparse(self, values, indices, var, slots, lr, graph):
        return apply_op(
            "SparseApplyMomentum",
            [var, slots[0], lr, values, indices],
            self._attrs(),
            name="SparseApplyMomentum",
            graph=graph,
        )


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with TensorFlow 1's update and defaults (slots "m" and "v").

    Args:
        learning_rate: step size.
        beta1: decay of the first moment.
        beta2: decay of the second moment.
        epsilon: added to ``sqrt(v)`` (the "epsilon hat" of the paper).
        name: name scope of its ops and suffix of its slots ("dense/kernel/Adam", "dense/kernel/Adam_1").

    The beta powers ``beta1**t`` and ``beta2**t`` are float64 variables ``beta1_power`` and
    ``beta2_power`` of the optimizer (see :meth:`variables`).
    """

    slot_specs = (("m", initializers.zeros()), ("v", initializers.zeros()))

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
        name: str = "Adam",
    ) -> None:
        super().__init__(learning_rate, name)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        for what, b in (("beta1", self.beta1), ("beta2", self.beta2)):
            if not 0.0 <= b < 1.0:
                raise GraphError(f"Adam {what} must lie in [0, 1), got {b!r}.")

    def _powers(self, graph):
        return (
            self._non_slot_variable(graph, "beta1_power", self.beta1),
            self._non_slot_variable(graph, "beta2_power", self.beta2),
        )

    def _attrs(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}

    def _apply_dense(self, grad, var, slots, lr, graph):
        b1p, b2p = self._powers(graph)
        return apply_op("ApplyAdam", [var, *slots, b1p, b2p, lr, grad], self._attrs(), name="ApplyAdam", graph=graph)

    def _apply_sparse(self, values, indices, var, slots, lr, graph):
        b1p, b2p = self._powers(graph)
        return apply_op(
            "SparseApplyAdam",
            [var, *slots, b1p, b2p, lr, values, indices],
            self._attrs(),
            name="SparseApplyAdam",
            graph=graph,
        )

    def _finish(self, graph):
        b1p, b2p = self._powers(graph)
        return [
            api.assign(b1p, api.multiply(b1p, constant(self.beta1, dtype=b1p.dtype))),
            api.assign(b2p, api.multiply(b2p, constant(self.beta2, dtype=b2p.dtype))),
        ]


class Adagrad(Optimizer):
    """``accum += grad**2; var -= learning_rate * grad / sqrt(accum)`` (slot "accumulator").

    Args:
        learning_rate: step size.
        initial_accumulator_value: starting value of the accumulator (positive, as in TensorFlow 1).
        name: name scope of its ops and suffix of its slot.
    """

    def __init__(self, learning_rate: Any, initial_accumulator_value: float = 0.1, name: str = "Adagrad") -> None:
        if not float(initial_accumulator_value) > 0:
            raise GraphError(f"initial_accumulator_value must be positive, got {initial_accumulator_value!r}.")
        self.slot_specs = (("accumulator", initializers.constant(float(initial_accumulator_value))),)
        super().__init__(learning_rate, name)

    def _apply_dense(self, grad, var, slots, lr, graph):
        return apply_op("ApplyAdagrad", [var, slots[0], lr, grad], name="ApplyAdagrad", graph=graph)

    def _apply_sparse(self, values, indices, var, slots, lr, graph):
        return apply_op(
            "SparseApplyAdagrad", [var, slots[0], lr, values, indices], name="SparseApplyAdagrad", graph=graph
        )


class RMSProp(Optimizer):
    """RMSProp as TensorFlow 1 applies it (slots "rms", starting at ones, and "momentum").

    ``rms += (1 - decay) * (grad**2 - rms)``; ``mom = momentum * mom + lr * grad / sqrt(rms + epsilon)``;
    ``var -= mom``.

    Args:
        learning_rate: step size.
        decay: discount of the running mean of squared gradients.
        momentum: momentum of the update.
        epsilon: added inside the square root.
        name: name scope of its ops and suffix of its slots.
    """

    slot_specs = (("rms", initializers.ones()), ("momentum", initializers.zeros()))

    def __init__(
        self,
        learning_rate: Any,
        decay: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-10,
        name: str = "RMSProp",
    ) -> None:
        super().__init__(learning_rate, name)
        self.decay, self.momentum, self.epsilon = float(decay), float(momentum), float(epsilon)

    def _attrs(self):
        return {"rho": self.decay, "momentum": self.momentum, "epsilon": self.epsilon}

    def _apply_dense(self, grad, var, slots, lr, graph):
        return apply_op("ApplyRMSProp", [var, *slots, lr, grad], self._attrs(), name="ApplyRMSProp", graph=graph)

    def _apply_sparse(self, values, indices, var, slots, lr, graph):
        return apply_op(
            "SparseApplyRMSProp",
            [var, *slots, lr, values, indices],
            self._attrs(),
            name="SparseApplyRMSProp",
            graph=graph,
        )


def get_global_step(graph: Graph | None = None) -> Variable | None:
    """The graph's global step variable (see :func:`create_global_step`), or None."""
    g = graph or get_default_graph()
    found = g.get_collection(GLOBAL_STEP)
    return found[0] if found else None


def create_global_step(graph: Graph | None = None) -> Variable:
    """Creates the int64 scalar variable ``global_step`` (0, not trainable) that ``minimize`` can count in.

    Raises:
        GraphError: the graph already has one.
    """
    g = graph or get_default_graph()
    if get_global_step(g) is not None:
        raise GraphError("This graph already has a global step; use hubkit.train.get_global_step().")
    with g.name_scope(None):
        name = g.unique_name(GLOBAL_STEP)
    var = Variable(np.zeros((), np.int64), name=name, trainable=False, dtype=as_dtype("int64"))
    var._as_graph_tensor(g)
    register_in_collections(g, var)
    g.add_to_collection(GLOBAL_STEP, var)
    return var
