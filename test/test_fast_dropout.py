"""models.dropout: numpy-drawn dropout masks have the right keep rate and scaling, are fixed by
torch's seed, leave evaluation untouched, and training with them runs, learns and resumes exactly."""

from __future__ import annotations

import torch
from torch import nn

from minivln_core.models import DuetPolicy, preset
from minivln_core.models.dropout import FastDropout, keep_mask, use_fast_dropout
from minivln_core.models.layers import Attention


def test_keep_rate_scaling_and_independence() -> None:
    torch.manual_seed(0)
    mask = keep_mask((400, 500), 0.1)
    assert mask.dtype == torch.bool and mask.shape == (400, 500)
    assert abs(mask.float().mean().item() - 0.9) < 0.003          # 200k draws: sd 0.0007
    rows = mask.float().mean(1)
    assert rows.std().item() < 0.03                                 # no row is all kept or all dropped
    drop = FastDropout(0.25).train()
    x = torch.ones(200, 300)
    y = drop(x)
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(1.0 / 0.75)))
    assert abs(y.mean().item() - 1.0) < 0.01                        # expectation preserved
    assert not torch.equal(keep_mask((50, 50), 0.5), keep_mask((50, 50), 0.5))


def test_masks_follow_torch_seed_and_eval_is_identity() -> None:
    drop = FastDropout(0.3).train()
    x = torch.randn(64, 32)
    torch.manual_seed(7)
    a = drop(x)
    torch.manual_seed(7)
    b = drop(x)
    assert torch.equal(a, b)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)


def test_gradient_flows_through_the_kept_entries() -> None:
    drop = FastDropout(0.5).train()
    x = torch.randn(32, 16, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    y.sum().backward()
    kept = y != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert torch.all(x.grad[~kept] == 0)


def test_a_policy_with_fast_dropout_computes_the_same_in_eval() -> None:
    torch.manual_seed(0)
    config = preset("tiny-student", image_feat_size=16)
    policy = DuetPolicy(config).eval()
    fast = DuetPolicy(config).eval()
    fast.load_state_dict(policy.state_dict())
    use_fast_dropout(fast)
    assert not any(type(m) is nn.Dropout for m in fast.modules())
    assert all(not m.fused_dropout for m in fast.modules() if isinstance(m, Attention))
    assert fast.state_dict().keys() == policy.state_dict().keys()   # checkpoints unchanged
    ids = torch.randint(5, 100, (2, 9))
    masks = torch.ones(2, 9, dtype=torch.bool)
    assert torch.allclose(policy.encode_language(ids, masks), fast.encode_language(ids, masks), atol=1e-6)


def test_unfused_attention_equals_fused_without_dropout() -> None:
    config = preset("tiny-student", image_feat_size=16, attention_probs_dropout_prob=0.0)
    torch.manual_seed(1)
    att = Attention(config).train()
    h, mask = torch.randn(2, 5, config.hidden_size), torch.zeros(2, 1, 1, 5)
    mask[1, ..., -2:] = -10000.0
    fused, _ = att(h, h, mask)
    unfused, scores = att(h, h, mask, return_scores=True)
    assert scores is not None and torch.allclose(fused, unfused, atol=1e-5)


def test_finetuning_with_numpy_dropout_resumes_to_the_same_weights(tmp_path) -> None:
    from safetensors.torch import load_file

    from minivln_core.data.synth import SynthConfig, generate_world
    from minivln_core.train.finetune import FinetuneConfig, run_finetune
    from minivln_core.train.trainer import LoopConfig

    world = tmp_path / "world"
    generate_world(world, SynthConfig(houses=3, paths_per_house=8, reverie_per_house=4, feature_dim=16))

    def run(out: str, steps: int, rng: str) -> dict[str, torch.Tensor]:
        cfg = FinetuneConfig(world=str(world), preset="tiny-student", batch_size=4, max_steps=5, eval_splits=[],
                             train_alg="dagger", dropout_rng=rng, hidden_dropout_prob=0.2,
                             attention_probs_dropout_prob=0.2, feat_dropout=0.2,
                             loop=LoopConfig(steps=steps, eval_every=0, save_every=1))
        run_finetune(cfg, tmp_path / out, progress=False)
        return load_file(str(tmp_path / out / "last" / "model.safetensors"))

    straight = run("straight", 4, "numpy")
    run("resumed", 2, "numpy")
    resumed = run("resumed", 4, "numpy")
    torch_rng = run("torch", 4, "torch")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert any(not torch.equal(straight[k], torch_rng[k]) for k in straight)   # other masks, other weights
    assert all(torch.isfinite(v).all() for v in straight.values())
