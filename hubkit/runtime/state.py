"""What the runtime attaches to a graph: variable bindings, variable scopes and created variables.

One typed object per graph (``graph.state_for(RuntimeGraphState)``); the graph layer knows nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hubkit.graph import Graph, Tensor

if TYPE_CHECKING:
    from hubkit.runtime.variables import Variable

__all__ = ["RuntimeGraphState", "runtime_state"]


@dataclass
class RuntimeGraphState:
    """The runtime's per-graph state.

    Attributes:
        read_tensors: ``id(Variable)`` -> the tensor reading it in this graph (one read node each).
        scope_stack: the open variable scopes, innermost last.
        scope_counts: full variable-scope name -> how often it was opened (for unique default names).
        variable_store: full name -> the variable ``get_variable`` made in this graph.
    """

    read_tensors: dict[int, Tensor] = field(default_factory=dict)
    scope_stack: list[Any] = field(default_factory=list)
    scope_counts: dict[str, int] = field(default_factory=dict)
    variable_store: dict[str, Variable] = field(default_factory=dict)


def runtime_state(graph: Graph) -> RuntimeGraphState:
    """``graph``'s runtime state (created on first use)."""
    return graph.state_for(RuntimeGraphState)
