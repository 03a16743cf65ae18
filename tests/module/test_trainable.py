"""trainable=True vs False: collections, regularization losses, update ops, batch-norm statistics, fine-tuning."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

import hubkit as hk

UPDATE_OPS = hk.GraphKeys.UPDATE_OPS
REG_LOSSES = hk.GraphKeys.REGULARIZATION_LOSSES


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_trainable_module_joins_collections(mlp_spec):
    m = hk.Module(mlp_spec, trainable=True)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 4])
        m(x)
        m(x, signature="hidden", as_dict=True)
    assert g.get_collection(hk.GraphKeys.TRAINABLE_VARIABLES) == m.variables  # once, though called twice
    assert g.get_collection(hk.GraphKeys.GLOBAL_VARIABLES) == m.variables


def test_regularization_losses_counted_once_and_only_when_trainable(fns):
    spec = fns.bn_spec()
    m = hk.Module(spec, trainable=True)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        m(x)
        m(x)
    losses = g.get_collection(REG_LOSSES)
    assert len(losses) == 1
    kernel = m.variable_map["dense/kernel"].numpy()
    ref_graph = hk.Graph()
    with ref_graph.as_default():
        expected = hk.Session(ref_graph).run(hk.regularizers.l2(0.1)(hk.constant(kernel)))
    np.testing.assert_allclose(hk.Session(g).run(losses[0]), expected, rtol=1e-6)
    frozen = hk.Module(spec, trainable=False)
    g2 = hk.Graph()
    with g2.as_default():
        frozen(hk.placeholder(hk.float32, [None, 3]))
    assert g2.get_collection(REG_LOSSES) == [] and g2.get_collection(UPDATE_OPS) == []


def test_update_ops_only_when_trainable(fns, rng):
    spec = fns.bn_spec()
    xv = (rng.normal(size=(32, 3)) + 3.0).astype(np.float32)
    for trainable in (True, False):
        m = hk.Module(spec, trainable=trainable, tags={"train"})
        before = m.variable_map["bn/moving_mean"].numpy()
        g = hk.Graph()
        with g.as_default():
            x = hk.placeholder(hk.float32, [None, 3])
            y = m(x)
        updates = g.get_collection(UPDATE_OPS)
        assert len(updates) == (2 if trainable else 0)
        hk.Session(g).run([y, *updates], {x: xv})
        after = m.variable_map["bn/moving_mean"].numpy()
        assert (not np.allclose(after, before)) is trainable
        assert not m.variable_map["bn/moving_mean"].trainable  # statistics are never trained by gradients


def test_gradients_flow_only_into_trainable_modules(mlp_spec, rng):
    xv = rng.normal(size=(8, 4)).astype(np.float32)
    m = hk.Module(mlp_spec, trainable=True)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 4])
        loss = hk.reduce_mean(hk.square(m(x)))
        grads = hk.gradients(loss, m.trainable_variables)
        train = hk.train.GradientDescent(0.1).minimize(loss)
    assert all(gr is not None for gr in grads)
    before = m.variable_map["logits/kernel"].numpy()
    hk.Session(g).run(train, {x: xv})
    assert not np.allclose(m.variable_map["logits/kernel"].numpy(), before)

    frozen = hk.Module(mlp_spec)
    g2 = hk.Graph()
    with g2.as_default():
        x2 = hk.placeholder(hk.float32, [None, 4])
        loss2 = hk.reduce_mean(hk.square(frozen(x2)))
        with pytest.raises(hk.GraphError, match="no trainable variable"):
            hk.train.GradientDescent(0.1).minimize(loss2)


def test_batch_norm_statistics_learned_then_frozen(fns, rng, tmp_path):
    spec = fns.bn_spec()
    m = hk.Module(spec, trainable=True, tags={"train"})
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        y = m(x)
        step = hk.group(*g.get_collection(UPDATE_OPS))
    data = (rng.normal(size=(64, 3)) * 2.0 + 5.0).astype(np.float32)
    for _ in range(30):
        hk.Session(g).run([y, step], {x: data})
    kernel, bias = m.variable_map["dense/kernel"].numpy(), m.variable_map["dense/bias"].numpy()
    dense = data @ kernel + bias
    np.testing.assert_allclose(m.variable_map["bn/moving_mean"].numpy().ravel(), dense.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.variable_map["bn/moving_variance"].numpy().ravel(), dense.var(0), rtol=1e-3, atol=1e-3)
    m.export(tmp_path / "bn")
    # The default variant of the exported module uses the learned statistics and never changes them.
    frozen = hk.Module(str(tmp_path / "bn"))
    gamma, beta = frozen.variable_map["bn/gamma"].numpy(), frozen.variable_map["bn/beta"].numpy()
    expected = (dense - dense.mean(0)) / np.sqrt(dense.var(0) + 1e-3) * gamma + beta
    np.testing.assert_allclose(frozen(data), expected, rtol=1e-3, atol=1e-3)
    g2 = hk.Graph()
    with g2.as_default():
        x2 = hk.placeholder(hk.float32, [None, 3])
        y2 = frozen(x2)
    for _ in range(3):
        hk.Session(g2).run(y2, {x2: data * 10})
    np.testing.assert_allclose(frozen(data), expected, rtol=1e-3, atol=1e-3)


def test_fine_tuning_train_variant(fns, rng, tmp_path):
    """Export with a {"train"} variant, load trainable, train a head, re-export, reproduce the outputs."""
    base = hk.Module(fns.bn_spec())
    base.export(tmp_path / "v1")
    variables_file = os.path.join(tmp_path, "v1", "variables", "variables.safetensors")
    digest = _sha(variables_file)

    m = hk.Module(str(tmp_path / "v1"), trainable=True, tags={"train"})
    original = {k: v.numpy() for k, v in m.variable_map.items()}
    xv = rng.normal(size=(128, 3)).astype(np.float32)
    yv = (np.sin(xv @ np.array([1.0, -2.0, 0.5])) + 0.3)[:, None].astype(np.float32)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        y = hk.placeholder(hk.float32, [None, 1])
        pred = hk.layers.dense(m(x), 1, name="head")
        loss = hk.losses.mean_squared_error(y, pred)
        total = loss + hk.add_n(g.get_collection(REG_LOSSES))
        train = hk.group(hk.train.Adam(0.02).minimize(total), *g.get_collection(UPDATE_OPS))
    sess = hk.Session(g)
    first = sess.run(loss, {x: xv, y: yv})
    for _ in range(150):
        sess.run(train, {x: xv, y: yv})
    last = sess.run(loss, {x: xv, y: yv})
    assert last < 0.7 * first
    for name in ("dense/kernel", "dense/bias", "bn/gamma", "bn/moving_mean"):
        assert not np.allclose(m.variable_map[name].numpy(), original[name]), name
    assert _sha(variables_file) == digest  # training wrote to private copies, never to the file

    m.export(tmp_path / "v2")
    tuned = hk.Module(str(tmp_path / "v2"))
    for name, var in m.variable_map.items():
        np.testing.assert_array_equal(tuned.variable_map[name].numpy(), var.numpy())
    same_values = hk.Module(str(tmp_path / "v1"))
    for name, var in same_values.variable_map.items():
        var.assign(m.variable_map[name].numpy())
    np.testing.assert_array_equal(tuned(xv), same_values(xv))
    assert not np.allclose(tuned(xv), hk.Module(str(tmp_path / "v1"))(xv))


def test_with_tags_shares_variables_across_variants(fns, rng):
    train = hk.Module(fns.bn_spec(), trainable=True, tags={"train"})
    serve = train.with_tags(set())
    assert serve.tags == frozenset() and serve.variables == train.variables
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        y_train, y_serve = train(x), serve(x)
        step = hk.group(*g.get_collection(UPDATE_OPS))
    assert len(g.get_collection(hk.GraphKeys.GLOBAL_VARIABLES)) == len(train.variables)  # bound once
    xv = (rng.normal(size=(16, 3)) + 2.0).astype(np.float32)
    before = serve(xv)
    hk.Session(g).run([y_train, step], {x: xv})
    assert not np.allclose(serve(xv), before)  # the served variant sees the trained statistics
    np.testing.assert_allclose(hk.Session(g).run(y_serve, {x: xv}), serve(xv), rtol=1e-6)
    with pytest.raises(hk.SignatureError, match="available tag sets"):
        train.with_tags({"nope"})
