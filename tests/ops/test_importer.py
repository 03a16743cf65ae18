"""import_nodes re-infers every node, maps inputs, binds variables and names failures."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.importer import NodeSpec, import_nodes, nodes_needed


def _nodes():
    return [
        NodeSpec("x", "Placeholder", attrs={"dtype": hk.float32, "shape": (None, 2)}),
        NodeSpec("w", "Variable", attrs={"dtype": hk.float32, "shape": (2, 3), "trainable": True, "initializer": None}),
        NodeSpec("y", "MatMul", ("x:0", "w:0")),
        NodeSpec("c", "Const", attrs={"value": np.float32(2.0) * np.ones((), np.float32), "dtype": hk.float32}),
        NodeSpec("z", "Mul", ("y:0", "c:0")),
        NodeSpec("unused", "Placeholder", attrs={"dtype": hk.int32, "shape": ()}),
    ]


def test_import_with_input_map_and_bound_variable():
    var = hk.Variable(np.ones((2, 3), np.float32), name="w")
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [4, 2], name="outer_x")
    needed = nodes_needed(_nodes(), ["z:0"], stop_at=["x:0"])
    assert needed == {"w", "y", "c", "z"}
    result = import_nodes(
        _nodes(), g, prefix="m/", input_map={"x:0": x}, bind_variable=lambda spec: var._as_graph_tensor(g), only=needed
    )
    z = result.tensor("z:0")
    assert z.name == "m/z:0" and z.shape == (4, 3)  # the outer tensor's shape flows through infer
    assert not g.has_node("m/unused") and not g.has_node("m/x")
    np.testing.assert_allclose(hk.Session(g).run(z, {x: np.ones((4, 2))}), np.full((4, 3), 4.0))


def test_mapped_placeholder_must_agree():
    g = hk.Graph()
    with g.as_default():
        wrong = hk.placeholder(hk.float32, [None, 5])
    with pytest.raises(hk.GraphError, match=r"Input 'x' has shape \[None, 2\].*\[None, 5\]"):
        import_nodes(_nodes(), g, input_map={"x:0": wrong})


def test_infer_failures_name_the_node():
    nodes = [
        NodeSpec("a", "Placeholder", attrs={"dtype": hk.float32, "shape": (None, 2)}),
        NodeSpec("b", "Placeholder", attrs={"dtype": hk.float32, "shape": (3, 2)}),
        NodeSpec("mm", "MatMul", ("a:0", "b:0")),
    ]
    with pytest.raises(hk.GraphError, match="MatMul node 'mm'"):
        import_nodes(nodes, hk.Graph())


def test_unknown_op_and_dangling_inputs():
    with pytest.raises(hk.GraphError, match="unknown op 'Nope'"):
        import_nodes([NodeSpec("n", "Nope")], hk.Graph())
    with pytest.raises(hk.GraphError, match="reads 'ghost:0', which is not defined before it"):
        import_nodes([NodeSpec("n", "Identity", ("ghost:0",))], hk.Graph())
    with pytest.raises(hk.GraphError, match="invalid attributes"):
        import_nodes([NodeSpec("p", "Placeholder", attrs={"dtype": hk.float32})], hk.Graph())
