"""gradients() validates grad_ys against ys."""

import numpy as np
import pytest

import hubkit as hk


def test_grad_ys_count_must_match_ys(graph):
    x = hk.placeholder(hk.float32, [3])
    with pytest.raises(hk.GraphError, match="got 0 grad_ys for 1 ys"):
        hk.gradients(x * 2.0, [x], grad_ys=[])


def test_grad_ys_shape_must_match_y(graph):
    x = hk.placeholder(hk.float32, [3])
    with pytest.raises(hk.GraphError, match=r"shape \[2\]; it must match the shape of y, \[3\]"):
        hk.gradients(x * 2.0, [x], grad_ys=[np.ones(2, np.float32)])


def test_grad_ys_scale_the_gradient(graph):
    x = hk.placeholder(hk.float32, [3])
    (dx,) = hk.gradients(x * 2.0, [x], grad_ys=[np.array([1.0, 2.0, 3.0], np.float32)])
    np.testing.assert_allclose(hk.Session(graph).run(dx, {x: np.zeros(3)}), [2.0, 4.0, 6.0])
