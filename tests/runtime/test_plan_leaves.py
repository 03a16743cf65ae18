"""Constants and variable reads are preloaded into a run's slots instead of running as steps."""

import numpy as np

import hubkit as hk
from hubkit.runtime.executor import compile_plan


def test_leaves_are_not_steps_but_values_stay_current(graph):
    x = hk.placeholder(hk.float32, [None, 2], name="x")
    w = hk.Variable(np.ones((2, 1), np.float32), name="w")
    y = x @ w + 1.0
    plan = compile_plan(graph, [y], [x])
    assert {s.node.op for s in plan.steps}.isdisjoint({"Const", "Variable"})
    assert sorted(name for name, _ in plan.leaf_names) == ["Const:0", "w:0"]
    sess = hk.Session(graph)
    np.testing.assert_allclose(sess.run(y, {x: [[1.0, 2.0]]}), [[4.0]])
    w.assign(np.full((2, 1), 2.0, np.float32))  # the next run reads the variable's new value
    np.testing.assert_allclose(sess.run(y, {x: [[1.0, 2.0]]}), [[7.0]])
    frozen = np.zeros((2, 1), np.float32)
    frozen.flags.writeable = False
    v = hk.Variable.from_array(frozen, name="v")  # a read-only (e.g. memory-mapped) value
    z = x @ v + 1.0
    np.testing.assert_allclose(sess.run(z, {x: [[1.0, 2.0]]}), [[1.0]])
    v.assign_add(np.ones((2, 1), np.float32))  # copy-on-write replaces the storage: runs see the copy
    np.testing.assert_allclose(sess.run(z, {x: [[1.0, 2.0]]}), [[4.0]])
    assert not frozen.any()


def test_intermediates_still_report_preloaded_leaves(graph):
    x = hk.placeholder(hk.float32, [None], name="x")
    y = x * hk.constant(3.0, name="three")
    _, inter = hk.Session(graph).run_with_intermediates(y, {x: [1.0]})
    assert float(inter["three:0"]) == 3.0


def test_a_variable_first_read_under_control_dependencies_is_still_a_plain_leaf(graph):
    v = hk.Variable(np.zeros(1, np.float32), name="v")
    bump = hk.assign_add(v, np.ones(1, np.float32))
    with hk.control_dependencies([bump]):
        later = hk.Variable(np.zeros(1, np.float32), name="later").tensor()
    assert later.node.control_inputs == ()  # reading a variable never waits for (or runs) anything
    plan = compile_plan(graph, [later], [])
    assert [s.node.op for s in plan.steps] == []
