"""Side-by-side CPU benchmark of teacher and student decisions, measured by the agent code itself.

Both policies walk the same episodes of a small generated world, teacher-forced by the expert so
their maps grow alike; every decision is timed for the teacher and then the student on the same
observation (interleaved, so machine noise hits both). Language encoding is timed per episode,
and optionally a 36-view ViT extraction. The timed call is `NavigationAgent.step`, the function
the ROS node and `minivln evaluate` run.
"""

from __future__ import annotations

import platform
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minivln_core.agent.agent import NavigationAgent
from minivln_core.agent.rollout import apply_decisions
from minivln_core.env.expert import map_expert
from minivln_core.models.policy import DuetPolicy
from minivln_core.models.quantize import quantize_int8


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    steps: int = 60              # timed decisions per policy (>= 50 for stable medians)
    warmup: int = 5              # untimed decisions first
    min_nodes: int = 10          # only decisions whose global map has at least this many nodes count
    threads: int = 2
    houses: int = 3              # size of the generated benchmark world
    seed: int = 0
    vit_repeats: int = 0         # 36-view ViT-B/16 extractions to time (0 = skip; ~10 s each fp32)
    int8: bool = True            # also time the dynamically int8-quantised student, interleaved
    # Action agreement int8 vs fp32 student on a world split (needs a trained --student checkpoint
    # whose features match the world's features/<agreement_features>.h5); None = skip.
    agreement_world: str | None = None
    agreement_split: str = "val_unseen"
    agreement_features: str = "views"
    agreement_limit: int = 0     # instructions of the split (0 = all)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _summary(samples: list[float]) -> dict[str, float]:
    arr = np.asarray(samples)
    return {"median": float(np.median(arr)), "p90": float(np.percentile(arr, 90)), "n": int(arr.size)}


def _world(cfg: BenchConfig, feature_dim: int, root: Path):
    from minivln_core.data.synth import SynthConfig, generate_world
    from minivln_core.eval.evaluate import EvalSpec, build_env

    generate_world(root, SynthConfig(houses=cfg.houses, seed=cfg.seed, feature_dim=feature_dim,
                                     paths_per_house=30, reverie_per_house=2))
    return build_env(EvalSpec(root, "r2r", "train", batch_size=1, max_steps=100))


def bench_policies(teacher: DuetPolicy, student: DuetPolicy, cfg: BenchConfig) -> dict[str, Any]:
    """Per-step and language milliseconds of the policies on the same decisions, interleaved.

    Timed: the teacher, the student and (cfg.int8) the student's int8 copy. Keys `teacher`,
    `student`, `student_int8` hold params, step_ms (median), step {median, p90, n} and language_ms;
    `speedup` = teacher / student and `int8_speedup` = student / student_int8 step medians."""
    torch.set_num_threads(cfg.threads)
    if teacher.config.image_feat_size != student.config.image_feat_size:
        raise ValueError("teacher and student must take the same view features")
    models = {"teacher": teacher.eval(), "student": student.eval()}
    if cfg.int8:
        models["student_int8"] = quantize_int8(student)
    agents = {k: NavigationAgent(m, 100) for k, m in models.items()}
    times: dict[str, dict[str, list[float]]] = {k: {"step": [], "language": []} for k in agents}
    nodes_seen: list[int] = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        env = _world(cfg, teacher.config.image_feat_size, Path(tmp))
        episodes = sorted(env.episodes, key=lambda ep: -len(ep.path))  # long walks grow large maps
        done_steps = 0
        for ep in episodes:
            if done_steps >= cfg.steps + cfg.warmup:
                break
            obs = env.start([ep])[0]
            states = {}
            for name, agent in agents.items():
                t0 = time.perf_counter()
                states[name] = agent.begin([ep.instr_encoding])[0]
                times[name]["language"].append((time.perf_counter() - t0) * 1e3)
            graph = env.graph(0)
            # Expert that walks to the farthest node first, so maps reach 10-20 nodes.
            far = max(graph.viewpoints, key=lambda v: graph.distance(ep.start, v))

            def expert(state, o, goal=far):
                return map_expert(graph, state.graph_map, o.viewpoint, goal, state.graph_map.ghosts)

            while not any(s.done for s in states.values()):
                results = {}
                for name, agent in agents.items():  # same observation, interleaved
                    t0 = time.perf_counter()
                    results[name] = agent.step([states[name]], [obs], feedback="teacher", expert=expert)
                    elapsed = (time.perf_counter() - t0) * 1e3
                    n_nodes = len(results[name].nodes[0])
                    if done_steps >= cfg.warmup and n_nodes >= cfg.min_nodes:
                        times[name]["step"].append(elapsed)
                if done_steps >= cfg.warmup and n_nodes >= cfg.min_nodes:
                    nodes_seen.append(n_nodes)
                done_steps += 1
                remaining = apply_decisions(env, [0], results["teacher"].decisions)
                if not remaining or len(times["teacher"]["step"]) >= cfg.steps:
                    break
                obs = remaining[0]
    out: dict[str, Any] = {}
    for name, agent in agents.items():
        out[name] = {"params": models[name if name != "student_int8" else "student"].num_parameters(),
                     "step_ms": statistics.median(times[name]["step"]), "step": _summary(times[name]["step"]),
                     "language_ms": statistics.median(times[name]["language"])}
    out["speedup"] = out["teacher"]["step_ms"] / out["student"]["step_ms"]
    out["language_speedup"] = out["teacher"]["language_ms"] / out["student"]["language_ms"]
    if cfg.int8:
        out["int8_speedup"] = out["student"]["step_ms"] / out["student_int8"]["step_ms"]
    out["map_nodes"] = {"median": float(np.median(nodes_seen)), "max": int(max(nodes_seen))}
    return out


def bench_extraction(repeats: int, threads: int) -> dict[str, float]:
    """36-view ViT-B/16 (random weights, 224 px) extraction time, fp32 and dynamic int8."""
    from minivln_core.perception.config import ExtractorConfig
    from minivln_core.perception.vit import FeatureExtractor

    views = [np.random.default_rng(i).integers(0, 255, (480, 640, 3), dtype=np.uint8) for i in range(36)]
    out = {}
    for label, int8 in (("fp32", False), ("int8", True)):
        extractor = FeatureExtractor(ExtractorConfig(threads=threads, int8=int8))
        extractor.encode(views[:2])  # warm-up
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            extractor.encode(views)
            samples.append((time.perf_counter() - t0) * 1e3)
        out[f"vit_b16_36views_{label}_ms"] = float(np.median(samples))
    return out


def environment_info(threads: int) -> dict[str, Any]:
    """Facts a reader needs to compare figures: CPU, threads, torch version, peak memory."""
    return {"cpu": _cpu_model(), "threads": threads, "torch": torch.__version__,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
