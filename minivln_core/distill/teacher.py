"""The frozen teacher of both distillation stages, kept out of everything that trains the student.

The teacher is held by a plain object, not as an nn.Module attribute. So the Trainer's optimiser,
the `last/` training state and `task.train()` never see it. Its parameters are set to
requires_grad=False, the model stays in eval mode (no dropout), and every call runs under
torch.no_grad(). The teacher can be loaded from any checkpoint the project writes (`models.loading.load_policy`).
"""

from __future__ import annotations

from minivln_core.errors import ConfigError, DataError
from minivln_core.models.config import ModelConfig
from minivln_core.models.policy import DuetPolicy


class FrozenTeacher:
    """A DuetPolicy in eval mode whose parameters take no gradient (not an nn.Module on purpose)."""

    def __init__(self, policy: DuetPolicy, source: str = "teacher"):
        self.policy = policy.eval()
        self.source = source
        for param in self.policy.parameters():
            param.requires_grad_(False)

    @property
    def config(self) -> ModelConfig:
        return self.policy.config

    def check_inputs(self, image_feat_size: int, task: str) -> None:
        """Raise DataError unless the teacher takes these view features and has the task's heads."""
        if self.config.image_feat_size != image_feat_size:
            raise DataError(self.source, f"the teacher takes {self.config.image_feat_size}-d view features but "
                                         f"the world's have {image_feat_size} columns", field="image_feat_size")
        if self.config.has_objects != (task == "reverie"):
            raise DataError(self.source, f"the teacher {'has' if self.config.has_objects else 'lacks'} the "
                                         f"object head but the task is {task}", field="obj_feat_size")

    def check_heads(self, student: ModelConfig) -> None:
        """Raise ConfigError unless head-wise attention distillation can pair every head."""
        if self.config.num_attention_heads != student.num_attention_heads:
            raise ConfigError(f"attention distillation pairs heads one to one: the teacher has "
                              f"{self.config.num_attention_heads} heads, the student "
                              f"{student.num_attention_heads} (set kd_attention=0 or match the heads)")
