"""Issue 9, defect 4: ``Layer.add_weight`` without ``name`` works, as in Keras."""

from __future__ import annotations

import numpy as np

import hubkit as hk


class _Scale(hk.layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(shape=[input_shape[-1]], initializer="ones")
        self.b = self.add_weight(shape=[input_shape[-1]], initializer="zeros")
        self.gain = self.add_weight(initializer="ones")  # no shape either: a scalar, as in Keras

    def call(self, x):
        return x * self.w * self.gain + self.b


def test_add_weight_without_a_name_numbers_its_weights():
    layer = _Scale(name="scale")
    np.testing.assert_array_equal(layer(np.array([[1.0, 2.0]], np.float32)), [[1.0, 2.0]])
    assert [v.name for v in layer.variables] == ["scale/variable", "scale/variable_1", "scale/variable_2"]
    assert layer.gain.shape == ()


def test_unnamed_weights_train_and_checkpoint(tmp_path):
    layer = _Scale(name="scale2")
    layer(np.ones((1, 2), np.float32))
    path = hk.Checkpoint(layer=layer).save(str(tmp_path / "ckpt"))
    keys = sorted(k for k, _ in hk.train.list_variables(path) if k.startswith("layer/"))
    assert keys == [f"layer/{n}/.ATTRIBUTES/VARIABLE_VALUE" for n in ("variable", "variable_1", "variable_2")]
