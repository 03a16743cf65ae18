"""Fine-tuning end to end: publish a module with a {"train"} variant (dropout, batch norm) to a registry,
serve it on 127.0.0.1, fine-tune it through HubLayer in a Model, export it, reload it in a new process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import hubkit as hk
from hubkit import layers as L


def module_fn(training=False):
    x = hk.placeholder(hk.float32, [None, 8], name="x")
    h = L.Dense(16, activation="relu", name="hidden")(x, training=training)
    h = L.BatchNormalization(momentum=0.5, name="bn")(h, training=training)
    h = L.Dropout(0.3, name="drop")(h, training=training)
    hk.add_signature(inputs=x, outputs=L.Dense(4, name="features")(h))


def make_spec():
    return hk.create_module_spec(module_fn, tags_and_args=[(set(), {"training": False}), ({"train"}, {"training": True})])


@pytest.fixture
def registry_handle(tmp_path, monkeypatch):
    from hubkit.hub.serve import make_server

    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    module = hk.Module(make_spec())
    module.export(str(tmp_path / "exported"))
    hk.publish(str(tmp_path / "exported"), str(tmp_path / "registry"), name="acme/features", version=1)
    server = make_server(str(tmp_path / "registry"), quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/acme/features/1"
    finally:
        server.shutdown()
        server.server_close()


def data(rng, n=256):
    xs = rng.normal(size=(n, 8)).astype(np.float32)
    ys = (xs[:, 0] - xs[:, 1] > 0).astype(np.int64)
    return xs, ys


def build(handle, trainable):
    x = hk.Input((8,))
    hub = hk.HubLayer(handle, trainable=trainable)
    features = hub(x)
    model = hk.Model(x, L.Dense(2)(features))
    return model, hub, hk.Model(x, features)


def test_frozen_hub_layer_keeps_its_weights(graph, registry_handle, rng):
    model, hub, _ = build(registry_handle, trainable=False)
    before = {n: v.numpy() for n, v in hub.module.variable_map.items()}
    assert hub.trainable_variables == [] and len(model.trainable_variables) == 2
    model.compile(hk.train.Adam(0.01), "sparse_softmax_cross_entropy")
    xs, ys = data(rng)
    model.fit(xs, ys, epochs=2, verbose=0)
    for name, var in hub.module.variable_map.items():
        np.testing.assert_array_equal(var.value, before[name])
    assert list(hub._modules) == [frozenset()]  # the train variant is not used when frozen


def test_finetune_export_and_reload_in_a_new_process(graph, registry_handle, rng, tmp_path):
    model, hub, feature_model = build(registry_handle, trainable=True)
    variables = hub.module.variable_map
    assert sorted(variables) == [
        "bn/beta", "bn/gamma", "bn/moving_mean", "bn/moving_variance",
        "features/bias", "features/kernel", "hidden/bias", "hidden/kernel",
    ]  # fmt: skip
    assert len(hub.trainable_variables) == 6 and len(hub.non_trainable_variables) == 2
    kernel_before = variables["hidden/kernel"].numpy()
    mean_before = variables["bn/moving_mean"].numpy()
    model.compile(hk.train.Adam(0.01), "sparse_softmax_cross_entropy", metrics=["accuracy"])
    xs, ys = data(rng)
    history = model.fit(xs, ys, batch_size=32, epochs=6, verbose=0)
    assert frozenset({"train"}) in hub._modules  # the train variant (dropout, batch-norm updates) was used
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert not np.array_equal(variables["hidden/kernel"].value, kernel_before)
    assert not np.array_equal(variables["bn/moving_mean"].value, mean_before)  # UPDATE_OPS of the module ran
    expected = feature_model.predict(xs)
    in_process = hub.module(xs)
    np.testing.assert_allclose(in_process, expected, rtol=1e-5, atol=1e-6)

    hub.module.export(str(tmp_path / "finetuned"))
    np.save(tmp_path / "xs.npy", xs)
    script = textwrap.dedent(
        f"""
        import numpy as np, hubkit as hk
        m = hk.Module({str(tmp_path / "finetuned")!r})
        np.save({str(tmp_path / "out.npy")!r}, m(np.load({str(tmp_path / "xs.npy")!r})))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), in_process, rtol=1e-6, atol=1e-7)


def test_latest_module_exporter_reads_the_newest_checkpoint(graph, registry_handle, rng, tmp_path):
    model, _hub, feature_model = build(registry_handle, trainable=True)
    model.compile(hk.train.Adam(0.01), "sparse_softmax_cross_entropy")
    xs, ys = data(rng, n=64)
    manager = hk.CheckpointManager(hk.Checkpoint(model=model), str(tmp_path / "ckpts"), max_to_keep=2)
    exporter = hk.LatestModuleExporter("features", make_spec(), exports_to_keep=2)
    exports = []
    for _ in range(3):
        model.fit(xs, ys, epochs=1, verbose=0)
        manager.save()
        exports.append(exporter.export(str(tmp_path / "ckpts"), str(tmp_path / "exports")))
    assert len(set(exports)) == 3
    kept = sorted((tmp_path / "exports" / "features").iterdir())
    assert [p.name for p in kept] == sorted(p.rsplit("/", 1)[1] for p in exports[1:])
    reloaded = hk.Module(exports[-1])
    np.testing.assert_allclose(reloaded(xs), feature_model.predict(xs), rtol=1e-5, atol=1e-6)


def test_exporter_lists_missing_variables(tmp_path):
    path = hk.Checkpoint(v=hk.Variable(np.zeros(2, np.float32), name="other")).write(str(tmp_path / "c"))
    with pytest.raises(hk.CheckpointError, match=r"no value for module variables \['bn/beta'"):
        hk.LatestModuleExporter("m", make_spec()).export(path, str(tmp_path / "out"))


def test_hub_layer_weights_restore_from_a_model_checkpoint(graph, registry_handle, rng, tmp_path):
    model, hub, _ = build(registry_handle, trainable=True)
    path = hk.Checkpoint(model=model).write(str(tmp_path / "m"))
    with hk.Graph().as_default():
        model2, hub2, _ = build(registry_handle, trainable=True)
    status = hk.Checkpoint(model=model2).restore(path)
    status.assert_consumed()
    for name, var in hub.module.variable_map.items():
        np.testing.assert_array_equal(hub2.module.variable_map[name].value, var.value)
