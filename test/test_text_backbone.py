"""The frozen all-MiniLM-L6-v2 under the text embedding (models/text_backbone.py)."""

from __future__ import annotations

import json

import pytest
import torch

from minivln_core.data.tokenizer import encode_instruction
from minivln_core.errors import DataError
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import from_pretrained, save_pretrained
from minivln_core.models.text_backbone import MINILM, backbone_states, load_backbone


def _batch(*texts: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) ids and bool masks of `texts`, padded with 0."""
    encoded = [encode_instruction(t) for t in texts]
    length = max(map(len, encoded))
    ids = torch.tensor([e + [0] * (length - len(e)) for e in encoded])
    return ids, ids != 0


def _tiny(backbone: str = MINILM) -> DuetPolicy:
    torch.manual_seed(0)
    return DuetPolicy(preset("tiny-student", text_backbone=backbone)).eval()


def test_backbone_is_frozen_shared_and_outside_the_state_dict():
    model = _tiny()
    plain = DuetPolicy(preset("tiny-student")).eval()
    # Only the 384 -> D projection is added to the policy's own weights.
    d = model.config.hidden_size
    assert model.num_parameters() - plain.num_parameters() == 384 * d + d
    assert set(model.state_dict()) - set(plain.state_dict()) == {"embeddings.backbone_linear.weight",
                                                                 "embeddings.backbone_linear.bias"}
    ids, masks = _batch("walk past the sofa and stop at the bathroom door", "turn left")
    model.train()
    model.encode_language(ids, masks).sum().backward()
    backbone = load_backbone(MINILM)
    assert backbone is load_backbone(MINILM)  # one instance per process
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    assert model.embeddings.backbone_linear.weight.grad.abs().sum() > 0
    assert not backbone.training


def test_backbone_states_are_contextual_and_ignore_padding():
    ids, masks = _batch("go to the sofa", "go to the kitchen sink and wait there")
    states = backbone_states(MINILM, ids, masks)                     # (2, L, 384)
    assert states.shape == (2, ids.shape[1], 384)
    # "go" (position 1) reads differently in the two sentences: the states are contextual.
    assert not torch.allclose(states[0, 1], states[1, 1], atol=1e-3)
    alone_ids, alone_masks = _batch("go to the sofa")
    alone = backbone_states(MINILM, alone_ids, alone_masks)
    n = alone_ids.shape[1]
    torch.testing.assert_close(states[0, :n], alone[0], atol=1e-4, rtol=1e-4)


def test_text_embedding_sees_words_the_plain_embedding_has_not_learnt():
    """Two sentences differing in one object word: with fresh weights the plain embedding tells them
    apart only by that token's random row; the backbone moves every token, since the states are contextual."""
    model = _tiny()
    ids, masks = _batch("stop next to the sofa in the living room", "stop next to the sink in the living room")
    embeds = model.embeddings(ids, masks)                               # (2, L, D)
    changed = (embeds[0] - embeds[1]).abs().amax(-1) > 1e-4             # (L,)
    assert changed.sum() > 3


def test_checkpoint_round_trip_rebuilds_the_backbone(tmp_path):
    model = _tiny()
    save_pretrained(model, tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["model"]["text_backbone"] == MINILM
    again = from_pretrained(tmp_path / "ckpt")
    ids, masks = _batch("walk past the sofa and stop at the bathroom door")
    torch.testing.assert_close(again.encode_language(ids, masks), model.encode_language(ids, masks))
    half = from_pretrained(tmp_path / "ckpt", dtype=torch.float16)  # backbone stays fp32, cast before the projection
    assert half.encode_language(ids, masks).dtype == torch.float16


def test_unknown_backbone_is_refused_with_the_file_named(tmp_path):
    save_pretrained(_tiny("none"), tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    info = json.loads(path.read_text())
    info["model"]["text_backbone"] = "bert-large"
    path.write_text(json.dumps(info))
    with pytest.raises(DataError, match="text_backbone"):
        from_pretrained(tmp_path / "ckpt")


def test_info_counts_the_backbone_apart_from_the_policy(capsys):
    from minivln_core.cli import main

    assert main(["info", "--preset", "minivln-small-minilm"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["text_backbone"] == MINILM
    assert info["frozen_text_backbone"] == {"name": MINILM, "params": 22_713_216}
    assert info["modules"]["embeddings"] == info["params"] - sum(v for k, v in info["modules"].items()
                                                                 if k != "embeddings")
    with torch.device("meta"):
        plain = DuetPolicy(preset("minivln-small")).num_parameters()
    assert info["params"] - plain == 384 * 96 + 96  # the projection only
