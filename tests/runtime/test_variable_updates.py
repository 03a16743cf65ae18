"""In-place variable updates refuse deltas that do not fit the variable's shape."""

import numpy as np
import pytest

import hubkit as hk


def test_deltas_that_broadcast_to_the_variable_are_applied():
    v = hk.Variable(np.zeros((2, 3), np.float32), name="v")
    v.assign_add(1.0)
    v.assign_add(np.array([1.0, 2.0, 3.0]))
    v.assign_sub(np.ones((2, 3)))
    np.testing.assert_array_equal(v.value, [[1.0, 2.0, 3.0]] * 2)


@pytest.mark.parametrize("delta", [np.ones(4), np.ones((3, 2, 3)), np.ones((2, 1, 3))])
@pytest.mark.parametrize("method", ["assign_add", "assign_sub"])
def test_deltas_that_do_not_fit_are_refused_and_change_nothing(method, delta):
    v = hk.Variable(np.zeros((2, 3), np.float32), name="v")
    with pytest.raises(hk.GraphError, match=r"Cannot update variable 'v' of shape \[2, 3\] by a value of shape"):
        getattr(v, method)(delta)
    np.testing.assert_array_equal(v.value, np.zeros((2, 3)))
