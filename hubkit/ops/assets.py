"""The ``AssetPath`` op: a string scalar holding the current absolute path of a module's asset file.

Attributes: ``filename`` (the file's name inside the module's ``assets/`` directory) and ``source``
(its current absolute path). The module layer rewrites ``source`` when a module is loaded, so the
graph follows the module directory wherever it is. Ops that read an asset (vocabulary tables) take
an ``AssetPath`` tensor as input and read the path once per plan in their ``prepare(node)`` with
:func:`asset_source`.
"""

from __future__ import annotations

import numpy as np

from hubkit.errors import GraphError
from hubkit.graph import Node, Tensor, string
from hubkit.ops.registry import register_op

__all__ = ["asset_source"]


@register_op
class AssetPath:
    """The absolute path of an asset file, as a string scalar."""

    differentiable = False

    def infer(*, filename, source=""):
        return string, ()

    def forward(*, filename, source=""):
        return np.array(source, dtype=object)


def asset_source(tensor_or_node: Tensor | Node) -> str:
    """The absolute path an ``AssetPath`` tensor (or node) currently points at.

    Raises:
        GraphError: the tensor is not produced by an ``AssetPath`` node, or the path is not set.
    """
    node = tensor_or_node.node if isinstance(tensor_or_node, Tensor) else tensor_or_node
    if node.op != "AssetPath":
        raise GraphError(f"Node {node.name!r} is a {node.op}, not an AssetPath; assets must come from add_asset().")
    source = node.attrs.get("source") or ""
    if not source:
        raise GraphError(f"AssetPath node {node.name!r} ({node.attrs.get('filename')!r}) has no file bound to it.")
    return source
