"""Modules using TF1 graph features go the whole way: export -> publish -> load by URL -> run -> fine-tune."""

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


CASES = {
    "while_cond_map": (control_flow_module_fn, lambda: _r.standard_normal((4, 3)).astype(np.float32),
                       lambda m, x: m(x)),
    "foldl_cond": (_foldl_module_fn, lambda: {"elems": np.array([10, 0, 0.5, 1.2], np.float32),
                                              "a": np.float32(1.1)}, lambda m, x: m(x)),
}


def publish_and_load(module_fn, name, tmp_path, server_factory) -> tuple[hk.Module, str]:
    path = str(tmp_path / "export")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    root = str(tmp_path / "registry")
    hk.publish(path, root, name=f"acme/{name}", description="A TF1-compatibility test module.")
    server = server_factory(root)
    url = hk.registry_latest(f"{server.url}/acme/{name}")
    return hk.Module(path), url


def fine_tune(url: str, inputs, steps: int = 4) -> tuple[float, float]:
    """Loss before and after a few SGD steps of the module loaded by URL (trainable) towards zero outputs."""
    m = hk.Module(url, trainable=True)
    g = hk.Graph()
    with g.as_default():
        phs = {k: hk.placeholder(hk.as_dtype(np.asarray(v).dtype), np.shape(v)) for k, v in inputs.items()} \
            if isinstance(inputs, dict) else hk.placeholder(hk.as_dtype(inputs.dtype), inputs.shape)
        out = m(phs)
        loss = hk.reduce_mean(hk.square(out))
        train = hk.train.GradientDescent(0.001).minimize(loss)
        feed = {phs[k]: v for k, v in inputs.items()} if isinstance(inputs, dict) else {phs: inputs}
        sess = hk.Session(g)
        before = sess.run(loss, feed)
        for _ in range(steps):
            sess.run(train, feed)
        return float(before), float(sess.run(loss, feed))


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_publish_load_by_url_run_fine_tune(case, hub_env, tmp_path, server_factory):
    module_fn, make_inputs, call = CASES[case]
    local, url = publish_and_load(module_fn, case.replace("_", "-"), tmp_path, server_factory)
    inputs = make_inputs()
    remote = hk.Module(url)
    np.testing.assert_allclose(call(remote, inputs), call(local, inputs), rtol=1e-6)
    before, after = fine_tune(url, inputs)
    assert after < before
