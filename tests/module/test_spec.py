"""create_module_spec, add_signature, attach_message and ModuleSpec introspection (TF Hub's module tests)."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2, wrappers_pb2

import hubkit as hk


def test_signatures_and_info_dicts(plus_one_spec):
    assert plus_one_spec.get_signature_names() == ["default", "plus_one"]
    assert plus_one_spec.get_tags() == [frozenset()]
    ins = plus_one_spec.get_input_info_dict()
    assert sorted(ins) == ["a", "b"]
    assert ins["a"].dtype is hk.float32 and ins["a"].get_shape() == (None,) and ins["a"].shape == (None,)
    outs = plus_one_spec.get_output_info_dict("plus_one")
    assert list(outs) == ["default"] and outs["default"].shape == (None, 2)
    assert list(plus_one_spec.get_input_info_dict("plus_one")) == ["default"]


def test_unknown_signature_lists_choices(plus_one_spec):
    with pytest.raises(hk.SignatureError, match=r"no signature 'nope'.*\['default', 'plus_one'\]"):
        plus_one_spec.get_input_info_dict("nope")


def test_repeated_signature_name_replaces_earlier():
    def module_fn():
        x = hk.placeholder(hk.float32, [None])
        hk.add_signature(inputs=x, outputs=x * 2.0)
        hk.add_signature(inputs=x, outputs={"default": x * 3.0, "other": x})

    spec = hk.create_module_spec(module_fn)
    assert sorted(spec.get_output_info_dict()) == ["default", "other"]
    assert hk.Module(spec)([1.0]).tolist() == [3.0]


def test_inputs_must_be_placeholders():
    def module_fn():
        x = hk.placeholder(hk.float32, [None])
        hk.add_signature(inputs=x * 2.0, outputs=x)

    with pytest.raises(hk.SignatureError, match="must be a placeholder"):
        hk.create_module_spec(module_fn)


def test_one_placeholder_under_two_input_names_is_refused():
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs={"b": x, "a": x}, outputs=x * 2.0)

    with pytest.raises(hk.SignatureError, match=r"Signature 'default' inputs 'a' and 'b' are the same placeholder 'x:0'"):
        hk.create_module_spec(module_fn)


def test_outputs_needing_other_placeholders_are_refused():
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        y = hk.placeholder(hk.float32, [None], name="y")
        hk.add_signature(inputs=x, outputs=x + y)

    with pytest.raises(hk.SignatureError, match=r"placeholders \['y'\]"):
        hk.create_module_spec(module_fn)


def test_module_fn_without_signature_is_refused():
    with pytest.raises(hk.SignatureError, match="added no signature"):
        hk.create_module_spec(lambda: hk.placeholder(hk.float32, [1]))


def test_duplicate_tag_sets_are_refused(fns):
    with pytest.raises(hk.SignatureError, match="twice"):
        hk.create_module_spec(fns.plus_one_module_fn, [({"a", "b"}, {}), (["b", "a"], {})])


def test_module_fn_must_be_callable():
    with pytest.raises(hk.SignatureError, match="needs a callable module_fn, got int"):
        hk.create_module_spec(5)


@pytest.mark.parametrize(
    ("tags_and_args", "message"),
    [
        ([{"train"}], r"item \{'train'\} is not a \(tags, kwargs\) pair"),
        ([("train", {}, {})], r"item \('train', \{\}, \{\}\) is not a \(tags, kwargs\) pair"),
        ([(5, {})], r"item \(5, \{\}\) has tags of type int; use a set of strings"),
        ([({"a", 3}, {})], r"has invalid tags: Tags must be non-empty strings, got 3"),
        ([({"a"}, ["x"])], r"item \(\{'a'\}, \['x'\]\) has kwargs that are not a dict with string keys"),
        ({"train": {}}, "must be a list of .tags, kwargs. pairs, got dict"),
        (5, "must be a list of .tags, kwargs. pairs, got int"),
    ],
)
def test_malformed_tags_and_args_are_refused(fns, tags_and_args, message):
    with pytest.raises(hk.SignatureError, match=message):
        hk.create_module_spec(fns.plus_one_module_fn, tags_and_args)


def test_kwargs_module_fn_does_not_accept_are_refused_before_it_runs(fns):
    calls = []

    def module_fn(scale=1.0):
        calls.append(scale)
        x = hk.placeholder(hk.float32, [None])
        hk.add_signature(inputs=x, outputs=x * scale)

    with pytest.raises(hk.SignatureError, match=r"cannot be called with the kwargs \['nope', 'scale'\] of tags \['train'\]"):
        hk.create_module_spec(module_fn, [(set(), {}), ({"train"}, {"scale": 2.0, "nope": 1})])
    assert calls == []  # validated up front: no variant was built
    with pytest.raises(hk.SignatureError, match="'x'"):
        hk.create_module_spec(lambda x: fns.plus_one_module_fn(), [(set(), {})])


def test_type_errors_inside_module_fn_propagate():
    def module_fn():
        raise TypeError("a bug inside module_fn")

    with pytest.raises(TypeError, match="a bug inside module_fn"):
        hk.create_module_spec(module_fn)


def test_add_signature_outside_module_fn():
    with pytest.raises(hk.SignatureError, match="inside a module_fn"):
        hk.add_signature(inputs=None, outputs=None)
    with pytest.raises(hk.SignatureError, match="inside a module_fn"):
        hk.attach_message("key", wrappers_pb2.Int32Value(value=1))


def test_uncarried_collection_is_refused_unless_dropped():
    def module_fn():
        x = hk.placeholder(hk.float32, [None])
        hk.add_to_collection("my_things", x)
        hk.add_signature(inputs=x, outputs=x)

    with pytest.raises(hk.GraphError, match="'my_things'"):
        hk.create_module_spec(module_fn)
    spec = hk.create_module_spec(module_fn, drop_collections=["my_things"])
    assert spec.get_signature_names() == ["default"]


def test_tags_select_variants():
    def module_fn(scale):
        x = hk.placeholder(hk.float32, [None])
        hk.add_signature(inputs=x, outputs=x * scale)
        if scale == 2.0:
            hk.add_signature("extra", inputs=x, outputs=x)

    spec = hk.create_module_spec(module_fn, [(set(), {"scale": 1.0}), ({"double"}, {"scale": 2.0})])
    assert spec.get_tags() == [frozenset(), frozenset({"double"})]
    assert spec.get_signature_names(tags={"double"}) == ["default", "extra"]
    assert hk.Module(spec)([3.0]).tolist() == [3.0]
    assert hk.Module(spec, tags={"double"})([3.0]).tolist() == [6.0]
    with pytest.raises(hk.SignatureError, match=r"\['nope'\].*\[\[\], \['double'\]\]"):
        hk.Module(spec, tags={"nope"})


def test_attached_messages():
    def module_fn(size):
        x = hk.placeholder(hk.float32, [None])
        hk.add_signature(inputs=x, outputs=x)
        hk.attach_message("size", wrappers_pb2.Int64Value(value=size))
        meta = struct_pb2.Struct()
        meta.update({"name": "acme", "size": size})
        hk.attach_message("meta", meta)

    spec = hk.create_module_spec(module_fn, [(set(), {"size": 1}), ({"big"}, {"size": 100})])
    assert spec.get_attached_message("size", wrappers_pb2.Int64Value).value == 1
    assert spec.get_attached_message("size", wrappers_pb2.Int64Value, tags={"big"}).value == 100
    first = spec.get_attached_message("meta", struct_pb2.Struct)
    first["name"] = "changed"  # a fresh copy each time
    assert spec.get_attached_message("meta", struct_pb2.Struct)["name"] == "acme"
    assert spec.get_attached_message("absent", wrappers_pb2.Int64Value) is None
    with pytest.raises(hk.SignatureError, match=r"no attached message 'absent'.*\['meta', 'size'\]"):
        spec.get_attached_message("absent", wrappers_pb2.Int64Value, required=True)
    with pytest.raises(hk.SignatureError, match=r"not a 'google\.protobuf\.StringValue'"):
        spec.get_attached_message("size", wrappers_pb2.StringValue)
    assert hk.Module(spec, tags={"big"}).get_attached_message("size", wrappers_pb2.Int64Value).value == 100


def test_attach_message_checks_key_and_type():
    def bad_key():
        hk.add_signature(inputs=hk.placeholder(hk.float32, []), outputs=hk.constant(1.0))
        hk.attach_message("1bad", wrappers_pb2.Int32Value())

    with pytest.raises(hk.SignatureError, match="attachment key '1bad'"):
        hk.create_module_spec(bad_key)

    def not_a_message():
        hk.add_signature(inputs=hk.placeholder(hk.float32, []), outputs=hk.constant(1.0))
        hk.attach_message("ok", {"a": 1})

    with pytest.raises(hk.SignatureError, match="protobuf message"):
        hk.create_module_spec(not_a_message)


def test_spec_variables_are_declared_not_valued(mlp_spec):
    names = sorted(mlp_spec.variables)
    assert names == ["hidden/bias", "hidden/kernel", "logits/bias", "logits/kernel"]
    assert mlp_spec.variables["hidden/kernel"].shape == (4, 5)
    # Two Modules from one spec own distinct variables.
    a, b = hk.Module(mlp_spec), hk.Module(mlp_spec)
    assert a.variable_map["hidden/kernel"] is not b.variable_map["hidden/kernel"]
