"""hk.train.Saver (TF1's name-keyed checkpoints) and ModuleSpec.export from a checkpoint (TFHubExportSpecTest)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hubkit as hk


def _graph_with_variables():
    g = hk.Graph()
    with g.as_default():
        w = hk.get_variable("dense/kernel", [3, 2], initializer=hk.initializers.constant(1.5))
        b = hk.get_variable("dense/bias", [2], initializer=hk.initializers.zeros())
        step = hk.get_variable("step", [], dtype=hk.int64, initializer=hk.initializers.zeros(), trainable=False)
    return g, w, b, step


def test_save_restore_round_trip_with_leading_session(tmp_path):
    g, w, _b, step = _graph_with_variables()
    with g.as_default():
        saver = hk.train.Saver()
        sess = hk.Session(g)
        prefix = saver.save(sess, str(tmp_path / "model"), global_step=3)
    assert prefix.endswith("model-3") and os.path.exists(prefix + ".index")
    assert sorted(hk.train.load_checkpoint(prefix).keys()) == ["dense/bias", "dense/kernel", "step"]
    w.assign(np.zeros((3, 2)))
    step.assign(9)
    saver.restore(sess, prefix)
    np.testing.assert_array_equal(w.value, np.full((3, 2), 1.5, np.float32))
    assert step.value == 0
    saver.restore(prefix)  # without a session too
    assert hk.train.latest_checkpoint(str(tmp_path)) == prefix


def test_max_to_keep_deletes_old_checkpoints(tmp_path):
    g, *_ = _graph_with_variables()
    with g.as_default():
        saver = hk.train.Saver(max_to_keep=2)
    prefixes = [saver.save(None, str(tmp_path / "m"), global_step=i) for i in range(4)]
    assert saver.last_checkpoints == prefixes[2:]
    assert not os.path.exists(prefixes[0] + ".index") and os.path.exists(prefixes[3] + ".index")


def test_restore_checks_everything_before_assigning(tmp_path):
    g, w, b, _step = _graph_with_variables()
    with g.as_default():
        prefix = hk.train.Saver(var_list=[w]).save(None, str(tmp_path / "only_w"))
        full = hk.train.Saver(var_list=[w, b])
    w.assign(np.zeros((3, 2)))
    with pytest.raises(hk.CheckpointError, match=r"no values for the variables \['dense/bias'\]"):
        full.restore(None, prefix)
    assert not w.value.any()  # nothing was assigned
    other = hk.Graph()
    with other.as_default():
        wrong = hk.get_variable("dense/kernel", [2, 2])
        with pytest.raises(hk.CheckpointError, match=r"shape \[3, 2\].*shape \[2, 2\]"):
            hk.train.Saver([wrong]).restore(None, prefix)
    with pytest.raises(hk.CheckpointError, match=r"does not exist"):
        full.restore(None, str(tmp_path / "nothing"))


def test_dict_var_list_and_errors(tmp_path):
    _g, w, _b, _ = _graph_with_variables()
    prefix = hk.train.Saver({"renamed": w}).save(str(tmp_path / "d"))
    assert hk.train.load_checkpoint(prefix).keys() == ["renamed"]
    with pytest.raises(hk.CheckpointError, match="Variables"):
        hk.train.Saver([1.0])
    with pytest.raises(hk.CheckpointError, match="no variables"), hk.Graph().as_default():
        hk.train.Saver()


def _dense_fn(x, dim=10):
    return hk.layers.dense(x, dim, name="dense")


def _module_fn(dim=10):
    x = hk.placeholder(hk.float32, [None, dim])
    hk.add_signature(inputs=x, outputs=_dense_fn(x, dim))


def _checkpoint(tmp_path, scope=None) -> str:
    g = hk.Graph()
    with g.as_default():
        x = hk.get_variable("x", [32, 10], initializer=hk.initializers.get("random_normal"))
        if scope:
            with hk.variable_scope(scope):
                y = _dense_fn(x)
        else:
            y = _dense_fn(x)
        hk.layers.dense(y, 20, name="dense_2")
        return hk.train.Saver().save(None, str(tmp_path / "model"))


def test_export_module_spec_from_checkpoint(tmp_path):
    prefix = _checkpoint(tmp_path)
    spec = hk.create_module_spec(_module_fn)
    spec.export(str(tmp_path / "module1"), checkpoint_path=prefix)
    m = hk.Module(str(tmp_path / "module1"))
    reader = hk.train.load_checkpoint(prefix)
    x = np.ones((2, 10), np.float32)
    expected = x @ reader.get_tensor("dense/kernel") + reader.get_tensor("dense/bias")
    np.testing.assert_allclose(m(x), expected, rtol=1e-6)


def test_export_module_spec_with_wrong_shape_or_scope(tmp_path):
    prefix = _checkpoint(tmp_path, scope="block")
    spec20 = hk.create_module_spec(lambda: _module_fn(dim=20))
    with pytest.raises(hk.CheckpointError, match=r"doesn't match with shape of variable 'dense/bias', \[20\]"):
        spec20.export(str(tmp_path / "module2"), checkpoint_path=prefix, name_transform_fn=lambda n: "block/" + n)
    spec = hk.create_module_spec(_module_fn)
    with pytest.raises(hk.CheckpointError, match=r"'dense/bias' \(checkpoint key 'block2/dense/bias'\) is not found"):
        spec.export(str(tmp_path / "module3"), checkpoint_path=prefix, name_transform_fn=lambda n: "block2/" + n)
    assert not os.path.exists(tmp_path / "module2") and not os.path.exists(tmp_path / "module3")


def test_export_from_a_corrupt_tensorflow_checkpoint_names_it(tmp_path):
    prefix = str(tmp_path / "tf_model")
    with open(prefix + ".index", "wb") as f:
        f.write(b"\x00\x01binary leveldb table")
    with pytest.raises(hk.CheckpointError, match=r"TensorFlow checkpoint .* cannot be read"):
        hk.create_module_spec(_module_fn).export(str(tmp_path / "m"), checkpoint_path=prefix)
    assert not os.path.exists(tmp_path / "m")


def test_export_from_a_tensorflow_checkpoint(tmp_path):
    """A tensor bundle recorded from TensorFlow (tests/data/tf1, the TF1 importer's fixtures) under another prefix."""
    import shutil

    from hubkit.importers.tf1.bundle import read_bundle

    src = os.path.join(os.path.dirname(__file__), "..", "data", "tf1", "cnn_batch_norm", "variables")
    for name in os.listdir(src):
        shutil.copy(os.path.join(src, name), tmp_path / name.replace("variables", "model"))
    bundle = read_bundle(src)
    kernel_entry = bundle.entries["conv2/bias"]

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 6])
        b = hk.get_variable("bias", list(kernel_entry.shape))
        hk.add_signature(inputs=x, outputs=x + b)

    spec = hk.create_module_spec(module_fn)
    spec.export(str(tmp_path / "m"), checkpoint_path=str(tmp_path / "model"), name_transform_fn=lambda n: "conv2/" + n)
    out = hk.Module(str(tmp_path / "m"))(np.zeros((1, 6), np.float32))
    loc = bundle.tensor_entry(kernel_entry)
    with open(os.path.join(src, loc.file), "rb") as f:
        f.seek(loc.begin)
        expected = np.frombuffer(f.read(loc.end - loc.begin), dtype=loc.dtype)
    np.testing.assert_array_equal(out[0], expected)
