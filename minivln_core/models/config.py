"""The one model configuration shared by the DUET teacher and the MiniVLN student."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from minivln_core.config import Validated
from minivln_core.errors import ConfigError

# Location feature of a panorama token: 4 angle values (sin/cos heading, sin/cos elevation)
# + 3 box values ([1, 1, 1] for a view; [h/480, w/640, area ratio] for an object).
LOC_FEAT_SIZE = 7
# Position feature of a map node relative to the agent: 4 angle values + euclid/30, graph/30, hops/10.
POS_FEAT_SIZE = 7
# Instruction-grounding columns (agent/grounding.py): per 384-wide MiniLM name chunk of a token's
# features, its best word similarity over the instruction and over each third of it.
GROUND_CHUNK = 384
GROUND_COLUMNS_PER_CHUNK = 4


def ground_columns(feature_size: int) -> int:
    """Grounding columns G for view features `feature_size` wide (4 per 384-wide name chunk)."""
    if feature_size <= 0 or feature_size % GROUND_CHUNK:
        raise ConfigError(f"grounding needs MiniLM object-name features ({GROUND_CHUNK} columns per chunk); "
                          f"these view features have {feature_size} columns")
    return GROUND_COLUMNS_PER_CHUNK * (feature_size // GROUND_CHUNK)


@dataclass(frozen=True)
class ModelConfig(Validated):
    """Sizes and switches of the DUET policy (defaults: the 768-wide teacher, R2R)."""

    hidden_size: int = 768                 # D
    num_attention_heads: int = 12          # H (teacher and student keep 12 for head-wise attention KD)
    intermediate_size: int = 3072          # FFN width
    num_l_layers: int = 9                  # language encoder (post-LN BERT layers)
    num_pano_layers: int = 2               # panorama encoder (pre-LN layers + final LN)
    num_x_layers: int = 4                  # cross-modal layers per branch (global and local each)
    vocab_size: int = 30522                # bert-base-uncased WordPiece
    max_position_embeddings: int = 512
    type_vocab_size: int = 2               # 0 = text, 1 = visual tokens
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12          # BERT-style LayerNorms
    pano_layer_norm_eps: float = 1e-5      # the panorama encoder's own LayerNorms
    image_feat_size: int = 768             # view feature size (768 ViT-B/16, 512 CLIP-B/16, ...)
    obj_feat_size: int = 0                 # 0 = no objects (R2R); > 0 adds the object-grounding head
    # G instruction-grounding columns after the features of every panorama token (agent/grounding.py:
    # name-to-word similarities of MiniLM name features); 0 = none.
    ground_feat_size: int = 0
    max_action_steps: int = 100            # rows of the step-id embedding table
    graph_sprels: bool = True              # learned shortest-distance bias in the global branch
    fusion: Literal["dynamic", "average", "global", "local"] = "dynamic"
    lang2visn_attn: bool = False           # pretraining only: cross-modal layers also update the text (MLM)
    feat_dropout: float = 0.4              # dropout on raw view/object features (training only)
    initializer_range: float = 0.02
    # Frozen pretrained encoder whose token states are added to the text embedding (models/text_backbone.py).
    text_backbone: Literal["none", "all-MiniLM-L6-v2"] = "none"

    def validate(self) -> None:
        """Raise ConfigError naming the first inconsistent key."""
        positive = ["hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
                    "max_position_embeddings", "type_vocab_size", "image_feat_size", "max_action_steps"]
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key '{key}' must be > 0, got {getattr(self, key)}")
        for key in ["num_l_layers", "num_pano_layers", "num_x_layers", "obj_feat_size", "ground_feat_size"]:
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}' must be >= 0, got {getattr(self, key)}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"config key 'num_attention_heads': {self.num_attention_heads} does not divide "
                f"hidden_size {self.hidden_size}")
        if self.type_vocab_size < 2:
            raise ConfigError("config key 'type_vocab_size' must be >= 2 (text and visual token types)")
        for key in ["hidden_dropout_prob", "attention_probs_dropout_prob", "feat_dropout"]:
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"config key '{key}' must be in [0, 1), got {getattr(self, key)}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def has_objects(self) -> bool:
        return self.obj_feat_size > 0
