"""Checkpoints: the guide's walkthrough (manual save, manager keeping 3, partial and deferred restore,
reader keys and shapes), optimizer slots, the file format's safety and its errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import checkpoint_io

V = "/.ATTRIBUTES/VARIABLE_VALUE"


class Net(hk.layers.Layer):
    """The guide's simple linear model."""

    def __init__(self):
        super().__init__()
        self.l1 = hk.layers.Dense(5)

    def call(self, x):
        return self.l1(x)


def toy_data():
    inputs = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 1), np.float32)
    labels = np.arange(10, dtype=np.float32)[:, None] * np.array([[1, 2, 3, 4, 5]], np.float32)
    return inputs, labels


def make_train_step(net, opt):
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 1])
        y = hk.placeholder(hk.float32, [None, 5])
        loss = hk.reduce_mean(hk.abs(net(x) - y))
        train = opt.minimize(loss, var_list=net.trainable_variables)
    sess = hk.Session(g)
    inputs, labels = toy_data()
    return lambda: sess.run([train, loss], {x: inputs, y: labels})[1]


def train_and_checkpoint(net, manager, ckpt, steps=50):
    step_fn = make_train_step(net, ckpt.optimizer)
    losses = []
    for _ in range(steps):
        losses.append(step_fn())
        ckpt.step.assign(ckpt.step.value + 1)
        if int(ckpt.step.value) % 10 == 0:
            manager.save()
    return losses


@pytest.fixture
def trained(tmp_path):
    net = Net()
    opt = hk.train.Adam(0.1)
    ckpt = hk.Checkpoint(step=hk.Variable(np.int64(1)), optimizer=opt, net=net)
    manager = hk.CheckpointManager(ckpt, str(tmp_path / "tf_ckpts"), max_to_keep=3)
    losses = train_and_checkpoint(net, manager, ckpt)
    return net, opt, ckpt, manager, losses


def test_manager_keeps_the_newest_three_and_the_loss_falls(trained, tmp_path):
    _net, _opt, ckpt, manager, losses = trained
    assert losses[-1] < losses[0] / 2
    names = [os.path.basename(p) for p in manager.checkpoints]
    assert names == ["ckpt-3", "ckpt-4", "ckpt-5"]
    directory = tmp_path / "tf_ckpts"
    assert sorted(n for n in os.listdir(directory) if n.endswith(".index")) == [
        "ckpt-3.index",
        "ckpt-4.index",
        "ckpt-5.index",
    ]
    assert hk.train.latest_checkpoint(str(directory)) == manager.latest_checkpoint
    # A new manager over the same directory picks up the kept checkpoints.
    again = hk.CheckpointManager(ckpt, str(directory), max_to_keep=3)
    assert again.checkpoints == manager.checkpoints


def test_reader_lists_keys_shapes_and_values(trained):
    net, _opt, _ckpt, manager, _ = trained
    path = manager.save()  # after the 50th step
    pairs = hk.train.list_variables(path)
    keys = [k for k, _ in pairs]
    assert keys == sorted(keys)
    shapes = dict(pairs)
    assert shapes["net/l1/kernel" + V] == [1, 5]
    assert shapes["net/l1/bias" + V] == [5]
    assert shapes["net/l1/kernel/.OPTIMIZER_SLOT/optimizer/m" + V] == [1, 5]
    assert shapes["net/l1/bias/.OPTIMIZER_SLOT/optimizer/v" + V] == [5]
    assert shapes["step" + V] == [] and shapes["save_counter" + V] == []
    assert "optimizer/beta1_power" + V in shapes
    reader = hk.train.load_checkpoint(path)
    assert reader.get_variable_to_shape_map() == shapes
    assert reader.get_variable_to_dtype_map()["step" + V] is hk.int64
    np.testing.assert_array_equal(reader.get_tensor("net/l1/bias" + V), net.l1.bias.value)
    assert int(reader.get_tensor("step" + V)) == 51
    assert int(reader.get_tensor("save_counter" + V)) == 6
    with pytest.raises(hk.CheckpointError, match=r"no key 'nope'.*'net/l1/bias"):
        reader.get_tensor("nope")


def test_restore_continues_training_and_counting(trained, tmp_path):
    net, opt, _ckpt, manager, losses = trained
    saved_kernel = net.l1.kernel.numpy()
    manager.save()
    net2, opt2 = Net(), hk.train.Adam(0.1)
    ckpt2 = hk.Checkpoint(step=hk.Variable(np.int64(1)), optimizer=opt2, net=net2)
    status = ckpt2.restore(manager.latest_checkpoint)
    # net2 is not built: its values wait for it (deferred restore).
    with pytest.raises(hk.CheckpointError, match="net/l1/kernel"):
        status.assert_consumed()
    step_fn = make_train_step(net2, opt2)  # builds net2 and creates the Adam slots
    np.testing.assert_array_equal(net2.l1.kernel.value, saved_kernel)
    status.run_restore_ops()
    np.testing.assert_array_equal(opt2.get_slot(net2.l1.kernel, "m").value, opt.get_slot(net.l1.kernel, "m").value)
    status.assert_consumed()
    assert int(ckpt2.step.value) == 51 and int(ckpt2.save_counter.value) == 6
    manager2 = hk.CheckpointManager(ckpt2, str(tmp_path / "tf_ckpts"), max_to_keep=3)
    assert os.path.basename(manager2.save()) == "ckpt-7"
    assert step_fn() < losses[0]


def test_partial_object_structure_restores_only_the_bias(trained):
    net, _, _, manager, _ = trained
    manager.save()
    to_restore = hk.Variable(np.zeros(5, np.float32))
    fake_layer = hk.Checkpoint(bias=to_restore)
    fake_net = hk.Checkpoint(l1=fake_layer)
    new_root = hk.Checkpoint(net=fake_net)
    status = new_root.restore(manager.latest_checkpoint)
    np.testing.assert_array_equal(to_restore.value, net.l1.bias.value)
    status.assert_existing_objects_matched()
    with pytest.raises(hk.CheckpointError) as info:
        status.assert_consumed()
    message = str(info.value)
    assert "'net/l1/kernel" + V + "'" in message
    assert message.index("'net/l1/kernel" + V) < message.index("'step" + V)  # sorted


def test_existing_object_without_value_is_reported(tmp_path):
    a = hk.Variable(np.ones(2, np.float32))
    path = hk.Checkpoint(a=a).write(str(tmp_path / "one"))
    status = hk.Checkpoint(a=a, b=hk.Variable(np.zeros(3, np.float32))).restore(path)
    with pytest.raises(hk.CheckpointError, match=r"existing objects \['b/\.ATTRIBUTES/VARIABLE_VALUE'\]"):
        status.assert_existing_objects_matched()


def test_deferred_restore_into_a_layer_attached_later(tmp_path):
    net = Net()
    net(np.ones((1, 1), np.float32))
    path = hk.Checkpoint(net=net).write(str(tmp_path / "net"))
    holder = hk.layers.Layer()
    status = hk.Checkpoint(net=holder).restore(path)
    holder.l1 = hk.layers.Dense(5)  # attached after the restore, built later still
    holder.l1(np.ones((1, 1), np.float32))
    np.testing.assert_array_equal(holder.l1.kernel.value, net.l1.kernel.value)
    status.assert_consumed()


def test_shape_mismatch_names_the_key(tmp_path):
    path = hk.Checkpoint(v=hk.Variable(np.ones(3, np.float32))).write(str(tmp_path / "c"))
    with pytest.raises(hk.CheckpointError, match=r"'v/\.ATTRIBUTES/VARIABLE_VALUE' has shape \[3\].*\[4\]"):
        hk.Checkpoint(v=hk.Variable(np.ones(4, np.float32))).restore(path)


def test_save_numbers_and_latest_checkpoint(tmp_path):
    v = hk.Variable(np.float32(1.0))
    ckpt = hk.Checkpoint(v=v)
    prefix = str(tmp_path / "run" / "ckpt")
    assert ckpt.save(prefix).endswith("ckpt-1")
    v.assign(2.0)
    second = ckpt.save(prefix)
    assert second.endswith("ckpt-2")
    assert hk.train.latest_checkpoint(str(tmp_path / "run")) == second
    v.assign(0.0)
    ckpt.restore(str(tmp_path / "run")).assert_consumed()  # a directory means its latest checkpoint
    assert float(v.value) == 2.0


def test_crash_midway_never_yields_a_half_checkpoint(tmp_path):
    v = hk.Variable(np.arange(4, dtype=np.float32))
    manager = hk.CheckpointManager(hk.Checkpoint(v=v), str(tmp_path))
    good = manager.save()
    # A crash after the data shard but before the index: only orphan data and temp files exist.
    (tmp_path / "ckpt-2.data-00000-of-00001").write_bytes(b"partial")
    (tmp_path / ".ckpt-2.index.123.tmp").write_bytes(b"{")
    assert hk.train.latest_checkpoint(str(tmp_path)) == good
    # A state file naming a checkpoint whose index is missing is not trusted.
    checkpoint_io.write_state(str(tmp_path), str(tmp_path / "ckpt-2"), [good, str(tmp_path / "ckpt-2")])
    assert hk.train.latest_checkpoint(str(tmp_path)) is None
    with pytest.raises(hk.CheckpointError, match="ckpt-2"):
        hk.train.load_checkpoint(str(tmp_path / "ckpt-2"))


def test_corrupt_files_raise_checkpoint_errors(tmp_path):
    prefix = str(tmp_path / "c")
    checkpoint_io.write_checkpoint(prefix, [("a" + V, np.arange(100, dtype=np.float64), "a")])
    shard = prefix + ".data-00000-of-00001"
    with open(shard, "rb") as f:
        data = f.read()
    with open(shard, "wb") as f:
        f.write(data[:-8])
    with pytest.raises(hk.CheckpointError, match="truncated or corrupt"):
        hk.train.load_checkpoint(prefix).get_tensor("a" + V)
    with open(shard, "wb") as f:
        f.write(data[:-8] + b"\x00" * 8)
    with pytest.raises(hk.CheckpointError, match="truncated or corrupt"):
        hk.train.load_checkpoint(prefix).get_tensor("a" + V)
    with open(prefix + ".index", "wb") as f:
        f.write(b"\x00garbage")
    with pytest.raises(hk.CheckpointError, match="corrupt"):
        hk.train.load_checkpoint(prefix)
    with open(prefix + ".index", "w") as f:
        json.dump({"format": "hubkit-checkpoint", "version": 99, "shards": [], "entries": {}}, f)
    with pytest.raises(hk.CheckpointError, match="version 99"):
        hk.train.load_checkpoint(prefix)


def test_shards_strings_and_integers_round_trip(tmp_path):
    prefix = str(tmp_path / "s")
    values = {
        "big" + V: np.arange(1000, dtype=np.float32),
        "ints" + V: np.array([[1, -2], [3, 4]], np.int64),
        "words" + V: np.array(["a", "bé"], dtype=object),
    }
    checkpoint_io.write_checkpoint(prefix, [(k, v, None) for k, v in values.items()], max_shard_bytes=1000)
    with open(prefix + ".index") as f:
        index = json.load(f)
    assert len(index["shards"]) == 2
    reader = hk.train.load_checkpoint(prefix)
    for k, v in values.items():
        np.testing.assert_array_equal(reader.get_tensor(k), v)


def test_model_checkpoint_keys_follow_layer_classes(tmp_path):
    with hk.Graph().as_default():
        x = hk.Input((4,))
        y = hk.layers.Dense(2)(hk.layers.Dense(3, activation="relu")(x))
        model = hk.Model(x, y)
    model.compile(hk.train.Adam(0.01), "mse")
    model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0)
    keys = dict(hk.train.list_variables(hk.Checkpoint(model=model).write(str(tmp_path / "m"))))
    assert keys["model/dense/kernel" + V] == [4, 3]
    assert keys["model/dense_1/kernel" + V] == [3, 2]
    assert keys["model/dense_1/kernel/.OPTIMIZER_SLOT/model/optimizer/v" + V] == [3, 2]
    assert keys["model/fit_epoch" + V] == []
