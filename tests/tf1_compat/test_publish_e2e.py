"""Modules using TF1 graph features go the whole way: export -> publish -> load by URL -> run -> fine-tune.

Control flow, sparse and ragged signatures and partitioned variables: each module is exported,
published into a registry root served by a real HTTP server on 127.0.0.1, loaded by its URL,
run (against the module loaded from its local directory), then fine-tuned a few SGD steps.
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from tests.tf1_compat.test_control_flow import control_flow_module_fn

_r = np.random.default_rng(3)


def _foldl_module_fn():
    """TF Hub's nested control-flow module: the sum of the elements above ``a`` (foldl holding a cond)."""
    elems = hk.placeholder(hk.float32, [None], name="elems")
    a = hk.placeholder(hk.float32, [], name="a")
    scale = hk.get_variable("scale", [], initializer=hk.initializers.constant(1.0))

    def sum_above_a(acc, x):
        return acc + hk.cond(x > a, lambda: x * scale, lambda: hk.constant(0.0))

    hk.add_signature(inputs={"elems": elems, "a": a},
                     outputs=hk.foldl(sum_above_a, elems, initializer=hk.constant(0.0)))


def _sparse_module_fn():
    """Bag of weighted ids (a SparseTensor) -> embedding sum, and the input squared as a sparse output."""
    ids = hk.sparse_placeholder(hk.int64, [None, None], name="ids")
    table = hk.get_variable("table", [6, 2], initializer=hk.initializers.constant(0.5))
    emb = hk.nn.embedding_lookup_sparse(table, ids, None, combiner="sum")
    hk.add_signature(inputs={"ids": ids}, outputs={"default": emb,
                                                   "squared": ids.with_values(ids.values * ids.values)})


def _ragged_module_fn():
    """Ragged rows of floats scaled by a trainable factor (ragged in, ragged out)."""
    x = hk.ragged_placeholder(hk.float32, name="x")
    w = hk.get_variable("w", [], initializer=hk.initializers.constant(2.0))
    hk.add_signature(inputs=x, outputs=x.with_values(x.values * w))


def _partitioned_module_fn():
    """An embedding table of 25 parts ([600, 3]) looked up with partition_strategy='div'."""
    ids = hk.placeholder(hk.int64, [None], name="ids")
    table = hk.get_variable("table", [600, 3], initializer=hk.initializers.constant(0.1),
                            partitioner=hk.fixed_size_partitioner(25))
    hk.add_signature(inputs=ids, outputs=hk.nn.embedding_lookup(table, ids, partition_strategy="div"))


SPARSE_IDS = hk.SparseTensorValue([[0, 0], [0, 1], [2, 0]], np.array([1, 4, 5], np.int64), [3, 2])


CASES = {
    "while-cond-map": (control_flow_module_fn, lambda: _r.standard_normal((4, 3)).astype(np.float32),
                       lambda m, x: ({(ph := hk.placeholder(hk.float32, [None, 3])): x}, m(ph))),
    "foldl-cond": (_foldl_module_fn, lambda: {"elems": np.array([10, 0, 0.5, 1.2], np.float32), "a": np.float32(1.1)},
                   lambda m, x: ({(e := hk.placeholder(hk.float32, [None])): x["elems"],
                                  (a := hk.placeholder(hk.float32, [])): x["a"]}, m({"elems": e, "a": a}))),
    "sparse": (_sparse_module_fn, lambda: {"ids": SPARSE_IDS},
               lambda m, x: ({(sp := hk.sparse_placeholder(hk.int64, [None, None])): x["ids"]}, m({"ids": sp}))),
    "ragged": (_ragged_module_fn, lambda: [[1.0, 2.0], [], [3.0]],
               lambda m, x: ({(r := hk.ragged_placeholder(hk.float32)): x}, m(r).values)),
    "partitioned": (_partitioned_module_fn, lambda: np.array([0, 23, 24, 599, 300], np.int64),
                    lambda m, x: ({(ph := hk.placeholder(hk.int64, [None])): x}, m(ph))),
}


def _flat(value):
    if isinstance(value, dict):
        return [leaf for k in sorted(value) for leaf in _flat(value[k])]
    if isinstance(value, tuple):
        return [np.asarray(v) for v in value]
    return [np.asarray(value)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_publish_load_by_url_run_fine_tune(case, hub_env, tmp_path, server_factory):
    module_fn, make_inputs, build = CASES[case]
    path = str(tmp_path / "export")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    root = str(tmp_path / "registry")
    hk.publish(path, root, name=f"acme/{case}", description="A TF1-compatibility test module.")
    server = server_factory(root)
    url = hk.registry_latest(f"{server.url}/acme/{case}")
    assert url.startswith("http://127.0.0.1:")
    inputs = make_inputs()
    remote, local = hk.Module(url), hk.Module(path)
    for got, want in zip(_flat(remote(inputs, as_dict=True)), _flat(local(inputs, as_dict=True))):
        np.testing.assert_allclose(got, want, rtol=1e-6)

    tuned = hk.Module(url, trainable=True)
    g = hk.Graph()
    with g.as_default():
        feed, out = build(tuned, inputs)
        loss = hk.reduce_mean(hk.square(out))
        train = hk.train.GradientDescent(0.001).minimize(loss)
        sess = hk.Session(g)
        before = sess.run(loss, feed)
        for _ in range(4):
            sess.run(train, feed)
        after = sess.run(loss, feed)
    assert after < before
