"""Instruction-grounding columns (agent/grounding.py): what they compute, how the policy takes them,
and a grounded policy trained, saved, reloaded and scored on a real-format world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures_data import write_real_format_data
from minivln_core.agent.agent import NavigationAgent, policy_grounding
from minivln_core.agent.grounding import COLUMN_NAMES, InstructionGrounding, instruction_words
from minivln_core.agent.inputs import panorama_batch, panorama_tokens
from minivln_core.cli import main
from minivln_core.errors import ConfigError
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.config import ground_columns
from minivln_core.models.loading import load_policy


class WordVectors:
    """A stand-in NameEmbedder: each word a fixed random unit vector (distinct words ~orthogonal)."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        return np.stack([vector(t) for t in texts])


def vector(word: str) -> np.ndarray:
    v = np.random.default_rng(sum(map(ord, word)) * 7919 + len(word)).standard_normal(384)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_columns_match_words_by_third_and_chunk():
    grounding = InstructionGrounding(768, WordVectors())                 # [near, far] name chunks
    assert grounding.size == 8 and instruction_words("Walk past the Sofa, stop.") == ["walk", "past", "the",
                                                                                       "sofa", "stop"]
    assert len(COLUMN_NAMES) * 2 == grounding.size and COLUMN_NAMES[3] == "last third"   # per chunk, in order
    text = "go past the bed and stop at the sink"                       # 9 words: thirds of 3
    near_sink = np.concatenate([vector("sink"), np.zeros(384, np.float32)])
    far_bed = np.concatenate([vector("lamp"), vector("bed")])
    nothing = np.zeros(768, np.float32)
    cols = grounding.columns(text, np.stack([near_sink, far_bed, nothing]))   # (3, 8)
    assert cols.shape == (3, 8) and cols.dtype == np.float32
    # near chunk of row 0 is "sink": best match 1 overall and in the last third, low in the first two
    np.testing.assert_allclose(cols[0, [0, 3]], 1.0, atol=1e-5)
    assert cols[0, 1] < 0.3 and cols[0, 2] < 0.3
    np.testing.assert_array_equal(cols[0, 4:], 0.0)                    # empty far chunk: no match
    # far chunk of row 1 is "bed", the 4th word: the middle third
    np.testing.assert_allclose(cols[1, [4, 6]], 1.0, atol=1e-5)
    assert cols[1, 5] < 0.3 and cols[1, 7] < 0.3 and cols[1, 0] < 0.3
    np.testing.assert_array_equal(cols[2], 0.0)
    # an empty instruction (the no-language ablation) matches nothing; narrower object rows are padded
    np.testing.assert_array_equal(grounding.columns("", np.stack([near_sink])), 0.0)
    obj = grounding.columns(text, vector("sink")[None])                 # (1, 384) object row
    np.testing.assert_allclose(obj[0, [0, 3]], 1.0, atol=1e-5)
    np.testing.assert_array_equal(obj[0, 4:], 0.0)
    with pytest.raises(ValueError, match="1152 wide"):
        grounding.columns(text, np.zeros((1, 1152), np.float32))


def test_words_are_embedded_once_per_instruction():
    words = WordVectors()
    grounding = InstructionGrounding(384, words)
    feats = np.stack([vector("sink")] * 3)
    first = grounding.columns("stop at the sink", feats)
    np.testing.assert_array_equal(grounding.columns("stop at the sink", feats), first)
    assert words.calls == [["stop", "at", "the", "sink"]]


def test_only_minilm_name_features_can_be_grounded():
    assert ground_columns(384) == 4 and ground_columns(768) == 8
    for width in (512, 100, 0):
        with pytest.raises(ConfigError, match="MiniLM object-name features"):
            ground_columns(width)
    with pytest.raises(ConfigError, match="MiniLM"):
        preset("tiny-student", image_feat_size=512, grounding=True)
    assert preset("tiny-student", image_feat_size=768, grounding=True).ground_feat_size == 8
    assert policy_grounding(preset("tiny-student", image_feat_size=384)) is None


def _tokens(feats: np.ndarray, instruction: str, grounding):
    from types import SimpleNamespace

    from minivln_core.env.candidates import Candidate

    cand = Candidate(viewpoint="b", view_index=14, heading=0.5, elevation=0.0, distance=2.0,
                     position=np.zeros(3))
    obs = SimpleNamespace(view_features=feats, candidates=[cand], heading=0.0, elevation=0.0, objects=None,
                          episode=SimpleNamespace(instruction=instruction))
    return panorama_tokens(obs, grounding)


def test_the_policy_takes_the_columns_through_their_own_projection():
    torch.manual_seed(0)
    config = preset("tiny-student", image_feat_size=384, grounding=True)
    policy = DuetPolicy(config).eval()
    assert policy.img_embeddings.ground_linear.in_features == 4
    grounding = InstructionGrounding(384, WordVectors())
    feats = np.stack([vector("sink")] * 36)
    tok_sink = _tokens(feats, "stop at the sink", grounding)
    tok_bed = _tokens(feats, "stop at the bed", grounding)
    assert tok_sink.ground_fts.shape == (36, 4) and tok_sink.ground_fts[0, 0] > 0.99 > 0.3 > tok_bed.ground_fts[0, 0]
    with torch.no_grad():
        a, _ = policy.encode_panorama(**panorama_batch([tok_sink], torch.device("cpu"), ground=True))
        b, _ = policy.encode_panorama(**panorama_batch([tok_bed], torch.device("cpu"), ground=True))
    assert not torch.allclose(a, b)                                      # same views, other instruction
    with pytest.raises(ValueError, match="384 features \\+ 4 grounding columns"):
        policy.encode_panorama(**panorama_batch([tok_sink], torch.device("cpu")))
    with pytest.raises(ValueError, match="built without them"):
        panorama_batch([_tokens(feats, "stop at the sink", None)], torch.device("cpu"), ground=True)
    plain = DuetPolicy(preset("tiny-student", image_feat_size=384)).eval()
    assert plain.img_embeddings.ground_linear is None
    with pytest.raises(ValueError, match="expects 384 features$"):
        plain.encode_panorama(**panorama_batch([tok_sink], torch.device("cpu"), ground=True))


def test_the_real_minilm_matches_a_named_view_to_its_word():
    """With the shipped MiniLM, the view showing a sink matches 'sink' better than one showing a bed."""
    from minivln_core.perception.semantic import NameEmbedder

    embedder = NameEmbedder()
    names = embedder.embed(["sink", "bed"])                              # (2, 384)
    grounding = InstructionGrounding(384, embedder)
    cols = grounding.columns("walk through the bedroom and stop next to the sink", names)
    assert cols[0, 3] > 0.9 and cols[0, 3] > cols[1, 3] + 0.2         # last third: "the sink"
    assert cols[1, 1] > 0.6 and cols[1, 1] > cols[0, 1] + 0.2          # first third: "bedroom" ~ bed


def test_the_robot_refuses_a_grounded_checkpoint():
    from minivln_core.agent.online import OnlineNavigator

    class Extractor:
        dim = 384

    agent = NavigationAgent(DuetPolicy(preset("tiny-student", image_feat_size=384, grounding=True)).eval())
    with pytest.raises(ConfigError, match="object-name view features"):
        OnlineNavigator(agent, Extractor())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    data = write_real_format_data(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("world") / "real"
    assert main(["real-world", "--data", str(data), "--out", str(out), "--holdout", "2"]) == 0
    return out


@pytest.mark.parametrize("task", ["r2r", "reverie"])
def test_a_grounded_policy_trains_reloads_and_is_scored(world, tmp_path, task):
    run = tmp_path / "run"
    common = ["--set", "preset=tiny-student", "--set", f"task={task}", "--set", "batch_size=2",
              "--set", "loop.steps=2", "--set", "loop.eval_every=0", "--set", "eval_limit=4",
              "--set", "eval_splits=[val_unseen]", "--set", "max_steps=5"]
    assert main(["finetune", "--world", str(world), "--out", str(run), "--quiet", "--set", "grounding=true",
                 *common]) == 0
    policy = load_policy(run / "last")
    assert policy.config.ground_feat_size == 4 and policy.img_embeddings.ground_linear is not None
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(run / "last"), "--world", str(world), "--task", task,
                 "--split", "val_unseen", "--limit", "4", "--out", str(out)]) == 0
    scores = json.loads(next(out.rglob("*val_unseen_metrics.json")).read_text())
    assert scores["num_episodes"] == 4 and 0 <= scores["sr"] <= 100
    # continuing from it keeps the columns; asking for them on a plain checkpoint is an error
    plain = tmp_path / "plain"
    assert main(["finetune", "--world", str(world), "--out", str(plain), "--quiet", *common]) == 0
    assert main(["finetune", "--world", str(world), "--out", str(tmp_path / "more"), "--quiet", "--init",
                 str(plain / "last"), "--set", "grounding=true", *common]) == 2


def test_pretraining_with_grounding_hands_it_to_fine_tuning(world, tmp_path):
    """MLM, MRC and SAP build grounded batches; the pretrained policy fine-tunes with its columns."""
    pre = tmp_path / "pre"
    assert main(["pretrain", "--world", str(world), "--out", str(pre), "--quiet", "--set", "preset=tiny-student",
                 "--set", "grounding=true", "--set", "batch_size=3", "--set", "loop.steps=3",
                 "--set", "loop.eval_every=0", "--set", "eval_splits=[val_unseen]"]) == 0
    assert load_policy(pre / "policy").config.ground_feat_size == 4
    run = tmp_path / "run"
    assert main(["finetune", "--world", str(world), "--out", str(run), "--quiet", "--init", str(pre / "policy"),
                 "--set", "batch_size=2", "--set", "loop.steps=1", "--set", "loop.eval_every=0",
                 "--set", "eval_limit=2", "--set", "eval_splits=[val_unseen]", "--set", "max_steps=5"]) == 0
    assert load_policy(run / "last").config.ground_feat_size == 4


def test_mlm_grounding_does_not_see_the_masked_words(world):
    """Grounding matches the instruction the policy is given: MLM's masked words are left out."""
    from minivln_core.data.tokenizer import decode
    from minivln_core.eval.evaluate import EvalSpec, build_env
    from minivln_core.train.pretrain_tasks import build_batch, choose_end, mask_instruction, sample_rng

    env = build_env(EvalSpec(world=world, split="train", batch_size=4))
    episodes = env.episodes[:4]
    policy = DuetPolicy(preset("tiny-student", image_feat_size=384, grounding=True))
    grounding = policy_grounding(policy.config)
    batch = build_batch(policy, env, "mlm", episodes, [0, 1, 2, 3], step=0, seed=0)
    changed = 0
    for s, (ep, tok) in enumerate(zip(episodes, batch.tokens)):
        rng = sample_rng(0, 0, s)                      # the draws build_batch makes for sample s
        choose_end(ep, "mlm", rng)
        shown, _ = mask_instruction(ep.instr_encoding, rng)
        np.testing.assert_allclose(tok.ground_fts, grounding.columns(decode(shown), tok.img_fts), atol=1e-6)
        changed += int(not np.allclose(tok.ground_fts, grounding.columns(ep.instruction, tok.img_fts)))
    assert changed > 0                                 # some masked word would have matched a view


class MarkedViews:
    """A stand-in view store: every view of a goal viewpoint reads 1.0, any other 0.5."""

    dim = 384

    def __init__(self, goals: set[tuple[str, str]]):
        self.goals = goals

    def get(self, scan, vp):
        return np.full((36, 384), 1.0 if (scan, vp) in self.goals else 0.5, np.float32)


class GoalOracle:
    """A stand-in grounding that scores marked goal views 1 and the rest 0 (or everything 0)."""

    size = 4

    def __init__(self, sees_goals: bool):
        self.sees_goals = sees_goals

    def columns(self, instruction, features):
        hit = (features[:, :1] == 1.0) & self.sees_goals
        return np.repeat(hit.astype(np.float32), 4, 1)


def test_grounding_signal_separates_goals_only_when_the_scores_do(world, tmp_path, monkeypatch):
    import minivln_core.eval.grounding_signal as signal
    from minivln_core.data.world import WorldPaths, load_episodes

    episodes = load_episodes(WorldPaths(world), "r2r", "val_unseen")
    monkeypatch.setattr(signal, "ViewFeatureStore", lambda path: MarkedViews({(e.scan, e.goal) for e in episodes}))
    perfect = signal.grounding_signal(world, grounding=GoalOracle(True), progress=False)
    blank = signal.grounding_signal(world, grounding=GoalOracle(False), progress=False)
    assert perfect["episodes"] == blank["episodes"] > 0
    for name, col in perfect["columns"].items():
        # a goal of one episode can be another's neighbour: nearly always, not always, ahead
        assert col["pairs"] > 0 and col["auc_goal_vs_neighbour"] > 0.9 and col["goal_above_threshold"] == 1.0
        assert blank["columns"][name]["auc_goal_vs_neighbour"] == 0.5               # all ties
        assert blank["columns"][name]["goal_above_threshold"] == 0.0
    monkeypatch.undo()
    out = tmp_path / "signal.json"
    assert main(["grounding-signal", "--world", str(world), "--task", "r2r", "--every", "2", "--quiet",
                 "--out", str(out)]) == 0
    real = json.loads(out.read_text())
    assert real["task"] == "r2r" and real["every"] == 2 and 0.0 <= real["columns"]["last third"]["auc_goal_vs_neighbour"] <= 1.0
    assert main(["grounding-signal", "--world", str(world), "--split", "nosuch", "--quiet"]) == 2


@pytest.mark.parametrize("students_grounded", [True, False])
def test_a_reverie_ablation_distils_a_grounded_teacher(world, tmp_path, students_grounded):
    """What the REVERIE Table III runs (grounded students), and plain students of a grounded teacher:
    each policy builds the columns it takes, the teacher's batches have them whatever the student's lack."""
    from minivln_core.models.checkpoint import save_pretrained

    teacher = DuetPolicy(preset("tiny-teacher", image_feat_size=384, task="reverie", grounding=True))
    save_pretrained(teacher, tmp_path / "teacher")
    out = tmp_path / "ablation"
    assert main(["ablation", "--world", str(world), "--out", str(out), "--teacher", str(tmp_path / "teacher"),
                 "--budget", "smoke", "--quiet", "--set", "task=reverie", "--set", "student_preset=tiny-student",
                 "--set", f"pretrain.grounding={str(students_grounded).lower()}", "--set", "max_steps=5",
                 "--set", "splits=[val_unseen]", "--set", "pretrain.eval_splits=[]", "--set", "finetune.eval_splits=[]", "--set", "bench.steps=2",
                 "--set", "bench.warmup=1", "--set", "bench.min_nodes=2", "--set", "bench.threads=1",
                 "--set", "threads=1"]) == 0
    rows = json.loads((out / "ablation.json").read_text())["results"]
    assert [r["id"] for r in rows] == ["teacher", "#1", "#2", "#3", "#4"] and all("rgs" in r for r in rows)
    for name in ("two-stage", "pretrain-kd", "finetune-kd", "no-kd"):
        assert load_policy(out / "student" / name / "best").config.ground_feat_size == 4 * students_grounded
    assert "kd_hidden" in (out / "student" / "distill-pretrain" / "metrics.jsonl").read_text()
    assert "teacher_kd_fuse" in (out / "student" / "two-stage" / "metrics.jsonl").read_text()
