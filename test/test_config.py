"""Typed configuration: YAML overrides, --set overrides, unknown keys and wrong types named."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from minivln_core.config import build_config, parse_override, save_yaml, to_dict
from minivln_core.errors import ConfigError
from minivln_core.models import ModelConfig, preset


@dataclass(frozen=True)
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass(frozen=True)
class Run:
    name: str = "run"
    steps: int = 10
    fusion: str | None = None
    optim: Optim = field(default_factory=Optim)
    tags: list[str] = field(default_factory=list)


def test_yaml_then_set_overrides_apply_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.001\n")
    cfg = build_config(Run, yaml_path=path, overrides=["optim.betas=[0.8, 0.9]", "steps=30", "tags=[a, b]"])
    assert cfg.steps == 30 and cfg.optim.lr == 0.001 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.tags == ["a", "b"] and cfg.name == "run"


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.learning_rate'") as exc:
        build_config(Run, yaml_path=path)
    assert "c.yaml" in str(exc.value)
    with pytest.raises(ConfigError, match="'stepz'"):
        build_config(Run, overrides=["stepz=3"])


@pytest.mark.parametrize("override,key", [("steps=ten", "steps"), ("steps=1.5", "steps"),
                                          ("optim.lr=fast", "optim.lr"), ("optim.betas=[1]", "optim.betas"),
                                          ("name=3", "name")])
def test_wrong_type_is_named(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        build_config(Run, overrides=[override])


def test_int_widens_to_float_and_optional_accepts_null():
    cfg = build_config(Run, overrides=["optim.lr=1", "fusion=null"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float) and cfg.fusion is None
    assert build_config(Run, overrides=["optim.lr=5e-4"]).optim.lr == 5e-4  # YAML reads this as a string


def test_model_config_validation_and_literal():
    cfg = build_config(ModelConfig, base=preset("minivln"), overrides=["fusion=average"])
    assert cfg.fusion == "average" and cfg.hidden_size == 312
    with pytest.raises(ConfigError, match="fusion"):
        build_config(ModelConfig, overrides=["fusion=best"])
    with pytest.raises(ConfigError, match="hidden_dropout_prob"):
        build_config(ModelConfig, overrides=["hidden_dropout_prob=1.5"])


def test_bad_override_syntax_and_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("steps")
    cfg = build_config(Run, overrides=["steps=5"])
    save_yaml(cfg, tmp_path / "resolved.yaml")
    assert build_config(Run, yaml_path=tmp_path / "resolved.yaml") == cfg
    assert to_dict(cfg)["optim"]["betas"] == [0.9, 0.98]


def test_overrides_are_validated_together():
    # Each alone would be inconsistent (heads must divide the width); together they are fine.
    cfg = build_config(ModelConfig, base=preset("tiny-student"),
                       overrides=["hidden_size=36", "num_attention_heads=6"])
    assert cfg.hidden_size == 36 and cfg.num_attention_heads == 6
