"""Running a test's work from several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def from_threads(work: Callable[[int], None], count: int = 4, timeout: float = 120.0) -> None:
    """``work(k)`` for ``k`` in ``range(count)``, each on its own thread, all at once; the first exception one of
    them raised is raised here, and a thread still running after ``timeout`` seconds fails the test."""
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            work(k)
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]


def stolen_pool():
    """A worker pool (hubkit/ops/_worker_pool.py) whose worker never starts: the caller runs every job, its own and
    the one it posted for the worker (which it steals back)."""
    from hubkit.ops import _worker_pool

    pool = _worker_pool.Pool()
    pool.enabled = False
    return pool
