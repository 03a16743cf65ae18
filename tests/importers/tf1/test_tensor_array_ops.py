"""The TensorArray value ops (hubkit/ops/tf_tensor_array.py) that TF1 TensorArrayV3 graphs are translated onto:
forward semantics, and gradients against finite differences in float64 (dynamic_rnn through a loop is checked
against TF in test_control_flow_sparse.py)."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.ops.registry import apply, get_op
from hubkit.ops.tf_array import TfRuntimeError
from tests.helpers_fd import check_vjp, cover

_r = np.random.default_rng(11)
_ALL = ["TfTensorArrayWrite", "TfTensorArrayScatter", "TfTensorArrayRead", "TfTensorArrayGather"]


def _fwd(op, *args, **attrs):
    return get_op(op).forward(*args, **attrs)


def test_an_array_of_unknown_element_shape_takes_it_from_the_first_write():
    ta = _fwd("TfTensorArrayNew", np.int32(3), dtype=hk.float32, element_shape=None)
    assert ta.shape == (3, 0)
    ta = _fwd("TfTensorArrayWrite", ta, np.int32(1), np.ones((2,), np.float32))
    assert ta.shape == (3, 2) and ta[1].tolist() == [1, 1] and ta[0].tolist() == [0, 0]
    with pytest.raises(TfRuntimeError, match="shape"):
        _fwd("TfTensorArrayWrite", ta, np.int32(0), np.ones((3,), np.float32))
    known = _fwd("TfTensorArrayNew", np.int32(2), dtype=hk.int32, element_shape=[4])
    assert known.shape == (2, 4) and known.dtype == np.int32


def test_writes_past_the_end_grow_the_array_and_reads_past_it_fail():
    ta = _fwd("TfTensorArrayNew", np.int32(0), dtype=hk.float32, element_shape=None)
    ta = _fwd("TfTensorArrayWrite", ta, np.int32(2), np.float32(5.0))
    assert ta.tolist() == [0, 0, 5] and int(_fwd("TfTensorArraySize", ta)) == 3
    ta = _fwd("TfTensorArrayScatter", ta, np.array([4, 0]), np.array([1.0, 2.0], np.float32))
    assert ta.tolist() == [2, 0, 5, 0, 1]
    assert _fwd("TfTensorArrayGather", ta, np.array([4, 2]), dtype=hk.float32).tolist() == [1, 5]
    with pytest.raises(TfRuntimeError, match="not in"):
        _fwd("TfTensorArrayRead", ta, np.int32(5), dtype=hk.float32)
    with pytest.raises(TfRuntimeError, match="negative"):
        _fwd("TfTensorArrayWrite", ta, np.int32(-1), np.float32(1.0))


def test_a_push_back_appends_and_takes_the_element_shape_from_the_first_element():
    ta = _fwd("TfTensorArrayNew", np.int32(0), dtype=hk.float32, element_shape=None)
    ta = _fwd("TfTensorArrayPushBack", ta, np.array([1.0, 2.0], np.float32))
    ta = _fwd("TfTensorArrayPushBack", ta, np.array([3.0, 4.0], np.float32))
    assert _fwd("TfTensorArrayStack", ta, dtype=hk.float32).tolist() == [[1, 2], [3, 4]]


def test_a_write_does_not_change_the_array_it_was_given():
    ta = np.zeros((2, 2))
    out = _fwd("TfTensorArrayWrite", ta, np.int32(0), np.ones(2))
    assert ta.sum() == 0 and out.sum() == 2


CASES = [  # (ops checked, function, inputs)
    (["TfTensorArrayWrite", "TfTensorArrayGather"], lambda ta, v: apply("TfTensorArrayGather", apply("TfTensorArrayWrite", ta, np.int32(1), v),
                         np.array([0, 1, 2, 1]), dtype=hk.float64), [_r.standard_normal((3, 2)), _r.standard_normal(2)]),
    (["TfTensorArrayScatter", "TfTensorArrayRead"], lambda ta, v: apply("TfTensorArrayRead", apply("TfTensorArrayScatter", ta, np.array([2, 0]), v), np.int32(2),
                         dtype=hk.float64) * apply("TfTensorArrayRead", ta, np.int32(1), dtype=hk.float64),
     [_r.standard_normal((3, 2)), _r.standard_normal((2, 2))]),
    (["TfTensorArrayPushBack", "TfTensorArrayStack"], lambda ta, v: apply(
        "TfTensorArrayStack", apply("TfTensorArrayPushBack", ta, v), dtype=hk.float64), [_r.standard_normal((2, 3)),
                                                                                          _r.standard_normal(3)]),
    (["TfTensorArrayFromTensor"], lambda t: apply("TfTensorArrayRead", apply("TfTensorArrayFromTensor", t), np.int32(1),
                                                  dtype=hk.float64), [_r.standard_normal((3, 2))]),
]
cover("hubkit.ops.tf_tensor_array", _ALL + ["TfTensorArrayPushBack", "TfTensorArrayStack", "TfTensorArrayFromTensor"])


@pytest.mark.parametrize("ops, fn, inputs", CASES)
def test_gradient_matches_finite_differences(ops, fn, inputs):
    check_vjp(fn, [np.array(a, copy=True) for a in inputs], ops=ops)
