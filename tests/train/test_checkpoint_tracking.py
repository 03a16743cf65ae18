"""Issue 9, defects 2, 3 and 8: what checkpoints track, deferred restore of plain attributes, and
the message of ``assert_consumed`` right after restoring a compiled model."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hubkit as hk


def _module() -> hk.Module:
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 2], name="x")
        w = hk.get_variable("w", [2, 1])
        hk.add_signature(inputs=x, outputs=hk.matmul(x, w))

    return hk.Module(hk.create_module_spec(module_fn))


# -- defect 2: a Module is tracked through its variables --------------------------------------------
def test_a_module_is_saved_and_restored_through_its_variables(tmp_path):
    m = _module()
    saved = m.variable_map["w"].numpy()
    path = hk.Checkpoint(module=m).save(os.path.join(tmp_path, "ckpt"))
    keys = {name for name, _ in hk.train.list_variables(path)}
    assert "module/w/.ATTRIBUTES/VARIABLE_VALUE" in keys
    m.variable_map["w"].assign(np.zeros((2, 1), np.float32))
    hk.Checkpoint(module=m).restore(path).assert_consumed()
    np.testing.assert_array_equal(m.variable_map["w"].value, saved)


def test_restoring_into_a_module_without_the_value_is_not_consumed(tmp_path):
    path = hk.Checkpoint(other=hk.Variable([1.0])).save(os.path.join(tmp_path, "ckpt"))
    with pytest.raises(hk.CheckpointError, match=r"objects without a value: \['module/w/"):
        hk.Checkpoint(module=_module(), other=hk.Variable([0.0])).restore(path).assert_consumed()


class _Opaque:
    pass


@pytest.mark.parametrize("where", ["root", "dict", "list"])
def test_an_object_a_checkpoint_cannot_hold_raises_naming_its_type_and_path(tmp_path, where):
    root = {"root": {"thing": _Opaque()}, "dict": {"d": {"v": hk.Variable([1.0]), "thing": _Opaque()}},
            "list": {"items": [hk.Variable([1.0]), _Opaque()]}}[where]
    path = {"root": "thing", "dict": "d/thing", "list": "items/1"}[where]
    ckpt = hk.Checkpoint(**root)
    with pytest.raises(hk.CheckpointError, match=rf"Cannot checkpoint '{path}': an object of type '_Opaque'"):
        ckpt.save(os.path.join(tmp_path, "ckpt"))
    assert not os.listdir(tmp_path)  # nothing half-written
    with pytest.raises(hk.CheckpointError, match="'_Opaque'"):
        ckpt.restore(hk.Checkpoint(x=hk.Variable([1.0])).save(os.path.join(tmp_path, "other")))


# -- defect 3: deferred restore of a plain attribute of a Checkpoint --------------------------------
def test_a_variable_assigned_to_a_checkpoint_after_restore_gets_its_value(tmp_path):
    """The checkpoint guide's example, ported: ``fake_layer.kernel`` is restored at assignment."""
    layer = hk.Checkpoint(bias=hk.Variable(np.arange(5, dtype=np.float32)),
                          kernel=hk.Variable(np.full([1, 5], 3.0, np.float32)))
    path = hk.Checkpoint(net=hk.Checkpoint(l1=layer)).save(os.path.join(tmp_path, "tf_ckpts"))

    to_restore = hk.Variable(np.zeros([5], np.float32))
    fake_layer = hk.Checkpoint(bias=to_restore)
    fake_net = hk.Checkpoint(l1=fake_layer)
    new_root = hk.Checkpoint(net=fake_net)
    status = new_root.restore(path)
    np.testing.assert_array_equal(to_restore.value, np.arange(5))  # restored at once
    with pytest.raises(hk.CheckpointError, match=r"net/l1/kernel/\.ATTRIBUTES/VARIABLE_VALUE"):
        status.assert_consumed()  # the kernel is still waiting
    fake_layer.kernel = hk.Variable(np.zeros([1, 5], np.float32))
    np.testing.assert_array_equal(fake_layer.kernel.value, np.full([1, 5], 3.0))  # restored at assignment
    status.assert_consumed()


def test_a_deferred_value_of_the_wrong_shape_is_refused_at_assignment(tmp_path):
    path = hk.Checkpoint(l1=hk.Checkpoint(kernel=hk.Variable(np.ones([1, 5])))).save(os.path.join(tmp_path, "c"))
    fake_layer = hk.Checkpoint()
    hk.Checkpoint(l1=fake_layer).restore(path)
    with pytest.raises(hk.CheckpointError, match=r"has shape \[1, 5\], but variable .* has shape \[2\]"):
        fake_layer.kernel = hk.Variable(np.zeros([2]))


# -- defect 8: assert_consumed right after restoring a compiled model --------------------------------
def _compiled_model() -> hk.Model:
    x = hk.Input((3,))
    model = hk.Model(x, hk.layers.Dense(2)(x))
    model.compile(hk.train.Adam(0.01), "mean_squared_error")
    return model


def test_assert_consumed_after_restoring_a_compiled_model_explains_optimizer_slots(tmp_path):
    trained = _compiled_model()
    xs, ys = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    trained.fit(xs, ys, epochs=1, verbose=0)
    path = hk.Checkpoint(model=trained).save(os.path.join(tmp_path, "ckpt"))

    fresh = _compiled_model()
    status = hk.Checkpoint(model=fresh).restore(path)
    status.assert_existing_objects_matched()
    with pytest.raises(hk.CheckpointError) as info:
        status.assert_consumed()
    message = str(info.value)
    assert ".OPTIMIZER_SLOT/" in message
    assert "creates at its first step (the first fit or minimize)" in message
    assert "assert_existing_objects_matched()" in message
    fresh.fit(xs, ys, epochs=1, verbose=0)  # creates the slots, which take their restored values
    status.assert_consumed()
