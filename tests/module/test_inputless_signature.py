"""Issue 9, defect 6: a signature without inputs called inside a graph being built is symbolic."""

from __future__ import annotations

import numpy as np

import hubkit as hk


def _spec() -> hk.ModuleSpec:
    def module_fn():
        w = hk.get_variable("w", [2], initializer=hk.initializers.constant([1.0, 2.0]))
        counter = hk.get_variable("calls", [], dtype="int64", initializer=hk.initializers.zeros(), trainable=False)
        hk.add_to_collection(hk.GraphKeys.UPDATE_OPS, hk.assign_add(counter, np.int64(1)))
        hk.add_signature(inputs=None, outputs=w * 2.0)

    return hk.create_module_spec(module_fn)


def test_called_inside_a_graph_it_returns_a_tensor_that_trains():
    m = hk.Module(_spec(), trainable=True)
    np.testing.assert_allclose(m(), [2.0, 4.0])  # eager outside any graph block, as before
    g = hk.Graph()
    with g.as_default():
        out = m()
        assert isinstance(out, hk.Tensor) and out.graph is g
        loss = hk.reduce_sum(out)
        updates = g.get_collection(hk.GraphKeys.UPDATE_OPS)
        assert len(updates) == 1  # the module's UPDATE_OPS joined the graph
        with hk.control_dependencies(updates):
            train = hk.train.GradientDescent(0.25).minimize(loss)
    sess = hk.Session(g)
    sess.run(train)
    np.testing.assert_allclose(m.variable_map["w"].value, [0.5, 1.5])  # d(sum(2w))/dw = 2
    assert int(m.variable_map["calls"].value) == 1
