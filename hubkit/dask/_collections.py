"""How each Dask collection is cut into partitions, fed to the worker code, and rebuilt from its outputs.

Shape rules (also in docs/scale.md):

- dataframe: a Series feeds a one-input signature and gives a Series (one output) or a DataFrame of the
  output columns; a DataFrame gives the same frame with one column appended per output. An output with
  one value per row (shape ``[None]``) becomes a typed column; a numeric vector per row (shape
  ``[None, dim]`` with ``dim`` known, an embedding) becomes an Arrow ``fixed_size_list<dtype>[dim]``
  column (``pd.ArrowDtype``: one buffer, so serialising a partition costs ~1 ms where an object column
  of 8,192 arrays costs ~90 ms); anything else (more dimensions, an unknown ``dim``, strings) becomes
  an object column holding one NumPy array per row.
- array: rows are the first axis; the result is a dask array with the same row chunks and the output's
  own trailing dimensions (an embedding becomes a 2-D ``[n, dim]`` array).
- bag: a plain record feeds a one-input signature and is replaced by its output (a dict of outputs when
  several are asked for); a dict record keeps its fields and gains one per output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from hubkit import FeedError, SignatureError
from hubkit.dask._signature import Job, TensorDesc, input_sources
from hubkit.dask._worker import run_partition, timed_task

__all__ = ["map_array", "map_bag", "map_dataframe"]


def _vector_width(desc: TensorDesc) -> int | None:
    """``dim`` of a numeric ``[None, dim]`` output (an Arrow fixed-size list column), else None."""
    shape = desc.shape
    if shape is None or len(shape) != 2 or shape[1] is None or shape[1] < 1 or desc.np_dtype.kind not in "biuf":
        return None
    return shape[1]


def _column_dtype(desc: TensorDesc) -> Any:
    """Scalar-per-row outputs keep their dtype, numeric vectors are Arrow fixed-size lists, the rest object."""
    if desc.shape is not None and len(desc.shape) == 1:
        return desc.np_dtype
    width = _vector_width(desc)
    if width is None:
        return np.dtype(object)
    import pandas as pd
    import pyarrow as pa

    return pd.ArrowDtype(pa.list_(pa.from_numpy_dtype(desc.np_dtype), width))


def _empty_column(desc: TensorDesc, name: str) -> Any:
    import pandas as pd

    dtype = _column_dtype(desc)
    if isinstance(dtype, np.dtype):
        return pd.Series(np.empty(0, dtype=dtype), name=name)
    return pd.Series(pd.array([], dtype=dtype), name=name)


def _to_column(values: np.ndarray, desc: TensorDesc, index: Any, name: str, job: Job) -> Any:
    import pandas as pd

    width = _vector_width(desc)
    if width is not None:
        import pyarrow as pa

        if values.ndim != 2 or values.shape[1] != width:
            raise SignatureError(
                f"hubkit.dask: signature {job.signature!r} output {name!r} is declared [None, {width}] but gave rows "
                f"of shape {list(values.shape[1:])}, so it cannot fill its fixed-size list column."
            )
        flat = np.ascontiguousarray(values, dtype=desc.np_dtype).reshape(-1)
        cells = pa.FixedSizeListArray.from_arrays(pa.array(flat), width)  # zero-copy for numeric dtypes
        return pd.Series(pd.arrays.ArrowExtensionArray(cells), index=index, name=name)
    dtype = _column_dtype(desc)
    if dtype.kind != "O" or values.ndim == 1:
        return pd.Series(values.astype(dtype, copy=False), index=index, name=name)
    cells = np.empty(len(values), dtype=object)
    for i in range(len(values)):  # one array per row; assigning a 2-D array at once would broadcast
        cells[i] = values[i]
    return pd.Series(cells, index=index, name=name)


def _dataframe_partition(part: Any, job: Job, sources: dict[str, Any] | None, partition_info: Any = None) -> Any:
    with timed_task(job):
        return _run_dataframe_partition(part, job, sources, partition_info)


def _run_dataframe_partition(part: Any, job: Job, sources: dict[str, Any] | None, partition_info: Any) -> Any:
    import pandas as pd

    number = partition_info["number"] if partition_info else -1
    if sources is None:  # a Series feeding the only input
        columns = {next(iter(job.inputs)): part.to_numpy()}
    else:
        columns = {name: part[col].to_numpy() for name, col in sources.items()}
    outputs = run_partition(job, columns, len(part), number, labels=part.index)
    new = {k: _to_column(v, job.outputs[k], part.index, k, job) for k, v in outputs.items()}
    if sources is None:
        return next(iter(new.values())) if len(new) == 1 else pd.DataFrame(new, index=part.index)
    return part.assign(**new)


def map_dataframe(job: Job, frame: Any, inputs: Any) -> Any:
    """The module's outputs over a dask Series or DataFrame (see the module docstring for the shapes)."""
    import dask.dataframe as dd
    import pandas as pd

    meta_columns = {k: _empty_column(d, k) for k, d in job.outputs.items()}
    if isinstance(frame, dd.Series):
        if inputs is not None:
            raise FeedError(
                "A Series feeds a one-input signature directly; pass inputs only with a DataFrame or a bag of dicts."
            )
        if len(job.inputs) != 1:
            raise FeedError(
                f"Signature {job.signature!r} has several inputs {sorted(job.inputs)}; pass a DataFrame holding them "
                "as columns (and inputs={input name: column} if the names differ)."
            )
        index = frame._meta.index
        if len(meta_columns) == 1:
            meta = next(iter(meta_columns.values())).set_axis(index[:0])
        else:
            meta = pd.DataFrame({k: s.set_axis(index[:0]) for k, s in meta_columns.items()})
        return frame.map_partitions(_dataframe_partition, job, None, meta=meta, enforce_metadata=False)
    columns = list(frame.columns)
    if inputs is None and len(job.inputs) == 1 and len(columns) == 1 and columns[0] not in job.inputs:
        inputs = {next(iter(job.inputs)): columns[0]}  # a one-column frame feeds a one-input signature
    sources = input_sources(job, inputs, columns, "column")
    for name, column in sources.items():
        if job.inputs[name].dtype != "string" and pd.api.types.is_string_dtype(frame._meta[column].dtype) and (
            frame._meta[column].dtype != object
        ):
            raise FeedError(
                f"Column {column!r} has dtype {frame._meta[column].dtype}, but signature {job.signature!r} input "
                f"{name!r} takes {job.inputs[name].dtype} values. A column of arrays must keep dtype object: build the "
                "frame under dask.config.set({'dataframe.convert-string': False}), which stops dask turning object "
                "columns into strings."
            )
    taken = sorted(k for k in job.outputs if k in frame.columns)
    if taken:
        raise FeedError(
            f"The dataframe already has columns {taken}, which the outputs would overwrite; rename them first "
            f"(or rename the outputs afterwards with a Series input)."
        )
    meta = frame._meta.assign(**{k: s.set_axis(frame._meta.index[:0]) for k, s in meta_columns.items()})
    return frame.map_partitions(_dataframe_partition, job, sources, meta=meta, enforce_metadata=False)


def _array_block(block: np.ndarray, job: Job, block_id: Any = None) -> np.ndarray:
    number = block_id[0] if block_id else -1
    name = next(iter(job.inputs))
    with timed_task(job):
        outputs = run_partition(job, {name: block}, len(block), number)
    return next(iter(outputs.values()))


def map_array(job: Job, array: Any, inputs: Any) -> Any:
    """The module's output over a dask array whose first axis holds the rows."""
    from dask.base import tokenize

    if inputs is not None:
        raise FeedError("An array feeds a one-input signature directly; pass inputs only with a DataFrame or a bag of dicts.")
    if len(job.inputs) != 1:
        raise FeedError(
            f"Signature {job.signature!r} has several inputs {sorted(job.inputs)}; an array feeds only one. Use a "
            "DataFrame or a bag of dicts."
        )
    if len(job.outputs) != 1:
        raise SignatureError(f"An array result holds one output; pass one output_key, not {list(job.outputs)}.")
    (name, desc), (key, out) = next(iter(job.inputs.items())), next(iter(job.outputs.items()))
    if array.ndim == 0:
        raise FeedError("A 0-d array has no rows; the first axis of the array must hold the rows.")
    if desc.shape is not None and array.ndim != len(desc.shape):
        raise FeedError(
            f"Signature {job.signature!r} input {name!r} has shape {list(desc.shape)} (rows first); the array has "
            f"{array.ndim} dimensions, shape {list(array.shape)}."
        )
    if out.shape is None:
        raise SignatureError(
            f"Signature {job.signature!r} output {key!r} has unknown rank, so its array chunks cannot be laid out; "
            "use a DataFrame or a bag."
        )
    if array.ndim > 1:  # every row must arrive whole: one chunk along every other axis
        array = array.rechunk({axis: -1 for axis in range(1, array.ndim)})
    chunks = (array.chunks[0], *[(np.nan if d is None else d,) for d in out.shape[1:]])
    return array.map_blocks(
        _array_block,
        job=job,
        dtype=out.np_dtype,
        chunks=chunks,
        drop_axis=list(range(1, array.ndim)),
        new_axis=list(range(1, len(out.shape))),
        meta=np.empty((0,) * len(out.shape), dtype=out.np_dtype),
        name=f"hubkit-{job.signature}-{tokenize(array, job)}",
    )


def _bag_partition(records: Any, job: Job, inputs: Any, number: int) -> list[Any]:
    with timed_task(job):
        return _run_bag_partition(records, job, inputs, number)


def _run_bag_partition(records: Any, job: Job, inputs: Any, number: int) -> list[Any]:
    records = list(records)
    names = list(job.inputs)
    as_dicts = inputs is not None or len(names) > 1 or any(isinstance(r, Mapping) for r in records)
    if as_dicts:
        sources = input_sources(job, inputs, None, "record key")
        columns: dict[str, list[Any]] = {n: [] for n in names}
        for row, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise FeedError(
                    f"hubkit.dask: partition {number}, row {row} is a {type(record).__name__}, not a dict like the "
                    f"other records; records feeding signature {job.signature!r} by key must all be dicts."
                )
            for n in names:
                if sources[n] not in record:
                    raise FeedError(
                        f"hubkit.dask: partition {number}, row {row} has no key {sources[n]!r} for signature "
                        f"{job.signature!r} input {n!r}; the record's keys: {sorted(map(str, record))}."
                    )
                columns[n].append(record[sources[n]])
    else:
        columns = {names[0]: records}
    outputs = run_partition(job, columns, len(records), number)
    keys = list(outputs)
    result = []
    for row, record in enumerate(records):
        values = {k: outputs[k][row] for k in keys}
        if as_dicts:
            clash = sorted(k for k in keys if k in record)
            if clash:
                raise FeedError(
                    f"hubkit.dask: partition {number}, row {row} already has keys {clash}, which the outputs would "
                    "overwrite; rename them first."
                )
            result.append({**record, **values})
        else:
            result.append(values[keys[0]] if len(keys) == 1 else values)
    return result


def map_bag(job: Job, bag: Any, inputs: Any) -> Any:
    """The module's outputs over a dask bag of records (see the module docstring for the record rules)."""
    import dask
    import dask.bag as db

    if inputs is not None:
        input_sources(job, inputs, None, "record key")  # a bad mapping fails here, on the client
    run = dask.delayed(_bag_partition, pure=True)
    parts = bag.to_delayed(optimize_graph=False)
    return db.from_delayed([run(part, job, inputs, i) for i, part in enumerate(parts)])
