"""``PlanStep``: one step of a compiled plan (shared by the executor and the fusion pass)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from hubkit.graph import Node

__all__ = ["PlanStep"]


class PlanStep(NamedTuple):
    """One step of a plan: call ``fn(*values[in_slots], **kwargs)``, store into ``out_slots``, free ``frees``.

    A tuple, so the run loop unpacks it at tuple speed.
    """

    fn: Callable[..., Any]  # the op's kernel, or a fused chain
    kwargs: dict[str, Any]  # the node's attributes (and what the op's ``prepare`` added)
    in_slots: tuple[int, ...]
    out_slots: tuple[int, ...]
    frees: tuple[int, ...]  # slots whose last reader this step is
    node: Node  # the graph node it runs (named in errors)
