"""Layer 3: variables, the executor (``Session``) and reverse-mode autodiff."""

from hubkit.runtime.executor import Session
from hubkit.runtime.gradients import IndexedSlices, gradients
from hubkit.runtime.variables import Variable

__all__ = ["IndexedSlices", "Session", "Variable", "gradients"]
