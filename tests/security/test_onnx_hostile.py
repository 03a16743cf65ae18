"""Hostile ONNX models: what reaches onnx's C++ code, external data, and what hubkit folds at import.

Every model is built here with ``onnx.helper``. Each must end in a ``FormatError`` naming the problem, with
bounded memory and time; the cases that once killed the interpreter (SIGSEGV in onnx's version converter)
run in a child process, so a crash fails the test instead of ending the run.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from hubkit.errors import FormatError, HubkitError
from hubkit.importers.onnx.load import load_spec
from hubkit.module import Module
from tests.security.hostile import child_records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_NIGHTLY = "HUBKIT_FUZZ_NIGHTLY" in os.environ
FUZZ_CASES = int(os.environ.get("HUBKIT_ONNX_FUZZ_CASES", "10000" if _NIGHTLY else "200"))


def _save(model: onnx.ModelProto, directory, name: str = "m.onnx") -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(str(directory), name)
    onnx.save(model, path)
    return path


def _model(nodes, inputs, outputs, inits=(), opset: int = 21, ir: int | None = None) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    if ir is not None:
        m.ir_version = ir
    return m


def _vi(name: str, elem=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


# A child process loads each model and prints one JSON line per model: a signal death names the model it hit.
_CHILD = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    from hubkit.errors import HubkitError
    from hubkit.importers.onnx.load import load_spec
    for path in sys.argv[1:]:
        print(json.dumps({"start": path}), flush=True)
        try:
            load_spec(path)
            print(json.dumps({"path": path, "result": "ok"}), flush=True)
        except HubkitError as e:
            print(json.dumps({"path": path, "result": type(e).__name__, "message": str(e)[:300]}), flush=True)
        except BaseException as e:
            record = {"path": path, "result": "raw " + type(e).__name__, "message": str(e)[:300]}
            print(json.dumps(record), flush=True)
""")


def _load_in_children(paths: list[str], timeout: float = 600) -> tuple[dict[str, dict], list[tuple[str, int]]]:
    """Loads every model in a child process (started again after a crash); returns results and crashes."""
    results: dict[str, dict] = {}
    crashes: list[tuple[str, int]] = []
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    todo = list(paths)
    for _ in range(len(paths) + 1):  # bounded: each round finishes the list or skips the model that crashed
        if not todo:
            break
        r = subprocess.run([sys.executable, "-c", _CHILD, *todo], capture_output=True, text=True, timeout=timeout,
                           env=env, cwd=ROOT)
        records, last = child_records(r.stdout, "path")
        results.update(records)
        if r.returncode == 0:
            break
        assert last is not None and last not in results, r.stderr[-2000:]
        crashes.append((last, r.returncode))
        todo = todo[todo.index(last) + 1:]
    return results, crashes


# -- 1. what reaches onnx's C++ code ------------------------------------------------------------------------

def _ill_typed_models(tmp_path) -> dict[str, str]:
    """Old-opset models whose attributes have the wrong type (or are missing): onnx's checker refuses them;
    its version converter, run first, crashed on the first two (SIGSEGV)."""
    x = _vi("x", shape=[1, 1, 2, 2])
    y = _vi("y", shape=[1])  # with a shape: the checker must refuse the attribute, not the output
    cases = {
        "reshape_shape_int": [helper.make_node("Reshape", ["x"], ["y"], shape=2**62)],
        "reshape_after_clip": [helper.make_node("Clip", ["x"], ["t"], max=0.8),
                               helper.make_node("Reshape", ["t"], ["y"], shape=2**62)],
        "reshape_shape_missing": [helper.make_node("Reshape", ["x"], ["y"])],
        "reshape_shape_float": [helper.make_node("Reshape", ["x"], ["y"], shape=1.5)],
        "transpose_perm_int": [helper.make_node("Transpose", ["x"], ["y"], perm=3)],
        "squeeze_axes_int": [helper.make_node("Squeeze", ["x"], ["y"], axes=0)],
        "pad_pads_floats": [helper.make_node("Pad", ["x"], ["y"], pads=[1.0, 2.0])],
        "split_split_int": [helper.make_node("Split", ["x"], ["y"], split=1)],
        "softmax_axis_string": [helper.make_node("Softmax", ["x"], ["y"], axis=b"one")],
        "concat_axis_ints": [helper.make_node("Concat", ["x", "x"], ["y"], axis=[1, 2])],
    }
    paths = {}
    for name, nodes in cases.items():
        for opset in (1, 5):
            model = _model(nodes, [x], [y], opset=opset, ir=4)
            paths[f"{name}@{opset}"] = _save(model, tmp_path / f"{name}{opset}")
    return paths


def test_ill_typed_attributes_never_reach_onnx_s_version_converter(tmp_path):
    paths = _ill_typed_models(tmp_path)
    results, crashes = _load_in_children(list(paths.values()))
    assert not crashes, f"the loader crashed (signal = -returncode): {crashes}"
    for name, path in paths.items():
        record = results[path]
        assert record["result"] == "FormatError", (name, record)
        assert any(m in record["message"] for m in ("is invalid", "cannot import", "cannot be converted")), (
            name, record)
    for name in ("reshape_shape_int@1", "reshape_after_clip@1"):  # the two that crashed: refused by the checker
        assert "is invalid" in results[paths[name]]["message"], results[paths[name]]


def test_an_ill_typed_attribute_is_refused_in_process_by_the_checker_with_the_model_named(tmp_path):
    path = _ill_typed_models(tmp_path)["reshape_shape_int@1"]
    with pytest.raises(FormatError, match=r"ONNX model .*m\.onnx' is invalid"):
        load_spec(path)


def test_models_with_too_many_nodes_are_refused_before_any_c_code(tmp_path, monkeypatch):
    from hubkit.importers.onnx import load

    monkeypatch.setattr(load, "MAX_NODES", 10)
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(11)]
    path = _save(_model(nodes, [_vi("t0", shape=[1])], [_vi("t11", shape=[1])], opset=9), tmp_path)
    with pytest.raises(FormatError, match="11 nodes, more than the limit of 10"):
        load_spec(path)


def _schema_valid_models(directory, n: int, seed: int) -> list[str]:
    """Random small models at opsets 1..20 built from the ops' schemas (right input counts and attribute
    types, odd values: 2**62, -2**63, inf, NaN, empty lists; now and then a wrong type), so that many pass
    the checker and reach the version converter and shape inference."""
    from hubkit.importers.onnx.translate import SUPPORTED_OPS

    rng = random.Random(seed)
    ops = [o for o in SUPPORTED_OPS if "." not in o] + ["Upsample", "Scatter", "OneHot"]
    option = onnx.defs.OpSchema.FormalParameterOption

    def ints():
        return [rng.choice([0, 1, 2, -1, 3, 2**40, -(2**63), 2**62]) for _ in range(rng.choice([1, 2, 4, 8]))]

    def value(kind):
        return {
            AttributeProto.INT: lambda: rng.choice([0, 1, 2, -1, 5, 2**62, -(2**63), 7, 13]),
            AttributeProto.INTS: ints,
            AttributeProto.FLOAT: lambda: rng.choice([0.0, 1.0, -1.0, 2.0, float("inf"), float("nan"), 1e-5]),
            AttributeProto.FLOATS: lambda: [rng.choice([1.0, 2.0, 0.0, 2.0**15, float("inf")])
                                            for _ in range(rng.choice([1, 2, 4]))],
            AttributeProto.STRING: lambda: rng.choice([b"nearest", b"linear", b"NOTSET", b"SAME_UPPER", b"VALID",
                                                       b"constant", b"reflect", b"", b"bogus", b"ij,jk->ik"]),
            AttributeProto.TENSOR: lambda: numpy_helper.from_array(rng.choice(
                [np.array([1, 1, 2, 2], np.int64), np.array(1.0, np.float32), np.array([0], np.int64)])),
        }[kind]()

    paths = []
    for i in range(n):
        opset = rng.randint(1, 20)
        nodes, names = [], ["x"]
        inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "c"),
                 numpy_helper.from_array(np.ones([1, 1, 2, 2], np.float32), "w"),
                 numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "f"),
                 numpy_helper.from_array(np.array(0, np.int64), "z")]
        for j in range(rng.randint(1, 4)):
            op = rng.choice(ops)
            try:
                schema = onnx.defs.get_schema(op, opset)
            except Exception:
                continue
            ins: list[str] = []
            for formal in schema.inputs:
                if formal.option == option.Optional and rng.random() < 0.5:
                    ins.append("")
                    continue
                count = rng.randint(1, 3) if formal.option == option.Variadic else 1
                ins += [rng.choice([*names, "c", "w", "f", "z"]) for _ in range(count)]
            while ins and not ins[-1]:
                ins.pop()
            attrs = {}
            for name, attr in schema.attributes.items():
                if (attr.required or rng.random() < 0.3) and attr.type in (
                        AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT, AttributeProto.FLOATS,
                        AttributeProto.STRING, AttributeProto.TENSOR):
                    attrs[name] = value(attr.type)
            if schema.attributes and rng.random() < 0.1:
                attrs[rng.choice(sorted(schema.attributes))] = rng.choice([1, [1, 2], 1.5, b"s"])
            n_out = max(1, sum(o.option != option.Optional for o in schema.outputs))
            nodes.append(helper.make_node(op, ins, [f"t{j}_{k}" for k in range(n_out)], **attrs))
            names.append(f"t{j}_0")
        shape = rng.choice([[1, 1, 2, 2], None, [None, 3], [2]])
        model = _model(nodes, [_vi("x", shape=shape)], [_vi(names[-1], shape=rng.choice([None, [1]]))], inits,
                       opset=opset, ir=rng.choice([3, 4, 7, 8]))
        paths.append(_save(model, directory, f"{i}.onnx"))
    return paths


def test_fuzz_schema_valid_old_opset_models_never_crash_the_loader(tmp_path):
    """A few hundred (10,000 nightly) models through the checker, the version converter and shape inference:
    only HubkitErrors, no signal death. ``HUBKIT_FUZZ_SEED`` varies the seed."""
    seed = int(os.environ.get("HUBKIT_FUZZ_SEED", "14"))
    paths = _schema_valid_models(tmp_path / "models", FUZZ_CASES, seed)
    results, crashes = _load_in_children(paths, timeout=max(600, FUZZ_CASES))
    assert not crashes, f"the loader crashed (signal = -returncode): {crashes[:5]}"
    raw = [r for r in results.values() if r["result"].startswith("raw ")]
    assert not raw, raw[:5]
    assert len(results) == len(paths)
    assert sum(r["result"] == "ok" for r in results.values()) > 0  # some models are valid: the path is exercised


# -- 8. external data ---------------------------------------------------------------------------------------

def _external(name: str, dims, data_type=TensorProto.FLOAT, **entries) -> TensorProto:
    t = TensorProto(name=name, data_type=data_type, dims=dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in entries.items():
        t.external_data.add(key=key, value=str(value))
    return t


def _external_model(tmp_path, tensor: TensorProto, files: dict[str, bytes] | None = None,
                    elem=TensorProto.FLOAT) -> str:
    rank = max(len(tensor.dims), 1)
    node = helper.make_node("Add", ["x", tensor.name], ["y"])
    model = _model([node], [_vi("x", elem, [None] * rank)], [_vi("y", elem, [None] * rank)], [tensor])
    directory = tmp_path / "model"
    os.makedirs(directory, exist_ok=True)
    for name, data in (files if files is not None else {"w.bin": b"\0" * (1 << 12)}).items():
        (directory / name).write_bytes(data)
    return _save(model, directory)


@pytest.mark.parametrize("key, value", [
    ("offset", "abc"), ("offset", "1e3"), ("offset", "-1"), ("offset", "+4"), ("offset", " 4"), ("offset", "0x10"),
    ("offset", "\u0664"), ("offset", "4_0"), ("offset", "9" * 30), ("offset", ""), ("offset", str(2**63)),
    ("length", "abc"), ("length", "1e3"), ("length", "-16"), ("length", "16.0"), ("length", "\u0661\u0666"),
])
def test_external_offsets_and_lengths_must_be_plain_non_negative_int64(tmp_path, key, value):
    entries = {"location": "w.bin", key: value}
    path = _external_model(tmp_path, _external("w", [4], **entries))
    with pytest.raises(FormatError, match=f"Initializer 'w' has the external-data {key} .*non-negative int64"):
        load_spec(path)


@pytest.mark.parametrize("dims, entries, match", [
    ([2**32, 2**32], {}, "needs bytes 0..73786976294838206464 of 'w.bin'"),  # np.prod wrapped to 0 bytes
    ([2**31, 2**31, 4], {}, "needs bytes"),
    ([2**40], {}, "needs bytes 0..4398046511104"),
    ([1025], {}, "needs bytes 0..4100 of 'w.bin'.*holds 4096 bytes"),
    ([4], {"offset": 4090}, "needs bytes 4090..4106"),
    ([4], {"offset": 2**62}, "needs bytes"),
    ([4], {"length": 20}, "claims 20 bytes of external data, but its shape \\[4\\] .* needs 16"),
    ([4], {"length": 8}, "claims 8 bytes"),
    ([2**32, 2**32], {"length": 0}, "claims 0 bytes"),
    ([4], {"length": 2**62}, "claims"),
])
def test_external_data_must_hold_every_byte_the_shape_needs(tmp_path, dims, entries, match):
    path = _external_model(tmp_path, _external("w", dims, location="w.bin", **entries))
    with pytest.raises(FormatError, match=match):
        load_spec(path)


def test_external_data_location_must_be_a_regular_file_inside_the_directory(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 64)
    cases = {
        "missing": _external("w", [4]),
        "empty": _external("w", [4], location=""),
        "absolute": _external("w", [4], location=str(outside)),
        "dotdot": _external("w", [4], location="../outside.bin"),
        "nul": _external("w", [4], location="w.bin\0x"),
        "fifo": _external("w", [4], location="fifo"),
        "directory": _external("w", [4], location="."),
        "link out": _external("w", [4], location="out.bin"),
        "absent": _external("w", [4], location="nothing.bin"),
    }
    for i, (what, tensor) in enumerate(cases.items()):
        directory = tmp_path / f"m{i}"
        os.makedirs(directory)
        (directory / "w.bin").write_bytes(b"\0" * 64)
        os.mkfifo(directory / "fifo")
        os.symlink(outside, directory / "out.bin")
        rank = 1
        model = _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x", shape=[None] * rank)],
                       [_vi("y", shape=[None] * rank)], [tensor])
        path = _save(model, directory)
        with pytest.raises(FormatError, match="which is not a file inside the model directory"):
            load_spec(path)
        assert what


def test_external_data_keys_given_twice_or_of_odd_types_are_refused(tmp_path):
    twice = _external("w", [4], location="w.bin", offset=0)
    twice.external_data.add(key="offset", value="8")
    with pytest.raises(FormatError, match="gives the external-data key 'offset' twice"):
        load_spec(_external_model(tmp_path / "a", twice))
    strings = _external("s", [4], TensorProto.STRING, location="w.bin")
    with pytest.raises(FormatError, match="only fixed-size numeric types can be external"):
        load_spec(_external_model(tmp_path / "b", strings, elem=TensorProto.STRING))


def test_external_data_in_a_node_attribute_is_refused(tmp_path, monkeypatch):
    """A Constant's value with external data would be read relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    value = _external("v", [4], location="secret.bin", offset=0, length=16)
    nodes = [helper.make_node("Constant", [], ["c"], value=value), helper.make_node("Add", ["x", "c"], ["y"])]
    path = _save(_model(nodes, [_vi("x", shape=[4])], [_vi("y", shape=[4])]), tmp_path / "model")
    with pytest.raises(FormatError, match=r"Tensor 'v' of attribute 'value' of node .*keeps its data in an"):
        load_spec(path)


def test_well_formed_external_data_still_loads_and_computes(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    big = np.arange(20000, dtype=np.float32)  # above the inlining threshold: mapped in place
    small = np.array([1.0, 2.0, 3.0], np.float32)
    data = b"\0" * 8 + big.tobytes() + small.tobytes()
    w = _external("w", [20000], location="w.bin", offset=8, length=big.nbytes, checksum="ignored")
    w.external_data.add(key="vendor_key", value="unknown keys are ignored")
    s = _external("s", [3], location="w.bin", offset=8 + big.nbytes)  # no length: prod(dims) * 4 bytes
    nodes = [helper.make_node("Add", ["x", "w"], ["y"]), helper.make_node("Mul", ["x3", "s"], ["z"])]
    model = _model(nodes, [_vi("x", shape=[20000]), _vi("x3", shape=[3])], [_vi("y", shape=[20000]),
                                                                           _vi("z", shape=[3])], [w, s])
    path = _save(model, tmp_path / "model")
    (tmp_path / "model" / "w.bin").write_bytes(data)
    out = Module(path)({"x": np.ones(20000, np.float32), "x3": np.full(3, 2.0, np.float32)}, as_dict=True)
    values = sorted(out.values(), key=len)
    np.testing.assert_array_equal(values[0], small * 2)
    np.testing.assert_array_equal(values[1], big + 1)


# -- 9. numbers folded at import ----------------------------------------------------------------------------

def _fold_model(tmp_path, nodes, inits: dict, out: str, out_type=TensorProto.INT64, rank: int = 1) -> str:
    nodes = [*nodes, helper.make_node("Identity", [out], ["y"])]
    model = _model(nodes, [_vi("x", shape=[1])], [_vi("y", out_type, [None] * rank)],
                   [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return _save(model, tmp_path)


def _constant(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value)))


_RANGE = [helper.make_node("Range", ["s", "l", "d"], ["r"])]


@pytest.mark.parametrize("values, match", [
    ((0, 10, 0), "the step \\(delta\\) is 0"),
    ((0, 0, 0), "the step \\(delta\\) is 0"),
    ((0.0, 10.0, 0.0), "the step \\(delta\\) is 0"),
    ((0.0, np.inf, 1.0), "do not give a finite number of elements"),
    ((0.0, np.nan, 1.0), "do not give a finite number of elements"),
    ((-np.inf, 0.0, 1.0), "do not give a finite number of elements"),
    ((-1e308, 1e308, 1e-308), "do not give a finite number of elements"),
    ((0.0, 1.0, np.nan), "do not give a finite number of elements"),
    ((0, 2**40, 1), "would compute a constant of 1099511627776 elements"),
    ((-(2**63), 2**63 - 1, 1), "would compute a constant of 18446744073709551615 elements"),
])
def test_range_with_a_zero_step_or_non_finite_bounds_is_a_format_error(tmp_path, values, match):
    dtype = np.int64 if isinstance(values[0], int) else np.float64
    nodes = [_constant(n, dtype(v)) for n, v in zip("sld", values)] + _RANGE
    path = _fold_model(tmp_path, nodes, {}, "r", TensorProto.INT64 if dtype is np.int64 else TensorProto.DOUBLE)
    with pytest.raises(FormatError, match=f"ONNX node .*\\(Range\\) cannot be imported: .*{match}"):
        load_spec(path)


@pytest.mark.parametrize("values, expected", [
    ((0, 10, 3), [0, 3, 6, 9]), ((10, 0, -3), [10, 7, 4, 1]), ((0, 10, -1), []),
    ((2**62, 2**62 + 3, 1), [2**62, 2**62 + 1, 2**62 + 2]),  # exact: no float rounding of the length
])
def test_range_lengths_are_exact_for_integers(tmp_path, monkeypatch, values, expected):
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    nodes = [_constant(n, np.int64(v)) for n, v in zip("sld", values)] + _RANGE
    out = Module(_fold_model(tmp_path, nodes, {}, "r"))(np.ones(1, np.float32), as_dict=True)["y"]
    assert out.tolist() == expected


@pytest.mark.parametrize("k", [-(2**63), 2**63 - 1, -(2**62), 2**40, -3, 3, -2, 2, 0])
@pytest.mark.parametrize("upper", [0, 1])
def test_trilu_with_any_int64_k_folds_like_numpy(tmp_path, monkeypatch, k, upper):
    monkeypatch.setenv("HUBKIT_CACHE_DIR", str(tmp_path / "cache"))
    a = np.arange(1, 7, dtype=np.int64).reshape(2, 3)
    nodes = [helper.make_node("Trilu", ["a", "k"], ["r"], upper=upper)]
    path = _fold_model(tmp_path, nodes, {"a": a, "k": np.int64(k)}, "r", rank=2)
    out = Module(path)(np.ones(1, np.float32), as_dict=True)["y"]
    kk = max(min(k, 10), -10)
    np.testing.assert_array_equal(out, np.triu(a, kk) if upper else np.tril(a, kk))


@pytest.mark.parametrize("op, inits, match", [
    ("Tile", {"a": np.array([[1]], np.int64), "b": np.array([2**32, 2**32], np.int64)}, "18446744073709551616"),
    ("Tile", {"a": np.array([[[1]]], np.int64), "b": np.array([2**31, 2**31, 4], np.int64)}, "18446744073709551616"),
    ("Tile", {"a": np.array([1, 2], np.int64), "b": np.array([2**40], np.int64)}, "2199023255552"),
    ("Expand", {"a": np.array([1], np.int64), "b": np.array([2**32, 2**32], np.int64)}, "18446744073709551616"),
    ("Expand", {"a": np.array([1], np.int64), "b": np.array([2**31, 2**31, 4], np.int64)}, "18446744073709551616"),
    ("ConstantOfShape", {"b": np.array([2**32, 2**32], np.int64)}, "18446744073709551616"),
    ("ConstantOfShape", {"b": np.array([2**62, 4], np.int64)}, "18446744073709551616"),
])
def test_fold_sizes_are_computed_without_wrapping(tmp_path, op, inits, match):
    ins = ["b"] if op == "ConstantOfShape" else ["a", "b"]
    rank = len(inits["b"])
    nodes = [helper.make_node(op, ins, ["r"])]
    path = _fold_model(tmp_path, nodes, inits, "r", TensorProto.FLOAT if op == "ConstantOfShape" else
                       TensorProto.INT64, rank)
    with pytest.raises(FormatError, match=f"\\({op}\\) cannot be imported: .*constant of {match} elements"):
        load_spec(path)


def test_size_of_a_static_shape_is_not_wrapped(tmp_path):
    nodes = [helper.make_node("Size", ["x"], ["y"])]
    model = _model(nodes, [_vi("x", shape=[2**32, 2**32])], [_vi("y", TensorProto.INT64, [])])
    with pytest.raises(FormatError, match=r"\(Size\) cannot be imported: .*more than 2\*\*63 elements"):
        load_spec(_save(model, tmp_path))


@pytest.mark.parametrize("scales, sizes", [
    ([1, 1, 2**15, 2**15], None), ([1, 1, 2**20, 2**20], None), ([1, 1, 1e30, 1], None),
    (None, [1, 1, 2**20, 2**20]), (None, [1, 1, 2**16, 2**16]),
])
def test_resize_to_a_constant_size_too_large_is_refused_at_import(tmp_path, scales, sizes):
    """The scales are a float initializer (a variable), so Resize is not folded: its static output shape is
    what is checked; at run time it asked for 16 GiB and more."""
    inits = {"a": np.ones((1, 1, 2, 2), np.float32)}
    ins = ["a", ""]
    if scales is not None:
        inits["sc"] = np.array(scales, np.float32)
        ins.append("sc")
    else:
        inits["sz"] = np.array(sizes, np.int64)
        ins += ["", "sz"]
    path = _fold_model(tmp_path, [helper.make_node("Resize", ins, ["r"])], inits, "r", TensorProto.FLOAT, 4)
    with pytest.raises(FormatError, match=r"\(Resize\) cannot be imported: the output of static shape .* elements; "
                                          r"the limit is 2147483648"):
        load_spec(path)


@pytest.mark.parametrize("case", ["int_div_zero_runtime", "trilu_rank1"])
def test_other_folded_oddities_are_format_errors_or_values(tmp_path, case):
    if case == "trilu_rank1":
        nodes = [helper.make_node("Trilu", ["a"], ["r"])]
        with pytest.raises(HubkitError):
            load_spec(_fold_model(tmp_path, nodes, {"a": np.ones(3, np.int64)}, "r"))
    else:
        nodes = [helper.make_node("Div", ["a", "b"], ["r"])]
        spec = load_spec(_fold_model(tmp_path, nodes, {"a": np.array([1], np.int64), "b": np.array([0], np.int64)},
                                     "r"))
        assert spec is not None  # undefined in ONNX: folded to numpy's 0, without a warning
