"""The one dependency walk: everything upstream of some nodes, for any kind of node.

The executor (what a run needs), autodiff (what a value depends on) and the importer (which
serialized nodes a signature needs) all ask the same question of different node types and edges;
they pass their own ``parents`` function. The walk is iterative, so graphs of any depth work.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

__all__ = ["upstream"]

N = TypeVar("N", bound=Hashable)


def upstream(roots: Iterable[N], parents: Callable[[N], Iterable[N]]) -> set[N]:
    """``roots`` and every node reachable from them through ``parents``, transitively.

    >>> edges = {"c": ["b"], "b": ["a"], "a": []}
    >>> sorted(upstream(["c"], edges.__getitem__))
    ['a', 'b', 'c']
    """
    seen: set[N] = set()
    stack = list(roots)
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(parents(n))
    return seen
