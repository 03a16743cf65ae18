"""hubkit: publish and reuse pieces of machine-learning models, TensorFlow-Hub style, on NumPy.

The public API is re-exported here through ``__all__``; everything else is private. Each
subpackage lists the names it lifts to the top level in its ``__top_level__``.
"""

from hubkit import graph as _graph
from hubkit import hub as _hub
from hubkit import initializers, layers, losses, nn, regularizers, text, train  # namespaces
from hubkit import module as _module
from hubkit import ops as _ops
from hubkit import runtime as _runtime
from hubkit.errors import *  # noqa: F403
from hubkit.errors import __all__ as _errors_all
from hubkit.graph import *  # noqa: F403
from hubkit.graph import bool_ as bool  # hubkit.bool, as tf.bool
from hubkit.ops import *  # noqa: F403
from hubkit.runtime import *  # noqa: F403

__version__ = "0.1.0"

_lifted: list[str] = []
for _pkg in (_module, _hub, layers, train, text):
    for _name in _pkg.__top_level__:
        globals()[_name] = getattr(_pkg, _name)
        _lifted.append(_name)

__all__ = [
    *_errors_all,
    *_graph.__all__,
    *_ops.__all__,
    *_runtime.__all__,
    *_lifted,
    "__version__",
    "bool",
    "initializers",
    "layers",
    "losses",
    "nn",
    "regularizers",
    "text",
    "train",
]
