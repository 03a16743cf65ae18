"""hubkit: publish and reuse pieces of machine-learning models, TensorFlow-Hub style, on NumPy.

The public API is re-exported here through ``__all__``; everything else is private. Each
subpackage lists the names it lifts to the top level in its ``__top_level__``.
"""

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    # mypy reads only literal ``__all__`` lists, so it cannot follow the computed ones of
    # hubkit.ops.api and hubkit.ops, nor the ``__top_level__`` loop below: these imports show it the
    # same names, as explicit re-exports (tests/test_type_exports.py keeps them in step at runtime).
    from hubkit.hub import publish as publish
    from hubkit.hub import register_resolver as register_resolver
    from hubkit.hub import registry_latest as registry_latest
    from hubkit.hub import resolve as resolve
    from hubkit.hub import unregister_resolver as unregister_resolver
    from hubkit.layers import HubLayer as HubLayer
    from hubkit.module import Module as Module
    from hubkit.module import ModuleSpec as ModuleSpec
    from hubkit.module import add_asset as add_asset
    from hubkit.module import add_signature as add_signature
    from hubkit.module import attach_message as attach_message
    from hubkit.module import convert as convert
    from hubkit.module import create_module_spec as create_module_spec
    from hubkit.module import get_expected_image_size as get_expected_image_size
    from hubkit.module import get_num_image_channels as get_num_image_channels
    from hubkit.module import load_module_spec as load_module_spec
    from hubkit.ops.conv import *  # noqa: F403
    from hubkit.ops.elementwise import *  # noqa: F403
    from hubkit.ops.nn import *  # noqa: F403
    from hubkit.ops.reduce import *  # noqa: F403
    from hubkit.ops.shape import *  # noqa: F403
    from hubkit.ops.state import assign as assign
    from hubkit.ops.state import assign_add as assign_add
    from hubkit.ops.state import assign_sub as assign_sub
    from hubkit.ops.state import group as group
    from hubkit.ops.state import scatter_sub as scatter_sub
    from hubkit.ops.text import *  # noqa: F403
    from hubkit.train import Checkpoint as Checkpoint
    from hubkit.train import CheckpointManager as CheckpointManager
    from hubkit.train import Input as Input
    from hubkit.train import LatestModuleExporter as LatestModuleExporter
    from hubkit.train import Model as Model
    from hubkit.train import export_model_as_module as export_model_as_module

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
