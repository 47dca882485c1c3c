"""OnlineNavigator (no ROS): angle conventions, places, candidates, and equality with offline rollouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from minivln_core.agent.online import OnlineNavigator, PlaceRegistry, candidates_from_positions
from minivln_core.perception.config import load_extractor_config
from minivln_core.frames import heading_to_yaw, snap_heading, yaw_to_heading
from minivln_core.data.connectivity import load_connectivity
from minivln_core.data.features import ViewFeatureStore
from minivln_core.env.candidates import compute_candidates
from minivln_core.errors import ConfigError, DataError
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import save_pretrained
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.panorama import encode_panorama
from minivln_core.perception.vit import FeatureExtractor
from minivln_core.sim.world_robot import SimWorld

from fixtures_online import DIM, EXTRACTOR, MAX_STEPS, SPLIT, offline_goals


def make_navigator(ckpt: Path) -> OnlineNavigator:
    return OnlineNavigator.from_checkpoint(ckpt, load_extractor_config(ckpt), max_steps=MAX_STEPS)


def test_heading_yaw_conversion() -> None:
    # ROS yaw 0 looks along +x (east) = project heading 90 deg; yaw 90 deg looks north = heading 0.
    assert yaw_to_heading(0.0) == pytest.approx(math.pi / 2)
    assert yaw_to_heading(math.pi / 2) == pytest.approx(0.0)
    for yaw in np.linspace(-3.1, 3.1, 13):
        assert heading_to_yaw(yaw_to_heading(yaw)) == pytest.approx(yaw)
        h = yaw_to_heading(yaw)   # both name the same direction vector
        assert (math.sin(h), math.cos(h)) == pytest.approx((math.cos(yaw), math.sin(yaw)))
    assert snap_heading(math.radians(44)) == pytest.approx(math.radians(30))
    assert snap_heading(math.radians(-20)) == pytest.approx(math.radians(330))


def test_place_registry_matches_within_tolerance() -> None:
    reg = PlaceRegistry(tolerance=0.5)
    a = reg.resolve(np.array([1.0, 2.0, 1.5]))
    assert reg.resolve(np.array([1.3, 2.2, 1.5])) == a
    b = reg.resolve(np.array([3.0, 2.0, 1.5]))
    assert b != a and len(reg) == 2
    assert reg.match(np.array([9.0, 9.0, 9.0])) is None
    np.testing.assert_array_equal(reg.position(a), [1.0, 2.0, 1.5])  # first-seen position is kept
    with pytest.raises(ValueError, match="finite"):
        reg.resolve(np.array([np.nan, 0.0, 0.0]))


def test_candidates_from_positions_equal_offline(online) -> None:
    for graph in load_connectivity(online["world"] / "connectivity").values():
        for vp in graph.viewpoints:
            offline = compute_candidates(graph, vp)
            mine = candidates_from_positions(graph.position(vp), {n: graph.position(n) for n in graph.neighbors(vp)})
            assert [(c.viewpoint, c.view_index) for c in mine] == [(c.viewpoint, c.view_index) for c in offline]
            for m, o in zip(mine, offline):
                assert (m.heading, m.elevation, m.distance) == pytest.approx((o.heading, o.elevation, o.distance))


def test_sim_panorama_features_equal_training_features(online) -> None:
    sim = SimWorld(online["world"], split=SPLIT)
    store = ViewFeatureStore(online["world"] / "features" / "views_vit.h5")
    extractor = FeatureExtractor(EXTRACTOR)
    episode = sim.episodes[0]
    sim.start(episode)
    for k in (0, 1, 5):  # headings 0, 30 and 150 deg: rolled panoramas must slice to the same views
        sim.current.heading = k * math.radians(30)
        feats = encode_panorama(extractor, sim.panorama(), sim.heading())
        np.testing.assert_allclose(feats, store.get(episode.scan, episode.start), atol=1e-5)


def online_rollout(nav: OnlineNavigator, sim: SimWorld, index: int) -> list[str]:
    """Drive the simulated robot with OnlineNavigator decisions; returns the viewpoints sent as goals."""
    episode = sim.episode(index)
    sim.start(episode)
    nav.begin(episode.instruction)
    while nav.active:
        out = nav.decide(sim.panorama(), sim.position(), sim.heading(), sim.waypoints())
        if out.moves:
            sim.move_to(out.goal_position, out.goal_heading)
    return sim.current.goals


def test_online_decisions_equal_offline_rollout(online) -> None:
    sim = SimWorld(online["world"], split=SPLIT)
    nav = make_navigator(online["checkpoint"])
    for index in range(min(3, len(sim.episodes))):
        expected = offline_goals(online["world"], online["checkpoint"], index)
        goals = online_rollout(nav, sim, index)
        assert goals == expected["goals"], f"episode {index}"
        assert sim.current.trajectory[0] == expected["trajectory"][0]
        assert nav.step <= MAX_STEPS
    assert nav.extractor.hits > 0  # places seen again (and episodes sharing places) are not re-encoded


def test_equality_check_can_fail(online, tmp_path) -> None:
    """The goals depend on the weights: another checkpoint's rollouts differ, so equality is a real check."""
    torch.manual_seed(1)
    other = tmp_path / "other"
    save_pretrained(DuetPolicy(preset("tiny-student", image_feat_size=DIM)).eval(), other)
    n = min(3, len(SimWorld(online["world"], split=SPLIT).episodes))
    mine = [offline_goals(online["world"], online["checkpoint"], i)["goals"] for i in range(n)]
    theirs = [offline_goals(online["world"], other, i)["goals"] for i in range(n)]
    assert mine != theirs


def test_bad_inputs_raise_clear_errors(online) -> None:
    nav = make_navigator(online["checkpoint"])
    sim = SimWorld(online["world"], split=SPLIT)
    sim.start(sim.episodes[0])
    with pytest.raises(RuntimeError, match="begin"):
        nav.decide(sim.panorama(), sim.position(), sim.heading(), sim.waypoints())
    with pytest.raises(ValueError, match="empty"):
        nav.begin("   ")
    nav.begin("go to the kitchen")
    with pytest.raises(ValueError, match="equirectangular"):
        nav.decide(np.zeros((10, 10, 3), np.uint8), sim.position(), sim.heading(), sim.waypoints())
    with pytest.raises(ValueError, match="finite"):
        nav.decide(sim.panorama(), np.array([np.nan, 0, 0]), sim.heading(), sim.waypoints())
    out = nav.decide(sim.panorama(), sim.position(), sim.heading(), sim.waypoints())
    assert out.num_map_nodes == 1 + len(sim.waypoints()) and out.latency > 0 and out.encoded
    if nav.active:
        far = sim.position() + 100.0
        with pytest.raises(ValueError, match="did not arrive"):
            nav.decide(sim.panorama(), far, sim.heading(), sim.waypoints())


def test_extractor_settings(online, tmp_path) -> None:
    ckpt, world = online["checkpoint"], online["world"]
    assert load_extractor_config(ckpt) == EXTRACTOR
    assert load_extractor_config(tmp_path, world / "features" / "views_vit.h5") == EXTRACTOR
    assert load_extractor_config(ckpt, weights_dir="/w").weights_dir == "/w"
    with pytest.raises(DataError, match="extractor settings"):
        load_extractor_config(tmp_path)
    with pytest.raises(ConfigError, match="image_feat_size"):
        OnlineNavigator.from_checkpoint(ckpt, ExtractorConfig(image_size=32, patch_size=8, hidden_size=8,
                                                              num_layers=1, num_heads=2, intermediate_size=16))


def test_int8_navigator_runs_a_quantised_policy(online) -> None:
    # The navigator's `int8` parameter: the same checkpoint, its Linear layers dynamically int8-quantised.
    ckpt = online["checkpoint"]
    nav = OnlineNavigator.from_checkpoint(ckpt, load_extractor_config(ckpt), max_steps=MAX_STEPS, int8=True)
    modules = list(nav.agent.model.modules())
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in modules)
    assert not any(type(m) is torch.nn.Linear for m in modules)
    plain = make_navigator(ckpt)
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in plain.agent.model.modules())


def test_onnx_navigator_decides_like_the_offline_rollout(online, tmp_path, monkeypatch) -> None:
    # policy_runtime 'onnx': panorama and navigation mode in onnxruntime, exported from the checkpoint.
    from minivln_core.models.onnx_policy import OnnxPolicy

    monkeypatch.setenv("MINIVLN_CACHE", str(tmp_path / "cache"))
    ckpt = online["checkpoint"]
    nav = OnlineNavigator.from_checkpoint(ckpt, load_extractor_config(ckpt), max_steps=MAX_STEPS, runtime="onnx")
    assert isinstance(nav.agent.model, OnnxPolicy) and nav.agent.model.precision == "fp32"
    assert all(str(p).startswith(str(tmp_path / "cache")) for p in nav.agent.model.files.values())
    sim = SimWorld(online["world"], split=SPLIT)
    for index in range(min(2, len(sim.episodes))):
        assert online_rollout(nav, sim, index) == offline_goals(online["world"], ckpt, index)["goals"]
