"""Worker side of ``hubkit.dask``: the per-process module cache and running one partition in batches.

Each worker process resolves a handle through its usual hubkit cache and loads the ``Module`` once,
keyed by (handle, tags, signature, trainable); every later partition on that process reuses it.
Errors leave here as ``HubkitError``s that name the partition (and the row, for bad input).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from hubkit import HubkitError, SignatureError
from hubkit.dask._signature import Job, TensorDesc

__all__ = ["PartitionError", "cache_info", "clear_cache", "get_module", "run_partition", "timed_task"]

# A failed load is remembered this long, so the other partitions queued on a worker fail fast with the
# same error instead of each retrying an unreachable registry; afterwards the next partition tries again.
FAILURE_TTL = 30.0

_lock = threading.Lock()
_key_locks: dict[tuple, threading.Lock] = {}
_modules: dict[tuple, Any] = {}
_loads: dict[tuple, int] = {}
_hits: dict[tuple, int] = {}
_failed: dict[tuple, int] = {}
_failures: dict[tuple, tuple[float, HubkitError]] = {}
# Work done per key: partitions, rows, and CPU seconds of the task threads (whole partition tasks, and the
# Module calls inside them), so the cost of Dask and of hubkit's glue can be told apart (cache_info).
_work: dict[tuple, dict[str, float]] = {}


def _count(key: tuple, **amounts: float) -> None:
    with _lock:
        work = _work.setdefault(key, {"partitions": 0, "rows": 0, "task_cpu": 0.0, "module_cpu": 0.0})
        for name, amount in amounts.items():
            work[name] += amount


@contextmanager
def timed_task(job: Job) -> Iterator[None]:
    """Adds the CPU time of the calling thread inside the block to ``job``'s ``task_cpu`` (see cache_info)."""
    start = time.thread_time()
    try:
        yield
    finally:
        _count(job.cache_key, task_cpu=time.thread_time() - start)


class PartitionError(HubkitError, RuntimeError):
    """A partition failed on a worker for a reason that is not already a ``HubkitError``.

    Attributes:
        partition: Index of the failing partition.
        row: Position of the failing row inside the partition, or None.
    """

    partition: int | None = None
    row: int | None = None


def _where(partition: int) -> str:
    return f"hubkit.dask: partition {partition} (worker process {os.getpid()} on {socket.gethostname()!r})"


def _located(err: BaseException, message: str, partition: int, row: int | None = None) -> HubkitError:
    """``err``'s class (a HubkitError) or PartitionError with ``message``, and the partition and row attached."""
    cls = type(err) if isinstance(err, HubkitError) else PartitionError
    try:
        new = cls(message)
    except Exception:  # a subclass with another constructor
        new = PartitionError(message)
    new.partition = partition  # type: ignore[attr-defined]
    new.row = row  # type: ignore[attr-defined]
    return new


def _cached(key: tuple) -> Any:
    """The loaded module of ``key`` (counting the hit), or None."""
    with _lock:
        module = _modules.get(key)
        if module is not None:
            _hits[key] = _hits.get(key, 0) + 1
        return module


def get_module(job: Job) -> Any:
    """The process's ``Module`` for ``job`` (resolved and loaded on first use, then reused).

    Raises:
        HubkitError: Resolving or loading failed (remembered for ``FAILURE_TTL`` seconds), or the module
            lacks the signature.
    """
    key = job.cache_key
    module = _cached(key)
    if module is not None:
        return module
    with _lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # threads of one worker wait for a single load
        module = _cached(key)
        if module is not None:
            return module
        failed = _failures.get(key)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_TTL:
            raise failed[1]
        import hubkit

        try:
            module = hubkit.Module(job.handle, trainable=job.trainable, tags=set(job.tags))
            names = module.get_signature_names()
            if job.signature not in names:
                raise SignatureError(
                    f"Module {job.handle!r} has no signature {job.signature!r}; available signatures: {sorted(names)}."
                )
        except HubkitError as exc:
            with _lock:
                _failures[key] = (time.monotonic(), exc)
                _failed[key] = _failed.get(key, 0) + 1
            raise
        with _lock:
            _modules[key] = module
            _loads[key] = _loads.get(key, 0) + 1
            _failures.pop(key, None)
        return module


def cache_info() -> dict[str, Any]:
    """What this process's module cache holds: for tests, logs and ``client.run(hubkit.dask.cache_info)``.

    Returns:
        ``{"pid": int, "modules": [{"handle", "tags", "signature", "trainable", "loads", "hits", "failed",
        "partitions", "rows", "task_cpu", "module_cpu"}, ...]}``: ``loads`` counts how often the module was
        resolved and loaded in this process, ``hits`` how often a partition reused it, ``failed`` how often
        resolving or loading it failed; ``partitions`` and ``rows`` count the work run, ``task_cpu`` is the
        CPU seconds of the partition tasks (thread time: input extraction, batching, the calls and building
        the output) and ``module_cpu`` the part spent in the ``Module`` calls (with their batch slicing). The worker process's CPU
        time beyond ``task_cpu`` is Dask's own (event loop, transfers, serialisation).
    """
    with _lock:
        keys = sorted(set(_loads) | set(_failed))
        modules = [
            {"handle": k[0], "tags": list(k[1]), "signature": k[2], "trainable": k[3], "loads": _loads.get(k, 0),
             "hits": _hits.get(k, 0), "failed": _failed.get(k, 0),
             **_work.get(k, {"partitions": 0, "rows": 0, "task_cpu": 0.0, "module_cpu": 0.0})}
            for k in keys
        ]
    return {"pid": os.getpid(), "modules": modules}


def clear_cache() -> None:
    """Forgets every loaded module, remembered failure and counter of this process."""
    with _lock:
        _modules.clear()
        _loads.clear()
        _hits.clear()
        _failed.clear()
        _failures.clear()
        _work.clear()


def _batch_array(values: Any, desc: TensorDesc) -> Any:
    """One input's values for a batch: an array, rows stacked when each row is itself an array."""
    if desc.row_shape:  # rows are arrays (images, vectors): stack them
        if isinstance(values, np.ndarray) and values.dtype != object:
            return values
        return np.stack([np.asarray(v) for v in values])
    if isinstance(values, np.ndarray):
        return values
    return np.asarray(list(values), dtype=desc.np_dtype if desc.dtype == "string" else None)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _call(module: Any, job: Job, columns: dict[str, Any], start: int, stop: int) -> dict[str, np.ndarray]:
    batch = {name: _batch_array(columns[name][start:stop], job.inputs[name]) for name in job.inputs}
    result = module(batch, signature=job.signature, as_dict=True)
    return {k: np.asarray(result[k]) for k in job.outputs}


def _find_bad_row(module: Any, job: Job, columns: dict[str, Any], start: int, stop: int) -> tuple[int, BaseException] | None:
    """The first row of a failed batch that fails on its own, with its error (None if every row passes alone)."""
    for row in range(start, stop):
        try:
            _call(module, job, columns, row, row + 1)
        except (HubkitError, ValueError, TypeError) as exc:
            return row, exc
    return None


def run_partition(
    job: Job, columns: dict[str, Any], num_rows: int, partition: int, labels: Sequence[Any] | None = None
) -> dict[str, np.ndarray]:
    """Runs the job's signature over ``num_rows`` rows in batches of ``job.batch_size``.

    Args:
        job: The planned job.
        columns: Signature input name -> that input's rows (array or list, ``num_rows`` long).
        num_rows: Rows in the partition.
        partition: The partition's index (named in errors).
        labels: Index labels of the rows (dataframes), named in errors.

    Returns:
        Output key -> array whose first dimension has ``num_rows`` entries.

    Raises:
        HubkitError: The module could not be loaded, a row is bad (partition, row and value are named),
            or an output is not one value per row; the class is the underlying error's, or PartitionError.
    """
    try:
        module = get_module(job)
    except HubkitError as exc:
        raise _located(exc, f"{_where(partition)} could not load module {job.handle!r}: {exc}", partition) from exc
    if num_rows == 0:
        _count(job.cache_key, partitions=1)
        return {k: _empty(d) for k, d in job.outputs.items()}
    results: dict[str, np.ndarray] = {}
    module_cpu = 0.0
    for start in range(0, num_rows, job.batch_size):
        stop = min(start + job.batch_size, num_rows)
        try:
            began = time.thread_time()
            out = _call(module, job, columns, start, stop)
            module_cpu += time.thread_time() - began
        except (HubkitError, ValueError, TypeError) as exc:
            found = _find_bad_row(module, job, columns, start, stop)
            if found is None:
                raise _located(exc, f"{_where(partition)}, rows {start} to {stop - 1}: {exc}", partition) from exc
            row, row_exc = found
            label = "" if labels is None else f" (index label {_short(labels[row])})"
            values = ", ".join(f"{n}={_short(columns[n][row])}" for n in job.inputs)
            message = f"{_where(partition)}, row {row}{label} with {values}: {row_exc}"
            raise _located(row_exc, message, partition, row) from row_exc
        for key, value in out.items():
            if value.ndim == 0 or value.shape[0] != stop - start:
                raise SignatureError(
                    f"{_where(partition)}: signature {job.signature!r} output {key!r} has shape {list(value.shape)} for "
                    f"a batch of {stop - start} rows, so it is not one value per row; choose another output_key."
                )
            if start == 0:
                # One batch is the whole result; otherwise the batches are copied into one array.
                results[key] = value if stop == num_rows else np.empty((num_rows, *value.shape[1:]), value.dtype)
            elif value.shape[1:] != results[key].shape[1:]:
                raise SignatureError(
                    f"{_where(partition)}: signature {job.signature!r} output {key!r} has rows of shape "
                    f"{list(value.shape[1:])} in rows {start} to {stop - 1} but {list(results[key].shape[1:])} in "
                    "the first batch, so the partition's rows cannot form one array; use a batch_size of at least "
                    "the partition's length."
                )
            if stop != num_rows or start != 0:
                results[key][start:stop] = value
    _count(job.cache_key, partitions=1, rows=num_rows, module_cpu=module_cpu)
    return results


def _empty(desc: TensorDesc) -> np.ndarray:
    row = desc.row_shape or ()
    return np.empty((0, *[0 if d is None else d for d in row]), dtype=desc.np_dtype)
