"""DUET pretraining: sample construction, masking rules, labels, losses that learn, and a 2-step run."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fixtures_graph import FakeFeatures, make_episode, make_graph
from minivln_core.agent.inputs import panorama_tokens
from minivln_core.data.synth import SynthConfig, generate_world
from minivln_core.data.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.env.candidates import Candidate
from minivln_core.env.nav_env import NavEnv
from minivln_core.eval.evaluate import EvalSpec, build_env
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import from_pretrained
from minivln_core.models.pretrain import DuetPretrainModel
from minivln_core.models.loading import load_pretrain_model
from minivln_core.train.pretrain_tasks import (IGNORE, MLM_RANDOM_IDS, build_batch, mask_instruction, sample_rng,
                                               task_loss, view_token_positions)

DIM = 16
WORLD = SynthConfig(houses=3, seed=5, paths_per_house=8, reverie_per_house=4, feature_dim=DIM, val_seen_fraction=0.25)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pt_world")
    generate_world(out, WORLD)
    return out


def _setup(world: Path, task: str, preset_name: str = "tiny-student", seed: int = 0):
    """Train episodes, their env and a dropout-free pretraining model sized for the world."""
    torch.set_num_threads(1)
    paths = WorldPaths(world)
    episodes = load_episodes(paths, task, "train")
    env = build_env(EvalSpec(paths.root, task, "train"), episodes)
    torch.manual_seed(seed)
    config = preset(preset_name, task, image_feat_size=DIM, obj_feat_size=DIM if task == "reverie" else 0,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, feat_dropout=0.0)
    classes = env.features.logits(episodes[0].scan, episodes[0].start).shape[1]
    return episodes, env, DuetPretrainModel(config, classes)


@pytest.mark.parametrize("world_task,task,preset_name", [
    ("r2r", "mlm", "tiny-student"), ("r2r", "mrc", "tiny-student"), ("r2r", "sap", "tiny-teacher"),
    ("reverie", "og", "tiny-student")])
def test_each_task_loss_drops_on_a_fixed_batch(world, world_task, task, preset_name):
    episodes, env, model = _setup(world, world_task, preset_name)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch_eps, ids = episodes[:4], [0, 1, 2, 3]
    losses = []
    for _ in range(30):
        batch = build_batch(model.policy, env, task, batch_eps, ids, step=0, seed=0)
        loss, stats = task_loss(model, batch)
        assert stats["n"] > 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * losses[0], (task, losses[0], losses[-3:])


def test_mlm_masking_rules_and_determinism():
    ids = [CLS_ID] + list(range(2000, 2020)) + [SEP_ID, PAD_ID, PAD_ID]
    kinds = {"mask": 0, "random": 0, "kept": 0}
    masked = 0
    for index in range(200):
        inputs, labels = mask_instruction(ids, sample_rng(3, 11, index))
        again = mask_instruction(ids, sample_rng(3, 11, index))
        assert (inputs, labels) == again                       # a pure function of (seed, step, index)
        chosen = [k for k, lab in enumerate(labels) if lab != IGNORE]
        assert chosen and all(ids[k] not in (CLS_ID, SEP_ID, PAD_ID) for k in chosen)
        assert all(inputs[k] == ids[k] for k in range(len(ids)) if k not in chosen)
        assert all(labels[k] == ids[k] for k in chosen)
        masked += len(chosen)
        for k in chosen:
            if inputs[k] == MASK_ID:
                kinds["mask"] += 1
            elif inputs[k] == ids[k]:
                kinds["kept"] += 1
            else:
                assert MLM_RANDOM_IDS[0] <= inputs[k] < MLM_RANDOM_IDS[1]
                kinds["random"] += 1
    assert 0.10 < masked / (200 * 20) < 0.20
    assert kinds["mask"] > 5 * kinds["random"] and kinds["random"] > 0 and kinds["kept"] > 0
    # Only special tokens: nothing can be masked.
    assert mask_instruction([CLS_ID, SEP_ID], sample_rng(0, 0, 0))[1] == [IGNORE, IGNORE]
    assert mask_instruction(ids, sample_rng(3, 11, 0)) != mask_instruction(ids, sample_rng(3, 12, 0))


def test_samples_do_not_depend_on_batching(world):
    episodes, env, model = _setup(world, "r2r")
    model.eval()
    with torch.no_grad():
        whole = build_batch(model.policy, env, "mlm", episodes[:3], [0, 1, 2], step=5, seed=1)
        alone = build_batch(model.policy, env, "mlm", episodes[1:2], [1], step=5, seed=1)
        length = alone.mlm_labels.shape[1]
        assert torch.equal(whole.mlm_labels[1, :length], alone.mlm_labels[0])
        whole = build_batch(model.policy, env, "sap", episodes[:3], [0, 1, 2], step=5, seed=1)
        alone = build_batch(model.policy, env, "sap", episodes[2:3], [2], step=5, seed=1)
        assert whole.nodes[2] == alone.nodes[0] and whole.global_labels[2] == alone.global_labels[0]


def _candidate(vp: str, view: int) -> Candidate:
    return Candidate(vp, view, 0.0, 0.0, 1.0, np.zeros(3))


def test_mrc_view_to_token_mapping_with_a_shared_view():
    # Views 5 and 20 face candidates; view 5 faces two of them.
    cands = [_candidate("a", 5), _candidate("b", 5), _candidate("c", 20)]
    obs = SimpleNamespace(candidates=cands, view_features=np.repeat(np.arange(36, dtype=np.float32)[:, None], 4, 1),
                          heading=0.0, elevation=0.0, objects=None)
    positions = view_token_positions(obs)
    assert positions[5] == [0, 1] and positions[20] == [2]
    assert positions[0] == [3] and positions[35] == [3 + 33]
    assert sorted(p for ps in positions for p in ps) == list(range(3 + 34))
    tokens = panorama_tokens(obs)     # token features carry their view index
    for view, ps in enumerate(positions):
        assert all(tokens.img_fts[p, 0] == view for p in ps)


def test_mrc_targets_sit_on_the_zeroed_view_tokens(world):
    episodes, env, model = _setup(world, "r2r")
    with torch.no_grad():
        batch = build_batch(model.policy, env, "mrc", episodes[:6], list(range(6)), step=2, seed=0)
    index = batch.mrc_index.tolist()
    assert index and batch.mrc_targets.shape == (len(index), 42)
    assert torch.allclose(batch.mrc_targets.sum(-1), torch.ones(len(index)), atol=1e-5)
    for i, tok in enumerate(batch.tokens):
        zero = {1 + p for p in np.flatnonzero(~tok.img_fts.any(1))}
        assert zero == {t for b, t in index if b == i} and zero


def test_sap_labels_on_a_hand_checked_line():
    # a - b - c - d along +y, 2 m apart; the episode walks a -> b -> c.
    graph = make_graph("line", {v: (0.0, 2.0 * k, 1.5) for k, v in enumerate("abcd")},
                       [("a", "b"), ("b", "c"), ("c", "d")])
    env = NavEnv({"line": graph}, FakeFeatures({"line": graph}, dim=DIM), [make_episode("e_0", "line", list("abc"))],
                 batch_size=1)
    torch.manual_seed(0)
    model = DuetPretrainModel(preset("tiny-student", image_feat_size=DIM), 4)
    # Map nodes at each possible end node, and (global, local) labels: c is ahead (view 12) of a (view 18).
    expected = {"a": ([None, "a", "b"], (2, 1)), "b": ([None, "a", "b", "c"], (3, 1)),
                "c": ([None, "a", "b", "c", "d"], (0, 0))}
    seen = set()
    with torch.no_grad():
        for index in range(12):
            batch = build_batch(model.policy, env, "sap", env.episodes, [index], step=0, seed=0)
            end = next(e for e, (nodes, _) in expected.items() if batch.nodes[0] == nodes)
            seen.add(end)
            assert (int(batch.global_labels[0]), int(batch.local_labels[0])) == expected[end][1]
            if end != "c":
                nxt = "abc"["abc".index(end) + 1]
                assert batch.tokens[0].cand_viewpoints[int(batch.local_labels[0]) - 1] == nxt
    assert seen == {"a", "b", "c"}


def test_two_step_run_writes_a_policy_for_finetuning(world, tmp_path):
    from minivln_core.commands import pretrain as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    out = tmp_path / "run"
    args = parser.parse_args(["pretrain", "--world", str(world), "--out", str(out), "--quiet",
                              "--set", "preset=tiny-student", "--set", "batch_size=2", "--set", "loop.steps=2",
                              "--set", "loop.eval_every=2", "--set", "eval_limit=2",
                              "--set", "eval_splits=[val_unseen]", "--set", "threads=1"])
    assert command.run(args) == 0
    assert (out / "config.yaml").exists() and (out / "last").exists()
    policy = from_pretrained(out / "policy")
    assert isinstance(policy, DuetPolicy) and not policy.config.lang2visn_attn
    assert not any(name in k for k in policy.state_dict()
                   for name in ("lang_self_attention", "lang_ffn", "mlm_head", "mrc_head"))
    full = load_pretrain_model(out / "best")
    assert full.config.lang2visn_attn
    assert all(torch.equal(v, full.policy.state_dict()[k]) for k, v in policy.state_dict().items())
