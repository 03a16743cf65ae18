"""Layer 3: variables, the executor (``Session``) and reverse-mode autodiff."""

from hubkit.runtime.executor import Session
from hubkit.runtime.gradients import IndexedSlices, gradients
from hubkit.runtime.scopes import AUTO_REUSE, VariableScope, get_variable, get_variable_scope, variable_scope
from hubkit.runtime.variables import Variable

__all__ = [
    "AUTO_REUSE",
    "IndexedSlices",
    "Session",
    "Variable",
    "VariableScope",
    "get_variable",
    "get_variable_scope",
    "gradients",
    "variable_scope",
]
