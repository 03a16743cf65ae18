"""hubkit.dask on a real LocalCluster (2 worker processes) against a registry served on 127.0.0.1.

Results equal a single-process loop; the archive is downloaded once (counted at the server) and the
module loaded once per worker process (counted by hubkit.dask.cache_info on each worker); failures
arrive once, as HubkitErrors naming the partition; a killed worker is recovered with identical results.
"""

from __future__ import annotations

import os
import re
import sys

import cloudpickle
import numpy as np
import pandas as pd
import pytest

import hubkit as hk
from tests.dask.conftest import Registry, images, sentences
from tests.hub.helpers import free_port

dask = pytest.importorskip("dask")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402

import hubkit.dask as hd  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file


def loop(module_dir: str, rows) -> np.ndarray:
    """The reference: one Module call per row, in this process."""
    module = hk.Module(module_dir)
    return np.stack([module([row] if isinstance(row, str) else row[None])[0] for row in rows])


def worker_stats(client, handle: str) -> list[dict]:
    """Per worker process: the cache entry of ``handle`` (zeros if the process never saw it)."""
    stats = []
    for info in client.run(hd.cache_info).values():
        entries = [m for m in info["modules"] if m["handle"] == handle]
        stats.append(entries[0] if entries else {"loads": 0, "hits": 0, "failed": 0})
    return stats


def assert_loaded_once_per_worker(client, handle: str, partitions: int) -> None:
    stats = worker_stats(client, handle)
    assert all(s["loads"] <= 1 for s in stats), stats
    assert all(s["loads"] == 1 for s in stats if s["hits"] + s["loads"] > 0), stats
    assert sum(s["loads"] + s["hits"] for s in stats) == partitions, stats  # one cache lookup per partition
    assert not [m for m in hd.cache_info()["modules"] if m["handle"] == handle]  # the client never loaded it


def test_text_dataframe_equals_loop_downloaded_once(client, registry, client_env):
    handle = registry.publish("text", "text-frame")
    text = sentences(120)
    frame = dd.from_pandas(pd.DataFrame({"sentences": text, "id": np.arange(120)}), npartitions=8)
    result = hd.map_partitions(handle, frame, batch_size=7)
    assert registry.archive_requests("text-frame") == 0  # the client checked the signature from the manifest
    out = client.compute(result).result()
    assert list(out.columns) == ["sentences", "id", "default"]
    assert out["default"].dtype == result.dtypes["default"] and len(out["default"].iloc[0]) == 16  # fixed-size lists
    np.testing.assert_array_equal(out["id"].to_numpy(), np.arange(120))
    np.testing.assert_allclose(np.stack(out["default"].to_numpy()), loop(registry.module_dirs["text"], text),
                               rtol=1e-6, atol=1e-7)
    assert registry.archive_requests("text-frame") == 1  # two workers, one machine: one download
    assert_loaded_once_per_worker(client, handle, 8)
    tasks = cloudpickle.dumps(dict(result.__dask_graph__()))
    assert b"hubkit.module" not in tasks and handle.encode() in tasks  # the handle travels, never a Module


def test_text_series_array_and_bags_equal_loop(client, registry, client_env):
    handle = registry.publish("text", "text-kinds")
    text = sentences(90, seed=1)
    want = loop(registry.module_dirs["text"], text)

    series = client.compute(hd.map_partitions(handle, dd.from_pandas(pd.Series(text), npartitions=5))).result()
    assert isinstance(series, pd.Series) and series.name == "default"
    np.testing.assert_allclose(np.stack(series.to_numpy()), want, rtol=1e-6, atol=1e-7)

    array = hd.map_partitions(handle, da.from_array(np.array(text, dtype=object), chunks=20), batch_size=8)
    assert array.shape == (90, 16) and array.chunks[0] == (20, 20, 20, 20, 10) and array.dtype == np.float32
    np.testing.assert_allclose(client.compute(array).result(), want, rtol=1e-6, atol=1e-7)

    from distributed import Client

    with Client(client.scheduler.address, set_as_default=False) as by_address:  # an existing scheduler
        plain = by_address.compute(hd.map_partitions(handle, db.from_sequence(text, npartitions=6))).result()
    np.testing.assert_allclose(np.stack(plain), want, rtol=1e-6, atol=1e-7)

    records = db.from_sequence([{"text": t, "n": i} for i, t in enumerate(text)], npartitions=6)
    dicts = client.compute(hd.map_partitions(handle, records, inputs={"sentences": "text"})).result()
    assert [r["n"] for r in dicts] == list(range(90)) and set(dicts[0]) == {"text", "n", "default"}
    np.testing.assert_allclose(np.stack([r["default"] for r in dicts]), want, rtol=1e-6, atol=1e-7)

    assert registry.archive_requests("text-kinds") == 1
    assert_loaded_once_per_worker(client, handle, 5 + 5 + 6 + 6)  # across four jobs


def test_image_array_and_dataframe_equal_loop(client, registry, client_env):
    handle = registry.publish("image", "image")
    pixels = images(30)
    want = loop(registry.module_dirs["image"], pixels)
    array = hd.map_partitions(handle, da.from_array(pixels, chunks=(7, 4, 8, 3)), batch_size=4)
    assert array.shape == (30, 128) and array.chunks[0] == (7, 7, 7, 7, 2)
    np.testing.assert_allclose(client.compute(array).result(), want, rtol=1e-5, atol=1e-6)

    column = pd.Series(list(pixels), dtype=object)
    table = pd.DataFrame({"images": column, "label": np.arange(30) % 3})
    with pytest.raises(hk.FeedError, match="convert-string"):  # dask's default turns the arrays into strings
        hd.map_partitions(handle, dd.from_pandas(table, npartitions=4))
    with dask.config.set({"dataframe.convert-string": False}):
        frame = dd.from_pandas(table, npartitions=4)
    out = client.compute(hd.map_partitions(handle, frame, batch_size=5)).result()
    np.testing.assert_allclose(np.stack(out["default"].to_numpy()), want, rtol=1e-5, atol=1e-6)
    assert registry.archive_requests("image") == 1
    assert_loaded_once_per_worker(client, handle, 5 + 4)


def test_bad_row_is_named_once(client, registry, client_env):
    handle = registry.publish("text", "text-bad-row")
    text: list = sentences(20, seed=2)
    text[13] = None
    series = dd.from_pandas(pd.Series(text, dtype=object), npartitions=4)  # 5 rows per partition
    with pytest.raises(hk.SignatureError) as info:
        client.compute(hd.map_partitions(handle, series, batch_size=2)).result()
    message = str(info.value)
    assert info.value.partition == 2 and info.value.row == 3, message
    assert "partition 2" in message and "row 3 (index label 13)" in message and "sentences=<NA>" in message, message


def test_missing_signature_is_raised_on_the_client(client, registry, client_env, module_dirs):
    handle = registry.publish("text", "text-no-signature")
    series = dd.from_pandas(pd.Series(sentences(10)), npartitions=2)
    expected = r"has no signature 'embed'; available signatures: \['default', 'tokens'\]"
    with pytest.raises(hk.SignatureError, match=expected):
        hd.map_partitions(handle, series, signature="embed")  # from the registry manifest
    with pytest.raises(hk.SignatureError, match=expected):
        hd.map_partitions(module_dirs["text"], series, signature="embed")  # from the module spec
    with pytest.raises(hk.SignatureError, match=r"no output 'pooled'; available outputs: \['default'\]"):
        hd.map_partitions(handle, series, output_key="pooled")
    with pytest.raises(hk.SignatureError, match=r"no graph variant for the tags \['train'\]; available tag sets: \[\[\]\]"):
        hd.map_partitions(handle, series, tags={"train"})
    assert registry.archive_requests("text-no-signature") == 0
    assert all(s["loads"] + s["failed"] == 0 for s in worker_stats(client, handle))  # nothing reached a worker


def test_registry_unreachable_from_the_client(client_env):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    series = dd.from_pandas(pd.Series(sentences(10)), npartitions=2)
    with pytest.raises(hk.DownloadError, match=re.escape(url)):
        hd.map_partitions(f"{url}/acme/text/1", series)


def test_registry_unreachable_from_the_workers(client, registry, client_env, tmp_path):
    private = Registry(str(tmp_path / "registry"), registry.module_dirs)
    handle = private.publish("text", "text-unreachable")
    series = dd.from_pandas(pd.Series(sentences(40)), npartitions=8)
    result = hd.map_partitions(handle, series)  # checked against the manifest while the server is up
    private.server.close()
    with pytest.raises(hk.ResolveError) as info:
        client.compute(result).result()
    message = str(info.value)
    assert isinstance(info.value.partition, int) and f"partition {info.value.partition}" in message, message
    assert "could not load module" in message and handle in message, message
    stats = worker_stats(client, handle)
    assert all(s["failed"] <= 1 and s["loads"] == 0 for s in stats), stats  # later partitions failed fast


def _kill_once(part: pd.DataFrame, marker: str, partition_info=None) -> pd.DataFrame:
    """Kills its worker process the first time it sees partition 3 (after the module ran on it)."""
    if partition_info and partition_info["number"] == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return part


def test_killed_worker_is_recovered_with_identical_results(client, registry, client_env, tmp_path):
    handle = registry.publish("text", "text-kill")
    text = sentences(160, seed=3)
    frame = dd.from_pandas(pd.DataFrame({"sentences": text}), npartitions=8)
    result = hd.map_partitions(handle, frame, batch_size=16)
    clean = client.compute(result).result()
    marker = str(tmp_path / "killed")
    out = client.compute(result.map_partitions(_kill_once, marker, meta=result._meta)).result()
    assert os.path.exists(marker)  # a worker did die mid-job
    assert len(out) == 160
    np.testing.assert_array_equal(np.stack(out["default"].to_numpy()), np.stack(clean["default"].to_numpy()))
    np.testing.assert_array_equal(out["sentences"].to_numpy(), np.array(text, dtype=object))
    assert registry.archive_requests("text-kill") == 1  # the respawned worker found it in the cache
    client.wait_for_workers(2, timeout=60)


def _worker_settings() -> tuple:
    import dask

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get("distributed.worker.profile.enabled"),
            dask.config.get("distributed.admin.tick.interval"))


def test_throughput_config_reaches_the_workers(client):
    import dask

    config = hd.throughput_config()
    for key in config:  # the keys Dask reads (a renamed key would silently do nothing)
        parent, _, leaf = key.rpartition(".")
        assert leaf in dask.config.get(parent)
    assert set(client.run(_worker_settings).values()) == {(None, False, "1s")}
