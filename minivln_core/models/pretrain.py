"""Pretraining wrapper: the policy plus the MLM and MRC heads (SAP and OG reuse the policy's heads).

The policy is built with `lang2visn_attn=True` so MLM can update the text stream through the
cross-modal layers; `navigation_state_dict` strips those text-side weights and the pretraining
heads so a pretrained model loads into a navigation policy.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from minivln_core.models.config import ModelConfig
from minivln_core.models.policy import DuetPolicy

# Submodule names present only in the pretraining model.
PRETRAIN_ONLY = ("lang_self_attention", "lang_ffn", "mlm_head", "mrc_head")


class MLMHead(nn.Module):
    """BERT LM head: dense -> GELU -> LayerNorm -> decoder tied to the word embeddings (+ bias)."""

    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding):
        super().__init__()
        d = config.hidden_size
        self.dense = nn.Linear(d, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.word_embeddings = word_embeddings  # shared module: the decoder weight is tied
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(M, D) masked positions -> (M, vocab) logits."""
        x = self.LayerNorm(F.gelu(self.dense(hidden)))
        return x @ self.word_embeddings.weight.t() + self.bias


class MRCHead(nn.Module):
    """Masked region classification: Linear -> ReLU -> LayerNorm -> Linear(D -> classes)."""

    def __init__(self, config: ModelConfig, num_classes: int):
        super().__init__()
        d = config.hidden_size
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.LayerNorm(d, eps=config.layer_norm_eps),
                                 nn.Linear(d, num_classes))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden)


class DuetPretrainModel(nn.Module):
    """DuetPolicy (with the text-side cross-modal stream) plus MLM and MRC heads."""

    def __init__(self, config: ModelConfig, mrc_classes: int):
        super().__init__()
        if mrc_classes < 1:
            raise ValueError(f"mrc_classes must be >= 1, got {mrc_classes}")
        self.config = replace(config, lang2visn_attn=True)
        self.mrc_classes = mrc_classes
        self.policy = DuetPolicy(self.config)
        self.mlm_head = MLMHead(self.config, self.policy.embeddings.word_embeddings)
        self.mrc_head = MRCHead(self.config, mrc_classes)
        self.mlm_head.apply(self.policy._init_weights)
        self.mrc_head.apply(self.policy._init_weights)

    def num_parameters(self) -> int:
        """Unique parameters (the tied decoder counts once)."""
        return sum(p.numel() for p in self.parameters())

    def navigation_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of the navigation policy alone (text-side stream and pretraining heads dropped)."""
        return {k: v for k, v in self.policy.state_dict().items()
                if not any(f".{name}." in f".{k}" for name in PRETRAIN_ONLY)}

    def to_policy(self) -> DuetPolicy:
        """A navigation DuetPolicy holding the pretrained weights."""
        policy = DuetPolicy(replace(self.config, lang2visn_attn=False))
        policy.load_state_dict(self.navigation_state_dict(), strict=True)
        return policy
