"""Issue 9, defect 1: reading a variable never has a side effect, whatever block it is first read in.

One binding (``bind_variable``) puts a variable into a graph: idempotent, and its read node is made
outside every ``control_dependencies`` block (here the optimizer's own, around the global-step update).
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.runtime.variables import bind_variable


def _linear_model():
    x = hk.placeholder(hk.float32, [None, 1], name="x")
    w = hk.Variable(np.ones((1, 1), np.float32), name="w")
    loss = hk.reduce_sum(hk.matmul(x, w))
    return x, w, loss


@pytest.mark.parametrize("make_step", ["Variable", "create_global_step"])
def test_reading_the_global_step_after_minimize_needs_no_feed_and_trains_nothing(graph, make_step):
    x, w, loss = _linear_model()
    if make_step == "Variable":  # first read inside minimize, under the optimizer's control dependencies
        step = hk.Variable(np.int64(0), name="global_step", trainable=False)
    else:
        step = hk.train.create_global_step()
    train_op = hk.train.GradientDescent(0.1).minimize(loss, global_step=step)
    sess = hk.Session(graph)
    assert sess.run(step) == 0  # no feed for x is needed: nothing but the variable is read
    np.testing.assert_array_equal(w.value, [[1.0]])  # and reading trained nothing
    sess.run(train_op, {x: [[2.0]]})
    assert sess.run(step) == 1
    np.testing.assert_allclose(w.value, [[0.8]])
    assert sess.run(step) == 1  # reading twice still changes nothing
    np.testing.assert_allclose(w.value, [[0.8]])


def test_binding_is_idempotent_and_ignores_control_dependencies_and_name_scopes(graph):
    v = hk.Variable([1.0, 2.0], name="v")
    bump = hk.assign_add(hk.Variable([0.0], name="other"), [1.0])
    with hk.control_dependencies([bump]), hk.name_scope("inner"):
        t = bind_variable(graph, v)
    assert t.node.name == "v" and t.node.control_inputs == ()
    assert bind_variable(graph, v) is t and v.tensor(graph) is t and hk.convert_to_tensor(v) is t
    assert graph.variables["v"] is v


def test_from_array_shares_the_array_and_copies_a_read_only_one_on_first_write():
    data = np.arange(3, dtype=np.float32)
    v = hk.Variable.from_array(data, name="shared")
    assert v.value is data and v.dtype is hk.float32 and v.shape == (3,)
    v.assign_add(np.ones(3, np.float32))
    np.testing.assert_array_equal(data, [1.0, 2.0, 3.0])  # a writable array is updated in place
    frozen = np.zeros(2, np.float64)
    frozen.flags.writeable = False
    r = hk.Variable.from_array(frozen)
    assert r.value is frozen
    r.assign([5.0, 6.0])
    assert not frozen.any() and r.value.tolist() == [5.0, 6.0]


@pytest.mark.parametrize("value", [[1.0, 2.0], np.array(["a"], object), None])
def test_from_array_refuses_what_is_not_a_numeric_array(value):
    with pytest.raises(hk.GraphError, match="from_array needs a NumPy array of numbers or bools"):
        hk.Variable.from_array(value)
