"""DUET policy (teacher) and MiniVLN student: one class, named presets, safetensors checkpoints."""

from minivln_core.models.config import ModelConfig
from minivln_core.models.policy import DuetPolicy, NavigationInputs, NavigationOutputs
from minivln_core.models.presets import PRESETS, preset

__all__ = ["ModelConfig", "DuetPolicy", "NavigationInputs", "NavigationOutputs", "PRESETS", "preset"]
