"""Graphs, nodes, name scopes, collections and the default-graph stack."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph.dtypes import DType, as_dtype
from hubkit.graph.shapes import Shape, normalize_shape
from hubkit.graph.tensor import Tensor

_S = TypeVar("_S")

__all__ = [
    "Graph",
    "GraphKeys",
    "Node",
    "add_to_collection",
    "constant",
    "control_dependencies",
    "convert_to_tensor",
    "get_collection",
    "get_default_graph",
    "name_scope",
    "placeholder",
    "reset_default_graph",
]

_VALID_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-/]*$")


class GraphKeys:
    """Standard collection names, as in TensorFlow 1."""

    GLOBAL_VARIABLES = "variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    REGULARIZATION_LOSSES = "regularization_losses"
    UPDATE_OPS = "update_ops"
    LOSSES = "losses"


class Node:
    """One operation in a graph.

    Attributes:
        graph: the graph holding the node.
        name: unique name within the graph ("dense/MatMul").
        op: the registered op type ("MatMul").
        inputs: the tensors it consumes.
        attrs: plain-data attributes (ints, floats, strings, dtypes, arrays, lists, dicts).
        outputs: the tensors it produces.
        control_inputs: nodes that must run before this one.
    """

    __slots__ = ("attrs", "control_inputs", "graph", "inputs", "name", "op", "outputs")

    def __init__(
        self,
        graph: Graph,
        name: str,
        op: str,
        inputs: Sequence[Tensor],
        attrs: dict[str, Any],
        output_specs: Sequence[tuple[DType, Shape]],
        control_inputs: Sequence[Node] = (),
    ) -> None:
        self.graph = graph
        self.name = name
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.control_inputs = tuple(control_inputs)
        self.outputs = tuple(Tensor(self, i, dt, sh) for i, (dt, sh) in enumerate(output_specs))

    @property
    def type(self) -> str:
        return self.op

    def __repr__(self) -> str:
        return f"<hubkit.Node {self.name!r} op={self.op}>"


class Graph:
    """A dataflow graph of nodes, with name scopes and named collections.

    >>> g = Graph()
    >>> with g.as_default():
    ...     x = placeholder("float32", [None, 3], name="x")
    >>> x.name, x.shape
    ('x:0', (None, 3))
    """

    def __init__(self) -> None:
        self._nodes: list[Node] = []
        self._by_name: dict[str, Node] = {}
        self._used_names: dict[str, int] = {}
        self._scope: str = ""
        self._control_stack: list[list[Node]] = []
        self._collections: dict[str, list[Any]] = {}
        self.version = 0
        # Runtime objects bound to this graph (opaque to the graph layer): variable name -> Variable,
        # and variable name -> the tensor that reads it in this graph.
        self.variables: dict[str, Any] = {}
        self.variable_tensors: dict[str, Tensor] = {}
        # The graph-level random seed (``hubkit.set_random_seed``); None draws fresh seeds.
        self.seed: int | None = None
        # Per-graph state of higher layers, one typed object per layer (see ``state_for``); never serialized.
        self._states: dict[type, Any] = {}
        self._lock = threading.RLock()

    def state_for(self, kind: type[_S]) -> _S:
        """This graph's instance of the per-graph state class ``kind`` (made with ``kind()`` on first use).

        Each higher layer keeps what it attaches to a graph in one typed class of its own (the
        runtime's variable bindings and scopes, the module being defined, the layers' call history),
        so the graph layer needs to know none of them.
        """
        state = self._states.get(kind)
        if state is None:
            with self._lock:
                state = self._states.setdefault(kind, kind())
        return state

    # -- nodes ---------------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """All nodes in creation order (which is a topological order)."""
        return list(self._nodes)

    def get_node(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise GraphError(f"Graph has no node named {name!r}.") from None

    def get_tensor(self, name: str) -> Tensor:
        """Returns the tensor named ``"node:index"`` (or ``"node"`` for output 0)."""
        node_name, _, idx = name.partition(":")
        node = self.get_node(node_name)
        i = int(idx) if idx else 0
        if not 0 <= i < len(node.outputs):
            raise GraphError(f"Node {node_name!r} has {len(node.outputs)} outputs; there is no output {i}.")
        return node.outputs[i]

    def has_node(self, name: str) -> bool:
        return name in self._by_name

    def create_node(
        self,
        op: str,
        inputs: Sequence[Tensor],
        attrs: dict[str, Any],
        output_specs: Sequence[tuple[DType, Shape]],
        name: str | None = None,
        control_inputs: Sequence[Node] = (),
        unique: bool = True,
    ) -> Node:
        """Adds a node; ``name`` is made unique inside the current scope unless ``unique=False``.

        Higher layers call this after inferring the outputs; users call op functions instead.
        """
        for t in inputs:
            if not isinstance(t, Tensor):
                raise GraphError(f"Input {t!r} of op {op!r} is not a hubkit Tensor.")
            if t.graph is not self:
                raise GraphError(
                    f"Tensor {t.name!r} belongs to another graph than the one op {op!r} is being added to."
                )
        with self._lock:
            full = self.unique_name(name or op) if unique else name
            if full is None or full in self._by_name:
                raise GraphError(f"Graph already has a node named {full!r}.")
            if not unique:
                self._used_names.setdefault(full.lower(), 1)
            ctrl = list(control_inputs)
            for deps in self._control_stack:
                ctrl.extend(d for d in deps if d not in ctrl)
            node = Node(self, full, op, inputs, attrs, output_specs, ctrl)
            self._nodes.append(node)
            self._by_name[full] = node
            self.version += 1
        return node

    # -- names and scopes ----------------------------------------------------------------------
    def unique_name(self, name: str, mark_used: bool = True) -> str:
        """Scopes ``name`` and makes it unique as TensorFlow does: ``dense``, ``dense_1``, ..."""
        if not _VALID_NAME.match(name):
            raise GraphError(f"Invalid name {name!r}: use letters, digits, '_', '.', '-' and '/'.")
        full = f"{self._scope}/{name}" if self._scope else name
        key = full.lower()
        count = self._used_names.get(key, 0)
        candidate = full
        if count:
            while True:
                candidate = f"{full}_{count}"
                if candidate.lower() not in self._used_names:
                    break
                count += 1
        if mark_used:
            self._used_names[key] = count + 1
            self._used_names.setdefault(candidate.lower(), 1)
        return candidate

    @property
    def current_scope(self) -> str:
        return self._scope

    @contextlib.contextmanager
    def name_scope(self, name: str | None) -> Iterator[str]:
        """Opens a name scope; a name ending in "/" re-enters that exact scope."""
        old = self._scope
        if name is None or name == "":
            self._scope = ""
        elif name.endswith("/"):
            self._scope = name[:-1]
        else:
            self._scope = self.unique_name(name)
        try:
            yield self._scope
        finally:
            self._scope = old

    @contextlib.contextmanager
    def control_dependencies(self, ops: Sequence[Any] | None) -> Iterator[None]:
        """Nodes created inside run after ``ops`` (nodes or tensors); ``None`` clears every enclosing block."""
        if ops is None:
            saved, self._control_stack = self._control_stack, []
            try:
                yield
            finally:
                self._control_stack = saved
            return
        nodes = [o.node if isinstance(o, Tensor) else o for o in ops if o is not None]
        for n in nodes:
            if not isinstance(n, Node) or n.graph is not self:
                raise GraphError(f"Control dependency {n!r} is not a node of this graph.")
        self._control_stack.append(nodes)
        try:
            yield
        finally:
            self._control_stack.pop()

    # -- collections ---------------------------------------------------------------------------
    def add_to_collection(self, key: str, value: Any) -> None:
        self._collections.setdefault(key, []).append(value)

    def get_collection(self, key: str) -> list[Any]:
        """A copy of the collection's items (empty when it does not exist)."""
        return list(self._collections.get(key, ()))

    def get_collection_ref(self, key: str) -> list[Any]:
        return self._collections.setdefault(key, [])

    def clear_collection(self, key: str) -> None:
        self._collections.pop(key, None)

    @property
    def collections(self) -> list[str]:
        return sorted(k for k, v in self._collections.items() if v)

    # -- default graph -------------------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self) -> Iterator[Graph]:
        """Makes this the default graph inside the ``with`` block; graphs nest."""
        stack = _stack()
        stack.append(self)
        try:
            yield self
        finally:
            stack.pop()

    def __repr__(self) -> str:
        return f"<hubkit.Graph with {len(self._nodes)} nodes>"


class _DefaultGraphState(threading.local):
    def __init__(self) -> None:
        self.stack: list[Graph] = []
        self.root: Graph | None = None


_state = _DefaultGraphState()


def _stack() -> list[Graph]:
    return _state.stack


def get_default_graph() -> Graph:
    """The innermost graph of ``with g.as_default()``, else this thread's global default graph."""
    if _state.stack:
        return _state.stack[-1]
    if _state.root is None:
        _state.root = Graph()
    return _state.root


def entered_graph() -> Graph | None:
    """The innermost graph of an open ``with g.as_default()`` block, or None outside every such block.

    A signature with no inputs called inside such a block (a graph being built) is added to that
    graph instead of running now.
    """
    return _state.stack[-1] if _state.stack else None


def reset_default_graph() -> None:
    """Replaces the global default graph with an empty one (not allowed inside ``as_default``)."""
    if _state.stack:
        raise GraphError("reset_default_graph() cannot be called inside a `with graph.as_default()` block.")
    _state.root = Graph()


def name_scope(name: str | None):
    """Opens a name scope in the default graph: ``with hubkit.name_scope("block"): ...``."""
    return get_default_graph().name_scope(name)


def control_dependencies(ops: Sequence[Any] | None):
    """``with hubkit.control_dependencies([op]):`` nodes created inside run after ``op`` (None clears)."""
    return get_default_graph().control_dependencies(ops)


def add_to_collection(key: str, value: Any) -> None:
    get_default_graph().add_to_collection(key, value)


def get_collection(key: str) -> list[Any]:
    return get_default_graph().get_collection(key)


# -- the two leaf ops the graph layer owns ------------------------------------------------------
def placeholder(dtype: Any, shape: Any = None, name: str | None = None) -> Tensor:
    """A graph input to be fed when the graph runs.

    Args:
        dtype: element type (``hubkit.float32``, "int64", ...).
        shape: static shape; ``None`` entries are any size, ``shape=None`` is any rank.
        name: node name (made unique in the current scope).
    """
    dt = as_dtype(dtype)
    sh = normalize_shape(shape)
    g = get_default_graph()
    node = g.create_node("Placeholder", [], {"dtype": dt, "shape": sh}, [(dt, sh)], name=name or "Placeholder")
    return node.outputs[0]


def _as_array(value: Any, dtype: DType | None) -> np.ndarray:
    if isinstance(value, Tensor):
        raise GraphError(f"constant() needs a concrete value, got the tensor {value.name!r}.")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nesting such as [[1, 2], [3]]
        raise GraphError(f"Cannot make a constant from {value!r}: {str(e).rstrip('.')}.") from None
    if arr.dtype.kind in "USO":
        if dtype is not None and dtype.name != "string":
            raise GraphError(f"Cannot make a {dtype.name} constant from strings {value!r}.")
        if arr.dtype.kind == "O":
            bad = [x for x in arr.reshape(-1) if not isinstance(x, (str, bytes))]
            if bad:
                raise GraphError(
                    f"Cannot make a constant from {type(bad[0]).__name__} value {bad[0]!r}; "
                    "expected numbers, bools or strings."
                )
            arr = np.asarray([x.decode("utf-8") if isinstance(x, bytes) else x for x in arr.reshape(-1)],
                             dtype=object).reshape(arr.shape)
            return arr
        return np.asarray(arr.astype(str), dtype=object) if arr.size else np.empty(arr.shape, object)
    if dtype is None:
        if arr.dtype.kind == "f":
            explicit = isinstance(value, (np.ndarray, np.generic)) and arr.dtype in (np.float32, np.float64)
            dtype = as_dtype(arr.dtype if explicit else "float32")  # an explicit NumPy dtype is kept
        elif arr.dtype.kind in "iu":
            if isinstance(value, (np.ndarray, np.generic)) and arr.dtype in (np.int32, np.int64):
                dtype = as_dtype(arr.dtype)  # an explicit NumPy dtype is kept
            else:  # Python ints are int32 when they fit, as in TensorFlow
                fits = arr.size == 0 or (arr.min() >= -(2**31) and arr.max() < 2**31)
                dtype = as_dtype("int32" if fits else "int64")
        elif arr.dtype.kind == "b":
            dtype = as_dtype("bool")
        else:
            raise GraphError(f"Cannot make a constant from {value!r} of dtype {arr.dtype}.")
    if dtype.is_integer and arr.dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype.np_dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise GraphError(f"Cannot convert {value!r} to {dtype.name}: it is outside [{info.min}, {info.max}].")
    if dtype.is_integer and arr.dtype.kind == "f" and arr.size and not np.all(np.isfinite(arr)):
        raise GraphError(f"Cannot convert {value!r} to {dtype.name}: it holds NaN or infinity.")
    out = arr.astype(dtype.np_dtype)
    if dtype.is_numeric and arr.dtype.kind == "f" and dtype.is_integer and not np.array_equal(out, arr):
        raise GraphError(f"Cannot convert {value!r} to {dtype.name} without losing its fraction.")
    return out


def constant(value: Any, dtype: Any = None, name: str | None = None) -> Tensor:
    """A tensor with a fixed value. Python ints become int32, floats float32, as in TensorFlow.

    >>> g = Graph()
    >>> with g.as_default():
    ...     c = constant([[1.0, 2.0]])
    >>> c.dtype, c.shape
    (hubkit.float32, (1, 2))
    """
    dt = as_dtype(dtype) if dtype is not None else None
    arr = _as_array(value, dt)
    dt = dt or as_dtype(arr.dtype)
    g = get_default_graph()
    node = g.create_node("Const", [], {"value": arr, "dtype": dt}, [(dt, tuple(arr.shape))], name=name or "Const")
    return node.outputs[0]


def convert_to_tensor(value: Any, dtype: Any = None, graph: Graph | None = None, name: str | None = None) -> Tensor:
    """Returns ``value`` as a tensor of ``graph`` (default graph when None).

    Tensors pass through; objects with ``_as_graph_tensor(graph)`` (variables) give their read
    tensor; anything else becomes a constant of ``dtype``.
    """
    g = graph or get_default_graph()
    if isinstance(value, Tensor):
        if value.graph is not g:
            capture = getattr(g, "capture", None)  # a function graph (cond branch, loop body) captures it
            if capture is None:
                raise GraphError(f"Tensor {value.name!r} belongs to another graph.")
            value = capture(value)
        if dtype is not None and as_dtype(dtype) is not value.dtype:
            raise GraphError(
                f"Tensor {value.name!r} has dtype {value.dtype.name}, but {as_dtype(dtype).name} is required."
            )
        return value
    hook = getattr(value, "_as_graph_tensor", None)
    if hook is not None:
        return convert_to_tensor(hook(g), dtype, g)
    with g.as_default():
        return constant(value, dtype=dtype, name=name)
