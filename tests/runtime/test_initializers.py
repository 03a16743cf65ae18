"""Initializers: statistics, determinism, dtypes, config round-trips and errors."""

import json
import math

import numpy as np
import pytest

import hubkit as hk
from hubkit import initializers as init

SEEDED = [
    init.glorot_uniform(seed=1),
    init.glorot_normal(seed=1),
    init.he_normal(seed=1),
    init.he_uniform(seed=1),
    init.lecun_normal(seed=1),
    init.lecun_uniform(seed=1),
    init.random_normal(0.5, 2.0, seed=1),
    init.random_uniform(-1.0, 3.0, seed=1),
    init.truncated_normal(0.0, 0.5, seed=1),
    init.variance_scaling(2.0, "fan_out", "untruncated_normal", seed=1),
]


@pytest.mark.parametrize("initializer", SEEDED, ids=lambda i: i.class_name)
def test_seeded_initializers_are_deterministic(initializer):
    a = initializer((30, 20), hk.float32)
    b = initializer((30, 20), "float32")
    assert a.dtype == np.float32 and a.shape == (30, 20)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("initializer", SEEDED, ids=lambda i: i.class_name)
def test_config_round_trips_through_json(initializer):
    config = json.loads(json.dumps(initializer.config))
    rebuilt = init.get(config)
    assert rebuilt == initializer
    np.testing.assert_array_equal(rebuilt((7, 5), "float64"), initializer((7, 5), "float64"))


def test_config_shape():
    assert init.glorot_uniform(seed=3).config == {"class_name": "glorot_uniform", "config": {"seed": 3}}
    assert init.constant(2.5).config == {"class_name": "constant", "config": {"value": 2.5}}
    assert init.zeros().config == {"class_name": "zeros", "config": {}}


def test_unseeded_draws_differ():
    a = init.glorot_uniform()((50, 50))
    b = init.glorot_uniform()((50, 50))
    assert not np.array_equal(a, b)


def test_different_seeds_differ():
    assert not np.array_equal(init.random_normal(seed=1)((100,)), init.random_normal(seed=2)((100,)))


def test_glorot_uniform_statistics():
    fan_in, fan_out = 400, 300
    x = init.glorot_uniform(seed=0)((fan_in, fan_out), "float64")
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(x).max() <= limit
    assert abs(x.std() - limit / math.sqrt(3.0)) < 0.01 * limit
    assert abs(x.mean()) < 0.01 * limit


def test_glorot_normal_and_he_normal_variance():
    x = init.glorot_normal(seed=0)((500, 300), "float64")
    assert abs(x.var() / (2.0 / 800) - 1.0) < 0.03
    assert np.abs(x).max() <= 2.0 * math.sqrt(2.0 / 800) / 0.87962566103423978 + 1e-12
    h = init.he_normal(seed=0)((3, 3, 64, 32), "float64")  # a conv kernel: fan_in = 3 * 3 * 64
    assert abs(h.var() / (2.0 / (9 * 64)) - 1.0) < 0.03


def test_random_normal_and_uniform_statistics():
    x = init.random_normal(mean=1.0, stddev=2.0, seed=0)((200_000,), "float64")
    assert abs(x.mean() - 1.0) < 0.02 and abs(x.std() - 2.0) < 0.02
    u = init.random_uniform(-1.0, 3.0, seed=0)((200_000,), "float64")
    assert u.min() >= -1.0 and u.max() < 3.0 and abs(u.mean() - 1.0) < 0.02


def test_truncated_normal_stays_within_two_stddevs():
    x = init.truncated_normal(mean=1.0, stddev=0.5, seed=0)((100_000,), "float64")
    assert x.min() >= 0.0 and x.max() <= 2.0
    assert abs(x.mean() - 1.0) < 0.01
    # The std of N(0, 1) truncated at +-2 is 0.8796.
    assert abs(x.std() - 0.5 * 0.87962566103423978) < 0.005


def test_zeros_ones_constant_and_dtypes():
    np.testing.assert_array_equal(init.zeros()((2, 2), hk.int64), np.zeros((2, 2), np.int64))
    assert init.zeros()((2,), "int32").dtype == np.int32
    np.testing.assert_array_equal(init.ones()((3,), "float64"), np.ones(3))
    np.testing.assert_array_equal(init.constant(7)((2,), "int32"), [7, 7])
    np.testing.assert_array_equal(init.constant([[1, 2], [3, 4]])((2, 2), "float32"), [[1, 2], [3, 4]])


def test_get_accepts_names_configs_and_objects():
    assert isinstance(init.get("glorot_uniform"), init.glorot_uniform)
    obj = init.he_normal(seed=4)
    assert init.get(obj) is obj
    assert init.get(None) is None
    assert init.get({"class_name": "constant", "config": {"value": 3.0}})((1,), "float32")[0] == 3.0


def test_errors():
    with pytest.raises(hk.GraphError, match=r"Unknown initializer 'glorot'; expected one of \['constant'"):
        init.get("glorot")
    with pytest.raises(hk.GraphError, match="Bad config"):
        init.get({"class_name": "zeros", "config": {"seed": 1}})
    with pytest.raises(hk.GraphError, match="fully known shape"):
        init.zeros()((None, 3))
    with pytest.raises(hk.GraphError, match="floating-point"):
        init.glorot_uniform()((2, 2), "int32")
    with pytest.raises(hk.GraphError, match="cannot fill"):
        init.constant([1.0, 2.0])((3,), "float32")
    with pytest.raises(hk.GraphError, match="mode"):
        init.variance_scaling(mode="fan_max")
    with pytest.raises(hk.GraphError, match="Cannot use"):
        init.get(lambda shape, dtype: np.zeros(shape))


def test_variable_with_initializer_is_lazy_and_records_config_in_graph():
    g = hk.Graph()
    with g.as_default():
        v = hk.Variable(name="w", shape=[4, 3], initializer=init.glorot_uniform(seed=5))
        t = v.tensor()
    assert not v.is_initialized
    assert t.node.attrs["initializer"] == {"class_name": "glorot_uniform", "config": {"seed": 5}}
    np.testing.assert_array_equal(hk.Session(g).run(t), init.glorot_uniform(seed=5)((4, 3), "float32"))
