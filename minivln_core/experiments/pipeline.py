"""The main job (`minivln pipeline`) on the embedded default world.

generate the synthetic world -> render and encode its panoramas (ViT) -> pretrain and fine-tune
the teacher -> evaluate the expert (ceiling), a random walk (floor), the teacher and an untrained
student on the validation splits -> the two-stage distillation ablation at a small budget
(students distilled from this teacher; `ablation/`) -> report.json, report.md and a bar chart.

Every stage writes into the run folder and is resumable: rerunning the command after an
interruption continues where it stopped (finished stages are skipped, training resumes from its
last checkpoint).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from minivln_core.perception.config import save_extractor_config
from minivln_core.config import save_yaml, to_dict
from minivln_core.data.synth.config import SynthConfig
from minivln_core.data.world import WorldPaths
from minivln_core.eval.evaluate import EvalSpec, evaluate_expert, evaluate_policy, evaluate_random_walk
from minivln_core.eval.report import render_table, write_report
from minivln_core.io_utils import read_json_or_none
from minivln_core.experiments.distill_ablation import BUDGETS, AblationConfig, render_ablation_table, run_ablation
from minivln_core.models.loading import load_policy
from minivln_core.models.shipped import list_shipped
from minivln_core.perception.config import ExtractorConfig, embedded_world_extractor
from minivln_core.train.finetune import FinetuneConfig, run_finetune
from minivln_core.train.optim import OptimConfig
from minivln_core.train.pretrain import PretrainConfig, run_pretrain
from minivln_core.train.trainer import LoopConfig

log = logging.getLogger("minivln.pipeline")


@dataclass(frozen=True)
class PipelineConfig:
    """The main job's settings (YAML overrides via --config, single keys via --set)."""

    world: SynthConfig = field(default_factory=SynthConfig)   # the generated world
    features: Literal["vit", "semantic"] = "vit"              # rendered panoramas + ViT, or the semantic store
    extractor: ExtractorConfig = field(default_factory=embedded_world_extractor)
    task: Literal["r2r", "reverie"] = "r2r"
    splits: list[str] = field(default_factory=lambda: ["val_seen", "val_unseen"])
    teacher_preset: str = "duet-small"                        # CPU-sized teacher (9/2/4 layers)
    student_preset: str = "minivln-small"                     # CPU-sized student (3/1/2 layers)
    pretrain_teacher: bool = True                             # SAP/MLM/MRC pretraining before fine-tuning
    # Budgets sized for the README's main job on 2 cores; real experiments raise loop.steps.
    pretrain: PretrainConfig = field(default_factory=lambda: PretrainConfig(
        eval_limit=32, loop=LoopConfig(steps=200, eval_every=100, save_every=50)))
    # Imitation (teacher-forced) rollouts: an untrained policy's sampled DAgger rollouts wander for
    # ~13 decisions and cost 3x more per iteration; DAgger is for longer runs (train_alg=dagger).
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(
        train_alg="imitation", batch_size=8,
        optim=OptimConfig(lr=5e-4, warmup_steps=20, grad_clip=40.0, schedule="constant"),
        loop=LoopConfig(steps=200, eval_every=100, save_every=50), eval_limit=50))
    batch_size: int = 16                                      # evaluation batch
    max_steps: int = 15                                       # decisions per episode
    eval_limit: int = 0                                       # instructions per split (0 = all)
    seed: int = 0
    run_ablation: bool = True                                 # two-stage distillation ablation (Table III)
    # Student budgets and recipes of the ablation; world, features, task, presets, teachers (this
    # pipeline's), max_steps, eval_limit, seed and threads come from the keys above.
    ablation: AblationConfig = field(default_factory=lambda: AblationConfig(budget=BUDGETS["small"]))
    threads: int = 0                                          # torch CPU threads (0 = default)


def _stamp_matches(path: Path, key: str, value: Any) -> bool:
    stamp = read_json_or_none(path)
    return isinstance(stamp, dict) and stamp.get(key) == value


def make_world(out: Path, config: SynthConfig) -> WorldPaths:
    """Generate the world unless the folder already holds one made from the same config."""
    from minivln_core.data.synth.world import generate_world

    root = out / "world"
    if _stamp_matches(root / "world.json", "config", to_dict(config)):
        log.info("world %s is up to date", root)
    else:
        started = time.perf_counter()
        generate_world(root, config)
        log.info("generated world in %.1f s", time.perf_counter() - started)
    return WorldPaths(root).check()


def make_features(paths: WorldPaths, config: PipelineConfig, progress: bool) -> str:
    """The view-feature file name the policies use; renders and encodes it when needed."""
    if config.features == "semantic":
        return "views"
    from minivln_core.perception.vit import FeatureExtractor
    from minivln_core.perception.world_features import build_world_features, build_world_object_features

    name, stamp = "views_vit", paths.root / "features" / "views_vit.json"
    wanted = to_dict(config.extractor)
    objects = config.task == "reverie"
    done = (_stamp_matches(stamp, "extractor", wanted) and (paths.root / "features" / f"{name}.h5").exists()
            and (not objects or WorldPaths(paths.root, name).object_features.exists()))
    if not done:
        extractor = FeatureExtractor(config.extractor)
        summary = build_world_features(paths.root, extractor, progress=progress)
        if objects:
            summary["objects"] = build_world_object_features(paths.root, extractor)
        stamp.write_text(json.dumps({"extractor": wanted, **summary}, indent=2))
    return name


def train_teacher(out: Path, paths: WorldPaths, features: str, config: PipelineConfig, progress: bool) -> Path:
    """Pretrain (optional) and fine-tune the teacher; returns its best checkpoint."""
    common = dict(world=str(paths.root), features=features, task=config.task, preset=config.teacher_preset)
    init = None
    if config.pretrain_teacher:
        pre = replace(config.pretrain, **common)
        run_pretrain(pre, out / "teacher" / "pretrain", progress=progress)
        init = str(out / "teacher" / "pretrain" / "policy")
    ft = replace(config.finetune, init=init, max_steps=config.max_steps, **common)
    run_finetune(ft, out / "teacher" / "finetune", meta={"role": "teacher"}, progress=progress)
    return out / "teacher" / "finetune" / "best"


def distill_ablation(out: Path, paths: WorldPaths, features: str, teacher_dir: Path, config: PipelineConfig,
                     progress: bool) -> dict[str, Any]:
    """The ablation's students, distilled from this pipeline's teacher (its pretrained policy for stage 1)."""
    pretrained = out / "teacher" / "pretrain" / "policy"
    cfg = replace(config.ablation, world=str(paths.root), features=features, task=config.task,
                  splits=config.splits, teacher_preset=config.teacher_preset, student_preset=config.student_preset,
                  teacher=str(teacher_dir), teacher_pretrain=str(pretrained) if config.pretrain_teacher else None,
                  max_steps=config.max_steps, eval_batch_size=config.batch_size, threads=config.threads,
                  budget=replace(config.ablation.budget, eval_limit=config.eval_limit, seed=config.seed))
    report = run_ablation(cfg, out / "ablation", progress)
    if features == "views_vit":  # the distilled student is the robot's policy
        save_extractor_config(out / "ablation" / "student" / "two-stage" / "best", config.extractor)
    return report


def shipped_for(config: PipelineConfig) -> str | None:
    """The shipped checkpoint trained on exactly this job's world and features, if any (the
    embedded world's `embedded-student`); the report shows it beside what the job trains."""
    embedded = (config.world == SynthConfig() and config.features == "vit" and config.task == "r2r"
                and config.extractor == embedded_world_extractor())
    names = {s.name for s in list_shipped()}
    return "embedded-student" if embedded and "embedded-student" in names else None


def run_pipeline(config: PipelineConfig, out: str | Path, progress: bool = True) -> None:
    """Every stage of the main job into `out` (resumable); prints the tables and writes the report."""
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(config, out / "config.yaml")
    started = time.perf_counter()
    paths = make_world(out, config.world)
    features = make_features(paths, config, progress)
    teacher_dir = train_teacher(out, paths, features, config, progress)
    if features == "views_vit":  # the robot rebuilds the same extractor from the checkpoint alone
        save_extractor_config(teacher_dir, config.extractor)
    teacher = load_policy(teacher_dir)
    shipped = shipped_for(config)
    rows: list[dict[str, Any]] = []
    for split in config.splits:
        spec = EvalSpec(paths.root, config.task, split, config.batch_size, config.max_steps, config.eval_limit,
                        features)
        evals = out / "eval"
        rows.append({"policy": "shortest-path expert", "split": split, "params": 0, **evaluate_expert(spec, evals)})
        rows.append({"policy": "random walk", "split": split, "params": 0,
                     **evaluate_random_walk(spec, evals, config.seed)})
        rows.append({"policy": f"teacher {config.teacher_preset}", "split": split,
                     "params": teacher.num_parameters(), **evaluate_policy(teacher, spec, evals, "teacher", progress)})
        if shipped:  # trained elsewhere on this same world: what the robot runs by default
            policy = load_policy(shipped)
            rows.append({"policy": f"{shipped} (shipped, loaded)", "split": split, "params": policy.num_parameters(),
                         **evaluate_policy(policy, spec, evals, shipped, progress)})
    extra: dict[str, Any] = {"config": to_dict(config), "world": str(paths.root), "features": features,
                             "shipped": shipped}
    if config.run_ablation:
        ablation = distill_ablation(out, paths, features, teacher_dir, config, progress)
        extra["ablation"] = {"report": "ablation/ablation.md", "goals": ablation["goals"]}
        # the students this job distils from its teacher, scored by the ablation on the same splits
        rows += [{"policy": f"student {r['id']} {r['name']} (distilled here)", "split": r["split"],
                  "params": r["params"], **{k: r[k] for k in ("num_episodes", "sr", "spl", "ndtw", "ne")}}
                 for r in ablation["results"] if r["id"] != "teacher"]
        rows.sort(key=lambda r: config.splits.index(r["split"]))   # one block per split
    minutes = (time.perf_counter() - started) / 60
    write_report(out, "MiniVLN main job", rows, {**extra, "minutes": round(minutes, 2)})
    print(render_table(rows))
    if config.run_ablation:
        print(f"\nDistillation ablation ({out / 'ablation' / 'ablation.md'}):\n"
              f"{render_ablation_table(ablation['results'])}")
    print(f"\n{minutes:.1f} min; report: {out / 'report.md'} (+ report.json, report.png)")
