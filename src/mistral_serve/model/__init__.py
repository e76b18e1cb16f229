"""The Mistral transformer in PyTorch: shapes, layers, checkpoints. Imports nothing from the
engine or the server."""

from .args import PRESETS, ModelArgs, preset
from .errors import CheckpointError
from .transformer import Transformer

__all__ = ["PRESETS", "ModelArgs", "preset", "CheckpointError", "Transformer"]
