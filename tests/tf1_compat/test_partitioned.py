"""Partitioned variables: partitioners, parts named <name>/part_<i>, lookups with "mod"/"div", gradients, export."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def test_fixed_size_partitioner_parts_and_values():
    g = hk.Graph()
    with g.as_default():
        with hk.variable_scope("scope"):
            v = hk.get_variable("partition", [4], initializer=hk.initializers.zeros(),
                                partitioner=hk.fixed_size_partitioner(3))
        assert isinstance(v, hk.PartitionedVariable) and len(v) == 3
        assert [p.name for p in v] == ["scope/partition/part_0", "scope/partition/part_1", "scope/partition/part_2"]
        assert [p.shape for p in v] == [(2,), (1,), (1,)]
        assert [x.name for x in hk.get_collection(hk.GraphKeys.GLOBAL_VARIABLES)] == [p.name for p in v]
        full = v + 1.0
    np.testing.assert_array_equal(hk.Session(g).run(full), np.ones(4))


def test_array_initializer_is_sliced_along_the_axis():
    value = np.arange(12, dtype=np.float32).reshape(3, 4)
    g = hk.Graph()
    with g.as_default():
        v = hk.get_variable("w", initializer=value, partitioner=hk.fixed_size_partitioner(2, axis=1))
    assert [p.shape for p in v] == [(3, 2), (3, 2)]
    np.testing.assert_array_equal(v.numpy(), value)


def test_axis_size_and_min_max_partitioners():
    f32 = hk.float32
    assert hk.variable_axis_size_partitioner(max_shard_bytes=4 * 3 * 10)((100, 3), f32) == [10, 1]
    assert hk.variable_axis_size_partitioner(4 * 3 * 10, max_shards=4)((100, 3), f32) == [4, 1]
    assert hk.variable_axis_size_partitioner(1)((5, 3), f32) == [5, 1]
    assert hk.min_max_variable_partitioner(max_partitions=8, min_slice_size=1200)((600, 3), f32) == [6, 1]
    assert hk.min_max_variable_partitioner(max_partitions=2, min_slice_size=10)((600, 3), f32) == [2, 1]
    assert hk.min_max_variable_partitioner()((10, 3), f32) == [1, 1]
    with pytest.raises(hk.GraphError, match="positive"):
        hk.fixed_size_partitioner(0)
    with pytest.raises(hk.GraphError, match="axis 2"):
        hk.fixed_size_partitioner(2, axis=2)((4, 4), f32)


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_embedding_lookup_over_parts_and_gradients(strategy):
    table = np.random.default_rng(0).standard_normal((11, 3)).astype(np.float32)
    n = 4
    if strategy == "mod":
        parts_values = [table[i::n] for i in range(n)]
    else:
        parts_values = np.array_split(table, n)
    ids = np.array([[0, 10, 3], [7, 7, 1]], np.int64)
    g = hk.Graph()
    with g.as_default():
        parts = [hk.get_variable(f"emb/part_{i}", initializer=p) for i, p in enumerate(parts_values)]
        out = hk.nn.embedding_lookup(parts, ids, partition_strategy=strategy)
        loss = hk.reduce_sum(out * out)
        grads = hk.gradients(loss, parts)
        res = hk.Session(g).run([out] + [gr.to_dense() for gr in grads])
    np.testing.assert_allclose(res[0], table[ids], rtol=1e-6)
    full_grad = np.zeros_like(table)
    np.add.at(full_grad, ids.reshape(-1), 2 * table[ids.reshape(-1)])
    expected = [full_grad[i::n] for i in range(n)] if strategy == "mod" else np.array_split(full_grad, n)
    for got, want in zip(res[1:], expected):
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_embedding_lookup_argument_errors():
    with hk.Graph().as_default():
        parts = [hk.constant(np.zeros((2, 2), np.float32)), hk.constant(np.zeros((2, 2), np.float32))]
        with pytest.raises(hk.GraphError, match="partition_strategy"):
            hk.nn.embedding_lookup(parts, hk.constant([0]), partition_strategy="random")
        with pytest.raises(hk.GraphError, match="empty list"):
            hk.nn.embedding_lookup([], hk.constant([0]))


def _partitioned_module_fn(partitions, shape):
    def module_fn():
        var_1 = hk.get_variable("partitioned_variable", initializer=np.ones(shape, np.float32),
                                partitioner=hk.fixed_size_partitioner(partitions))
        var_2 = hk.get_variable("normal_variable", initializer=np.ones(shape, np.float32))
        hk.add_signature(outputs=var_1 + var_2)

    return module_fn


@pytest.mark.parametrize("partitions,shape", [(3, [7, 3]), (25, [600, 3])])
def test_partitioned_variables_in_a_module(partitions, shape, tmp_path):
    spec = hk.create_module_spec(_partitioned_module_fn(partitions, shape))
    m = hk.Module(spec, name="test")
    assert len(m.variable_map) == 2
    parts = m.variable_map["partitioned_variable"]
    assert isinstance(parts, list) and len(parts) == partitions
    assert [v.name for v in parts] == [f"test/partitioned_variable/part_{i}" for i in range(partitions)]
    assert m.variable_map["normal_variable"].name == "test/normal_variable"
    assert [v.name for v in m.variables] == ["test/normal_variable"] + [v.name for v in parts]
    np.testing.assert_allclose(m(), 2 * np.ones(shape))
    m.export(str(tmp_path / "m"))
    loaded = hk.Module(str(tmp_path / "m"), name="test")
    assert len(loaded.variable_map["partitioned_variable"]) == partitions
    np.testing.assert_allclose(loaded(), 2 * np.ones(shape))


def test_hub_layer_over_a_partitioned_module_checkpoints_each_part(tmp_path):
    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(_partitioned_module_fn(3, [7, 3]))).export(path)
    layer = hk.HubLayer(path, trainable=True)
    layer.build(None)
    assert sorted(layer.module.flat_variable_map) == ["normal_variable"] + [
        f"partitioned_variable/part_{i}" for i in range(3)]
    ckpt = hk.Checkpoint(layer=layer)
    prefix = ckpt.save(str(tmp_path / "ckpt"))
    part = layer.module.variable_map["partitioned_variable"][1]
    part.assign(np.zeros(part.shape))
    ckpt.restore(prefix)
    np.testing.assert_array_equal(part.value, np.ones(part.shape))
