"""``embedding_lookup`` over a list of parts (a partitioned variable), with TF1's "mod" and "div" strategies.

Each id is routed to one part and a row inside it; every part gathers (masked) rows and the results
are selected back into place. Built from primitives (gather, where, integer division), so the
gradient with respect to each part is the gather's sparse one.
"""

from __future__ import annotations

from typing import Any

from hubkit.errors import GraphError
from hubkit.graph import Tensor, int64
from hubkit.ops._helpers import as_tensor
from hubkit.ops.elementwise import cast, equal, greater_equal, less, logical_and, subtract, where, zeros_like
from hubkit.ops.integer import floordiv, floormod
from hubkit.ops.shape import expand_dims, gather

__all__ = ["concat_parts", "partitioned_gather"]


def _rows(part: Any) -> int:
    shape = getattr(part, "shape", None)
    if shape is None or not shape or shape[0] is None:
        raise GraphError(f"embedding_lookup: every part needs a known number of rows; {part!r} has shape {shape}.")
    return int(shape[0])


def _route(ids: Tensor, sizes: list[int], strategy: str) -> tuple[Tensor, Tensor]:
    """(part index, row inside the part) of each id."""
    n = len(sizes)
    if strategy == "mod":
        return floormod(ids, n), floordiv(ids, n)
    vocab = sum(sizes)
    base, extra = divmod(vocab, n)
    threshold = extra * (base + 1)
    big = less(ids, threshold)
    part_big = floordiv(ids, base + 1)
    row_big = floormod(ids, base + 1)
    if base == 0:
        return part_big, row_big
    rest = subtract(ids, threshold)
    return where(big, part_big, floordiv(rest, base) + extra), where(big, row_big, floormod(rest, base))


def partitioned_gather(parts: list[Any], ids: Any, strategy: str, name: str) -> Tensor:
    """Rows of the virtual concatenation of ``parts`` selected by ``ids`` (see module docstring)."""
    sizes = [_rows(p) for p in parts]
    if strategy == "mod":
        expected = [len(range(i, sum(sizes), len(sizes))) for i in range(len(sizes))]
        if sizes != expected:
            raise GraphError(f"embedding_lookup: parts of {sizes} rows cannot hold a 'mod' partition ({expected}).")
    ids_t = as_tensor(ids)
    if not ids_t.dtype.is_integer:
        raise GraphError(f"embedding_lookup: ids must be integers, got {ids_t.dtype.name}.")
    ids64 = cast(ids_t, int64)
    part_of, row_of = _route(ids64, sizes, strategy)
    out = None
    for i, part in enumerate(parts):
        mine = logical_and(equal(part_of, i), greater_equal(ids64, 0))
        rows = gather(part, where(mine, row_of, zeros_like(row_of)), name=f"{name}_part_{i}")
        mask = mine
        extra_dims = None if rows.shape is None or ids64.shape is None else len(rows.shape) - len(ids64.shape)
        for _ in range(extra_dims or 0):
            mask = expand_dims(mask, -1)
        picked = where(mask, rows, zeros_like(rows))
        out = picked if out is None else out + picked
    assert out is not None
    return out


def concat_parts(parts: list[Any], ids: Any, strategy: str) -> tuple[Tensor, Tensor]:
    """(the parts concatenated, ``ids`` renumbered to rows of it) for ops that need one table."""
    from hubkit.graph import constant
    from hubkit.ops.shape import concat

    if strategy not in ("div", "mod"):
        raise GraphError(f"unknown partition_strategy {strategy!r}; expected ['div', 'mod'].")
    sizes = [_rows(p) for p in parts]
    table = concat([as_tensor(p) for p in parts], axis=0)
    ids64 = cast(as_tensor(ids), int64)
    if strategy == "div" or len(parts) == 1:
        return table, ids64
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    with table.graph.as_default():
        offsets_t = constant(offsets, dtype=int64)
    part, row = _route(ids64, sizes, strategy)
    return table, gather(offsets_t, part) + row
