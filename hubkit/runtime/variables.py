"""Variables: named, mutable NumPy arrays that graphs read and optimizers update in place."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import DType, Graph, GraphKeys, Tensor, as_dtype, format_shape, get_default_graph
from hubkit.graph.shapes import is_compatible, normalize_shape
from hubkit.runtime.state import runtime_state

__all__ = ["Variable", "bind_variable", "register_in_collections"]

_FROM_VARIABLE: Any = object()  # bind_variable's default: record the variable's own initializer config


class Variable:
    """A named array that lives outside any session; graphs read it and update ops write it.

    Args:
        initial_value: an array-like, or None when ``initializer`` is given.
        name: the variable's name (a module-relative path such as ``"dense/kernel"``).
        trainable: whether optimizers update it by default.
        dtype: element type; defaults to the initial value's (float values become float32).
        shape: required with ``initializer``.
        initializer: a declarative initializer (``hubkit.initializers.*``) run lazily, on first read.

    >>> v = Variable([1.0, 2.0], name="v")
    >>> v.assign([3.0, 4.0]); v.value
    array([3., 4.], dtype=float32)
    """

    _version = 0  # counts writes: _writable() before one and _written() after it (caches of derived values check it)

    def __init__(
        self,
        initial_value: Any = None,
        name: str | None = None,
        trainable: bool = True,
        dtype: Any = None,
        shape: Any = None,
        initializer: Any = None,
    ) -> None:
        self.name = name or "Variable"
        self.trainable = bool(trainable)
        self.initializer = initializer
        self._lock = threading.Lock()
        if initial_value is None:
            if initializer is None:
                raise GraphError(f"Variable {self.name!r} needs an initial_value or an initializer.")
            sh = normalize_shape(shape)
            if sh is None or any(d is None for d in sh):
                raise GraphError(f"Variable {self.name!r} needs a fully known shape, got {format_shape(sh)}.")
            self.dtype: DType = as_dtype(dtype or "float32")
            self.shape: tuple = sh
            self._value: np.ndarray | None = None
        else:
            try:
                arr = np.asarray(initial_value)
            except (ValueError, TypeError) as e:  # ragged nesting such as [[1, 2], [3]]
                raise GraphError(f"Variable {self.name!r}: cannot use {initial_value!r} as a value: {e}") from None
            if arr.dtype.kind not in "biuf":
                raise GraphError(
                    f"Variable {self.name!r} needs a numeric or bool value, got dtype {arr.dtype} ({initial_value!r})."
                )
            if dtype is None:
                dt = as_dtype("float32") if arr.dtype.kind == "f" else as_dtype(arr.dtype)
            else:
                dt = as_dtype(dtype)
            self.dtype = dt
            self._value = np.array(arr, dtype=dt.np_dtype, copy=True)
            self.shape = tuple(self._value.shape)

    @classmethod
    def from_array(cls, array: np.ndarray, name: str | None = None, trainable: bool = True) -> Variable:
        """A variable backed by ``array`` itself, without a copy (a memory-mapped array stays mapped).

        The first in-place update of a read-only array copies it (copy-on-write); a writable array is
        updated in place.

        Args:
            array: a NumPy array of a hubkit dtype (numbers or bools).
            name: the variable's name.
            trainable: whether optimizers update it by default.

        Raises:
            GraphError: ``array`` is not a NumPy array of numbers or bools.
        """
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise GraphError(
                f"Variable.from_array needs a NumPy array of numbers or bools, got {type(array).__name__}"
                + (f" of dtype {array.dtype}" if isinstance(array, np.ndarray) else "") + "."
            )
        var = cls.__new__(cls)
        var.name = name or "Variable"
        var.trainable = bool(trainable)
        var.initializer = None
        var._lock = threading.Lock()
        var.dtype = as_dtype(array.dtype)
        var.shape = tuple(array.shape)
        var._value = array
        return var

    # -- value -------------------------------------------------------------------------------------
    @property
    def value(self) -> np.ndarray:
        """The current value (created from the initializer on first read).

        The array itself, not a copy. Change it through :meth:`assign` and the other update methods
        (or an optimizer): optimised plans keep forms derived from it (packed weights, Winograd
        transforms, folded constants) and remake them when the variable counts a write, which writing
        into this array directly does not.
        """
        v = self._value
        if v is None:
            with self._lock:
                if self._value is None:
                    self._value = np.asarray(self.initializer(self.shape, self.dtype), dtype=self.dtype.np_dtype)
                v = self._value
        return v

    def numpy(self) -> np.ndarray:
        """A copy of the current value."""
        return np.array(self.value, copy=True)

    @property
    def is_initialized(self) -> bool:
        return self._value is not None

    def _check(self, arr: np.ndarray, what: str) -> None:
        if not is_compatible(self.shape, arr.shape):
            raise GraphError(
                f"Cannot {what} variable {self.name!r}: shape {format_shape(tuple(arr.shape))} does not match "
                f"{format_shape(self.shape)}."
            )

    def _coerce(self, value: Any, what: str) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype != self.dtype.np_dtype:
            if not np.can_cast(arr.dtype, self.dtype.np_dtype, "same_kind") and not (
                arr.dtype.kind in "iub" and self.dtype.is_floating
            ):
                raise GraphError(f"Cannot {what} variable {self.name!r} ({self.dtype.name}) with {arr.dtype} values.")
            arr = arr.astype(self.dtype.np_dtype)
        return arr

    def _writable(self) -> np.ndarray:
        """The value's array, to be written in place; the writer calls :meth:`_written` when it has written.

        The version counts on both sides of the write, so a form derived from the values while they
        were being written (by a plan running in another thread) is never kept as current: it was made
        under a version that the write's end moves past.
        """
        v = self.value
        self._version += 1
        if not v.flags.writeable:
            v = np.array(v, copy=True)
            self._value = v
        return v

    def _written(self) -> None:
        """Ends a write begun by :meth:`_writable`."""
        self._version += 1

    def assign(self, value: Any) -> None:
        """Sets the value (copied into the existing buffer when it can be written)."""
        arr = self._coerce(value, "assign")
        self._check(arr, "assign")
        if self._value is None:
            self._value = np.array(arr, copy=True)
            self._version += 1
            return
        np.copyto(self._writable(), arr)
        self._written()

    def _delta(self, delta: Any) -> np.ndarray:
        """``delta`` as this variable's dtype, refused unless it broadcasts to the variable's shape."""
        arr = self._coerce(delta, "update")
        try:
            fits = np.broadcast_shapes(arr.shape, self.shape) == tuple(self.shape)
        except ValueError:
            fits = False
        if not fits:
            raise GraphError(
                f"Cannot update variable {self.name!r} of shape {format_shape(self.shape)} by a value of shape "
                f"{format_shape(tuple(arr.shape))}."
            )
        return arr

    def assign_add(self, delta: Any) -> None:
        """``value += delta`` in place (``delta`` may broadcast, e.g. a scalar)."""
        arr = self._delta(delta)
        v = self._writable()
        np.add(v, arr, out=v)
        self._written()

    def assign_sub(self, delta: Any) -> None:
        """``value -= delta`` in place (``delta`` may broadcast, e.g. a scalar)."""
        arr = self._delta(delta)
        v = self._writable()
        np.subtract(v, arr, out=v)
        self._written()

    def scatter_sub(self, indices: Any, updates: Any) -> None:
        """``value[indices] -= updates``, accumulating repeated indices; only those rows are touched."""
        v = self._writable()
        try:
            np.subtract.at(v, np.asarray(indices), self._coerce(updates, "update"))
        finally:
            self._written()

    # -- graphs ---------------------------------------------------------------------------------------
    def _as_graph_tensor(self, graph: Graph) -> Tensor:
        """The tensor reading this variable in ``graph`` (one read node per graph, see :func:`bind_variable`)."""
        return bind_variable(graph, self)

    def tensor(self, graph: Graph | None = None) -> Tensor:
        """This variable's read tensor in ``graph`` (default graph when None)."""
        return self._as_graph_tensor(graph or get_default_graph())

    def __repr__(self) -> str:
        return f"<hubkit.Variable {self.name!r} shape={format_shape(self.shape)} dtype={self.dtype.name}>"

    # Operators act on the variable's tensor in the default graph, as TF1 variables do.
    def __add__(self, o): return self.tensor() + o
    def __radd__(self, o): return o + self.tensor()
    def __sub__(self, o): return self.tensor() - o
    def __rsub__(self, o): return o - self.tensor()
    def __mul__(self, o): return self.tensor() * o
    def __rmul__(self, o): return o * self.tensor()
    def __truediv__(self, o): return self.tensor() / o
    def __rtruediv__(self, o): return o / self.tensor()
    def __matmul__(self, o): return self.tensor() @ o
    def __rmatmul__(self, o): return o @ self.tensor()
    def __neg__(self): return -self.tensor()
    def __pow__(self, o): return self.tensor() ** o
    def __getitem__(self, k): return self.tensor()[k]


def bind_variable(graph: Graph, var: Variable, node_name: str | None = None, initializer: Any = _FROM_VARIABLE) -> Tensor:
    """The tensor reading ``var`` in ``graph``: the one way a variable enters a graph.

    Idempotent: the first call creates a ``Variable`` read node, later calls return it. The node is
    created outside every name scope and every ``control_dependencies`` block, so reading a variable
    never waits for, or triggers, anything else (an optimizer's update, say).

    Args:
        graph: the graph to read the variable in.
        var: the variable.
        node_name: the read node's name; default: the variable's name, made unique when taken.
        initializer: the ``initializer`` attribute to record (a config); default: the variable's own.
    """
    state = runtime_state(graph)
    t = state.read_tensors.get(id(var))
    if t is not None:
        return t
    if initializer is _FROM_VARIABLE:
        initializer = getattr(var.initializer, "config", None)
    attrs = {"dtype": var.dtype, "shape": var.shape, "trainable": var.trainable, "initializer": initializer}
    with graph.name_scope(None), graph.control_dependencies(None):
        if node_name is None:
            node_name = var.name if not graph.has_node(var.name) else graph.unique_name(var.name.replace(":", "_"))
        node = graph.create_node("Variable", [], attrs, [(var.dtype, var.shape)], name=node_name, unique=False)
    t = node.outputs[0]
    graph.variables[node.name] = var
    graph.variable_tensors[node.name] = t
    state.read_tensors[id(var)] = t
    return t


def register_in_collections(graph: Graph, var: Variable) -> None:
    """Adds ``var`` to GLOBAL_VARIABLES and, when trainable, TRAINABLE_VARIABLES of ``graph``."""
    graph.add_to_collection(GraphKeys.GLOBAL_VARIABLES, var)
    if var.trainable:
        graph.add_to_collection(GraphKeys.TRAINABLE_VARIABLES, var)
