"""Function graphs: the branch and body graphs that control-flow ops hold as attributes.

A control-flow op (``If``, ``While``, ``Scan``) keeps each of its functions as *plain data* in its
attributes (a :class:`Function`: the nodes, which placeholders are its inputs and which tensors its
outputs), so ``graph.pb`` stores them like any other attribute and loading never runs code.

While a user's ``body`` or ``true_fn`` is being traced, ops are added to a :class:`FuncGraph`. Any
tensor of an enclosing graph used inside is *captured*: it becomes a placeholder of the function and
an extra input of the control-flow node. Variables are created and read in the outermost graph (the
read is captured like any tensor), so a module applied inside a loop body shares its variables with
every other call, and gradients reach them through the node's inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import DType, Graph, Node, Shape, Tensor

__all__ = ["FuncGraph", "Function", "as_function", "flatten", "pack_as", "trace_function"]

# A function's data is bounded when it is read back (see as_function): at most this many nodes in total.
MAX_FUNCTION_NODES = 1_000_000


class FuncGraph(Graph):
    """A graph being traced inside another one; tensors of enclosing graphs are captured on use.

    Node names, variable bindings and per-graph state are shared with the enclosing graph, so names
    stay unique across the whole program and ``get_variable`` / modules see the same variable store
    as outside the loop. Collections are the enclosing graph's too, except that tensors and nodes of
    the function itself (update ops, losses made inside a body) are kept out of them.
    """

    def __init__(self, outer: Graph) -> None:
        super().__init__()
        self.outer = outer
        root = outer
        while isinstance(root, FuncGraph):
            root = root.outer
        self.root = root
        self._used_names = outer._used_names
        self._scope = outer._scope
        self.variables = outer.variables
        self.variable_tensors = outer.variable_tensors
        for shared in ("state", "_states", "seed"):  # per-graph state of higher layers (whatever its form)
            if hasattr(outer, shared):
                setattr(self, shared, getattr(outer, shared))
        self.captures: dict[Tensor, Tensor] = {}  # tensor of self.outer -> placeholder of self

    # Collections are the outer graph's, except for tensors and nodes of this function (an update op or
    # a regularization loss made inside a loop body cannot be run from outside it): those stay here.
    def add_to_collection(self, key: str, value: Any) -> None:
        if getattr(value, "graph", None) is self:
            super().add_to_collection(key, value)
        else:
            self.outer.add_to_collection(key, value)

    def get_collection(self, key: str) -> list[Any]:
        return self.outer.get_collection(key)

    def get_collection_ref(self, key: str) -> list[Any]:
        return self.outer.get_collection_ref(key)

    def has_node(self, name: str) -> bool:
        return super().has_node(name) or self.root.has_node(name)

    def capture(self, t: Tensor) -> Tensor:
        """The tensor of this graph standing for ``t`` (a tensor of an enclosing graph)."""
        if t.graph is self:
            return t
        if t.graph is not self.outer:
            if not isinstance(self.outer, FuncGraph):
                raise GraphError(
                    f"Tensor {t.name!r} belongs to a graph that does not enclose the function being traced."
                )
            t = self.outer.capture(t)
        ph = self.captures.get(t)
        if ph is None:
            saved, self._control_stack = self._control_stack, []
            saved_scope, self._scope = self._scope, ""
            try:
                node = Graph.create_node(
                    self, "Placeholder", [], {"dtype": t.dtype, "shape": t.shape}, [(t.dtype, t.shape)],
                    name="capture",
                )
            finally:
                self._control_stack, self._scope = saved, saved_scope
            ph = self.captures[t] = node.outputs[0]
        return ph

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
        if op == "Variable":  # variables live in the outermost graph; their reads are captured on use
            saved, self.root._control_stack = self.root._control_stack, []
            try:
                return self.root.create_node(op, inputs, attrs, output_specs, name=name, unique=unique)
            finally:
                self.root._control_stack = saved
        for c in control_inputs:
            if c.graph is not self:
                raise GraphError(
                    f"Node {c.name!r} is outside the function being traced; a control dependency cannot "
                    "cross into a cond branch or loop body (pass a value instead)."
                )
        inputs = [self.capture(t) if isinstance(t, Tensor) else t for t in inputs]
        return super().create_node(op, inputs, attrs, output_specs, name, control_inputs, unique)


class Function(dict):
    """A function graph as plain data: ``{"nodes": [...], "inputs": [...], "outputs": [...]}``.

    Each node is ``{"name", "op", "inputs", "control_inputs", "attrs"}``; ``inputs`` names the
    placeholders fed in order and ``outputs`` the tensors returned. The live :class:`Graph` built from
    the data is kept on the object (``graph``, ``input_tensors``, ``output_tensors``); it is not data.
    """

    graph: Graph
    input_tensors: list[Tensor]
    output_tensors: list[Tensor]
    cache: dict[Any, Any]

    @classmethod
    def from_graph(cls, graph: Graph, inputs: Sequence[Tensor], outputs: Sequence[Tensor]) -> Function:
        nodes = [
            {
                "name": n.name,
                "op": n.op,
                "inputs": [t.name for t in n.inputs],
                "control_inputs": [c.name for c in n.control_inputs],
                "attrs": n.attrs,
            }
            for n in graph.nodes
        ]
        fn = cls(nodes=nodes, inputs=[t.name for t in inputs], outputs=[t.name for t in outputs])
        fn.graph, fn.input_tensors, fn.output_tensors, fn.cache = graph, list(inputs), list(outputs), {}
        return fn

    @property
    def input_specs(self) -> list[tuple[DType, Shape]]:
        return [(t.dtype, t.shape) for t in self.input_tensors]

    @property
    def output_specs(self) -> list[tuple[DType, Shape]]:
        return [(t.dtype, t.shape) for t in self.output_tensors]


def _count_nodes(data: Any, depth: int = 0) -> int:
    if depth > 64:
        raise GraphError("Control-flow functions are nested more than 64 levels deep.")
    total = 0
    for nd in data.get("nodes", ()) if isinstance(data, dict) else ():
        total += 1
        attrs = nd.get("attrs") if isinstance(nd, dict) else None
        if isinstance(attrs, dict):
            for v in attrs.values():
                if isinstance(v, dict) and "nodes" in v:
                    total += _count_nodes(v, depth + 1)
    return total


def as_function(data: Any, where: str = "function") -> Function:
    """The :class:`Function` for ``data`` (itself when already live), validating data read from a file.

    Raises:
        GraphError: the data is malformed: missing keys, an unknown op, an input read before it is
            defined, inputs that are not placeholders, a Variable inside the function, or too many nodes.
    """
    if isinstance(data, Function) and hasattr(data, "graph"):
        return data
    from hubkit.ops.importer import NodeSpec, import_nodes  # the importer sits beside this module

    if not isinstance(data, dict) or sorted(data) != ["inputs", "nodes", "outputs"]:
        raise GraphError(f"{where} must be a dict with the keys ['inputs', 'nodes', 'outputs'].")
    nodes, inputs, outputs = data["nodes"], data["inputs"], data["outputs"]
    if not all(isinstance(x, list) for x in (nodes, inputs, outputs)):
        raise GraphError(f"{where}: 'nodes', 'inputs' and 'outputs' must be lists.")
    if _count_nodes(data) > MAX_FUNCTION_NODES:
        raise GraphError(f"{where} has more than {MAX_FUNCTION_NODES} nodes.")
    specs = []
    keys = ["attrs", "control_inputs", "inputs", "name", "op"]
    for i, nd in enumerate(nodes):
        if not isinstance(nd, dict) or sorted(nd) != keys:
            raise GraphError(f"{where}: node {i} must be a dict with the keys {keys}.")
        if not isinstance(nd["name"], str) or not isinstance(nd["op"], str) or not isinstance(nd["attrs"], dict):
            raise GraphError(f"{where}: node {i} has a malformed name, op or attrs.")
        if not all(isinstance(s, str) for s in [*nd["inputs"], *nd["control_inputs"]]):
            raise GraphError(f"{where}: node {nd['name']!r} has inputs that are not tensor names.")
        if nd["op"] == "Variable":
            raise GraphError(
                f"{where}: node {nd['name']!r} is a Variable; functions read variables through their inputs."
            )
        specs.append(NodeSpec(nd["name"], nd["op"], tuple(nd["inputs"]), tuple(nd["control_inputs"]), nd["attrs"]))
    graph = Graph()
    try:
        result = import_nodes(specs, graph)
        in_t = [result.tensor(name) for name in _names(inputs, where)]
        out_t = [result.tensor(name) for name in _names(outputs, where)]
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from None
    for t in in_t:
        if t.node.op != "Placeholder":
            raise GraphError(f"{where}: input {t.name!r} is not a placeholder.")
    fn = Function(data)
    fn.graph, fn.input_tensors, fn.output_tensors, fn.cache = graph, in_t, out_t, {}
    return fn


def _names(names: list, where: str) -> list[str]:
    if not all(isinstance(n, str) for n in names):
        raise GraphError(f"{where}: inputs and outputs must be tensor names.")
    return names


# -- nested structures -------------------------------------------------------------------------------
def flatten(structure: Any) -> list[Any]:
    """The leaves of nested lists, tuples (namedtuples too) and dicts (in sorted key order)."""
    if isinstance(structure, dict):
        return [leaf for k in sorted(structure) for leaf in flatten(structure[k])]
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def pack_as(structure: Any, leaves: Sequence[Any]) -> Any:
    """Rebuilds ``structure``'s nesting with ``leaves`` (as produced by :func:`flatten`)."""
    it = iter(leaves)

    def build(s: Any) -> Any:
        if isinstance(s, dict):
            built = {k: build(s[k]) for k in sorted(s)}
            return {k: built[k] for k in s}
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            return type(s)(*[build(x) for x in s])
        if isinstance(s, (list, tuple)):
            return type(s)(build(x) for x in s)
        return next(it)

    return build(structure)


def same_structure(a: Any, b: Any) -> bool:
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and sorted(a) == sorted(b) and all(
            same_structure(a[k], b[k]) for k in a
        )
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (
            isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
            and all(same_structure(x, y) for x, y in zip(a, b))
        )
    return True


def trace_function(
    outer: Graph,
    fn: Callable[..., Any],
    input_specs: Sequence[tuple[DType, Shape]],
    make_args: Callable[[list[Tensor]], tuple],
    name: str,
) -> tuple[FuncGraph, list[Tensor], Any]:
    """Runs ``fn`` on placeholders in a new :class:`FuncGraph` over ``outer``.

    Returns:
        The graph, its input placeholders, and what ``fn`` returned (tensors of the graph or of an
        enclosing one, or Python values).
    """
    from hubkit.graph import placeholder

    graph = FuncGraph(outer)
    with graph.as_default(), graph.name_scope(name):
        inputs = [placeholder(dt, sh, name="arg") for dt, sh in input_specs]
        result = fn(*make_args(inputs))
    return graph, inputs, result


def merge_output_shape(a: Shape, b: Shape) -> Shape:
    """The most specific shape both ``a`` and ``b`` have (unknown where they differ)."""
    if a is None or b is None or len(a) != len(b):
        return None
    return tuple(x if x == y else None for x, y in zip(a, b))
