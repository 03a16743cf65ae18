"""The table of ONNX op translators: ``@translates("Conv")`` registers ``fn(ctx, node) -> outputs``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TRANSLATORS", "translates"]

TRANSLATORS: dict[str, Callable[..., list[Any]]] = {}


def translates(*op_types: str) -> Callable[[Callable[..., list[Any]]], Callable[..., list[Any]]]:
    """Registers the decorated function as the translator of each ONNX ``op_type``."""

    def register(fn: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
        for op_type in op_types:
            if op_type in TRANSLATORS:
                raise TypeError(f"ONNX op {op_type!r} has two translators.")
            TRANSLATORS[op_type] = fn
        return fn

    return register
