"""Training: optimizers (``hubkit.train.Adam(1e-3).minimize(loss)``) and the global step."""

from hubkit.format.checkpoint_io import CheckpointReader, latest_checkpoint, list_variables, load_checkpoint
from hubkit.train.checkpoint import Checkpoint, CheckpointManager, CheckpointStatus
from hubkit.train.export_model import export_model_as_module
from hubkit.train.exporter import LatestModuleExporter
from hubkit.train.functional import Input, InputLayer
from hubkit.train.model import Model
from hubkit.train.optimizers import (
    Adagrad,
    Adam,
    GradientDescent,
    Momentum,
    Optimizer,
    RMSProp,
    create_global_step,
    get_global_step,
)
from hubkit.train.saver import Saver
from hubkit.train.training import History

__all__: list[str] = [
    "Adagrad",
    "Adam",
    "Checkpoint",
    "CheckpointManager",
    "CheckpointReader",
    "CheckpointStatus",
    "GradientDescent",
    "History",
    "Input",
    "InputLayer",
    "LatestModuleExporter",
    "Model",
    "Momentum",
    "Optimizer",
    "RMSProp",
    "Saver",
    "create_global_step",
    "export_model_as_module",
    "get_global_step",
    "latest_checkpoint",
    "list_variables",
    "load_checkpoint",
]
# Names lifted into the top-level hubkit namespace.
__top_level__: list[str] = [
    "Checkpoint",
    "CheckpointManager",
    "Input",
    "LatestModuleExporter",
    "Model",
    "export_model_as_module",
]
