"""The layer functions are the layer classes in tf.layers mode: one implementation, TF1's behaviour.

Where the functions and the classes used to disagree, these tests pin what TensorFlow 1 does.
"""

import numpy as np
import pytest

import hubkit as hk
from hubkit import initializers as init
from hubkit import layers as L

RNG = np.random.default_rng(1)


def names(g, key=hk.GraphKeys.GLOBAL_VARIABLES):
    return [v.name for v in g.get_collection(key)]


def test_functions_nest_under_open_variable_scopes_and_reuse_with_auto_reuse(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    with hk.variable_scope("tower"):
        a = L.dense(x, 2)
        L.batch_normalization(a, training=True)
    with hk.variable_scope("tower", reuse=hk.AUTO_REUSE):
        L.dense(x, 2, name="dense")  # the same variables
        L.dense(x, 2, name="extra")  # created
    assert names(graph) == [
        "tower/dense/kernel",
        "tower/dense/bias",
        "tower/batch_normalization/gamma",
        "tower/batch_normalization/beta",
        "tower/batch_normalization/moving_mean",
        "tower/batch_normalization/moving_variance",
        "tower/extra/kernel",
        "tower/extra/bias",
    ]
    assert len(graph.get_collection(hk.GraphKeys.UPDATE_OPS)) == 2


def test_reused_function_layers_add_their_regularization_loss_once(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    for reuse in (None, True, True):
        L.dense(x, 2, kernel_regularizer=hk.regularizers.l2(0.5), name="d", reuse=reuse)
    (loss,) = graph.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)
    kernel = graph.variables["d/kernel"]
    np.testing.assert_allclose(hk.Session(graph).run(loss), 0.5 * np.sum(kernel.value**2), rtol=1e-6)


def test_a_custom_layer_in_tf_layers_mode_makes_its_weights_with_get_variable(graph):
    class Scale(L.Layer):
        def build(self, input_shape):
            self.w = self.add_weight("w", [input_shape[-1]], "ones", regularizer=hk.regularizers.l1(1.0))

        def call(self, x):
            return x * self.w

    x = hk.placeholder(hk.float32, [None, 2])
    with hk.variable_scope("outer"):
        Scale(name="s").in_variable_scope(None, "scale")(x)
        Scale(name="s").in_variable_scope(None, "scale")(x)
    assert names(graph) == ["outer/scale/w", "outer/scale_1/w"]
    assert names(graph, hk.GraphKeys.TRAINABLE_VARIABLES) == names(graph)
    assert len(graph.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)) == 2
    called = Scale(name="s")
    called(x)
    with pytest.raises(hk.GraphError, match="was already called; in_variable_scope must come first"):
        called.in_variable_scope(None, "scale")


def test_conv2d_pads_valid_by_default_as_tf_layers(graph):
    x = hk.placeholder(hk.float32, [None, 5, 6, 2])
    assert L.conv2d(x, 3, 3).shape == (None, 3, 4, 3)
    assert L.Conv2D(3, 3)(x).shape == (None, 3, 4, 3)


def test_conv2d_dilation_in_the_function_and_the_class(graph):
    x = hk.placeholder(hk.float64, [None, 7, 7, 1])
    y = L.conv2d(x, 1, 3, dilation_rate=2, kernel_initializer=init.ones(), use_bias=False)
    layer = L.Conv2D(1, 3, dilation_rate=2, kernel_initializer="ones", use_bias=False)
    z = layer(x)
    assert y.shape == z.shape == (None, 3, 3, 1)
    assert layer.get_config()["dilation_rate"] == [2, 2]
    data = RNG.standard_normal((1, 7, 7, 1))
    expected = np.array([[data[0, i : i + 5 : 2, j : j + 5 : 2, 0].sum() for j in range(3)] for i in range(3)])
    out_y, out_z = hk.Session(graph).run([y, z], {x: data})
    np.testing.assert_allclose(out_y[0, :, :, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(out_z, out_y, rtol=1e-12)


def test_layer_weights_take_the_dtype_of_the_first_float_input(graph):
    layer = L.Dense(2)
    layer(hk.placeholder(hk.float64, [None, 3]))
    assert layer.kernel.dtype is hk.float64 and layer.dtype is hk.float64
    fixed = L.Dense(2, dtype="float32")
    fixed(hk.placeholder(hk.float64, [None, 3]))
    assert fixed.kernel.dtype is hk.float32
    table = L.Embedding(4, 2)
    table(hk.placeholder(hk.int32, [None]))
    assert table.embeddings.dtype is hk.float32


def test_batch_normalization_class_takes_a_training_tensor(graph):
    x = hk.placeholder(hk.float64, [None, 2])
    flag = hk.placeholder(hk.bool, [])
    layer = L.BatchNormalization(momentum=0.5, center=False, scale=False)
    y = layer(x, training=flag)
    updates = graph.get_collection(hk.GraphKeys.UPDATE_OPS)
    data = RNG.standard_normal((6, 2)) + 3.0
    sess = hk.Session(graph)
    out, *_ = sess.run([y, *updates], {x: data, flag: False})
    np.testing.assert_allclose(out, data / np.sqrt(1.0 + 1e-3), rtol=1e-12)
    np.testing.assert_array_equal(layer.moving_mean.value, 0.0)
    out, *_ = sess.run([y, *updates], {x: data, flag: True})
    np.testing.assert_allclose(out, (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(layer.moving_mean.value, 0.5 * data.mean(0), rtol=1e-12)


def test_batch_normalization_function_frozen_still_trains_its_statistics_as_tf1(graph):
    x = hk.placeholder(hk.float64, [None, 3])
    y = L.batch_normalization(x, training=True, momentum=0.0, trainable=False)
    assert names(graph, hk.GraphKeys.TRAINABLE_VARIABLES) == []
    updates = graph.get_collection(hk.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    data = RNG.standard_normal((5, 3)) + 2.0
    out, *_ = hk.Session(graph).run([y, *updates], {x: data})
    np.testing.assert_allclose(out, (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(graph.variables["batch_normalization/moving_mean"].value, data.mean(0), rtol=1e-12)
    # the layer object, frozen, follows Keras 2: inference mode
    frozen = L.BatchNormalization(trainable=False)
    frozen(x, training=True)
    assert len(graph.get_collection(hk.GraphKeys.UPDATE_OPS)) == 2


def test_normalization_over_a_middle_axis_in_the_function_and_the_class(graph):
    x = hk.placeholder(hk.float64, [None, 3, 4])
    data = RNG.standard_normal((2, 3, 4))
    ln = L.LayerNormalization(axis=1)
    y = ln(x)
    assert ln.gamma.shape == (3, 1)
    z = L.layer_norm(x, axis=1)
    bn = L.batch_normalization(x, axis=1, training=True)
    out_y, out_z, out_bn = hk.Session(graph).run([y, z, bn], {x: data})
    mean, var = data.mean(1, keepdims=True), data.var(1, keepdims=True)
    np.testing.assert_allclose(out_y, (data - mean) / np.sqrt(var + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(out_z, out_y, rtol=1e-12)
    bmean, bvar = data.mean((0, 2), keepdims=True), data.var((0, 2), keepdims=True)
    np.testing.assert_allclose(out_bn, (data - bmean) / np.sqrt(bvar + 1e-3), rtol=1e-10)
    assert graph.variables["batch_normalization/gamma"].shape == (3,)

