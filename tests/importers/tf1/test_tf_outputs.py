"""Imported TF1 modules compute what TensorFlow computed (recorded by scripts/make_tf1_fixtures.py)."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from tests.importers.tf1.conftest import FIXTURES, as_feed, fixture_path, recorded


def _assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    if want.dtype.kind == "S":
        assert [x.encode() for x in np.asarray(got).reshape(-1)] == list(want.reshape(-1)), what
        return
    assert got.shape == want.shape, what
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


def _calls(rec: dict, prefix: str) -> dict[str, dict[str, np.ndarray]]:
    calls: dict[str, dict[str, np.ndarray]] = {}
    for key, value in rec.items():
        if key.startswith(prefix + "in__"):
            _, sig, name = key[len(prefix):].split("__", 2)
            calls.setdefault(sig, {})[name] = as_feed(value)
    return calls


@pytest.mark.parametrize("name", FIXTURES)
def test_every_signature_matches_tensorflow(name):
    rec = recorded(name)
    for prefix, tags in (("", None), ("train__", {"train"})):
        calls = _calls(rec, prefix)
        if not calls:
            continue
        m = hk.Module(fixture_path(name), tags=tags)
        for sig, inputs in calls.items():
            out = m(inputs, signature=sig, as_dict=True)
            head = f"{prefix}out__{sig}__"
            expected = {k[len(head):]: v for k, v in rec.items() if k.startswith(head)}
            assert sorted(out) == sorted(expected)
            for key in expected:
                _assert_close(out[key], expected[key], f"{name} {prefix}{sig}/{key}")


@pytest.mark.parametrize("name", ["text_embedding", "partitioned_embedding", "cnn_batch_norm", "mobilenet_block", "ops_zoo", "bert_encoder",
                                  "ref_variables"])
def test_gradients_match_tensorflow(name):
    """d sum(default * linspace(-1, 1)) / d variable equals TF's, for every variable TF differentiated."""
    rec = recorded(name)
    calls = _calls(rec, "")
    sig = "default" if "default" in calls else next(iter(calls))
    inputs = calls[sig]
    m = hk.Module(fixture_path(name), trainable=True)
    g = hk.Graph()
    with g.as_default():
        feeds = {k: hk.placeholder(hk.as_dtype(v.dtype if v.dtype != object else "string"), v.shape)
                 for k, v in inputs.items()}
        out = m(feeds, signature=sig)
        n = int(np.prod(rec[f"out__{sig}__default"].shape))
        w = np.linspace(-1.0, 1.0, n).astype(np.float32)
        loss = hk.reduce_sum(hk.reshape(out, [-1]) * w)
        names = sorted(k[len("grad__"):] for k in rec if k.startswith("grad__"))
        grads = hk.gradients(loss, [m.flat_variable_map[v] for v in names])
        grads = [gr.to_dense() if isinstance(gr, hk.IndexedSlices) else gr for gr in grads]
    values = hk.Session(g).run(grads, {feeds[k]: v for k, v in inputs.items()})
    # float32 noise of a gradient that is zero in exact arithmetic (BERT's key bias: softmax ignores a shift
    # shared by a row) is judged against the module's largest gradient, not its own
    noise = 1e-6 * max(float(np.max(np.abs(rec[f"grad__{v}"]))) for v in names)
    for v, got in zip(names, values):
        want = rec[f"grad__{v}"]
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=max(1e-5 * float(np.max(np.abs(want))), noise),
                                   err_msg=f"{name} gradient of {v}")


def test_train_variant_batch_norm_updates_match_tensorflow():
    rec = recorded("cnn_batch_norm")
    images = rec["train__in__default__images"]
    m = hk.Module(fixture_path("cnn_batch_norm"), tags={"train"}, trainable=True)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 10, 10, 3])
        y = m(x)
        updates = g.get_collection(hk.GraphKeys.UPDATE_OPS)
    assert len(updates) == 4
    hk.Session(g).run([y, *updates], {x: images})
    for key, want in rec.items():
        if key.startswith("train__after__"):
            _assert_close(m.flat_variable_map[key[len("train__after__"):]].value, want, key)


def test_signatures_tags_variables_and_attachment():
    spec = hk.load_module_spec(fixture_path("cnn_batch_norm"))
    assert spec.get_tags() == [frozenset(), frozenset({"train"})]
    assert "bn1/moving_mean" in spec.variables and not spec.variables["bn1/moving_mean"].trainable
    assert spec.variables["conv1/kernel"].trainable
    mobile = hk.load_module_spec(fixture_path("mobilenet_block"))
    assert mobile.get_signature_names() == ["default", "image_feature_vector"]
    outputs = mobile.get_output_info_dict("image_feature_vector")
    assert sorted(outputs) == ["MobilenetV2/layer_7/output", "default"]
    assert outputs["default"].dtype is hk.float32
    from hubkit.module.image_module_info_pb2 import ImageModuleInfo

    info = mobile.get_attached_message("image_module_info", ImageModuleInfo)
    assert (info.default_image_size.height, info.default_image_size.width) == (9, 9)
    inputs = hk.load_module_spec(fixture_path("bert_encoder")).get_input_info_dict("tokens")
    assert sorted(inputs) == ["input_ids", "input_mask"] and inputs["input_ids"].dtype is hk.int32


def test_variables_are_memory_mapped_from_the_bundle():
    m = hk.Module(fixture_path("text_embedding"))
    value = m.variable_map["embeddings"].value
    base = value
    while getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, np.memmap) or isinstance(getattr(value, "base", None), np.memmap) or \
        type(value).__name__ == "memmap"


def test_string_variable_of_ref_module_is_a_constant():
    m = hk.Module(fixture_path("ref_variables"))
    assert sorted(m.variable_map) == ["b", "w"]
    out = m(np.ones((1, 2), np.float32), as_dict=True)
    assert list(out["words"]) == ["alpha", "beta"]


def test_hub_layer_resolve_and_image_size_accept_tf1_modules():
    path = fixture_path("mobilenet_block")
    assert hk.resolve(path) == path
    assert hk.get_expected_image_size(hk.Module(path)) == [9, 9]
    layer = hk.HubLayer(fixture_path("text_embedding"))
    assert layer is not None


def test_untyped_attachments_parse_with_the_callers_type(tf1_copy):
    import os

    from hubkit.importers.tf1.proto import tf1_pb2 as tfpb
    from hubkit.module.image_module_info_pb2 import ImageModuleInfo

    path = tf1_copy("mobilenet_block")
    file = os.path.join(path, "saved_model.pb")
    with open(file, "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    extra = tfpb.ModuleAttachment(key="labels", value=ImageModuleInfo(num_channels=3).SerializeToString())
    sm.meta_graphs[0].collection_def["hub_module_attachments"].bytes_list.value.append(extra.SerializeToString())
    with open(file, "wb") as f:
        f.write(sm.SerializeToString())
    m = hk.Module(path)
    assert m.get_attached_message("labels", ImageModuleInfo).num_channels == 3
    assert m.get_attached_message("missing", ImageModuleInfo) is None


def test_trainable_module_brings_its_regularization_losses():
    m = hk.Module(fixture_path("two_signatures"), trainable=True)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 3])
        m(x)
        (loss,) = g.get_collection(hk.GraphKeys.REGULARIZATION_LOSSES)
        (grad,) = hk.gradients(loss, [m.variable_map["dense/kernel"]])
    kernel = np.asarray(m.variable_map["dense/kernel"].value)
    value, g_value = hk.Session(g).run([loss, grad])
    np.testing.assert_allclose(value, 0.01 * np.sum(kernel**2), rtol=1e-5)
    np.testing.assert_allclose(g_value, 0.02 * kernel, rtol=1e-5)
    assert sorted(v.name for v in m.trainable_variables) == ["module/dense/bias", "module/dense/kernel"]


def test_fine_tuning_an_embedding_updates_only_the_rows_read():
    rec = recorded("text_embedding")
    sentences = as_feed(rec["in__default__sentences"])
    m = hk.Module(fixture_path("text_embedding"), trainable=True)
    before = np.array(m.variable_map["embeddings"].value)
    g = hk.Graph()
    with g.as_default():
        text = hk.placeholder(hk.string, [None])
        out = m(text)
        w = np.linspace(-1.0, 1.0, rec["out__default__default"].size).astype(np.float32)
        loss = hk.reduce_sum(hk.reshape(out, [-1]) * w)
        (grad,) = hk.gradients(loss, [m.variable_map["embeddings"]])
        assert isinstance(grad, hk.IndexedSlices)
        step = hk.train.GradientDescent(0.5).minimize(loss)
    hk.Session(g).run(step, {text: sentences})
    after = np.asarray(m.variable_map["embeddings"].value)
    np.testing.assert_allclose(after, before - 0.5 * rec["grad__embeddings"], rtol=1e-5, atol=1e-6)
    unread = np.all(rec["grad__embeddings"] == 0, axis=1)
    assert unread.any() and np.array_equal(after[unread], before[unread])


def test_image_module_info_parses_with_any_message_type_of_the_same_fields():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    # a stand-in for tensorflow_hub's own ImageModuleInfo (another full name, the same field numbers)
    fd = descriptor_pb2.FileDescriptorProto(name="other_image_info.proto", package="elsewhere", syntax="proto3")
    size = fd.message_type.add(name="InputSize")
    size.field.add(name="height", number=1, type=5, label=1)
    size.field.add(name="width", number=2, type=5, label=1)
    info = fd.message_type.add(name="ImageModuleInfo")
    info.field.add(name="default_image_size", number=1, type=11, label=1, type_name=".elsewhere.InputSize")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("elsewhere.ImageModuleInfo"))
    message = hk.load_module_spec(fixture_path("mobilenet_block")).get_attached_message("image_module_info", cls)
    assert (message.default_image_size.height, message.default_image_size.width) == (9, 9)
