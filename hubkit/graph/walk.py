"""The one dependency walk: everything upstream of some nodes, for any kind of node.

The executor (what a run needs), autodiff (what a value depends on) and the importers (which
serialized nodes a signature needs, and in which order to translate them) all ask the same question of
different node types and edges; they pass their own ``parents`` function. The walks are iterative, so
graphs of any depth work.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

__all__ = ["dependencies_first", "upstream"]

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


def dependencies_first(roots: Iterable[N], parents: Callable[[N], Iterable[N]],
                       on_cycle: Callable[[N], Exception]) -> list[N]:
    """``roots`` and everything upstream of them, each node after all of its ``parents``.

    A cycle raises ``on_cycle(node)`` for a node on it.

    >>> edges = {"c": ["b", "a"], "b": ["a"], "a": []}
    >>> dependencies_first(["c"], edges.__getitem__, ValueError)
    ['a', 'b', 'c']
    """
    order: list[N] = []
    done: set[N] = set()
    visiting: set[N] = set()
    for root in roots:
        if root in done or root in visiting:
            continue
        visiting.add(root)
        stack = [(root, iter(parents(root)))]
        while stack:
            node, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                visiting.discard(node)
                done.add(node)
                order.append(node)
            elif child in visiting:
                raise on_cycle(child)
            elif child not in done:
                visiting.add(child)
                stack.append((child, iter(parents(child))))
    return order
