"""``eval_function_for_module`` and the TF1 initializer ops, for code written against TF Hub's TF1 API.

hubkit variables hold their values themselves (made from their initializers on first read) and a
module's tables are ready when it loads, so ``global_variables_initializer()`` and
``tables_initializer()`` are ops that do nothing: ``sess.run(init)`` in TF1 code keeps working.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from hubkit.graph import Node
from hubkit.module.module import Module

__all__ = ["eval_function_for_module", "global_variables_initializer", "local_variables_initializer",
           "tables_initializer"]


@contextlib.contextmanager
def eval_function_for_module(spec: Any, tags: Any = None) -> Iterator[Callable[..., Any]]:
    """Yields a function running the module eagerly: ``f(inputs, signature=None, as_dict=None)``.

    Args:
        spec: a ModuleSpec, a module directory or a handle.
        tags: the graph variant to use.

    >>> import numpy as np, hubkit as hk
    >>> def module_fn():
    ...     x = hk.placeholder(hk.float32, [None])
    ...     hk.add_signature(inputs=x, outputs=2.0 * x)
    >>> with hk.eval_function_for_module(hk.create_module_spec(module_fn)) as f:
    ...     f([1.0, 2.0])
    array([2., 4.], dtype=float32)
    """
    module = Module(spec, tags=tags)

    def call(inputs: Any = None, signature: str | None = None, as_dict: bool | None = None) -> Any:
        return module(inputs, signature=signature, as_dict=as_dict)

    yield call


def _no_op(name: str) -> Node:
    from hubkit.ops.state import group

    return group(name=name)


def global_variables_initializer() -> Node:
    """An op doing nothing: variables initialize themselves on first read (TF1's ``init`` op)."""
    return _no_op("init")


def local_variables_initializer() -> Node:
    """An op doing nothing (hubkit has no local-variable collection to initialize)."""
    return _no_op("init_local")


def tables_initializer() -> Node:
    """An op doing nothing: vocabulary tables are built when their module loads."""
    return _no_op("init_all_tables")
