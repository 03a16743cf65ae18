"""``layer.trainable = False`` freezes the variables themselves, so optimizers leave them alone."""

from __future__ import annotations

import numpy as np

import hubkit as hk
from hubkit import layers as L


class Block(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = L.Dense(2, name="inner")
        self.scale = hk.Variable(np.ones(2, np.float32), name="scale", trainable=False)

    def call(self, x):
        return self.inner(x) * self.scale


def test_freezing_sets_every_variable_flag_and_unfreezing_restores_them(graph):
    block = Block(name="block")
    block(np.ones((1, 3), np.float32))
    assert [v.trainable for v in block.variables] == [False, True, True]  # scale, inner/kernel, inner/bias
    block.trainable = False
    assert [v.trainable for v in block.variables] == [False, False, False]
    assert block.inner.trainable is False and block.trainable_variables == []
    block.trainable = True
    assert [v.trainable for v in block.variables] == [False, True, True]  # scale was made non-trainable
    assert block.trainable_variables == block.inner.variables


def test_minimize_with_the_default_var_list_skips_a_frozen_layer(graph, rng):
    frozen, free = L.Dense(2, name="frozen"), L.Dense(1, name="free")
    x = hk.placeholder(hk.float32, [None, 3])
    loss = hk.reduce_sum(hk.square(free(frozen(x))))
    frozen.trainable = False
    step = hk.train.GradientDescent(0.1).minimize(loss)
    before = [v.value.copy() for v in [*frozen.variables, *free.variables]]
    hk.Session().run(step, {x: rng.normal(size=(4, 3))})
    after = [v.value for v in [*frozen.variables, *free.variables]]
    assert [np.array_equal(b, a) for b, a in zip(before, after)] == [True, True, False, False]


def test_a_layer_frozen_before_it_is_built_creates_frozen_weights(graph):
    dense = L.Dense(2, trainable=False)
    dense(np.ones((1, 3), np.float32))
    assert [v.trainable for v in dense.variables] == [False, False]
    dense.trainable = True
    assert [v.trainable for v in dense.variables] == [True, True]


def test_batch_norm_statistics_stay_non_trainable_through_freeze_and_unfreeze(graph):
    bn = L.BatchNormalization()
    bn(np.ones((2, 3), np.float32))
    flags = {v.name.rsplit("/", 1)[-1]: v.trainable for v in bn.variables}
    bn.trainable = False
    assert not any(v.trainable for v in bn.variables)
    bn.trainable = True
    assert {v.name.rsplit("/", 1)[-1]: v.trainable for v in bn.variables} == flags
    assert flags["moving_mean"] is False and flags["gamma"] is True
