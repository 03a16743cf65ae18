"""TF1 raw control flow (while_loop / cond, control flow v1) and coo_sparse signatures, against TF's recorded values.

The fixtures ``control_flow`` and ``sparse_signature`` were made by scripts/make_tf1_fixtures.py with real
TensorFlow; their ``.npz`` holds ``call<k>__in__<sig>__<key>`` feeds (``__indices``/``__values``/``__dense_shape``
for sparse ones), TF's outputs likewise, and ``grad__<var>`` (d sum(default * linspace(-1, 1)) / d var, call 0).
"""

from __future__ import annotations

import numpy as np
import pytest

import hubkit as hk
from hubkit.errors import FormatError
from hubkit.importers.tf1.control_flow import CONTROL_FLOW_TF_OPS
from hubkit.importers.tf1.translate import supported_tf_ops
from tests.importers.tf1.conftest import fixture_path, recorded

_PARTS = ("indices", "values", "dense_shape")


def _close(got, want, what: str) -> None:
    got = np.asarray(got)
    assert got.shape == want.shape, what
    scale = float(np.max(np.abs(want))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=what)


def _calls(rec: dict) -> list[tuple[str, str, dict]]:
    """(call tag, signature, feeds) with sparse feeds as SparseTensorValues."""
    calls: dict[str, tuple[str, dict]] = {}
    for key, value in rec.items():
        parts = key.split("__")
        if parts[1] != "in":
            continue
        tag, sig, name = parts[0], parts[2], parts[3]
        feeds = calls.setdefault(tag, (sig, {}))[1]
        if len(parts) == 5:
            feeds[name] = hk.SparseTensorValue(*(rec[f"{tag}__in__{sig}__{name}__{p}"] for p in _PARTS))
        else:
            feeds[name] = value
    return [(tag, sig, feeds) for tag, (sig, feeds) in sorted(calls.items())]


def _check_outputs(m, name: str) -> None:
    rec = recorded(name)
    for tag, sig, feeds in _calls(rec):
        out = m(feeds, signature=sig, as_dict=True)
        head = f"{tag}__out__{sig}__"
        keys = {k[len(head):].split("__")[0] for k in rec if k.startswith(head)}
        assert sorted(out) == sorted(keys)
        for key in keys:
            if f"{head}{key}" in rec:
                _close(out[key], rec[f"{head}{key}"], f"{name} {tag} {sig}/{key}")
            else:
                assert isinstance(out[key], hk.SparseTensorValue)
                for p in _PARTS:
                    np.testing.assert_array_equal(getattr(out[key], p), rec[f"{head}{key}__{p}"])


@pytest.mark.parametrize("name", ["control_flow", "control_flow_v2", "control_flow_v2_intermediates", "dynamic_rnn",
                                  "dynamic_rnn_v2", "sparse_signature"])
def test_outputs_match_tensorflow_directly_and_after_convert(name, tmp_path):
    _check_outputs(hk.Module(fixture_path(name)), name)
    converted = hk.convert(fixture_path(name), str(tmp_path / "converted"))
    _check_outputs(hk.Module(converted), name)


def test_sparse_signature_entries_are_reported_sparse():
    spec = hk.load_module_spec(fixture_path("sparse_signature"))
    inputs = spec.get_input_info_dict()
    assert list(inputs) == ["ids"] and inputs["ids"].is_sparse and inputs["ids"].dtype == hk.int64
    assert inputs["ids"].shape == (None, None)
    outputs = spec.get_output_info_dict()
    assert outputs["doubled"].is_sparse and not outputs["default"].is_sparse
    weighted = spec.get_input_info_dict("weighted")
    assert weighted["weights"].is_sparse and weighted["weights"].dtype == hk.float32


def test_sparse_input_from_a_sparse_placeholder_in_a_graph():
    rec = recorded("sparse_signature")
    m = hk.Module(fixture_path("sparse_signature"))
    g = hk.Graph()
    with g.as_default():
        ids = hk.sparse_placeholder(hk.int64, [None, None])
        out = m(ids, as_dict=True)
    value = hk.SparseTensorValue(*(rec[f"call0__in__default__ids__{p}"] for p in _PARTS))
    got = hk.Session(g).run(out, {ids: value})
    _close(got["default"], rec["call0__out__default__default"], "default")
    np.testing.assert_array_equal(got["doubled"].values, rec["call0__out__default__doubled__values"])


@pytest.mark.parametrize("name", ["control_flow", "control_flow_v2", "control_flow_v2_intermediates", "dynamic_rnn",
                                  "dynamic_rnn_v2", "sparse_signature"])
def test_gradients_through_loops_conds_and_sparse_inputs_match_tensorflow(name):
    rec = recorded(name)
    tag, sig, feeds = _calls(rec)[0]
    m = hk.Module(fixture_path(name), trainable=True)
    g = hk.Graph()
    with g.as_default():
        phs: dict = {}
        for k, v in feeds.items():
            if isinstance(v, hk.SparseTensorValue):
                phs[k] = hk.sparse_placeholder(hk.as_dtype(v.values.dtype), [None, None])
            else:
                phs[k] = hk.placeholder(hk.as_dtype(v.dtype), v.shape)
        out = m(phs, signature=sig)
        w = np.linspace(-1.0, 1.0, int(np.prod(rec[f"{tag}__out__{sig}__default"].shape))).astype(np.float32)
        loss = hk.reduce_sum(hk.reshape(out, [-1]) * w)
        names = sorted(k[len("grad__"):] for k in rec if k.startswith("grad__"))
        grads = hk.gradients(loss, [m.flat_variable_map[v] for v in names])
        grads = [gr.to_dense() if isinstance(gr, hk.IndexedSlices) else gr for gr in grads]
    values = hk.Session(g).run(grads, {phs[k]: v for k, v in feeds.items()})
    assert names
    for v, got in zip(names, values):
        _close(got, rec[f"grad__{v}"], f"{name} gradient of {v}")


def test_loops_become_while_nodes_and_conds_if_nodes(tmp_path):
    converted = hk.convert(fixture_path("control_flow"), str(tmp_path / "converted"))
    from hubkit.format.graph_codec import read_graph_file
    from hubkit.format.marker import read_marker

    graph = read_graph_file(converted)
    ops = [nd.op for nd in graph.variants[0].nodes]
    # rnn, outer (inner nested in it), bounded; choose, pair (two outputs, one If), outer_cond (one nested inside)
    assert ops.count("While") == 3 and ops.count("If") == 3
    assert not set(ops) & CONTROL_FLOW_TF_OPS
    assert "control_flow" in read_marker(converted).required_features


def test_control_flow_ops_are_listed_as_supported():
    assert set(supported_tf_ops()) >= CONTROL_FLOW_TF_OPS


def test_a_loop_reading_its_exit_inside_the_body_is_refused(tf1_copy):
    """A corrupt frame (the body reads a Switch's exit output) fails at load with the node named."""
    from hubkit.importers.tf1.proto import tf1_pb2 as tfpb

    path = tf1_copy("control_flow")
    with open(f"{path}/saved_model.pb", "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    for nd in sm.meta_graphs[0].graph_def.node:
        if nd.name == "rnn_loop/Identity_1":
            nd.input[0] = "rnn_loop/Switch_1"
    with open(f"{path}/saved_model.pb", "wb") as f:
        f.write(sm.SerializeToString())
    with pytest.raises(FormatError, match="rnn_loop/Switch_1"):
        hk.Module(path)


def test_control_flow_v2_functions_become_while_and_if_nodes(tmp_path):
    """TF 2.x writes While/StatelessWhile/If calling library functions: they become hubkit While/If nodes."""
    from hubkit.format.graph_codec import read_graph_file

    converted = hk.convert(fixture_path("control_flow_v2"), str(tmp_path / "converted"))
    ops = [nd.op for nd in read_graph_file(converted).variants[0].nodes]
    assert ops.count("While") == 3 and ops.count("If") == 3
    assert not {"StatelessWhile", "StatelessIf"} & set(ops)


def test_an_unsupported_op_inside_a_library_function_is_named(tf1_copy):
    from hubkit.importers.tf1.functions import _messages
    from hubkit.importers.tf1.proto import tf1_pb2 as tfpb

    path = tf1_copy("control_flow_v2")
    with open(f"{path}/saved_model.pb", "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    graph = sm.meta_graphs[0].graph_def
    _, view_cls = _messages()
    view = view_cls.FromString(graph.SerializeToString())
    body = next(fn for fn in view.library.function if fn.signature.name.startswith("rnn_loop_body"))
    next(nd for nd in body.node_def if nd.op == "Tanh").op = "FancyTanh"
    view.DiscardUnknownFields()  # the nodes (field 1): only the library stays in the view
    nodes = tfpb.GraphDef(node=graph.node, versions=graph.versions)  # without the old library (field 2)
    graph.ParseFromString(nodes.SerializeToString() + view.SerializeToString())
    with open(f"{path}/saved_model.pb", "wb") as f:
        f.write(sm.SerializeToString())
    with pytest.raises(FormatError, match=r"'FancyTanh' \(used by 'rnn_loop_body_\d+/Tanh'\)"):
        hk.Module(path)


def test_hubkit_info_lists_control_flow_and_library_function_ops(capsys):
    from hubkit.cli import main

    assert main(["info", fixture_path("control_flow")]) == 0
    out = capsys.readouterr().out
    assert "LoopCond: 4 node(s), supported: yes" in out and "Enter: 17 node(s), supported: yes" in out
    assert "supported: no (needed" not in out
    assert main(["info", fixture_path("control_flow_v2")]) == 0
    out = capsys.readouterr().out
    assert "library functions: 18, " in out and "MatMul: 1 node(s) in functions, supported: yes" in out


def test_a_variable_assigned_inside_a_loop_body_is_refused(tf1_copy):
    """hubkit's loop and branch functions are pure: an Assign a loop body reads as data fails at load."""
    from hubkit.importers.tf1.proto import tf1_pb2 as tfpb

    path = tf1_copy("control_flow")
    with open(f"{path}/saved_model.pb", "rb") as f:
        sm = tfpb.SavedModel.FromString(f.read())
    tanh = next(nd for nd in sm.meta_graphs[0].graph_def.node if nd.name == "rnn_loop/Tanh")
    tanh.op = "AssignAddVariableOp"
    with open(f"{path}/saved_model.pb", "wb") as f:
        f.write(sm.SerializeToString())
    with pytest.raises(FormatError, match="'rnn_loop/Tanh' assigns a variable inside a TF1 loop or cond"):
        hk.Module(path)
