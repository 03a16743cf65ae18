"""Function graphs read from graph.pb are plain data, checked before anything runs: tampered ones are refused."""

from __future__ import annotations

import os

import numpy as np
import pytest

import hubkit as hk
from hubkit.format import hubkit_module_pb2 as pb
from hubkit.format.attrs import decode_attrs, encode_attrs
from tests.tf1_compat.test_control_flow import control_flow_module_fn


def _tamper(path: str, change) -> None:
    graph_pb = os.path.join(path, "graph.pb")
    with open(graph_pb, "rb") as f:
        graph = pb.ModuleGraph.FromString(f.read())
    node = next(n for n in graph.variants[0].nodes if n.op == "While")
    attrs = decode_attrs(node.attrs)
    change(attrs["body"])
    node.attrs.Clear()
    encode_attrs(attrs, node.attrs)
    with open(graph_pb, "wb") as f:
        f.write(graph.SerializeToString())


def _unknown_op(body):
    body["nodes"][-1]["op"] = "LaunchMissiles"


def _variable_inside(body):
    body["nodes"][-1]["op"] = "Variable"


def _missing_key(body):
    del body["outputs"]


def _dangling_input(body):
    body["nodes"][-1]["inputs"] = ["nowhere:0"]


@pytest.mark.parametrize("change,message", [
    (_unknown_op, "LaunchMissiles"),
    (_variable_inside, "Variable"),
    (_missing_key, "keys"),
    (_dangling_input, "nowhere:0"),
])
def test_tampered_function_graphs_are_refused_at_load(tmp_path, change, message):
    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(control_flow_module_fn)).export(path)
    _tamper(path, change)
    with pytest.raises(hk.HubkitError, match=message):
        hk.Module(path)(np.zeros((1, 3), np.float32))
