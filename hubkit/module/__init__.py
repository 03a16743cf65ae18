"""Layer 4: defining modules, instantiating and calling them, exporting and loading the on-disk format."""

from hubkit.module.assets import add_asset
from hubkit.module.builder import add_signature, attach_message
from hubkit.module.convert import convert
from hubkit.module.create import create_module_spec
from hubkit.module.eval_function import (
    eval_function_for_module,
    global_variables_initializer,
    local_variables_initializer,
    tables_initializer,
)
from hubkit.module.image_util import attach_image_module_info, get_expected_image_size, get_num_image_channels
from hubkit.module.loader import load_module_spec
from hubkit.module.module import Module
from hubkit.module.signatures import TensorInfo
from hubkit.module.spec import ModuleSpec

__all__ = [
    "Module",
    "ModuleSpec",
    "TensorInfo",
    "add_asset",
    "add_signature",
    "attach_image_module_info",
    "attach_message",
    "convert",
    "create_module_spec",
    "eval_function_for_module",
    "get_expected_image_size",
    "get_num_image_channels",
    "global_variables_initializer",
    "load_module_spec",
    "local_variables_initializer",
    "tables_initializer",
]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = [
    "Module",
    "ModuleSpec",
    "add_asset",
    "add_signature",
    "attach_message",
    "convert",
    "create_module_spec",
    "eval_function_for_module",
    "get_expected_image_size",
    "get_num_image_channels",
    "global_variables_initializer",
    "load_module_spec",
    "local_variables_initializer",
    "tables_initializer",
]
