"""NavigationAgent over NavEnv: valid walks, batch independence, teacher forcing, stop rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures_graph import grid_graph, make_episode
from minivln_core.agent.agent import NavigationAgent
from minivln_core.agent.rollout import apply_decisions, evaluate, rollout_batch
from minivln_core.env.expert import map_expert
from minivln_core.env.nav_env import NavEnv
from minivln_core.models import DuetPolicy, preset


class RandomFeatures:
    """Seeded (36, D) features per viewpoint, different for every view."""

    def __init__(self, graph, dim):
        rng = np.random.default_rng(0)
        self.table = {vp: rng.standard_normal((36, dim)).astype(np.float32) for vp in graph.viewpoints}

    def get(self, scan, vp):
        return self.table[vp]


@pytest.fixture(scope="module")
def world():
    graph = grid_graph("grid", rows=4, cols=5, seed=1)
    episodes = [make_episode(f"p{k}_0", "grid", graph.shortest_path(a, b), heading=0.3 * k)
                for k, (a, b) in enumerate([("r0c0", "r3c4"), ("r1c1", "r0c4"), ("r3c0", "r0c2"),
                                            ("r2c2", "r2c2"), ("r0c4", "r3c1")])]
    for k, ep in enumerate(episodes):
        ep.instr_encoding = [101] + [2000 + 7 * k + j for j in range(3 + k)] + [102]
    return graph, episodes


def _agent(seed=0, max_steps=6):
    torch.manual_seed(seed)
    return NavigationAgent(DuetPolicy(preset("tiny-student", image_feat_size=16)).eval(), max_steps=max_steps)


def test_greedy_rollouts_are_valid_walks_within_the_step_limit(world):
    graph, episodes = world
    env = NavEnv({"grid": graph}, RandomFeatures(graph, 16), episodes, batch_size=2, max_steps=6)
    records = evaluate(_agent(), env, progress=False)
    assert [r["instr_id"] for r in records] == [ep.instr_id for ep in episodes]
    for rec, ep in zip(records, episodes):
        vps = [entry[0] for entry in rec["trajectory"]]
        assert vps[0] == ep.start
        assert graph.is_walk(vps)


def test_batched_and_single_rollouts_decide_the_same(world):
    graph, episodes = world
    agent = _agent(seed=3)
    feats = RandomFeatures(graph, 16)
    batched = evaluate(agent, NavEnv({"grid": graph}, feats, episodes, batch_size=5, max_steps=6), progress=False)
    single = evaluate(agent, NavEnv({"grid": graph}, feats, episodes, batch_size=1, max_steps=6), progress=False)
    for a, b in zip(batched, single):
        assert [e[0] for e in a["trajectory"]] == [e[0] for e in b["trajectory"]]


def test_teacher_forcing_with_the_map_expert_reaches_every_goal(world):
    graph, episodes = world
    agent = _agent(max_steps=15)
    env = NavEnv({"grid": graph}, RandomFeatures(graph, 16), episodes, batch_size=5, max_steps=15)

    def expert(state, obs):
        return map_expert(graph, state.graph_map, obs.viewpoint, obs.episode.goal, state.graph_map.ghosts)

    obs = env.reset()
    states = agent.begin([o.episode.instr_encoding for o in obs])
    active, current = list(range(5)), obs
    with torch.no_grad():
        while active:
            res = agent.step([states[i] for i in active], current, feedback="teacher", expert=expert)
            assert [d.action for d in res.decisions] == res.labels.tolist()
            current = apply_decisions(env, active, res.decisions)
            active = [obs.index for obs in current]
    for rec, ep in zip(env.results(), episodes):
        assert rec["trajectory"][-1][0] == ep.goal
        assert graph.path_length([e[0] for e in rec["trajectory"]]) == pytest.approx(graph.distance(ep.start, ep.goal))


def test_forced_stop_at_the_step_limit_and_no_step_after_stop(world):
    graph, episodes = world
    agent = _agent(max_steps=1)
    env = NavEnv({"grid": graph}, RandomFeatures(graph, 16), episodes[:2], batch_size=2, max_steps=1)
    obs = env.reset()
    states = agent.begin([o.episode.instr_encoding for o in obs])
    with torch.no_grad():
        res = agent.step(states, obs)
        assert all(d.stop and d.path == [] for d in res.decisions)  # only the start was visited
        with pytest.raises(ValueError, match="already stopped"):
            agent.step(states, obs)


def test_sampling_is_reproducible_with_a_generator(world):
    graph, episodes = world
    agent = _agent(seed=5)
    feats = RandomFeatures(graph, 16)

    def run(seed):
        env = NavEnv({"grid": graph}, feats, episodes, batch_size=5, max_steps=6)
        obs = env.reset()
        gens = [torch.Generator().manual_seed(seed * 100 + k) for k in range(len(obs))]
        states = agent.begin([o.episode.instr_encoding for o in obs])
        with torch.no_grad():
            res = agent.step(states, obs, feedback="sample", generators=gens)
            actions = [d.action for d in res.decisions]
        return actions

    assert run(1) == run(1)


def test_rollout_batch_calls_back_after_every_decision(world):
    graph, episodes = world
    agent = _agent(max_steps=4)
    env = NavEnv({"grid": graph}, RandomFeatures(graph, 16), episodes, batch_size=3, max_steps=4)
    seen = []
    with torch.no_grad():
        rollout_batch(agent, env, env.reset(), on_step=lambda active, obs, res: seen.append(len(active)))
    assert seen and seen[0] == 3 and all(n >= 1 for n in seen) and len(seen) <= 4
    with pytest.raises(ValueError, match="max_steps"):
        rollout_batch(_agent(max_steps=5), env, env.reset())


def test_reverie_objects_batched_and_single_agree(tmp_path):
    """Items with different view counts share one batch: object tokens must line up for each."""
    from minivln_core.data.synth import SynthConfig, generate_world
    from minivln_core.eval.evaluate import EvalSpec, build_env

    generate_world(tmp_path, SynthConfig(houses=3, paths_per_house=4, reverie_per_house=6, feature_dim=16))
    torch.manual_seed(0)
    model = DuetPolicy(preset("tiny-student", "reverie", image_feat_size=16)).eval()
    runs = []
    for batch in (6, 1):
        env = build_env(EvalSpec(tmp_path, "reverie", "val_seen", batch, 5, limit=6))
        runs.append(evaluate(NavigationAgent(model, max_steps=5), env, progress=False))
    assert [r["predObjId"] for r in runs[0]] == [r["predObjId"] for r in runs[1]]
    assert all(r["predObjId"] is not None for r in runs[0])
    assert [r["trajectory"] for r in runs[0]] == [r["trajectory"] for r in runs[1]]


def test_eval_limit_spreads_over_the_split():
    # Splits are ordered by house: a quick evaluation must not score one house only.
    from minivln_core.eval.evaluate import spread_subset

    items = list(range(10))
    assert spread_subset(items, 0) == items and spread_subset(items, 20) == items
    assert spread_subset(items, 1) == [0]
    picked = spread_subset(items, 4)
    assert picked == [0, 3, 6, 9] and len(set(spread_subset(items, 9))) == 9


def test_the_agent_finishes_every_token_it_reads(tmp_path):
    """The agent's vp_query_index covers [stop], every candidate and every object of each item in a
    mixed batch: its outputs equal the full last layer's (whole REVERIE episodes)."""
    from dataclasses import replace

    from minivln_core.data.synth import SynthConfig, generate_world
    from minivln_core.eval.evaluate import EvalSpec, build_env

    generate_world(tmp_path, SynthConfig(houses=3, paths_per_house=4, reverie_per_house=6, feature_dim=16))
    torch.manual_seed(0)
    model = DuetPolicy(preset("tiny-student", "reverie", image_feat_size=16)).eval()
    navigate, checked = model.navigate, []

    def both(inputs, traces=False):
        out = navigate(inputs, traces)
        full = navigate(replace(inputs, vp_query_index=None), traces)
        assert inputs.vp_query_index.shape[1] < inputs.vp_masks.shape[1]   # work is really skipped
        for key in ("fused_logits", "local_logits", "obj_logits"):
            torch.testing.assert_close(getattr(out, key), getattr(full, key), msg=key)
        checked.append(len(inputs.vp_masks))
        return out

    model.navigate = both
    env = build_env(EvalSpec(tmp_path, "reverie", "val_seen", 6, 5, limit=6))
    with torch.inference_mode():
        evaluate(NavigationAgent(model, max_steps=5), env, progress=False)
    assert len(checked) >= 5 and max(checked) > 1
