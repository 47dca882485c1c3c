"""Named model sizes: the paper's teacher and student, and narrower CPU presets of the same shape."""

from __future__ import annotations

from dataclasses import replace

from minivln_core.errors import ConfigError
from minivln_core.models.config import ModelConfig, ground_columns

PRESETS: dict[str, ModelConfig] = {
    # DUET teacher: 180,489,221 parameters for R2R, 181,082,118 with the object head.
    "duet-base": ModelConfig(),
    # MiniVLN student (TinyBERT-4L-312D widths, 3 / 1 / 2 layers): 21,064,925 / 21,163,518.
    "minivln": ModelConfig(hidden_size=312, num_attention_heads=12, intermediate_size=1200,
                           num_l_layers=3, num_pano_layers=1, num_x_layers=2),
    # CPU-trainable pair that keeps the paper's layer shape (9/2/4 vs 3/1/2) and 12 heads.
    "duet-small": ModelConfig(hidden_size=192, num_attention_heads=12, intermediate_size=768),
    "minivln-small": ModelConfig(hidden_size=96, num_attention_heads=12, intermediate_size=384,
                                 num_l_layers=3, num_pano_layers=1, num_x_layers=2),
    # The same pair on a frozen all-MiniLM-L6-v2 under the text embedding (models/text_backbone.py: the
    # real-house benchmark, where words must be learnt from 14k instructions). The backbone's 22.7M
    # frozen parameters are shared, not counted, and not stored in checkpoints.
    "duet-small-minilm": ModelConfig(hidden_size=192, num_attention_heads=12, intermediate_size=768,
                                     text_backbone="all-MiniLM-L6-v2"),
    "minivln-small-minilm": ModelConfig(hidden_size=96, num_attention_heads=12, intermediate_size=384,
                                        num_l_layers=3, num_pano_layers=1, num_x_layers=2,
                                        text_backbone="all-MiniLM-L6-v2"),
    # Unit-test sizes.
    "tiny-teacher": ModelConfig(hidden_size=48, num_attention_heads=4, intermediate_size=96,
                                num_l_layers=3, num_pano_layers=2, num_x_layers=2, vocab_size=30522,
                                max_position_embeddings=256),
    "tiny-student": ModelConfig(hidden_size=24, num_attention_heads=4, intermediate_size=48,
                                num_l_layers=1, num_pano_layers=1, num_x_layers=1, vocab_size=30522,
                                max_position_embeddings=256),
}


def preset(name: str, task: str = "r2r", grounding: bool = False, **overrides) -> ModelConfig:
    """The preset `name`; `task='reverie'` adds objects (object features as wide as view features);
    `grounding` adds the instruction-grounding columns of MiniLM name features (agent/grounding.py)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset '{name}' (choose from {', '.join(PRESETS)})")
    if task not in ("r2r", "reverie"):
        raise ConfigError(f"unknown task '{task}' (choose r2r or reverie)")
    config = replace(PRESETS[name], **overrides)
    if task == "reverie" and "obj_feat_size" not in overrides:
        config = replace(config, obj_feat_size=config.image_feat_size)  # objects share the view encoder
    if grounding:
        config = replace(config, ground_feat_size=ground_columns(config.image_feat_size))
    return config
