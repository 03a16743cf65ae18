"""hubkit.dask without a cluster (synchronous scheduler): shape rules, argument errors, worker-side errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import hubkit as hk
from tests.dask.conftest import sentences
from tests.hub.helpers import REPO

dask = pytest.importorskip("dask")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402

import hubkit.dask as hd  # noqa: E402
from hubkit.dask._signature import Job, TensorDesc  # noqa: E402
from hubkit.dask._worker import run_partition  # noqa: E402


@pytest.fixture(autouse=True)
def sync_scheduler():
    with dask.config.set(scheduler="sync"):
        yield


@pytest.fixture(scope="module")
def pair_module(tmp_path_factory) -> str:
    """Two scalar inputs per row -> their sum (one value per row) and the pair ([None, 2])."""

    def module_fn():
        a = hk.placeholder(hk.float32, [None], name="a")
        b = hk.placeholder(hk.float32, [None], name="b")
        hk.add_signature(inputs={"a": a, "b": b}, outputs={"sum": a + b, "pair": hk.stack([a, b], axis=1)})
        hk.add_signature("count", inputs={"a": a}, outputs={"n": hk.size(a)})
        hk.add_signature("double", inputs={"a": a}, outputs=a * 2.0)

    path = str(tmp_path_factory.mktemp("pair") / "module")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    return path


def test_import_hubkit_does_not_import_dask():
    code = "import sys, hubkit; print(sorted(m for m in ('dask', 'distributed', 'pandas', 'hubkit.dask') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_dataframe_shape_rules(pair_module):
    table = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0], "y": [10.0, 20.0, 30.0, 40.0, 50.0]})
    frame = dd.from_pandas(table, npartitions=2)
    out = hd.map_partitions(pair_module, frame, output_key=["sum", "pair"], inputs={"a": "x", "b": "y"}, batch_size=2)
    assert out.dtypes["sum"] == np.float32 and out.dtypes["pair"].kind == "O"  # the meta, before computing
    assert out.divisions == frame.divisions and out.npartitions == 2
    got = out.compute()
    assert list(got.columns) == ["x", "y", "sum", "pair"] and got["sum"].dtype == np.float32
    np.testing.assert_array_equal(got["sum"].to_numpy(), [11, 22, 33, 44, 55])
    assert got["pair"].dtype == pd.ArrowDtype(pa.list_(pa.float32(), 2)) == out.dtypes["pair"]  # a fixed-size list
    assert got["pair"].iloc[1] == [2.0, 20.0]
    np.testing.assert_array_equal(np.stack(got["pair"].to_numpy()), table.to_numpy())
    np.testing.assert_array_equal(got["pair"].list.flatten().to_numpy().reshape(-1, 2), table.to_numpy())
    np.testing.assert_array_equal(got.index, table.index)


def test_vectors_of_unknown_width_are_an_object_column(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs=x, outputs=hk.reshape(x, [-1, 1]) * hk.ones_like(hk.reshape(x, [1, -1])))

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    out = hd.map_partitions(path, dd.from_pandas(pd.Series([1.0, 2.0, 3.0]), npartitions=1))
    assert out.dtype == object
    got = out.compute()
    assert got.dtype == object and got.iloc[1].shape == (3,)
    np.testing.assert_array_equal(np.stack(got.to_numpy()), [[1.0] * 3, [2.0] * 3, [3.0] * 3])


def test_series_gives_a_series_or_a_frame_of_outputs(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs=x, outputs={"default": x * 2.0, "neg": -x})

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    series = dd.from_pandas(pd.Series([1.0, 2.0, 3.0], index=[7, 8, 9]), npartitions=2)
    one = hd.map_partitions(path, series).compute()
    assert isinstance(one, pd.Series) and one.name == "default" and list(one.index) == [7, 8, 9]
    np.testing.assert_array_equal(one.to_numpy(), [2, 4, 6])
    frame = hd.map_partitions(path, series.to_frame("value")).compute()  # its only column feeds the input
    assert list(frame.columns) == ["value", "default"]
    np.testing.assert_array_equal(frame["default"].to_numpy(), [2, 4, 6])
    both = hd.map_partitions(path, series, output_key=["neg", "default"]).compute()
    assert list(both.columns) == ["neg", "default"]
    np.testing.assert_array_equal(both["neg"].to_numpy(), [-1, -2, -3])


def test_bag_records(pair_module):
    records = db.from_sequence([{"a": float(i), "b": 1.0, "id": i} for i in range(7)], npartitions=3)
    out = hd.map_partitions(pair_module, records, output_key=["sum", "pair"]).compute()
    assert [r["id"] for r in out] == list(range(7)) and set(out[0]) == {"a", "b", "id", "sum", "pair"}
    assert [float(r["sum"]) for r in out] == [i + 1.0 for i in range(7)]
    np.testing.assert_array_equal(out[3]["pair"], [3.0, 1.0])


def test_empty_partitions(pair_module):
    frame = dd.from_pandas(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}), npartitions=2)
    frame = frame[frame.a > 1.5]  # the first partition becomes empty
    got = hd.map_partitions(pair_module, frame, output_key="sum").compute()
    np.testing.assert_array_equal(got["sum"].to_numpy(), [6.0])
    tiny = hd.map_partitions(pair_module, db.from_sequence([], npartitions=1), output_key="sum", inputs={"a": "a", "b": "b"})
    assert tiny.compute() == []


def test_module_objects_are_refused(pair_module):
    module = hk.Module(pair_module)
    frame = dd.from_pandas(pd.DataFrame({"a": [1.0], "b": [2.0]}), npartitions=1)
    with pytest.raises(hk.ResolveError, match=r"not a Module object.*loaded from '.*module'"):
        hd.map_partitions(module, frame)
    with pytest.raises(hk.ResolveError, match="not a ModuleSpec object"):
        hd.map_partitions(module.spec, frame)
    with pytest.raises(hk.ResolveError, match="must be a string or path, got int"):
        hd.map_partitions(3, frame)


@pytest.mark.parametrize("collection", [[1.0, 2.0], np.ones(3), pd.Series([1.0])])
def test_collections_that_are_not_dask_are_refused_before_resolving(collection):
    with pytest.raises(hk.FeedError, match="takes a dask Array, Bag, DataFrame or Series"):
        hd.map_partitions("/no/such/module", collection)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "8"])
def test_bad_batch_size(pair_module, batch_size):
    frame = dd.from_pandas(pd.DataFrame({"a": [1.0], "b": [2.0]}), npartitions=1)
    with pytest.raises(hk.SignatureError, match="batch_size must be a positive integer"):
        hd.map_partitions(pair_module, frame, batch_size=batch_size, output_key="sum")


def test_argument_errors(pair_module):
    frame = dd.from_pandas(pd.DataFrame({"a": [1.0], "c": [2.0], "sum": [0.0]}), npartitions=1)
    with pytest.raises(hk.FeedError, match=r"columns \['b'\] .* do not exist; available columns: \['a', 'c', 'sum'\]"):
        hd.map_partitions(pair_module, frame, output_key="pair")
    with pytest.raises(hk.FeedError, match=r"missing \['b'\]; unexpected \['z'\]"):
        hd.map_partitions(pair_module, frame, inputs={"a": "a", "z": "c"}, output_key="pair")
    with pytest.raises(hk.FeedError, match=r"already has columns \['sum'\]"):
        hd.map_partitions(pair_module, frame, inputs={"a": "a", "b": "c"}, output_key="sum")
    with pytest.raises(hk.FeedError, match="several inputs"):
        hd.map_partitions(pair_module, frame, inputs="a", output_key="pair")
    with pytest.raises(hk.FeedError, match="several inputs"):
        hd.map_partitions(pair_module, da.ones(3, chunks=2), output_key="sum")
    with pytest.raises(hk.FeedError, match="A Series feeds a one-input signature"):
        hd.map_partitions(pair_module, frame["a"], signature="double", inputs="a")
    with pytest.raises(hk.SignatureError, match=r"output 'n' is a scalar \(shape \[\]\)"):
        hd.map_partitions(pair_module, frame["a"], signature="count", output_key="n")
    with pytest.raises(hk.SignatureError, match=r"no output 'default'; pass output_key; available outputs: \['pair', 'sum'\]"):
        hd.map_partitions(pair_module, frame)
    with pytest.raises(hk.SignatureError, match="tags must be a set of strings"):
        hd.map_partitions(pair_module, frame, tags=[1], output_key="pair")
    with pytest.raises(hk.SignatureError, match=r"no graph variant for the tags \['train'\]; available tag sets: \[\[\]\]"):
        hd.map_partitions(pair_module, frame, tags={"train"}, output_key="pair")


def test_array_errors(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs=x, outputs={"default": x * 2.0, "total": hk.reduce_sum(x, axis=1)})

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    with pytest.raises(hk.FeedError, match=r"input 'default' has shape \[None, 3\] \(rows first\); the array has 1 dimensions"):
        hd.map_partitions(path, da.ones(3, chunks=2))
    with pytest.raises(hk.SignatureError, match="An array result holds one output"):
        hd.map_partitions(path, da.ones((4, 3), chunks=2), output_key=["default", "total"])
    with pytest.raises(hk.FeedError, match="An array feeds a one-input signature"):
        hd.map_partitions(path, da.ones((4, 3), chunks=2), inputs="x")
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = hd.map_partitions(path, da.from_array(values, chunks=(3, 1)), output_key="total")  # rechunked per row
    assert out.shape == (4,) and out.chunks == ((3, 1),)
    np.testing.assert_array_equal(out.compute(), values.sum(axis=1))
    empty = hd.map_partitions(path, da.from_array(np.zeros((0, 3), np.float32), chunks=2)).compute()
    assert empty.shape == (0, 3) and empty.dtype == np.float32


def test_bad_record_in_a_bag_is_named(tmp_path, module_dirs):
    texts: list = sentences(9)
    texts[7] = 42
    with pytest.raises(hk.SignatureError) as info:
        hd.map_partitions(module_dirs["text"], db.from_sequence(texts, npartitions=3), batch_size=2).compute()
    assert (info.value.partition, info.value.row) == (2, 1)
    assert "partition 2" in str(info.value) and "row 1 with sentences=42" in str(info.value)
    mixed = db.from_sequence(["a b", {"sentences": "c"}], npartitions=1)
    with pytest.raises(hk.FeedError, match="partition 0, row 0 is a str, not a dict"):
        hd.map_partitions(module_dirs["text"], mixed).compute()
    missing = db.from_sequence([{"sentences": "a"}, {"text": "b"}], npartitions=1)
    with pytest.raises(hk.FeedError, match=r"row 1 has no key 'sentences' .* keys: \['text'\]"):
        hd.map_partitions(module_dirs["text"], missing).compute()


def test_output_that_is_not_per_row_is_refused_at_run_time(module_dirs):
    series = dd.from_pandas(pd.Series(["a b c", "d"]), npartitions=1)
    with pytest.raises(hk.SignatureError, match=r"output 'row_ids' has shape .* not one value per row"):
        hd.map_partitions(module_dirs["text"], series, signature="tokens", output_key="row_ids").compute()


def test_failed_load_is_remembered_and_named(tmp_path):
    hd.clear_cache()
    job = Job(str(tmp_path / "gone"), (), "default", False, 4, {"x": TensorDesc("float32", (None,))},
              {"default": TensorDesc("float32", (None,))})
    for partition in (3, 4):
        with pytest.raises(hk.ResolveError) as info:
            run_partition(job, {"x": np.ones(2, np.float32)}, 2, partition)
        assert info.value.partition == partition and f"partition {partition}" in str(info.value)
        assert "could not load module" in str(info.value) and "does not exist" in str(info.value)
    entry = [m for m in hd.cache_info()["modules"] if m["handle"] == job.handle]
    assert entry[0]["failed"] == 1 and entry[0]["loads"] == 0  # the second partition did not try again
    hd.clear_cache()
    assert hd.cache_info()["modules"] == []


def test_rows_that_do_not_stack_are_named(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, 3], name="x")
        hk.add_signature(inputs=x, outputs=x * 2.0)

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    short = db.from_sequence([np.ones(3), np.ones(3), np.ones(2)], npartitions=1)
    with pytest.raises(hk.SignatureError, match=r"partition 0 .*, row 2 with default=array\(\[1., 1.\]\)") as info:
        hd.map_partitions(path, short).compute()
    assert info.value.row == 2
    ragged = db.from_sequence([np.ones(3), [1.0, [2.0], 3.0]], npartitions=1)
    with pytest.raises(hd.PartitionError, match=r"row 1 with default=\[1.0, \[2.0\], 3.0\]: .*inhomogeneous") as info:
        hd.map_partitions(path, ragged).compute()
    assert isinstance(info.value, hk.HubkitError) and (info.value.partition, info.value.row) == (0, 1)


def test_threads_of_one_process_share_one_load(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None], name="x")
        hk.add_signature(inputs=x, outputs=x + 1.0)

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    values = np.arange(64, dtype=np.float32)
    out = hd.map_partitions(path, da.from_array(values, chunks=4), batch_size=3)
    np.testing.assert_array_equal(out.compute(scheduler="threads", num_workers=4), values + 1)
    entry = [m for m in hd.cache_info()["modules"] if m["handle"] == path]
    assert entry[0]["loads"] == 1 and entry[0]["loads"] + entry[0]["hits"] == 16
    assert entry[0]["partitions"] == 16 and entry[0]["rows"] == 64  # the work counters
    assert entry[0]["task_cpu"] >= entry[0]["module_cpu"] > 0


def test_rows_of_different_shapes_across_batches_are_refused(tmp_path):
    def module_fn():
        x = hk.placeholder(hk.float32, [None, None], name="x")
        hk.add_signature(inputs=x, outputs=x * 1.0)

    path = str(tmp_path / "m")
    hk.Module(hk.create_module_spec(module_fn)).export(path)
    rows = [np.ones(2), np.ones(2), np.ones(3), np.ones(3)]
    whole = hd.map_partitions(path, db.from_sequence(rows, npartitions=2), batch_size=2).compute()
    assert [r.shape for r in whole] == [(2,), (2,), (3,), (3,)]  # one batch per partition: fine
    with pytest.raises(hk.SignatureError, match=r"rows of shape \[3\] in rows 2 to 3 but \[2\] in the first batch"):
        hd.map_partitions(path, db.from_sequence(rows, npartitions=1), batch_size=2).compute()


@pytest.mark.filterwarnings("ignore:Dask currently has limited support for converting pandas extension dtypes")
def test_a_text_column_as_an_array_gives_an_embedding_matrix(module_dirs):
    text = sentences(12)
    frame = dd.from_pandas(pd.DataFrame({"sentences": text}), npartitions=3)
    matrix = hd.map_partitions(module_dirs["text"], frame["sentences"].to_dask_array(lengths=True), batch_size=5)
    assert matrix.shape == (12, 16) and matrix.chunks[0] == (4, 4, 4)
    np.testing.assert_allclose(matrix.compute(), hk.Module(module_dirs["text"])(text), rtol=1e-6, atol=1e-7)
