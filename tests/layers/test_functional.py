"""Layers as functions: TF names, values against NumPy, variables, update ops and sparse gradients."""

import numpy as np
import pytest

import hubkit as hk
from hubkit import initializers as init

RNG = np.random.default_rng(0)


@pytest.fixture
def graph():
    g = hk.Graph()
    with g.as_default():
        yield g


def var_names(g, key=hk.GraphKeys.GLOBAL_VARIABLES):
    return [v.name for v in g.get_collection(key)]


def test_unnamed_layers_get_tensorflow_names(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    hk.layers.dense(hk.layers.dense(x, 4), 2)
    assert var_names(graph) == ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    assert graph.has_node("dense/MatMul") and graph.has_node("dense_1/MatMul")


def test_dense_matches_numpy(graph):
    x = hk.placeholder(hk.float64, [None, 5])
    y = hk.layers.dense(x, 3, activation="relu", bias_initializer=init.random_normal(seed=2))
    kernel, bias = graph.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)
    assert kernel.shape == (5, 3) and kernel.dtype is hk.float64
    data = RNG.standard_normal((4, 5))
    np.testing.assert_allclose(
        hk.Session(graph).run(y, {x: data}), np.maximum(data @ kernel.value + bias.value, 0), rtol=1e-12
    )


def test_dense_on_rank3_inputs_and_callable_activation(graph):
    x = hk.placeholder(hk.float64, [2, 3, 4])
    y = hk.layers.dense(x, 6, activation=hk.tanh, use_bias=False, name="proj")
    assert y.shape == (2, 3, 6)
    assert var_names(graph) == ["proj/kernel"]
    data = RNG.standard_normal((2, 3, 4))
    np.testing.assert_allclose(hk.Session(graph).run(y, {x: data}), np.tanh(data @ graph.variables["proj/kernel"].value))


def test_dense_named_layers_share_with_reuse(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    hk.layers.dense(x, 2, name="shared")
    hk.layers.dense(x, 2, name="shared", reuse=True)
    assert var_names(graph) == ["shared/kernel", "shared/bias"]
    with pytest.raises(hk.GraphError, match="'shared/kernel' already exists"):
        hk.layers.dense(x, 2, name="shared")


def test_dense_regularizers_and_trainable(graph):
    x = hk.placeholder(hk.float32, [None, 3])
    hk.layers.dense(x, 2, kernel_regularizer=hk.regularizers.l2(0.1), bias_regularizer=hk.regularizers.l1(0.1))
    hk.layers.dense(x, 2, trainable=False)
    assert len(graph.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)) == 2
    assert var_names(graph, hk.GraphKeys.TRAINABLE_VARIABLES) == ["dense/kernel", "dense/bias"]


def test_dense_errors(graph):
    x = hk.placeholder(hk.float32, [None, None])
    with pytest.raises(hk.GraphError, match="known last dimension"):
        hk.layers.dense(x, 2)
    with pytest.raises(hk.GraphError, match=r"Unknown activation 'relu7'; expected a callable or one of \['elu'"):
        hk.layers.dense(hk.placeholder(hk.float32, [None, 2]), 2, activation="relu7")
    with pytest.raises(hk.GraphError, match="float inputs"):
        hk.layers.dense(hk.placeholder(hk.int32, [None, 2]), 2)
    with pytest.raises(hk.GraphError, match=r"Layer 'dense': units must be a positive integer, got 0"):
        hk.layers.dense(hk.placeholder(hk.float32, [None, 2]), 0)


def test_embedding_rows_and_sparse_gradient(graph):
    ids = hk.placeholder(hk.int32, [None, 2])
    out = hk.layers.embedding(ids, vocab_size=10, dim=4)
    (table,) = graph.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)
    assert table.name == "embedding/embeddings" and out.shape == (None, 2, 4)
    feed = np.array([[1, 3], [3, 9]])
    np.testing.assert_array_equal(hk.Session(graph).run(out, {ids: feed}), table.value[feed])
    (grad,) = hk.gradients(hk.reduce_sum(out), [table])
    assert isinstance(grad, hk.IndexedSlices)


def naive_conv_same(x, k):
    n, h, w, _ = x.shape
    kh, kw, _, f = k.shape
    pad = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    out = np.zeros((n, h, w, f))
    for i in range(h):
        for j in range(w):
            out[:, i, j, :] = np.tensordot(pad[:, i : i + kh, j : j + kw, :], k, axes=([1, 2, 3], [0, 1, 2]))
    return out


def test_conv2d_matches_a_naive_convolution(graph):
    x = hk.placeholder(hk.float64, [None, 5, 6, 2])
    y = hk.layers.conv2d(x, 3, 3, padding="same", activation="relu", bias_initializer=init.constant(0.1))
    kernel, bias = graph.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES)
    assert (kernel.name, kernel.shape, bias.shape) == ("conv2d/kernel", (3, 3, 2, 3), (3,))
    data = RNG.standard_normal((2, 5, 6, 2))
    expected = np.maximum(naive_conv_same(data, kernel.value) + 0.1, 0)
    np.testing.assert_allclose(hk.Session(graph).run(y, {x: data}), expected, rtol=1e-10, atol=1e-12)
    z = hk.layers.conv2d(x, 4, (3, 1), strides=2, padding="valid")
    assert z.shape == (None, 2, 3, 4)
    with pytest.raises(hk.GraphError, match="padding must be one of"):
        hk.layers.conv2d(x, 4, 3, padding="full")


def test_batch_normalization_training_updates(graph):
    x = hk.placeholder(hk.float64, [None, 3])
    y = hk.layers.batch_normalization(x, training=True, momentum=0.9, epsilon=1e-3)
    assert var_names(graph) == [
        "batch_normalization/gamma",
        "batch_normalization/beta",
        "batch_normalization/moving_mean",
        "batch_normalization/moving_variance",
    ]
    assert var_names(graph, hk.GraphKeys.TRAINABLE_VARIABLES) == var_names(graph)[:2]
    updates = graph.get_collection(hk.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    data = RNG.standard_normal((8, 3)) * 2.0 + 5.0
    sess = hk.Session(graph)
    expected = (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-3)
    np.testing.assert_allclose(sess.run(y, {x: data}), expected, rtol=1e-10)
    mean_var, var_var = graph.variables["batch_normalization/moving_mean"], graph.variables[
        "batch_normalization/moving_variance"
    ]
    np.testing.assert_array_equal(mean_var.value, 0.0)  # running y alone does not update
    out, *_ = sess.run([y, *updates], {x: data})
    np.testing.assert_allclose(out, expected, rtol=1e-10)  # the output used the statistics before the update
    np.testing.assert_allclose(mean_var.value, 0.1 * data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var_var.value, 0.9 + 0.1 * data.var(0), rtol=1e-12)


def test_batch_normalization_inference_uses_moving_statistics(graph):
    x = hk.placeholder(hk.float64, [None, 2, 2, 3])
    y = hk.layers.batch_normalization(
        x, training=False, moving_mean_initializer=init.constant(1.0), moving_variance_initializer=init.constant(4.0)
    )
    assert graph.get_collection(hk.GraphKeys.UPDATE_OPS) == []
    data = RNG.standard_normal((2, 2, 2, 3))
    np.testing.assert_allclose(hk.Session(graph).run(y, {x: data}), (data - 1.0) / np.sqrt(4.0 + 1e-3), rtol=1e-12)


def test_batch_normalization_with_a_training_tensor(graph):
    x = hk.placeholder(hk.float64, [None, 2])
    training = hk.placeholder(hk.bool, [])
    y = hk.layers.batch_normalization(x, training=training, momentum=0.5, center=False, scale=False)
    assert var_names(graph) == ["batch_normalization/moving_mean", "batch_normalization/moving_variance"]
    updates = graph.get_collection(hk.GraphKeys.UPDATE_OPS)
    moving_mean = graph.variables["batch_normalization/moving_mean"]
    data = RNG.standard_normal((6, 2)) + 3.0
    sess = hk.Session(graph)
    out, *_ = sess.run([y, *updates], {x: data, training: False})
    np.testing.assert_allclose(out, data / np.sqrt(1.0 + 1e-3), rtol=1e-12)
    np.testing.assert_array_equal(moving_mean.value, 0.0)  # not training: the updates change nothing
    out, *_ = sess.run([y, *updates], {x: data, training: True})
    np.testing.assert_allclose(out, (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(moving_mean.value, 0.5 * data.mean(0), rtol=1e-12)


def test_dropout(graph):
    x = hk.placeholder(hk.float32, [None, 1000])
    not_training = hk.layers.dropout(x, 0.5, training=False)
    assert not_training.node.op == "Identity"  # as tf.layers.dropout: an identity of the inputs
    y = hk.layers.dropout(x, 0.25, training=True, seed=3)
    out = hk.Session(graph).run(y, {x: np.ones((4, 1000), np.float32)})
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.03
    np.testing.assert_allclose(out[kept], 1.0 / 0.75, rtol=1e-6)
    flag = hk.placeholder(hk.bool, [])
    z = hk.layers.dropout(x, 0.5, training=flag)
    data = np.ones((2, 1000), np.float32)
    np.testing.assert_array_equal(hk.Session(graph).run(z, {x: data, flag: False}), data)


def test_layer_norm_matches_numpy(graph):
    x = hk.placeholder(hk.float64, [None, 5])
    y = hk.layers.layer_norm(x, gamma_initializer=init.constant(2.0), beta_initializer=init.constant(0.5))
    assert var_names(graph) == ["layer_norm/gamma", "layer_norm/beta"]
    data = RNG.standard_normal((3, 5))
    mean, var = data.mean(-1, keepdims=True), data.var(-1, keepdims=True)
    expected = 2.0 * (data - mean) / np.sqrt(var + 1e-3) + 0.5
    np.testing.assert_allclose(hk.Session(graph).run(y, {x: data}), expected, rtol=1e-10)


def test_flatten(graph):
    x = hk.placeholder(hk.float32, [None, 2, 3, 4])
    y = hk.layers.flatten(x)
    assert y.shape == (None, 24)
    data = RNG.standard_normal((5, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(hk.Session(graph).run(y, {x: data}), data.reshape(5, 24))
    with pytest.raises(hk.GraphError, match="known non-batch dimensions"):
        hk.layers.flatten(hk.placeholder(hk.float32, [None, None]))
