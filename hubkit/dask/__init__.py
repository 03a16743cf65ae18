"""Run hubkit modules inside Dask: ``hubkit.dask.map_partitions(handle, collection)``.

The pattern is handle -> per-worker module -> batches: the client checks the call once (the signature
comes from the registry manifest, or else from the module spec), only the *handle* travels to the
workers, and each worker process resolves it through its usual hubkit cache and loads the ``Module``
once (:func:`cache_info` shows the per-process cache). Partitions then run through ``Module.__call__``
in batches of ``batch_size`` rows. See docs/scale.md.

Needs the ``dask`` extra (``pip install 'hubkit-ml[dask]'``); ``import hubkit`` never imports this package.

>>> import os, tempfile
>>> import dask.array as da
>>> import hubkit as hk
>>> import hubkit.dask
>>> def module_fn():
...     x = hk.placeholder(hk.float32, [None, 2], name="x")
...     hk.add_signature(inputs=x, outputs=x * 2.0)
>>> with tempfile.TemporaryDirectory() as tmp:
...     hk.Module(hk.create_module_spec(module_fn)).export(os.path.join(tmp, "double"))
...     doubled = hubkit.dask.map_partitions(os.path.join(tmp, "double"), da.ones((3, 2), chunks=2))
...     print(doubled.compute(scheduler="sync"))
[[2. 2.]
 [2. 2.]
 [2. 2.]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:
    import dask  # noqa: F401
    import dask.array as _da
    import dask.bag as _db
    import dask.dataframe as _dd
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"hubkit.dask needs dask[array,bag,dataframe] and distributed: pip install 'hubkit-ml[dask]' ({_exc})."
    ) from _exc

from hubkit import FeedError
from hubkit.dask._collections import map_array, map_bag, map_dataframe
from hubkit.dask._signature import Job, plan_job
from hubkit.dask._worker import PartitionError, cache_info, clear_cache

__all__ = ["PartitionError", "cache_info", "clear_cache", "map_partitions", "throughput_config"]


def throughput_config() -> dict[str, Any]:
    """Dask settings for batch inference throughput, for the worker processes of a cluster about to start.

    ``dask.config.set(hubkit.dask.throughput_config())`` before ``LocalCluster(...)`` starts workers (keep
    the settings in force while the cluster lives: a nanny reads them again when it respawns a worker)

    - without Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``), so glibc
      keeps its adaptive defaults, as in any Python process: with the setting, every large temporary of a
      ``Module`` call is page-faulted in again on each call (20-45% more CPU for a text-embedding module);
    - without the statistical profiler (``distributed.worker.profile.enabled``), which samples the task
      thread every 10 ms (~5-7% of a worker's CPU here);
    - with the event loop's responsiveness check every second instead of every 20 ms
      (``distributed.admin.tick.interval``, a diagnostic that takes the GIL from the task thread on each
      tick): an idle worker then uses ~5 instead of ~18 ms of CPU per second.

    The price: a worker keeps freed memory for reuse (tens of MB) instead of returning it at once, the
    dashboard shows no profile, and a blocked event loop is noticed within a second rather than 20 ms.
    See docs/scale.md ("Throughput").
    """
    return {
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.worker.profile.enabled": False,
        "distributed.admin.tick.interval": "1s",
    }


def map_partitions(
    handle: Any,
    collection: Any,
    signature: str = "default",
    output_key: str | Sequence[str] | None = None,
    batch_size: int = 1024,
    inputs: str | Mapping[str, str] | None = None,
    *,
    tags: Any = None,
    trainable: bool = False,
) -> Any:
    """Applies a module signature to every row of a Dask collection, in batches, on the workers.

    Each worker process loads the module once (per handle, tags, signature and trainable) and reuses
    it for every partition it runs; the ``Module`` is never pickled. The call is checked on the client
    before anything is submitted, so a missing signature or output fails once, here.

    Shape rules:

    - ``dask.dataframe.Series`` -> a Series named after the output (a DataFrame of output columns when
      ``output_key`` lists several). ``DataFrame`` -> the same frame plus one column per output.
      An output of one value per row (shape ``[None]``) becomes a typed column; a numeric vector per
      row (an embedding ``[None, dim]``, ``dim`` known) becomes an Arrow ``fixed_size_list<dtype>[dim]``
      column (``pd.ArrowDtype``; ``col.to_numpy()`` gives the row vectors as NumPy arrays,
      ``np.stack(col.to_numpy())`` the matrix, ``col.iloc[i]`` a list); anything else with more
      dimensions becomes an object column holding one NumPy array per row. For a 2-D array of
      embeddings, pass an array (``series.to_dask_array(lengths=True)``).
    - ``dask.array.Array`` (rows on the first axis) -> an array with the same row chunks and the
      output's trailing dimensions: an embedding becomes a 2-D ``[n, dim]`` array.
    - ``dask.bag.Bag`` -> a bag with the same partitions: a plain record (a sentence, an image array)
      is replaced by its output (a dict of outputs when several are asked for); a dict record gains
      one key per output. Per-row outputs are NumPy arrays or NumPy scalars.

    Args:
        handle: The module handle (path or URL) every worker resolves; not a loaded ``Module``.
        collection: A dask DataFrame, Series, Array or Bag.
        signature: The signature to run.
        output_key: The output to return (default ``"default"``), or a list of outputs.
        batch_size: Rows per ``Module`` call.
        inputs: Which column (DataFrame) or record key (bag of dicts) feeds each signature input:
            ``{input name: column}``, or a column name for a one-input signature. By default the
            columns or keys named like the inputs (or the only column of a one-column frame).
        tags: Tags of the graph variant to load (default: the untagged one).
        trainable: Passed to ``Module``; part of the per-worker cache key.

    Returns:
        A lazy collection of the same kind (see the shape rules); call ``.compute()`` or persist it.

    Raises:
        ResolveError: ``handle`` is a ``Module``/``ModuleSpec`` or not a handle, or the client cannot resolve it.
        SignatureError: No such signature, tags or output; a scalar output; a bad ``batch_size``.
        FeedError: The collection kind is not supported, or ``inputs`` does not match the signature or
            the columns.

    Errors on a worker (the registry unreachable from it, a bad row) arrive as ``HubkitError``s whose
    message names the partition (and the row and its value), with ``partition`` and ``row`` attributes.
    """
    if isinstance(collection, (_dd.DataFrame, _dd.Series)):
        apply: Callable[[Job, Any, Any], Any] = map_dataframe
    elif isinstance(collection, _da.Array):
        apply = map_array
    elif isinstance(collection, _db.Bag):
        apply = map_bag
    else:
        kind = f"{type(collection).__module__}.{type(collection).__name__}"
        raise FeedError(
            f"hubkit.dask.map_partitions takes a dask Array, Bag, DataFrame or Series, got {kind}; for data in "
            "memory, call the Module directly or wrap it with dask (dask.dataframe.from_pandas, "
            "dask.array.from_array, dask.bag.from_sequence)."
        )
    job = plan_job(handle, signature, output_key, batch_size, tags, trainable)
    return apply(job, collection, inputs)
