"""Calling modules: eager and symbolic use, input packing, as_dict, shared weights, pruning, repr."""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk


def test_eager_call_matches_numpy(mlp_spec, fns, rng):
    m = hk.Module(mlp_spec)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    h, logits = fns.mlp_reference(m, x)
    np.testing.assert_allclose(m(x), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m({"x": x}), logits, rtol=1e-5, atol=1e-6)
    out = m(x, signature="hidden", as_dict=True)
    assert sorted(out) == ["activations", "sum"]
    np.testing.assert_allclose(out["activations"], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["sum"], h.sum(axis=1), rtol=1e-5, atol=1e-5)
    assert isinstance(m(x.tolist()), np.ndarray)  # lists convert
    assert m(x.astype(np.float64)).dtype == np.float32  # float64 values convert to the signature dtype


def test_as_dict_required_without_default_output(mlp_spec):
    m = hk.Module(mlp_spec)
    with pytest.raises(hk.SignatureError, match=r"no 'default' output; pass as_dict=True.*\['activations', 'sum'\]"):
        m(np.zeros((1, 4)), signature="hidden")


def test_input_packing_errors(plus_one_spec):
    m = hk.Module(plus_one_spec)
    assert m({"a": [1.0], "b": [2.0]}).tolist() == [4.0]
    with pytest.raises(hk.SignatureError, match=r"several inputs \['a', 'b'\]; pass them as a dict"):
        m([1.0])
    with pytest.raises(hk.SignatureError, match=r"missing \['b'\]; unexpected \['c', 'd'\]\); expected \['a', 'b'\]"):
        m({"a": [1.0], "d": [1.0], "c": [2.0]})
    with pytest.raises(hk.SignatureError, match=r"expects the input 'default'"):
        m(signature="plus_one")
    with pytest.raises(hk.SignatureError, match="no signature 'nope'"):
        m([1.0], signature="nope")


def test_input_conversion_errors_name_signature_input_and_shapes(plus_one_spec):
    m = hk.Module(plus_one_spec)
    with pytest.raises(hk.SignatureError, match=r"'plus_one' input 'default' has shape \[None, 2\]; .* shape \[2, 3\]"):
        m(np.zeros((2, 3)), signature="plus_one")
    with pytest.raises(hk.SignatureError, match=r"'plus_one' input 'default' has dtype float32; .*dtype <U1"):
        m([["a", "b"]], signature="plus_one")
    with pytest.raises(hk.SignatureError, match="input 'a'"):
        m({"a": [[1.0]], "b": [1.0]})


def test_only_requested_outputs_run():
    def module_fn():
        idx = hk.placeholder(hk.int32, [None], name="idx")
        table = hk.constant([1.0, 2.0, 3.0])
        hk.add_signature(inputs=idx, outputs={"default": idx * 2, "gathered": hk.gather(table, idx)})

    m = hk.Module(hk.create_module_spec(module_fn))
    # An index out of range fails only the gather, which the default output does not need.
    assert m([7]).tolist() == [14]
    with pytest.raises(hk.OpError, match="Gather"):
        m([7], as_dict=True)


def test_plans_are_cached(mlp_spec):
    m = hk.Module(mlp_spec)
    m(np.zeros((1, 4)))
    m(np.ones((3, 4)))
    m(np.zeros((1, 4)), signature="hidden", as_dict=True)
    assert len(m._plans) == 2


def test_symbolic_call_shares_weights_across_calls(mlp_spec, fns, rng):
    m = hk.Module(mlp_spec)
    g = hk.Graph()
    with g.as_default():
        a = hk.placeholder(hk.float32, [None, 4])
        b = hk.placeholder(hk.float32, [2, 4])
        ya, yb = m(a), m(b)
    assert ya.shape == (None, 3) and yb.shape == (2, 3)  # shapes re-inferred from the caller's tensors
    assert ya.name.startswith("module/") and yb.name.startswith("module_1/")
    var_nodes = sorted(n.name for n in g.nodes if n.op == "Variable")
    assert var_nodes == ["module/hidden/bias", "module/hidden/kernel", "module/logits/bias", "module/logits/kernel"]
    xa = rng.normal(size=(5, 4)).astype(np.float32)
    xb = rng.normal(size=(2, 4)).astype(np.float32)
    ra, rb = hk.Session(g).run([ya, yb], {a: xa, b: xb})
    np.testing.assert_allclose(ra, fns.mlp_reference(m, xa)[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rb, m(xb), rtol=1e-6)
    # Changing the module's variable changes every call's result: one set of weights.
    m.variable_map["logits/bias"].assign(np.full(3, 10.0))
    ra2 = hk.Session(g).run(ya, {a: xa})
    assert not np.allclose(ra2, ra)
    np.testing.assert_allclose(ra2, fns.mlp_reference(m, xa)[1], rtol=1e-5, atol=1e-5)


def test_composing_two_signatures(plus_one_spec, mlp_spec, rng):
    """The output of one module's signature feeds another's (TF Hub's composition test)."""
    adder = hk.Module(plus_one_spec)
    mlp = hk.Module(mlp_spec)
    g = hk.Graph()
    with g.as_default():
        x = hk.placeholder(hk.float32, [None, 4])
        hidden = mlp(x, signature="hidden", as_dict=True)["activations"]
        y = adder(hk.reshape(hidden, [-1, 2]), signature="plus_one")
    xv = rng.normal(size=(2, 4)).astype(np.float32)
    expected = mlp(xv, signature="hidden", as_dict=True)["activations"].reshape(-1, 2) + 1.0
    np.testing.assert_allclose(hk.Session(g).run(y, {x: xv}), expected, rtol=1e-6)


def test_symbolic_input_errors(plus_one_spec):
    m = hk.Module(plus_one_spec)
    g = hk.Graph()
    with g.as_default():
        wrong_dtype = hk.placeholder(hk.int32, [None, 2])
        wrong_shape = hk.placeholder(hk.float32, [None, 3])
        with pytest.raises(hk.SignatureError, match="dtype float32; the tensor 'Placeholder:0' has dtype int32"):
            m(wrong_dtype, signature="plus_one")
        with pytest.raises(hk.SignatureError, match=r"shape \[None, 2\]; the tensor 'Placeholder_1:0' has shape \[None, 3\]"):
            m(wrong_shape, signature="plus_one")
        a = hk.placeholder(hk.float32, [None])
        out = m({"a": a, "b": [1.0, 2.0]})  # concrete values become constants of the graph
    assert hk.Session(g).run(out, {a: [1.0, 1.0]}).tolist() == [3.0, 4.0]


def test_symbolic_outputs_get_the_declared_shapes(mlp_spec, rng):
    m = hk.Module(mlp_spec)
    g = hk.Graph()
    with g.as_default():
        unknown_rank = hk.placeholder(hk.float32)
        logits = m(unknown_rank)
        hidden = m(unknown_rank, signature="hidden", as_dict=True)
        assert logits.shape == (None, 3)  # inference alone gives unknown rank
        assert hidden["activations"].shape == (None, 5) and hidden["sum"].shape == (None,)
        assert m(hk.placeholder(hk.float32, [7, 4])).shape == (7, 3)  # a more specific inferred shape stays
    x = rng.normal(size=(2, 4)).astype(np.float32)
    np.testing.assert_allclose(hk.Session(g).run(logits, {unknown_rank: x}), m(x), rtol=1e-6)


def test_symbolic_call_does_not_reshape_the_callers_tensors():
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 2], name="x")
        hk.add_signature(inputs=x, outputs=x)

    m = hk.Module(hk.create_module_spec(module_fn))
    with hk.Graph().as_default():
        p = hk.placeholder(hk.float32)
        assert m(p) is p and p.shape is None


def test_declared_output_shape_contradicting_inference(tmp_path):
    from hubkit.format import hubkit_module_pb2 as pb

    def module_fn():
        x = hk.placeholder(hk.float32, [None, 4], name="x")
        hk.add_signature(inputs=x, outputs=hk.layers.dense(x, 2, name="d"))

    hk.Module(hk.create_module_spec(module_fn)).export(tmp_path / "m")
    graph = pb.ModuleGraph.FromString((tmp_path / "m" / "graph.pb").read_bytes())
    graph.variants[0].signatures[0].outputs[0].shape.dims[1] = 3
    (tmp_path / "m" / "graph.pb").write_bytes(graph.SerializeToString())
    # A graph that contradicts its own signature fails when it is loaded, not at the first call.
    with pytest.raises(
        hk.FormatError,
        match=r"signature 'default' declares output 'default' as float32 \[None, 3\], but the graph computes "
        r"float32 \[None, 2\]",
    ):
        hk.Module(str(tmp_path / "m"))


def test_not_trainable_adds_nothing_to_collections(mlp_spec):
    m = hk.Module(mlp_spec)
    assert m.trainable_variables == [] and all(not v.trainable for v in m.variables)
    g = hk.Graph()
    with g.as_default():
        m(hk.placeholder(hk.float32, [None, 4]))
    assert g.collections == []


def test_variables_and_repr(mlp_spec):
    m = hk.Module(mlp_spec, trainable=True, name="encoder")
    assert [v.name for v in m.variables] == [
        "encoder/hidden/bias", "encoder/hidden/kernel", "encoder/logits/bias", "encoder/logits/kernel"
    ]
    assert list(m.variable_map) == ["hidden/bias", "hidden/kernel", "logits/bias", "logits/kernel"]
    assert len(m.trainable_variables) == 4
    text = repr(m)
    assert "encoder" in text and "trainable=True" in text
    assert "default(x: float32 [None, 4]) -> {default: float32 [None, 3]}" in text
    assert "hidden(default: float32 [None, 4]) -> {activations: float32 [None, 5], sum: float32 [None]}" in text
    assert m.get_signature_names() == ["default", "hidden"]
    assert m.get_input_info_dict()["x"].shape == (None, 4)
    assert m.get_output_info_dict("hidden")["sum"].dtype is hk.float32
    assert m.tags == frozenset() and m.spec is mlp_spec


def test_bad_module_arguments(mlp_spec):
    with pytest.raises(hk.GraphError, match="Invalid module name"):
        hk.Module(mlp_spec, name="a b")
    with pytest.raises(hk.ResolveError, match="needs a ModuleSpec"):
        hk.Module(42)
