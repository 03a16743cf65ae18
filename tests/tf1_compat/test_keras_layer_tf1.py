"""keras_layer_test's TF1-module behaviours: a TF1-style half-plus-one module retrained through HubLayer."""

from __future__ import annotations

import numpy as np

import hubkit as hk


def half_plus_one():
    """y = w x + 1 with w trainable (and L2-regularized) and the +1 layer frozen."""
    x = hk.placeholder(hk.float32, [None, 1])
    times_w = hk.layers.Dense(1, kernel_initializer=hk.initializers.constant(0.5),
                              kernel_regularizer=hk.regularizers.l2(0.01), use_bias=False)
    plus_1 = hk.layers.Dense(1, kernel_initializer=hk.initializers.constant(1.0),
                             bias_initializer=hk.initializers.constant(1.0), trainable=False)
    hk.add_signature(inputs=x, outputs=plus_1(times_w(x)))


def test_half_plus_one_retraining(tmp_path):
    path = str(tmp_path / "half-plus-one")
    hk.Module(hk.create_module_spec(half_plus_one)).export(path)
    inp = hk.Input((1,))
    imported = hk.HubLayer(path, trainable=True)
    model = hk.Model(inp, imported(inp))
    np.testing.assert_array_equal(model.predict(np.array([[0.], [8.], [10.], [12.]], np.float32)),
                                  [[1.], [5.], [6.], [7.]])
    trainable = [v for v in imported.trainable_weights]
    assert len(trainable) == 1 and len(trainable[0].shape) == 2
    model.compile(hk.train.GradientDescent(0.002), "mean_squared_error")
    x = np.array([[9.], [10.], [11.]] * 10, np.float32)
    model.fit(x, x / 2.0 + 6.0, batch_size=len(x), epochs=10, verbose=0)
    # The bias is frozen at 1; to compensate, the kernel grows to almost 1.
    np.testing.assert_array_equal(model.predict(np.array([[0.]], np.float32)), [[1.]])
    np.testing.assert_allclose(model.predict(np.array([[10.]], np.float32)), [[11.]], rtol=0.03)
