"""The shared dependency walks: upstream sets and dependencies-first orders."""

import random

import pytest

from hubkit.graph.walk import dependencies_first, upstream


def _random_dag(n: int, seed: int) -> dict[int, list[int]]:
    rng = random.Random(seed)
    return {i: rng.sample(range(i), min(i, rng.randint(0, 3))) for i in range(n)}


@pytest.mark.parametrize("seed", range(5))
def test_every_node_comes_after_its_parents_once(seed):
    edges = _random_dag(200, seed)
    roots = [199, 150, 150, 3]
    order = dependencies_first(roots, edges.__getitem__, ValueError)
    assert len(order) == len(set(order))
    assert set(order) == upstream(roots, edges.__getitem__)
    position = {n: i for i, n in enumerate(order)}
    for node in order:
        assert all(position[p] < position[node] for p in edges[node])


def test_a_cycle_raises_the_callers_error_naming_a_node_on_it():
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}

    class Cycle(Exception):
        pass

    with pytest.raises(Cycle) as err:
        dependencies_first(["d"], edges.__getitem__, Cycle)
    assert err.value.args[0] in {"a", "b", "c"}


def test_a_chain_deeper_than_the_recursion_limit():
    n = 50_000
    order = dependencies_first([n - 1], lambda i: [i - 1] if i else [], ValueError)
    assert order == list(range(n))
