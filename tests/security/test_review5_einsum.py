"""Review 5: an ONNX ``Einsum``'s output shape is parsed from its equation, never computed at import.

Shape inference ran ``np.einsum`` on uninitialised operands of the declared input shapes to learn the output's
shape: four declared ``[200]`` vectors and ``"i,j,k,l->ijkl"`` allocated and computed 1.6e9 values (6.4 GB) while
the model was imported, and two declared ``[6000, 6000]`` matrices ran 2e11 multiply-adds (NumPy's unoptimised
einsum) before ``hk.Module`` returned. At call time an outer product of small inputs had no output bound either.
The children run under an address-space and a CPU-time limit, so a regression fails instead of swapping or
hanging.
"""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.ops.onnx_tensor import einsum_shape
from tests.security.hostile import run_in_child

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

_LOAD = r'''
import resource
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
for path in sys.argv[1:]:
    def load(path=path):
        m = hk.Module(path)
        if "call" in path:
            m({f"x{i}": np.ones(300, np.float32) for i in range(4)}, as_dict=True)
    attempt(path, load)
'''


def _einsum(path: str, equation: str, shapes) -> str:
    names = [f"x{i}" for i in range(len(shapes))]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in zip(names, shapes)]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Einsum", names, ["y"], equation=equation)], "g", inputs, [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_einsum_shapes_are_never_computed_at_import(tmp_path):
    ok = {
        "outer-product": _einsum(str(tmp_path / "outer.onnx"), "i,j,k,l->ijkl", [[200]] * 4),  # 6.4 GB at import
        "big-matmul": _einsum(str(tmp_path / "matmul.onnx"), "ij,jk->ik", [[6000, 6000]] * 2),  # 2e11 operations
        "batched": _einsum(str(tmp_path / "batched.onnx"), "bij,bjk->bik", [[64, 1000, 1000]] * 2),
        "ellipsis": _einsum(str(tmp_path / "ellipsis.onnx"), "...ij,...jk", [[8, 1, 3000, 3000], [1, 8, 3000, 3000]]),
    }
    refused = {
        "outer-over-limit": _einsum(str(tmp_path / "outer2.onnx"), "i,j,k,l->ijkl", [[300]] * 4),
        "mismatch": _einsum(str(tmp_path / "mismatch.onnx"), "ij,jk->ik", [[6000, 5999], [6000, 6000]]),
        "call": _einsum(str(tmp_path / "outer-call.onnx"), "i,j,k,l->ijkl", [[None]] * 4),
    }
    records = run_in_child(_LOAD, *ok.values(), *refused.values())
    for label, path in ok.items():
        assert records[path]["outcome"] == "ok", (label, records[path])
    for label, path in refused.items():
        assert records[path]["outcome"] == "hubkit", (label, records[path])
    assert "the limit is 2147483648" in records[refused["outer-over-limit"]]["error"]
    assert "the limit is 2147483648" in records[refused["call"]]["error"]
    assert "has sizes 5999 and 6000" in records[refused["mismatch"]]["error"]


@pytest.mark.parametrize("equation", [
    "ij,jk->ik", "ij,jk", "ba,ab", "Ba,aB", "i,j,k,l->ijkl", "...i,i...", "i...,j...", "...ij,...jk->...ik", "ii->i",
    "ii", "ij->", "i,i", "bij,bjk->bik", "...,...", "a...b,b...c->ac", "a...b,b...c->...ac", "xyz->zyx", "...->...",
    "i...->i", "iij,jk", "i,ii->i", "ij,kj->ki", "i j , j k -> i k",
])
def test_einsum_shapes_match_numpy(equation):
    rs = np.random.RandomState(0)
    terms = equation.replace(" ", "").split("->")[0].split(",")
    for _ in range(200):
        shapes = [tuple(int(v) for v in rs.choice([1, 2, 3], len(t.replace("...", "")) + (rs.randint(3) if "..." in t
                                                                                           else 0))) for t in terms]
        try:
            expected = np.einsum(equation, *[np.zeros(s, np.float32) for s in shapes]).shape
        except ValueError:
            with pytest.raises(ValueError):
                einsum_shape(equation, shapes, ValueError)
            continue
        assert einsum_shape(equation, shapes, ValueError) == expected, (equation, shapes)
