"""What a ``module_fn`` calls while ``create_module_spec`` runs it: ``add_signature``, ``attach_message``.

The module being defined is the graph's :class:`ModuleBuildState` (``graph.state_for``), so these
functions need no global registry and fail clearly outside a ``module_fn``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import any_pb2

from hubkit.errors import SignatureError
from hubkit.graph import Graph, Tensor, get_default_graph
from hubkit.module.signatures import expand_composites

__all__ = ["ModuleBuildState", "ModuleBuilder", "add_signature", "attach_message", "current_builder"]

_ATTACHMENT_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")
_SIGNATURE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class ModuleBuilder:
    """The signatures and attached messages of the module variant being defined in one graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.signatures: dict[str, tuple[dict[str, Tensor], dict[str, Tensor]]] = {}
        self.attachments: dict[str, any_pb2.Any] = {}


class ModuleBuildState:
    """Per-graph state: the builder of the module variant ``module_fn`` is defining in the graph, if any."""

    def __init__(self) -> None:
        self.builder: ModuleBuilder | None = None


def current_builder(what: str) -> ModuleBuilder:
    """The builder of the default graph; refuses calls outside ``create_module_spec``."""
    builder = get_default_graph().state_for(ModuleBuildState).builder
    if builder is None:
        raise SignatureError(f"{what}() must be called inside a module_fn run by hubkit.create_module_spec().")
    return builder


def _as_dict(value: Any, what: str, sig: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        out = dict(value)
    else:
        out = {"default": value}
    for key in out:
        if not isinstance(key, str) or not _SIGNATURE_KEY.match(key):
            raise SignatureError(
                f"Signature {sig!r} has the invalid {what} name {key!r}; use letters, digits, '_', '.' and '-'."
            )
    return out


def add_signature(name: str | None = None, inputs: Any = None, outputs: Any = None) -> None:
    """Adds a signature to the module being defined (call it inside ``module_fn``).

    Args:
        name: signature name; ``"default"`` when None. A repeated name replaces the earlier signature.
        inputs: a placeholder (meaning ``{"default": placeholder}``) or a dict name -> placeholder.
        outputs: a tensor (meaning ``{"default": tensor}``) or a dict name -> tensor.

    Raises:
        SignatureError: called outside ``module_fn``, an input that is not a placeholder, one
            placeholder under two input names, or a value that is not a tensor of the module's graph.

    >>> import hubkit as hk
    >>> def module_fn():
    ...     x = hk.placeholder(hk.float32, [None, 2])
    ...     hk.add_signature(inputs=x, outputs=x * 2.0)
    >>> hk.create_module_spec(module_fn).get_signature_names()
    ['default']
    """
    builder = current_builder("add_signature")
    name = "default" if name is None else name
    if not isinstance(name, str) or not _SIGNATURE_KEY.match(name):
        raise SignatureError(f"Invalid signature name {name!r}; use letters, digits, '_', '.' and '-'.")
    ins = expand_composites(_as_dict(inputs, "input", name))  # a SparseTensor/RaggedTensor: "x/<component>"
    outs = expand_composites(_as_dict(outputs, "output", name))
    keys_of: dict[str, str] = {}
    for key, t in ins.items():
        if not isinstance(t, Tensor) or t.graph is not builder.graph:
            raise SignatureError(f"Signature {name!r} input {key!r} must be a placeholder of the module, got {t!r}.")
        if t.node.op != "Placeholder":
            raise SignatureError(
                f"Signature {name!r} input {key!r} must be a placeholder, but {t.name!r} is a {t.node.op}."
            )
        if t.name in keys_of:
            first, second = sorted((keys_of[t.name], key))
            raise SignatureError(
                f"Signature {name!r} inputs {first!r} and {second!r} are the same placeholder {t.name!r}; "
                "each input needs its own placeholder."
            )
        keys_of[t.name] = key
    for key, t in list(outs.items()):
        if hasattr(t, "_as_graph_tensor") and not isinstance(t, Tensor):
            t = outs[key] = t._as_graph_tensor(builder.graph)
        if not isinstance(t, Tensor) or t.graph is not builder.graph:
            raise SignatureError(f"Signature {name!r} output {key!r} must be a tensor of the module, got {t!r}.")
    builder.signatures[name] = (ins, outs)


def attach_message(key: str, message: Any) -> None:
    """Attaches a protobuf message to the module variant being defined (call it inside ``module_fn``).

    Read it back with ``spec.get_attached_message(key, message_type)``.

    Args:
        key: matches ``[a-zA-Z][a-zA-Z0-9_]*``; a repeated key replaces the earlier message.
        message: any protobuf message.

    Raises:
        SignatureError: called outside ``module_fn``, an invalid key, or not a protobuf message.
    """
    builder = current_builder("attach_message")
    if not isinstance(key, str) or not _ATTACHMENT_KEY.match(key):
        raise SignatureError(f"Invalid attachment key {key!r}; it must match [a-zA-Z][a-zA-Z0-9_]*.")
    if not hasattr(message, "DESCRIPTOR") or not hasattr(message, "SerializeToString"):
        raise SignatureError(f"attach_message({key!r}) needs a protobuf message, got {type(message).__name__}.")
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    builder.attachments[key] = packed
