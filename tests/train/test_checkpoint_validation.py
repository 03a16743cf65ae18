"""Checkpoint.restore checks every value against its variable before assigning any of them."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit import layers as L

V = "/.ATTRIBUTES/VARIABLE_VALUE"


class Pair(L.Layer):
    def __init__(self, first_units=3, second_units=2, **kwargs):
        super().__init__(**kwargs)
        self.a = L.Dense(first_units)
        self.b = L.Dense(second_units)

    def call(self, x):
        return self.b(self.a(x))


def saved_pair(tmp_path):
    net = Pair(name="net")
    net(np.ones((1, 4), np.float32))
    return net, hk.Checkpoint(net=net).write(str(tmp_path / "ck"))


def test_a_later_shape_mismatch_leaves_every_variable_untouched(tmp_path):
    _, path = saved_pair(tmp_path)
    other = Pair(second_units=5)
    other(np.ones((1, 4), np.float32))
    before = [v.value.copy() for v in other.variables]
    with pytest.raises(hk.CheckpointError, match=r"'net/b/kernel" + V + r"' has shape \[3, 2\]"):
        hk.Checkpoint(net=other).restore(path)
    assert all(np.array_equal(b, v.value) for b, v in zip(before, other.variables))  # a/kernel too


def test_a_dtype_mismatch_is_a_checkpoint_error_naming_the_key(tmp_path):
    _, path = saved_pair(tmp_path)
    bias = hk.Variable(np.zeros(2, np.int32), name="int_bias")
    kernel = hk.Variable(np.zeros((3, 2), np.float32), name="kernel")
    tree = hk.Checkpoint(net=hk.Checkpoint(b=hk.Checkpoint(kernel=kernel, bias=bias)))
    with pytest.raises(hk.CheckpointError, match=r"'net/b/bias" + V + r"' has dtype float32, but variable 'int_bias' has dtype int32"):
        tree.restore(path)
    assert not kernel.value.any()  # checked before anything was assigned


def test_a_failed_restore_parks_nothing_for_deferred_layers(tmp_path):
    _, path = saved_pair(tmp_path)
    unbuilt = L.Dense(3)  # its values would wait for build
    wrong = hk.Variable(np.zeros((3, 7), np.float32))
    with pytest.raises(hk.CheckpointError, match="has shape"):
        hk.Checkpoint(net=hk.Checkpoint(a=unbuilt, b=hk.Checkpoint(kernel=wrong))).restore(path)
    assert unbuilt._deferred == {}
    unbuilt(np.ones((1, 4), np.float32))
    assert not unbuilt.variables[1].value.any()  # the bias kept its zeros initializer


def test_a_deferred_value_is_checked_when_its_weight_is_built(tmp_path):
    _, path = saved_pair(tmp_path)
    fresh = Pair(second_units=5)
    status = hk.Checkpoint(net=fresh).restore(path)
    with pytest.raises(hk.CheckpointError, match=r"'net/b/kernel" + V + r"' has shape \[3, 2\], but variable .* \[3, 5\]"):
        fresh(np.ones((1, 4), np.float32))
    with pytest.raises(hk.CheckpointError, match="not consumed"):
        status.assert_consumed()
