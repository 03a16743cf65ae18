"""Layer objects: tracking, build on first call, shared weights, built-in classes against NumPy, configs."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.layers import base


class SequentialModule(hk.layers.Layer):
    """The guide's two-layer module: two Dense layers held as attributes."""

    def __init__(self, name=None):
        super().__init__(name=name)
        self.dense_1 = hk.layers.Dense(3, activation="relu")
        self.dense_2 = hk.layers.Dense(2)

    def call(self, x):
        return self.dense_2(self.dense_1(x))


class FlexibleDense(hk.layers.Layer):
    """The guide's build-on-first-call layer: weights sized from the first input."""

    def __init__(self, out_features, name=None):
        super().__init__(name=name)
        self.out_features = out_features

    def build(self, input_shape):
        self.w = self.add_weight("w", [input_shape[-1], self.out_features], initializer="random_normal")
        self.b = self.add_weight("b", [self.out_features], initializer="zeros")

    def call(self, x):
        return hk.matmul(x, self.w) + self.b


def test_sequential_module_tracks_sublayers_and_names_its_variables():
    module = SequentialModule(name="the_model")
    x = np.array([[2.0, 2.0, 2.0]], np.float32)
    out = module(x)
    assert out.shape == (1, 2)
    names = sorted(v.name for v in module.variables)
    d1, d2 = module.dense_1.name, module.dense_2.name
    assert names == sorted(f"the_model/{d}/{w}" for d in (d1, d2) for w in ("kernel", "bias"))
    assert [s.name for s in module.submodules] == [module.dense_1.name, module.dense_2.name]
    assert len(module.trainable_variables) == 4
    k1, b1 = module.dense_1.kernel.value, module.dense_1.bias.value
    k2, b2 = module.dense_2.kernel.value, module.dense_2.bias.value
    np.testing.assert_allclose(out, np.maximum(x @ k1 + b1, 0) @ k2 + b2, rtol=1e-6)


def test_tracking_of_containers_and_not_of_plain_values():
    layer = hk.layers.Layer(name="holder")
    layer.blocks = [hk.layers.Dense(2), {"head": hk.layers.Dense(1)}]
    layer.extra = hk.Variable(np.zeros(3), name="extra")
    layer.count, layer.label, layer.rate = 3, "x", 0.5
    assert [s for s in layer.submodules] == [layer.blocks[0], layer.blocks[1]["head"]]
    assert layer.variables == [layer.extra]
    children = dict(layer._checkpoint_children())
    assert set(children) == {"blocks/0", "blocks/1/head", "extra"}


def test_build_on_first_call_and_incompatible_shape_error():
    layer = FlexibleDense(3, name="flexible")
    assert layer.variables == []
    assert layer(np.ones((2, 4), np.float32)).shape == (2, 3)
    assert [v.shape for v in layer.variables] == [(4, 3), (3,)]
    assert layer(np.ones((5, 4), np.float32)).shape == (5, 3)
    with pytest.raises(hk.GraphError, match=r"'flexible'.*\[None, 4\].*\[None, 5\]"):
        layer(np.ones((2, 5), np.float32))


def test_trainable_false_freezes_sublayers():
    module = SequentialModule()
    module(np.ones((1, 3), np.float32))
    module.trainable = False
    assert module.trainable_variables == []
    assert len(module.non_trainable_variables) == 4
    module.trainable = True
    assert len(module.trainable_variables) == 4


def test_same_layer_twice_shares_weights_across_graphs():
    dense = hk.layers.Dense(4)
    g1, g2 = hk.Graph(), hk.Graph()
    with g1.as_default():
        a = dense(hk.placeholder(hk.float32, [None, 3]))
        b = dense(hk.placeholder(hk.float32, [None, 3]))
    with g2.as_default():
        c = dense(hk.placeholder(hk.float32, [None, 3]))
    assert len(dense.variables) == 2
    assert a.graph is b.graph is g1 and c.graph is g2
    assert len(dense.inbound_calls) == 3


def test_dense_matches_numpy_and_regularizer_joins_collection(graph):
    dense = hk.layers.Dense(2, activation="tanh", kernel_regularizer=hk.regularizers.l2(0.1))
    x = hk.placeholder(hk.float32, [None, 3])
    y = dense(x)
    regs = graph.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)
    assert len(regs) == 1
    xv = np.arange(6, dtype=np.float32).reshape(2, 3) / 6
    out, reg = hk.Session(graph).run([y, regs[0]], {x: xv})
    k, b = dense.kernel.value, dense.bias.value
    np.testing.assert_allclose(out, np.tanh(xv @ k + b), rtol=1e-5)
    np.testing.assert_allclose(reg, 0.1 * np.sum(k**2), rtol=1e-4)


def test_conv_pool_upsampling_against_numpy():
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
    conv = hk.layers.Conv2D(5, 3, padding="same")
    y = conv(x)
    w, b = conv.kernel.value, conv.bias.value
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = np.zeros((2, 4, 4, 5), np.float32)
    for i in range(4):
        for j in range(4):
            ref[:, i, j] = np.einsum("nhwc,hwcf->nf", xp[:, i : i + 3, j : j + 3], w)
    np.testing.assert_allclose(y, ref + b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hk.layers.MaxPooling2D(2)(x), x.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4)))
    np.testing.assert_allclose(
        hk.layers.AveragePooling2D(2)(x), x.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4)), rtol=1e-5
    )
    np.testing.assert_allclose(hk.layers.GlobalAveragePooling2D()(x), x.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(hk.layers.GlobalMaxPooling2D()(x), x.max(axis=(1, 2)))
    np.testing.assert_allclose(hk.layers.UpSampling2D(2)(x), x.repeat(2, axis=1).repeat(2, axis=2))
    t = hk.layers.Conv2DTranspose(2, 3, strides=2, padding="same")
    assert t(x).shape == (2, 8, 8, 2)
    assert t.kernel.shape == (3, 3, 2, 3)


def test_reshaping_merging_and_embedding():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(hk.layers.Flatten()(x), x.reshape(2, 12))
    np.testing.assert_array_equal(hk.layers.Reshape((4, -1))(x), x.reshape(2, 4, 3))
    np.testing.assert_allclose(hk.layers.GlobalAveragePooling1D()(x), x.mean(axis=1))
    a, b = x, x * 2
    np.testing.assert_array_equal(hk.layers.Add()([a, b]), a + b)
    np.testing.assert_allclose(hk.layers.Average()([a, b]), (a + b) / 2)
    np.testing.assert_array_equal(hk.layers.Concatenate()([a, b]), np.concatenate([a, b], -1))
    emb = hk.layers.Embedding(10, 3)
    ids = np.array([[1, 2], [9, 1]])
    np.testing.assert_array_equal(emb(ids), emb.embeddings.value[ids])
    with pytest.raises(hk.GraphError, match="Add"):
        hk.layers.Add(name="Add")(a)


def test_upsampling_needs_known_spatial_dims():
    # An unknown-rank input once failed unpacking its shape (TypeError) instead of naming the layer.
    with hk.Graph().as_default():
        for shape in (None, [None, None, 3, 2]):
            with pytest.raises(hk.GraphError, match=r"'up'.*known height, width and channels"):
                hk.layers.UpSampling2D(name="up")(hk.placeholder(hk.float32, shape))


def test_normalization_layers_against_numpy():
    x = np.random.default_rng(1).normal(2.0, 3.0, size=(8, 5)).astype(np.float32)
    ln = hk.layers.LayerNormalization()
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln(x), (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)
    bn = hk.layers.BatchNormalization(momentum=0.5)
    np.testing.assert_allclose(bn(x), x / np.sqrt(1 + 1e-3), rtol=1e-5)  # inference: moving stats 0 / 1
    out = bn(x, training=True)  # eager training runs the moving-average updates
    m, v = x.mean(0), x.var(0)
    np.testing.assert_allclose(out, (x - m) / np.sqrt(v + 1e-3), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.value, 0.5 * m, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.value, 0.5 + 0.5 * v, rtol=1e-5)
    assert [v.name.rsplit("/", 1)[1] for v in bn.trainable_variables] == ["gamma", "beta"]


def test_dropout_only_in_training():
    x = np.ones((200, 50), np.float32)
    drop = hk.layers.Dropout(0.5)
    np.testing.assert_array_equal(drop(x), x)
    y = drop(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.3 < (y == 0).mean() < 0.7


def test_activations_by_name_and_unknown_name():
    x = np.array([[-1.0, 0.5]], np.float32)
    d = hk.layers.Dense(2, activation="relu", kernel_initializer="ones")
    np.testing.assert_allclose(d(x), [[0.0, 0.0]])
    with pytest.raises(hk.GraphError, match=r"Unknown activation 'relux'.*'relu'"):
        hk.layers.Dense(2, activation="relux")


@pytest.mark.parametrize(
    "layer",
    [
        hk.layers.Dense(3, activation="relu", use_bias=False),
        hk.layers.Conv2D(4, (3, 2), strides=2, padding="same"),
        hk.layers.Embedding(5, 2),
        hk.layers.BatchNormalization(momentum=0.9),
        hk.layers.Dropout(0.25),
        hk.layers.Reshape((2, 3)),
        hk.layers.Concatenate(axis=1),
        hk.layers.MaxPooling2D(3, strides=1),
        hk.layers.UpSampling2D((2, 3)),
    ],
    ids=lambda la: type(la).__name__,
)
def test_get_config_round_trip(layer):
    import json

    config = layer.get_config()
    json.dumps(config)  # plain data
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_snake_case_names():
    assert base.to_snake_case("Conv2DTranspose") == "conv2d_transpose"
    assert base.to_snake_case("GlobalAveragePooling2D") == "global_average_pooling2d"
    assert base.to_snake_case("Dense") == "dense"
