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
from typing import Any, Sequence

import numpy as np
import torch

from minivln_core.agent.agent import NavigationAgent
from minivln_core.agent.rollout import apply_decisions
from minivln_core.env.expert import map_expert
from minivln_core.models.policy import DuetPolicy
from minivln_core.models.inference import for_inference


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
    runtime: str = "onnx"        # policy runtime of teacher / student / student_int8: torch | onnx
    compare_torch: bool = True   # with runtime onnx: also time both in torch eager (teacher_torch, student_torch)
    # Also time the teacher, the student and its int8 copy each in a pass of its own (teacher_alone,
    # student_alone, student_int8_alone): interleaved, every step starts with caches full of another
    # model's weights, while a robot runs one policy. These are the headline figures (speedup_alone).
    alone: bool = True
    # Idle seconds before each timed language encoding: on a robot an instruction arrives while the
    # policy is idle, not right after another model's decision (whose onnxruntime pool threads still spin).
    language_pause: float = 0.05
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

    Timed, each in `cfg.runtime` (`models.inference.for_inference`): the teacher, the student and
    (cfg.int8) the student's int8 copy, interleaved; with runtime onnx and `compare_torch` then also
    the torch eager teacher and student, interleaved in a second pass over the same world; with
    `alone` every one of them is timed again in a pass of its own (the figures a robot sees). Keys
    `teacher`, `student`, `student_int8` (`teacher_torch`, `student_torch`, `teacher_alone`,
    `student_alone`, `student_int8_alone`) hold params, step_ms
    (median), step {median, p90, n} and language_ms;
    `speedup` = teacher / student and `int8_speedup` = student / student_int8 step medians
    (`speedup_torch` = teacher_torch / student_torch, `speedup_alone` = teacher_alone / student_alone).
    Runs with `cfg.threads` torch (and
    onnxruntime) threads and gives the caller's thread count back afterwards."""
    if teacher.config.image_feat_size != student.config.image_feat_size:
        raise ValueError("teacher and student must take the same view features")
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    tmp = tempfile.TemporaryDirectory()
    try:
        env = _world(cfg, teacher.config.image_feat_size, Path(tmp.name))  # one world for both passes
        models = {"teacher": for_inference(teacher, cfg.runtime, threads=cfg.threads),
                  "student": for_inference(student, cfg.runtime, threads=cfg.threads)}
        if cfg.int8:
            models["student_int8"] = for_inference(student, cfg.runtime, "int8", threads=cfg.threads)
        out = _time_policies(models, env, cfg)
        if cfg.runtime != "torch" and cfg.compare_torch:
            # A pass of its own: onnxruntime's pool threads spin between kernels, and interleaved
            # with torch's OpenMP threads on 2 cores each would slow the other down.
            eager = _time_policies({"teacher_torch": teacher.eval(), "student_torch": student.eval()},
                                   env, cfg)
            out.update(teacher_torch=eager["teacher_torch"], student_torch=eager["student_torch"])
        if cfg.alone:
            for name in models:  # one pass each: nothing in between, as on a robot
                out[f"{name}_alone"] = _time_policies({name: models[name]}, env, cfg)[name]
    finally:
        torch.set_num_threads(previous)
        tmp.cleanup()
    for name in [k for k in out if k.startswith(("teacher", "student"))]:  # int8 copies: their original's
        out[name]["params"] = (teacher if name.startswith("teacher") else student).num_parameters()
    out["runtime"] = cfg.runtime
    out["speedup"] = out["teacher"]["step_ms"] / out["student"]["step_ms"]
    out["language_speedup"] = out["teacher"]["language_ms"] / out["student"]["language_ms"]
    if cfg.int8:
        out["int8_speedup"] = out["student"]["step_ms"] / out["student_int8"]["step_ms"]
    if "teacher_torch" in out:
        out["speedup_torch"] = out["teacher_torch"]["step_ms"] / out["student_torch"]["step_ms"]
    if "teacher_alone" in out:
        out["speedup_alone"] = out["teacher_alone"]["step_ms"] / out["student_alone"]["step_ms"]
    return out


def _time_policies(models: dict[str, Any], env, cfg: BenchConfig) -> dict[str, Any]:
    """{name: policy for NavigationAgent} -> {name: timings}, every decision timed for all in turn."""
    agents = {k: NavigationAgent(m, 100) for k, m in models.items()}
    lead = next(iter(agents))  # its decisions move the walk on (all are teacher-forced alike)
    times: dict[str, dict[str, list[float]]] = {k: {"step": [], "language": []} for k in agents}
    nodes_seen: list[int] = []
    with torch.inference_mode():
        episodes = sorted(env.episodes, key=lambda ep: -len(ep.path))  # long walks grow large maps
        done_steps = 0
        for ep in episodes:
            if done_steps >= cfg.steps + cfg.warmup:
                break
            obs = env.start([ep])[0]
            states = {}
            for name, agent in agents.items():
                time.sleep(cfg.language_pause)  # spinning pool threads of the last decision settle first
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
                remaining = apply_decisions(env, [0], results[lead].decisions)
                if not remaining or len(times[lead]["step"]) >= cfg.steps:
                    break
                obs = remaining[0]
    out: dict[str, Any] = {}
    for name, agent in agents.items():
        out[name] = {"step_ms": statistics.median(times[name]["step"]), "step": _summary(times[name]["step"]),
                     "language_ms": statistics.median(times[name]["language"])}
    out["map_nodes"] = {"median": float(np.median(nodes_seen)), "max": int(max(nodes_seen))}
    return out


# (runtime, precision) pairs `bench_extraction` times by default; ExtractorConfig has them all.
EXTRACTION_VARIANTS = (("torch", "fp32"), ("torch", "bf16"), ("torch", "int8"), ("onnx", "fp32"), ("onnx", "int8"))


def bench_extraction(repeats: int, threads: int, variants: Sequence[tuple[str, str]] = EXTRACTION_VARIANTS,
                     base: Any = None, progress: bool = True) -> dict[str, Any]:
    """ms per 36 views (480x640 RGB) of each (runtime, precision) extractor, timed interleaved, and
    how close each one's features are to torch fp32's on the same views.

    `base` is the ExtractorConfig the variants are made from (default: a random-weight ViT-B/16 at
    224 px); its runtime/precision are replaced by each variant's. Every round encodes the panorama
    once with every variant in turn, so load from other processes hits all of them alike; the
    preprocessing alone (`perception.vit.preprocess`, included in every variant's time) is timed in
    the same rounds. `cpu_ms` (CPU time of all threads) depends less on other processes' load than
    the wall time `ms`, but counts threads spinning while they wait. Agreement: per-view cosine
    with the fp32 features (min and mean) and the relative error ||f - f32|| / ||f32 - mean(f32)||,
    i.e. against the spread of the views' features rather than their common direction.
    """
    import dataclasses
    import os

    from tqdm import tqdm

    from minivln_core.perception.config import ExtractorConfig
    from minivln_core.perception.vit import FeatureExtractor, preprocess

    base = base if base is not None else ExtractorConfig()
    variants = [("torch", "fp32")] + [v for v in variants if tuple(v) != ("torch", "fp32")]  # the reference first
    views = [np.random.default_rng(i).integers(0, 255, (480, 640, 3), dtype=np.uint8) for i in range(36)]
    extractors, feats = {}, {}
    load_start = os.getloadavg()
    for runtime, precision in tqdm(variants, desc="build extractors", disable=not progress, leave=False):
        label = f"{runtime}_{precision}"
        extractors[label] = FeatureExtractor(dataclasses.replace(base, threads=threads, runtime=runtime,
                                                                 precision=precision, int8=False))
        feats[label] = extractors[label].encode(views)           # (36, D); also the warm-up
    samples: dict[str, list[float]] = {label: [] for label in ["preprocess", *extractors]}
    cpu: dict[str, list[float]] = {label: [] for label in extractors}   # process CPU time, all threads
    prep = next(iter(extractors.values())).prep
    for _ in tqdm(range(repeats), desc="36-view extraction rounds", disable=not progress, leave=False):
        t0 = time.perf_counter()
        preprocess(views, prep)
        samples["preprocess"].append((time.perf_counter() - t0) * 1e3)
        for label, extractor in extractors.items():
            t0, c0 = time.perf_counter(), time.process_time()
            extractor.encode(views)
            samples[label].append((time.perf_counter() - t0) * 1e3)
            cpu[label].append((time.process_time() - c0) * 1e3)
    ref = feats["torch_fp32"]                                       # (36, D)
    spread = float(np.linalg.norm(ref - ref.mean(0)))
    out: dict[str, Any] = {"model": dict(extractors["torch_fp32"].describe(), num_layers=base.num_layers,
                                         hidden_size=base.hidden_size),
                           "views": "36 x 480x640 RGB", "threads": threads, "repeats": repeats,
                           "loadavg_1m": {"start": load_start[0], "end": os.getloadavg()[0]},
                           "preprocess_ms": float(np.median(samples["preprocess"])), "variants": {}}
    for label in extractors:
        f = feats[label]
        cos = np.sum(f * ref, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(ref, axis=1))  # (36,)
        ms = float(np.median(samples[label]))
        out["variants"][label] = {
            "ms": ms, "min_ms": float(np.min(samples[label])), "cpu_ms": float(np.median(cpu[label])),
            "vs_torch_fp32": ms / float(np.median(samples["torch_fp32"])),
            "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "rel_err": float(np.linalg.norm(f - ref)) / spread if spread > 0 else 0.0}
    return out


def environment_info(threads: int) -> dict[str, Any]:
    """Facts a reader needs to compare figures: CPU, threads, torch version, peak memory."""
    return {"cpu": _cpu_model(), "threads": threads, "torch": torch.__version__,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
