"""The onnxruntime policy path decides exactly like the torch policy (fp32) and closely in int8."""

from __future__ import annotations

import onnx
import pytest
import torch

from minivln_core.agent.agent import NavigationAgent
from minivln_core.agent.rollout import evaluate
from minivln_core.data.synth import SynthConfig, generate_world
from minivln_core.errors import ConfigError
from minivln_core.eval.agreement import action_agreement
from minivln_core.eval.evaluate import EvalSpec, build_env
from minivln_core.models import DuetPolicy, preset
from minivln_core.models import onnx_policy
from minivln_core.models.inference import for_inference
from minivln_core.models.onnx_policy import KEEP_FP32, OnnxPolicy

FEAT = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_world")
    generate_world(root, SynthConfig(houses=3, paths_per_house=4, reverie_per_house=6, feature_dim=FEAT))
    return root


def _policy(task: str = "r2r", seed: int = 0) -> DuetPolicy:
    torch.manual_seed(seed)
    return DuetPolicy(preset("tiny-teacher", task, image_feat_size=FEAT)).eval()


@pytest.mark.parametrize("task", ["r2r", "reverie"])
def test_fp32_onnx_steps_match_torch(world, tmp_path, task):
    policy = _policy(task)
    fast = OnnxPolicy(policy, "fp32", threads=1, onnx_dir=tmp_path)
    split = "val_seen"
    env = build_env(EvalSpec(world, task, split, batch_size=4, max_steps=5))
    observations = next(iter(env.iterate_once()))
    encodings = [obs.episode.instr_encoding for obs in observations]
    ref, other = NavigationAgent(policy, 5), NavigationAgent(fast, 5)
    with torch.inference_mode():
        a = ref.step(ref.begin(encodings), observations)
        b = other.step(other.begin(encodings), observations)
    for key in ("fused_logits", "global_logits", "local_logits", "fuse_weights", "global_embeds", "local_embeds",
                "obj_logits"):
        x, y = getattr(a.outputs, key), getattr(b.outputs, key)
        if task == "r2r" and key == "obj_logits":
            assert x is None and y is None
            continue
        assert x.shape == y.shape, key
        assert torch.equal(torch.isinf(x), torch.isinf(y)), key          # same masked entries (−inf)
        finite = torch.isfinite(x)
        torch.testing.assert_close(y[finite], x[finite], atol=1e-5, rtol=1e-4, msg=key)
    # Whole episodes: the same trajectories (and REVERIE object predictions).
    runs = [evaluate(NavigationAgent(p, 5), build_env(EvalSpec(world, task, split, 4, 5)), progress=False)
            for p in (policy, fast)]
    assert [r["trajectory"] for r in runs[0]] == [r["trajectory"] for r in runs[1]]
    if task == "reverie":
        assert [r["predObjId"] for r in runs[0]] == [r["predObjId"] for r in runs[1]]


def test_int8_onnx_quantises_the_big_matmuls_and_agrees(world, tmp_path):
    policy = _policy()
    fast = OnnxPolicy(policy, "int8", threads=1, onnx_dir=tmp_path)
    graph = onnx.load(fast.files["navigation"]).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}, ops          # real int8 kernels
    float_matmuls = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")
                     and any(i in {t.name for t in graph.initializer} for i in n.input)]
    assert float_matmuls and all(any(k in name for k in KEEP_FP32) for name in float_matmuls)
    spec = EvalSpec(world, "r2r", "val_unseen", batch_size=4, max_steps=6)
    result = action_agreement(policy, fast, spec)
    assert result["steps"] > 0 and result["agreement"] >= 0.8
    # The measure can fail: another policy disagrees.
    assert action_agreement(policy, OnnxPolicy(_policy(seed=1), "fp32", 1, tmp_path), spec)["agreement"] < 1.0


def test_exports_are_cached_by_the_weights(tmp_path, monkeypatch):
    policy = _policy()
    first = OnnxPolicy(policy, "fp32", 1, tmp_path).files

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the weights did not change")

    monkeypatch.setattr(onnx_policy, "_export", no_export)
    assert OnnxPolicy(policy, "fp32", 1, tmp_path).files == first
    with torch.no_grad():
        policy.global_sap_head.net[0].weight.add_(1.0)
    with pytest.raises(AssertionError, match="exported again"):
        OnnxPolicy(policy, "fp32", 1, tmp_path)


def test_for_inference_names_bad_settings(tmp_path):
    policy = _policy()
    with pytest.raises(ConfigError, match="runtime"):
        for_inference(policy, "tensorrt")
    with pytest.raises(ConfigError, match="precision"):
        for_inference(policy, "onnx", "fp16")
    assert for_inference(policy, "torch") is policy
    with pytest.raises(ValueError, match="traces"):
        OnnxPolicy(policy, "fp32", 1, tmp_path).navigate(None, traces=True)


def test_policy_and_vit_share_the_onnxruntime_pool(tmp_path):
    # The navigator may run both in onnxruntime: one process-wide pool (a per-session pool would be
    # refused once the shared one exists).
    import numpy as np

    from minivln_core.perception.config import ExtractorConfig
    from minivln_core.perception.vit import FeatureExtractor

    fast = OnnxPolicy(_policy(), "fp32", 1, tmp_path)
    vit = FeatureExtractor(ExtractorConfig(image_size=32, patch_size=8, hidden_size=16, num_layers=1, num_heads=2,
                                           intermediate_size=32, runtime="onnx", onnx_dir=str(tmp_path)))
    feats = vit.encode([np.full((40, 40, 3), 100, np.uint8)] * 2)
    assert feats.shape == (2, 16)
    pano, masks = fast.encode_panorama(torch.zeros(1, 3, FEAT), torch.zeros(1, 3, 7),
                                       torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool))
    assert pano.shape[:2] == (1, 3) and bool(masks.all())


def test_agent_runs_torch_single_threaded_around_onnx_graphs(world, tmp_path):
    """torch's small per-step ops use OnnxPolicy.torch_threads (OpenMP workers and onnxruntime's
    spinning pool would wait for each other's cores); the caller's thread count comes back, also
    after an error."""
    fast = OnnxPolicy(_policy(), "fp32", threads=2, onnx_dir=tmp_path)
    seen = []
    navigate = fast.navigate

    def spy(inputs, traces=False):
        seen.append(torch.get_num_threads())
        return navigate(inputs, traces)

    fast.navigate = spy
    env = build_env(EvalSpec(world, "r2r", "val_seen", batch_size=2, max_steps=5))
    observations = next(iter(env.iterate_once()))
    agent = NavigationAgent(fast, 5)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            states = agent.begin([obs.episode.instr_encoding for obs in observations])
            agent.step(states, observations)
            assert seen == [OnnxPolicy.torch_threads] and torch.get_num_threads() == 2
            with pytest.raises(ValueError, match="already stopped"):
                for st in states:
                    st.done = True
                agent.step(states, observations)
            fast.navigate = lambda inputs, traces=False: (_ for _ in ()).throw(RuntimeError("graph failed"))
            with pytest.raises(RuntimeError, match="graph failed"):
                agent.step(agent.begin([obs.episode.instr_encoding for obs in observations]), observations)
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    plain = NavigationAgent(_policy(), 5)   # a torch policy keeps the caller's threads
    assert getattr(plain.model, "torch_threads", None) is None
