"""Bad arguments to add_signature, create_module_spec, Module calls and export raise hubkit errors."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import hubkit_module_pb2 as pb


def _spec_with_signature(**kwargs):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 2], name="x")
        hk.add_signature(**{"inputs": x, "outputs": x * 2.0, **kwargs})

    return hk.create_module_spec(module_fn)


@pytest.mark.parametrize("name", ["has space", "", "semi;colon", 3])
def test_invalid_signature_name(name):
    with pytest.raises(hk.SignatureError, match=r"Invalid signature name .*; use letters, digits, '_', '.' and '-'"):
        _spec_with_signature(name=name)


def test_invalid_input_name():
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs={"bad key": x}, outputs=x)

    with pytest.raises(hk.SignatureError, match=r"Signature 'default' has the invalid input name 'bad key'"):
        hk.create_module_spec(module_fn)


def test_non_string_output_name():
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature("sig", inputs=x, outputs={1: x})

    with pytest.raises(hk.SignatureError, match=r"Signature 'sig' has the invalid output name 1"):
        hk.create_module_spec(module_fn)


def test_input_that_is_an_array():
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs=np.zeros(2, np.float32), outputs=x)

    with pytest.raises(hk.SignatureError, match=r"input 'default' must be a placeholder of the module, got array"):
        hk.create_module_spec(module_fn)


def test_input_from_another_graph():
    outside = hk.Graph()
    with outside.as_default():
        foreign = hk.placeholder(hk.float32, [None], name="foreign")

    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs={"a": x, "b": foreign}, outputs=x)

    with pytest.raises(hk.SignatureError, match=r"input 'b' must be a placeholder of the module, got .*foreign"):
        hk.create_module_spec(module_fn)


@pytest.mark.parametrize("bad", [1.5, "text", None])
def test_output_that_is_not_a_tensor(bad):
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs=x, outputs={"y": bad})

    with pytest.raises(hk.SignatureError, match=r"output 'y' must be a tensor of the module, got"):
        hk.create_module_spec(module_fn)


def test_output_from_another_graph():
    outside = hk.Graph()
    with outside.as_default():
        foreign = hk.constant(1.0, name="foreign")

    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs=x, outputs=foreign)

    with pytest.raises(hk.SignatureError, match=r"output 'default' must be a tensor of the module, got .*foreign"):
        hk.create_module_spec(module_fn)


def test_carried_collection_holding_a_non_graph_object():
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_to_collection(hk.GraphKeys.REGULARIZATION_LOSSES, "not a tensor")
        hk.add_signature(inputs=x, outputs=x)

    with pytest.raises(hk.GraphError, match=r"holds 'not a tensor', which is not a tensor, op or variable of the "
                                            r"module's graph"):
        hk.create_module_spec(module_fn)


def test_variants_disagreeing_on_a_shared_variable():
    def module_fn(units):
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(x, units, name="dense"))

    with pytest.raises(hk.GraphError, match=r"Variable 'dense/kernel' is float32 \[3, 2\] in one variant and "
                                            r"float32 \[3, 4\] in another"):
        hk.create_module_spec(module_fn, [(set(), {"units": 2}), ({"wide"}, {"units": 4})])


# -- calling ---------------------------------------------------------------------------------------
def test_signature_without_inputs_called_with_one():
    def module_fn():
        hk.add_signature(outputs=hk.constant([1.0, 2.0]))

    m = hk.Module(hk.create_module_spec(module_fn))
    np.testing.assert_array_equal(m(), [1.0, 2.0])
    with pytest.raises(hk.SignatureError, match=r"Signature 'default' takes no inputs, but the call gave ndarray"):
        m(np.zeros(2))


def test_symbolic_inputs_from_two_graphs():
    def module_fn():
        a = hk.placeholder(hk.float32, [None], name="a")
        b = hk.placeholder(hk.float32, [None], name="b")
        hk.add_signature(inputs={"a": a, "b": b}, outputs=a + b)

    m = hk.Module(hk.create_module_spec(module_fn))
    with hk.Graph().as_default():
        a = hk.placeholder(hk.float32, [None], name="a")
    with hk.Graph().as_default():
        b = hk.placeholder(hk.float32, [None], name="b")
    with pytest.raises(hk.SignatureError, match=r"Signature 'default' input 'b': .*another graph"):
        m({"a": a, "b": b})


def test_symbolic_output_contradicting_its_declared_shape(tmp_path):
    """A graph.pb whose declared output shape only contradicts the graph for some input shapes."""
    def module_fn():
        x = hk.placeholder(hk.float32, [None, None], name="x")
        hk.add_signature(inputs=x, outputs=hk.concat([x, x], axis=1))

    path = tmp_path / "module"
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    graph = pb.ModuleGraph.FromString((path / "graph.pb").read_bytes())
    graph.variants[0].signatures[0].outputs[0].shape.dims[1] = 4  # declared [?, 4]; true for 2 columns only
    (path / "graph.pb").write_bytes(graph.SerializeToString())
    m = hk.Module(str(path))
    with hk.Graph().as_default():
        assert m(hk.placeholder(hk.float32, [None, 2])).shape == (None, 4)
        with pytest.raises(hk.SignatureError, match=r"output 'default' is declared with shape \[None, 4\], but the "
                                                    r"tensor .* has shape \[None, 6\]"):
            m(hk.placeholder(hk.float32, [None, 3]))


# -- export ----------------------------------------------------------------------------------------
def test_export_after_the_asset_source_was_deleted(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\n")

    def module_fn():
        x = hk.placeholder(hk.string, [None], name="x")
        hk.add_signature(inputs=x, outputs=hk.identity(hk.add_asset(vocab)))

    m = hk.Module(hk.create_module_spec(module_fn))
    vocab.unlink()
    with pytest.raises(hk.FormatError, match=r"Asset 'vocab.txt' cannot be exported: its file .*vocab.txt' no "
                                             r"longer exists"):
        m.export(tmp_path / "module")
