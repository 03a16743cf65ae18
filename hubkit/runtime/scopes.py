"""Variable scopes and ``get_variable``: named, shareable variables, as in TensorFlow 1.

A variable's name is its variable-scope path (``"dense/kernel"``); plain ``name_scope``s name ops
only, as in TensorFlow 1. Each graph keeps its own store of the variables ``get_variable`` made
(its :class:`~hubkit.runtime.state.RuntimeGraphState`), so asking twice for one name is an error unless the scope reuses variables.

>>> import hubkit as hk
>>> g = hk.Graph()
>>> with g.as_default():
...     with hk.variable_scope("layer"):
...         w = hk.get_variable("w", [2, 3])
...     with hk.variable_scope("layer", reuse=True):
...         same = hk.get_variable("w", [2, 3])
>>> w.name, same is w
('layer/w', True)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Graph, GraphKeys, as_dtype, format_shape, get_default_graph, normalize_shape
from hubkit.graph.shapes import is_compatible
from hubkit.runtime import initializers, regularizers
from hubkit.runtime.state import runtime_state
from hubkit.runtime.variables import Variable, register_in_collections

__all__ = ["AUTO_REUSE", "VariableScope", "get_variable", "get_variable_scope", "variable_scope"]

_VALID_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.][A-Za-z0-9_.\-]*)*$")


class _AutoReuse:
    """``reuse=hubkit.AUTO_REUSE``: return the variable when it exists, create it otherwise."""

    def __repr__(self) -> str:
        return "hubkit.AUTO_REUSE"


AUTO_REUSE = _AutoReuse()


class VariableScope:
    """A variable scope: the prefix of variable names made inside it, and whether it reuses them.

    Attributes:
        name: full scope path ("block/dense"), "" at the root.
        reuse: None (create; error on an existing name), True (only return existing variables)
            or ``AUTO_REUSE``.
        original_name_scope: the name scope opened when the scope was first entered (ends in "/").
    """

    def __init__(self, name: str, reuse: Any = None, original_name_scope: str = "") -> None:
        self.name = name
        self.reuse = reuse
        self.original_name_scope = original_name_scope

    def reuse_variables(self) -> None:
        """Makes later ``get_variable`` calls in this scope return existing variables."""
        self.reuse = True

    def __repr__(self) -> str:
        return f"<hubkit.VariableScope {self.name!r} reuse={self.reuse!r}>"


_ROOT = VariableScope("")


def _scope_stack(graph: Graph) -> list[VariableScope]:
    return runtime_state(graph).scope_stack


def _scope_counts(graph: Graph) -> dict[str, int]:
    return runtime_state(graph).scope_counts


def _variable_store(graph: Graph) -> dict[str, Variable]:
    return runtime_state(graph).variable_store


def get_variable_scope() -> VariableScope:
    """The innermost variable scope of the default graph."""
    stack = _scope_stack(get_default_graph())
    return stack[-1] if stack else _ROOT


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _unique_scope_name(graph: Graph, parent: str, base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first one no variable scope has used yet."""
    counts = _scope_counts(graph)
    if not counts.get(_join(parent, base)):
        return base
    i = 1
    while counts.get(_join(parent, f"{base}_{i}")):
        i += 1
    return f"{base}_{i}"


def claim_scope_name(graph: Graph, base: str) -> str:
    """``base`` in the current name scope, made unique against node names and variable scopes alike.

    A module placed in a graph takes its scope this way, so a later module or
    ``variable_scope(None, default_name=...)`` of the same name gets ``base_1``, as in TensorFlow.
    """
    counts = _scope_counts(graph)
    while True:
        name = graph.unique_name(base)
        if not counts.get(name):
            counts[name] = 1
            return name


@contextlib.contextmanager
def variable_scope(
    name_or_scope: str | VariableScope | None, default_name: str | None = None, reuse: Any = None
) -> Iterator[VariableScope]:
    """Opens a variable scope (and a name scope for the ops made inside it) in the default graph.

    Args:
        name_or_scope: the scope's name, relative to the current variable scope, or a
            :class:`VariableScope` captured earlier to re-enter it. None uses ``default_name``.
        default_name: used when ``name_or_scope`` is None, made unique as TensorFlow does:
            the first unnamed "dense" scope is ``dense``, the next ``dense_1``.
        reuse: True returns existing variables (and refuses to create new ones),
            ``hubkit.AUTO_REUSE`` returns or creates them; None inherits the enclosing scope's.

    Yields:
        The :class:`VariableScope`.

    Raises:
        GraphError: neither a name nor a default name is given, or a name is malformed.
    """
    if reuse is not None and reuse is not True and reuse is not False and reuse is not AUTO_REUSE:
        raise GraphError(f"reuse must be None, True, False or hubkit.AUTO_REUSE, got {reuse!r}.")
    graph = get_default_graph()
    stack = _scope_stack(graph)
    parent = stack[-1] if stack else _ROOT
    inherited = parent.reuse if reuse is None or reuse is False else reuse
    if isinstance(name_or_scope, VariableScope):
        full = name_or_scope.name
        name_scope_arg = name_or_scope.original_name_scope or None
        inherited = name_or_scope.reuse if reuse is None or reuse is False else reuse
    else:
        if name_or_scope is None:
            if not default_name:
                raise GraphError("variable_scope() needs a name or a default_name.")
            leaf = _unique_scope_name(graph, parent.name, default_name)
        else:
            leaf = name_or_scope
        if not isinstance(leaf, str) or not _VALID_NAME.match(leaf):
            raise GraphError(f"Invalid variable scope name {leaf!r}: use letters, digits, '_', '.', '-' and '/'.")
        full = _join(parent.name, leaf)
        name_scope_arg = leaf
    counts = _scope_counts(graph)
    counts[full] = counts.get(full, 0) + 1
    with graph.name_scope(name_scope_arg) as opened:
        scope = VariableScope(full, inherited, opened + "/" if opened else "")
        stack.append(scope)
        try:
            yield scope
        finally:
            stack.pop()


def _resolve_initializer(initializer: Any, shape: Any, dtype: Any) -> tuple[Any, Any]:
    """(initializer object, shape): values (arrays, numbers) become a constant initializer."""
    if initializer is None:
        init = initializers.glorot_uniform() if dtype.is_floating else initializers.zeros()
        return init, shape
    if isinstance(initializer, (initializers.Initializer, str, dict)):
        return initializers.get(initializer), shape
    if callable(initializer) and hasattr(initializer, "config"):
        return initializer, shape  # a user-defined declarative initializer
    if callable(initializer):
        raise GraphError(
            f"Initializer {initializer!r} is a plain function; graphs store initializers as data, so use a "
            "hubkit.initializers object (or an object with a .config) instead."
        )
    value = np.asarray(initializer)
    if value.dtype.kind not in "biuf":
        raise GraphError(f"Cannot initialize a variable from {initializer!r}.")
    if shape is None:
        shape = value.shape
    return initializers.constant(value), shape


def _as_regularizer(regularizer: Any) -> Any:
    if regularizer is None or callable(regularizer):
        return regularizer
    if isinstance(regularizer, (str, dict)):
        return regularizers.get(regularizer)
    raise GraphError(f"Cannot use {regularizer!r} as a regularizer; pass hubkit.regularizers.l2(scale) or similar.")


def get_variable(
    name: str,
    shape: Any = None,
    dtype: Any = "float32",
    initializer: Any = None,
    trainable: bool = True,
    regularizer: Any = None,
    partitioner: Any = None,
    collections: Any = None,
) -> Any:
    """Creates the variable ``<current variable scope>/<name>`` in the default graph, or reuses it.

    The variable is bound to the default graph, added to ``GLOBAL_VARIABLES`` (and
    ``TRAINABLE_VARIABLES`` when trainable), and its regularization loss, if any, is added to
    ``REGULARIZATION_LOSSES``. Its value is made from the initializer on first read.

    Args:
        name: the name inside the current variable scope ("kernel").
        shape: the static shape; may be omitted when ``initializer`` is an array.
        dtype: element type (default float32).
        initializer: a ``hubkit.initializers`` object, name or config, or an array-like value.
            Default: ``glorot_uniform`` for floats, ``zeros`` for integers and bools.
        trainable: whether optimizers update it by default.
        regularizer: a function of the variable's tensor returning a scalar loss tensor
            (``hubkit.regularizers.l2(1e-4)``).

        collections: the collections to add the variable to instead of ``GLOBAL_VARIABLES`` (as TF1;
            a trainable variable still joins ``TRAINABLE_VARIABLES``).
        partitioner: a function of (shape, dtype) giving the parts per axis
            (``hubkit.fixed_size_partitioner(n)``, ...): the variable is then made of ``<name>/part_<i>``.

    Returns:
        The :class:`hubkit.Variable` (a :class:`hubkit.PartitionedVariable`, the list of its parts, with a
        partitioner); use it wherever a tensor is expected.

    Raises:
        GraphError: the name exists and the scope does not reuse, or reuse=True and it does not
            exist, or a reused variable's shape or dtype differs, or the shape is unknown.
    """
    if not isinstance(name, str) or not _VALID_NAME.match(name):
        raise GraphError(f"Invalid variable name {name!r}: use letters, digits, '_', '.', '-' and '/'.")
    if partitioner is not None:
        from hubkit.runtime.partitioned import get_partitioned_variable

        return get_partitioned_variable(get_variable, name, shape, dtype, initializer, trainable, regularizer,
                                        partitioner)
    graph = get_default_graph()
    scope = get_variable_scope()
    full = _join(scope.name, name)
    dt = as_dtype(dtype)
    store = _variable_store(graph)
    existing = store.get(full)
    if existing is not None:
        if scope.reuse is not True and scope.reuse is not AUTO_REUSE:
            raise GraphError(
                f"Variable {full!r} already exists; to share it, get it inside "
                "variable_scope(..., reuse=True) or reuse=hubkit.AUTO_REUSE."
            )
        if shape is not None and not is_compatible(normalize_shape(shape), existing.shape):
            raise GraphError(
                f"Variable {full!r} has shape {format_shape(existing.shape)}; it was requested with shape "
                f"{format_shape(normalize_shape(shape))}."
            )
        if existing.dtype is not dt:
            raise GraphError(
                f"Variable {full!r} has dtype {existing.dtype.name}; it was requested with dtype {dt.name}."
            )
        existing._as_graph_tensor(graph)
        return existing
    if scope.reuse is True:
        raise GraphError(
            f"Variable {full!r} does not exist, and reuse=True only returns existing variables; "
            "use reuse=hubkit.AUTO_REUSE to create missing ones."
        )
    if graph.has_node(full):
        raise GraphError(f"Cannot create variable {full!r}: the graph already has a node of that name.")
    init, shape = _resolve_initializer(initializer, shape, dt)
    sh = normalize_shape(shape)
    if sh is None or any(d is None for d in sh):
        raise GraphError(f"Variable {full!r} needs a fully known shape, got {format_shape(sh)}.")
    reg = _as_regularizer(regularizer)
    var = Variable(name=full, shape=sh, dtype=dt, initializer=init, trainable=trainable)
    tensor = var._as_graph_tensor(graph)
    store[full] = var
    if collections is None:
        register_in_collections(graph, var)
    else:  # TF1: these collections instead of GLOBAL_VARIABLES (TRAINABLE_VARIABLES still when trainable)
        keys = list(collections)
        if trainable and GraphKeys.TRAINABLE_VARIABLES not in keys:
            keys.append(GraphKeys.TRAINABLE_VARIABLES)
        for key in keys:
            graph.add_to_collection(key, var)
    if reg is not None:
        with graph.as_default(), graph.name_scope(f"{full}/Regularizer/"):
            loss = reg(tensor)
        if loss is not None:
            graph.add_to_collection(GraphKeys.REGULARIZATION_LOSSES, loss)
    return var
