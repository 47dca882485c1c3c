"""Distillation loss terms: zero when student and teacher agree, positive otherwise, masks honoured,
no NaN with -inf logits, the layer map pairs the paper's layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minivln_core.distill.losses import attention_mse, hidden_mse, layer_map, soft_cross_entropy
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.encoders import Trace

NEG_INF = float("-inf")


def test_layer_map_pairs_student_m_with_teacher_k_m():
    assert layer_map(9, 3) == [(0, 2), (1, 5), (2, 8)]      # language: teacher layers 3, 6, 9
    assert layer_map(2, 1) == [(0, 1)]                      # panorama: teacher layer 2
    assert layer_map(4, 2) == [(0, 1), (1, 3)]              # cross-modal: teacher layers 2, 4
    with pytest.raises(ValueError, match="multiple"):
        layer_map(4, 3)


def test_attention_mse_is_zero_on_agreement_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 4, 5, 6, generator=g)
    keys = torch.ones(2, 6, dtype=torch.bool)
    keys[1, -2:] = False
    assert attention_mse(scores, scores.clone(), key_valid=keys) == 0
    other = scores + 0.5
    assert attention_mse(other, scores, key_valid=keys) == pytest.approx(0.25)
    # Entries at padded keys do not count, whatever their values.
    noisy = other.clone()
    noisy[1, :, :, -2:] += 100.0
    assert attention_mse(noisy, scores, key_valid=keys) == pytest.approx(0.25)
    # Without explicit masks, the additive -10000 marks them (TinyBERT's rule).
    masked_t, masked_s = scores.clone(), other.clone()
    masked_t[1, :, :, -2:] = masked_s[1, :, :, -2:] = -10000.0
    assert attention_mse(masked_s, masked_t) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="heads"):
        attention_mse(torch.zeros(2, 3, 5, 6), scores)


def test_hidden_mse_with_identity_projection_and_masks():
    h = torch.randn(2, 5, 8)
    identity = nn.Identity()
    assert hidden_mse(h, h.clone(), identity) == 0
    valid = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    shifted = h.clone()
    shifted[0, 3:] += 10.0                                   # only padding differs
    assert hidden_mse(shifted, h, identity, valid) == 0
    assert hidden_mse(h + 1.0, h, identity, valid) == pytest.approx(1.0)
    proj = nn.Linear(4, 8)
    assert hidden_mse(torch.randn(2, 5, 4), h, proj) > 0


def test_soft_cross_entropy_is_finite_with_masked_actions_and_minimal_at_agreement():
    t = torch.tensor([[1.0, NEG_INF, 2.0, 0.5], [NEG_INF, 0.0, NEG_INF, 1.0]])
    s = t.clone().requires_grad_(True)
    same = soft_cross_entropy(s, t)
    same.backward()
    assert torch.isfinite(same) and torch.isfinite(s.grad).all()
    entropy = -(torch.softmax(t, -1) * torch.log_softmax(t, -1).nan_to_num(neginf=0.0)).sum(-1).mean()
    assert same.item() == pytest.approx(entropy.item())      # CE(p, p) = H(p): the minimum
    other = torch.tensor([[0.0, NEG_INF, -1.0, 3.0], [NEG_INF, 2.0, NEG_INF, -2.0]])
    assert soft_cross_entropy(other, t) > same
    hot = soft_cross_entropy(t, t, temperature=2.0)
    assert torch.isfinite(hot)
    with pytest.raises(ValueError):
        soft_cross_entropy(t, t, temperature=0.0)


def test_same_model_traces_give_zero_losses():
    model = DuetPolicy(preset("tiny-student")).eval()
    ids = torch.tensor([[101, 2000, 2001, 102, 0]])
    a, b = Trace(), Trace()
    model.encode_language(ids, ids != 0, a)
    model.encode_language(ids, ids != 0, b)
    for s, t in layer_map(len(a.scores), len(b.scores)):
        assert attention_mse(a.scores[s], b.scores[t], key_valid=ids != 0) == 0
        assert hidden_mse(a.hidden[s], b.hidden[t], nn.Identity(), ids != 0) == 0
