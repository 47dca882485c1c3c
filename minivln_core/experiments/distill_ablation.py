"""The paper's two-stage ablation (Table III), optionally with the KDWeight sweep (Table V).

Every run uses the same seed, the same pretraining and fine-tuning budgets and the same recipes:
- the teacher: pretraining, then fine-tuning (or checkpoints given by the caller, e.g. the
  pipeline's teacher);
- the student's pretraining, once plainly and once with stage-1 distillation of the pretrained
  teacher;
- four student fine-tunings: #1 both stages (stage-1 student + stage-2 KD), #2 pretraining KD only,
  #3 fine-tuning KD only (plain student + stage-2 KD), #4 no KD; the sweep adds #1 at other
  KDWeights (Table V), and `term_ablation` adds #1 without each stage-2 term (Table IV).
Each policy is scored with greedy rollouts on every split (SR, SPL, nDTW; RGS and RGSPL on REVERIE).
Parameter counts come from the models. Per-step CPU milliseconds come from `eval.bench` (teacher and
student timed side by side; the students all have the same architecture, so one timing serves all).
Outputs: ablation.json, ablation.md and ablation.png. Every stage is resumable: training resumes from
`last/`, and scores whose checkpoint has not changed since they were computed are reused. With
`jobs: N` the runs that do not wait for each other (the plain and the distilled student pretraining,
the four fine-tunings, the scores) run N at a time in processes of their own (`train.jobs`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from minivln_core.config import Validated, to_dict
from minivln_core.distill.stage1 import DistillPretrainConfig, run_distill_pretrain
from minivln_core.distill.stage2 import DistillFinetuneConfig, run_distill_finetune
from minivln_core.errors import ConfigError
from minivln_core.eval.bench import BenchConfig, bench_policies, environment_info
from minivln_core.eval.evaluate import EvalSpec, evaluate_policy
from minivln_core.eval.report import BAR_METRICS
from minivln_core.io_utils import atomic_write_json, atomic_write_text, finish_figure, read_json_or_none
from minivln_core.models.checkpoint import CONFIG_NAME
from minivln_core.models.config import ModelConfig
from minivln_core.models.loading import load_policy
from minivln_core.models.shipped import resolve_checkpoint
from minivln_core.perception.variant_choice import checkpoint_digest
from minivln_core.train.jobs import Job, run_jobs
from minivln_core.train.optim import OptimConfig
from minivln_core.train.pretrain import run_pretrain

log = logging.getLogger("minivln.ablation")


@dataclass(frozen=True)
class AblationBudget(Validated):
    """How long every run trains and how much is scored (the same for the teacher and each student)."""

    pretrain_steps: int = 200               # pretraining / stage-1 steps per run
    finetune_steps: int = 200               # fine-tuning / stage-2 steps per run
    # Fine-tuning steps of a teacher trained here (0 = finetune_steps). A longer teacher is one that has
    # learned more than the students can alone, as the paper's converged teacher has; on a CPU budget the
    # students stop well before that, and the teacher's extra steps overlap their runs with `jobs` > 1.
    teacher_finetune_steps: int = 0
    batch_size: int = 8                     # global batch of every run
    eval_every: int = 100                   # fine-tuning validation cadence (0 = at the end only)
    eval_limit: int = 0                     # instructions per split in the final scores (0 = all)
    seed: int = 0                           # seed of every run (initialisation, batches, dropout)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key."""
        for key in ("pretrain_steps", "finetune_steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key 'budget.{key}' must be >= 1, got {getattr(self, key)}")
        for key in ("eval_every", "eval_limit", "teacher_finetune_steps"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key 'budget.{key}' must be >= 0, got {getattr(self, key)}")


# Named budgets for `--budget`: a seconds-long check, the main job's, and a longer experiment.
BUDGETS = {
    "smoke": AblationBudget(pretrain_steps=2, finetune_steps=2, batch_size=2, eval_every=0, eval_limit=4),
    "small": AblationBudget(pretrain_steps=100, finetune_steps=100, batch_size=8, eval_every=50),
    "long": AblationBudget(pretrain_steps=2000, finetune_steps=2000, batch_size=16, eval_every=250),
}


@dataclass(frozen=True)
class AblationConfig(Validated):
    """The ablation's settings (YAML overrides via --config, single keys via --set)."""

    world: str = "runs/main/world"          # world folder (see `minivln synth`)
    features: str = "views"                 # view features: <world>/features/<features>.h5
    task: Literal["r2r", "reverie"] = "r2r"
    splits: list[str] = field(default_factory=lambda: ["val_seen", "val_unseen"])
    teacher_preset: str = "duet-small"      # CPU-sized teacher (9 / 2 / 4 layers, 12 heads)
    student_preset: str = "minivln-small"   # CPU-sized student (3 / 1 / 2 layers, 12 heads)
    teacher: str | None = None              # fine-tuned teacher to reuse (stage 2); None = train one here
    teacher_pretrain: str | None = None     # pretrained teacher to reuse (stage 1); None = train one here,
    #                                         or use `teacher` when only that is given
    budget: AblationBudget = field(default_factory=AblationBudget)
    kd_weight_sweep: list[float] = field(default_factory=list)  # Table V: e.g. [0.01, 0.1, 1]
    # Table IV: the two-stage student once more with each stage-2 term switched off (L_txt, L_pano, L_fuse)
    term_ablation: bool = False
    # Recipes: learning rates, task mix, eval sets, stage-1 kd_* weights, stage-2 kd_weight,
    # kd_temperature and term switches. World, features, task, presets, init, teacher, steps,
    # batch size and seed are set by the ablation.
    pretrain: DistillPretrainConfig = field(default_factory=lambda: DistillPretrainConfig(
        eval_splits=["val_unseen"], eval_limit=32))
    finetune: DistillFinetuneConfig = field(default_factory=lambda: DistillFinetuneConfig(
        train_alg="imitation", eval_splits=["val_unseen"], eval_limit=50,
        optim=OptimConfig(lr=5e-4, warmup_steps=20, grad_clip=40.0, schedule="constant")))
    # Teacher vs student ms per step (the ablation reports no int8 student, so none is timed).
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(steps=20, warmup=2, min_nodes=5, houses=2,
                                                                   int8=False))
    max_steps: int = 15                     # decisions per episode
    eval_batch_size: int = 16
    threads: int = 0                        # torch CPU threads per run (0 = default; with jobs: cores / jobs)
    # Runs at once, each in a process of its own (train.jobs): a small model's run keeps about one core
    # busy, so on N cores `jobs: N` finishes sooner; results do not depend on it at a fixed `threads`.
    jobs: int = 1

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key."""
        if self.jobs < 1:
            raise ConfigError(f"config key 'jobs' must be >= 1, got {self.jobs}")
        if self.finetune.kd_weight <= 0 or any(w <= 0 for w in self.kd_weight_sweep):
            raise ConfigError("config keys 'finetune.kd_weight' and 'kd_weight_sweep' must be > 0 (a zero "
                              "KDWeight is the no-KD student)")
        if not self.splits:
            raise ConfigError("config key 'splits' must name at least one split")


@dataclass(frozen=True)
class Variant:
    """One row of Table III (or V): which pretraining it starts from and whether stage 2 distils."""

    name: str
    id: str                                 # Table III id; sweep rows add the KDWeight ("#1@0.01")
    label: str
    pretrain_kd: bool
    finetune_kd: bool
    kd_weight: float | None = None
    off: tuple[str, ...] = ()               # Table IV: stage-2 terms switched off ("txt", "pano", "fuse")


def variants(cfg: AblationConfig) -> list[Variant]:
    """#1-#4 of Table III, then the two-stage student at every other KDWeight of the sweep."""
    w = cfg.finetune.kd_weight
    rows = [Variant("two-stage", "#1", "student, both stages", True, True, w),
            Variant("pretrain-kd", "#2", "student, pretraining KD", True, False),
            Variant("finetune-kd", "#3", "student, fine-tuning KD", False, True, w),
            Variant("no-kd", "#4", "student, no KD", False, False)]
    for weight in cfg.kd_weight_sweep:
        if weight != w:
            rows.append(Variant(f"two-stage-kd{weight:g}", f"#1@{weight:g}",
                                f"student, both stages, KDWeight {weight:g}", True, True, weight))
    if cfg.term_ablation:
        for term in KD_TERMS:
            rows.append(Variant(f"two-stage-no-{term}", f"#1-{term}", f"student, both stages, without L_{term}",
                                True, True, w, (term,)))
    return rows


KD_TERMS = ("txt", "pano", "fuse")          # the stage-2 terms (distill.stage2): text, panorama, fused logits


class Ablation:
    """Trains and scores every policy of the ablation in `out` (resumable)."""

    def __init__(self, cfg: AblationConfig, out: Path, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        b = cfg.budget
        common = dict(world=cfg.world, features=cfg.features, task=cfg.task, batch_size=b.batch_size)
        self.pretrain_cfg = replace(cfg.pretrain, **common,
                                    loop=replace(cfg.pretrain.loop, steps=b.pretrain_steps, seed=b.seed))
        self.finetune_cfg = replace(cfg.finetune, **common, max_steps=cfg.max_steps,
                                    loop=replace(cfg.finetune.loop, steps=b.finetune_steps, seed=b.seed,
                                                 eval_every=b.eval_every))

    # -- training ---------------------------------------------------------------------------
    def pretrain(self, name: str, preset: str, teacher: str | Path | None = None) -> Path:
        """Plain pretraining, or stage-1 distillation of `teacher`; returns the policy checkpoint."""
        run = self.out / name
        cfg = replace(self.pretrain_cfg, preset=preset, teacher=str(teacher) if teacher else None)
        if teacher:
            run_distill_pretrain(cfg, run, {"ablation": name}, self.progress)
        else:  # plain pretraining; the kd_* keys of the recipe are not read
            run_pretrain(cfg, run, {"ablation": name}, self.progress)
        return run / "policy"

    def finetune(self, name: str, preset: str, init: Path, teacher: str | Path | None = None,
                 kd_weight: float | None = None, steps: int = 0, off: tuple[str, ...] = ()) -> Path:
        """Fine-tuning from `init` for `steps` (0 = the budget's), distilling `teacher` (at `kd_weight`,
        default the recipe's, without the stage-2 terms in `off`) when given; returns the best checkpoint."""
        cfg = replace(self.finetune_cfg, preset=preset, init=str(init), teacher=str(teacher) if teacher else None,
                      kd_weight=self.finetune_cfg.kd_weight if kd_weight is None else kd_weight,
                      **{f"kd_{term}": False for term in off})
        if steps:
            cfg = replace(cfg, loop=replace(cfg.loop, steps=steps))
        run_distill_finetune(cfg, self.out / name, meta={"ablation": name}, progress=self.progress)
        return self.out / name / "best"

    def jobs(self) -> tuple[list[Job], dict[str, Path]]:
        """Every training and scoring run as jobs in dependency order, and the checkpoints given.

        Job names: 'teacher/pretrain', 'teacher/finetune' (given or trained here), 'student/pretrain',
        'student/distill-pretrain', 'student/<variant>' and 'eval/<policy>/<split>'."""
        cfg = self.cfg
        # Workers show no progress bars of their own (several would overwrite each other's line).
        runner = self if cfg.jobs <= 1 else Ablation(cfg, self.out, progress=False)
        given: dict[str, Path] = {}
        jobs: list[Job] = []
        if cfg.teacher_pretrain or cfg.teacher:  # folders or shipped names (`minivln checkpoints`)
            given["teacher/pretrain"] = resolve_checkpoint(cfg.teacher_pretrain or cfg.teacher)
        else:
            jobs.append(Job("teacher/pretrain", runner.pretrain, ("teacher/pretrain", cfg.teacher_preset)))
        if cfg.teacher:
            given["teacher/finetune"] = resolve_checkpoint(cfg.teacher)
        else:
            jobs.append(Job("teacher/finetune", runner.finetune, ("teacher/finetune", cfg.teacher_preset),
                            {"steps": cfg.budget.teacher_finetune_steps}, needs={"init": "teacher/pretrain"}))
        jobs.append(Job("student/pretrain", runner.pretrain, ("student/pretrain", cfg.student_preset)))
        jobs.append(Job("student/distill-pretrain", runner.pretrain, ("student/distill-pretrain", cfg.student_preset),
                        needs={"teacher": "teacher/pretrain"}))
        policies = {"teacher": "teacher/finetune"}
        for v in variants(cfg):
            needs = {"init": "student/distill-pretrain" if v.pretrain_kd else "student/pretrain"}
            if v.finetune_kd:
                needs["teacher"] = "teacher/finetune"
            jobs.append(Job(f"student/{v.name}", runner.finetune, (f"student/{v.name}", cfg.student_preset),
                            {"kd_weight": v.kd_weight, "off": v.off}, needs))
            policies[v.name] = f"student/{v.name}"
        for split in cfg.splits:
            for name, job in policies.items():
                jobs.append(Job(f"eval/{name}/{split}", runner.scores, (name,), {"split": split},
                                {"checkpoint": job}))
        return jobs, given

    def train(self) -> dict[str, Path]:
        """Train and score every policy (cfg.jobs at a time); returns the checkpoint of 'teacher', of
        'teacher_pretrain' (stage 1's teacher) and of each variant (its best). Scores land in the cache
        `scores` reads."""
        cfg = self.cfg
        jobs, given = self.jobs()
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.jobs)
        results = run_jobs(jobs, cfg.jobs, threads, self.progress, given)
        return {"teacher": results["teacher/finetune"], "teacher_pretrain": results["teacher/pretrain"],
                **{v.name: results[f"student/{v.name}"] for v in variants(cfg)}}

    # -- scoring ----------------------------------------------------------------------------
    def scores(self, name: str, checkpoint: Path, split: str) -> dict[str, Any]:
        """Greedy-rollout metrics of a checkpoint on a split (reused while the checkpoint is unchanged)."""
        cfg = self.cfg
        spec = EvalSpec(Path(cfg.world), cfg.task, split, cfg.eval_batch_size, cfg.max_steps,
                        cfg.budget.eval_limit, cfg.features)
        stamp = {"checkpoint": str(checkpoint), "written": (checkpoint / CONFIG_NAME).stat().st_mtime_ns,
                 "spec": {k: str(v) for k, v in spec.__dict__.items()}}
        cache = self.out / "eval" / name / f"{split}_scores.json"
        cached = _read_json(cache)
        if cached and cached.get("stamp") == stamp:
            return cached["metrics"]
        metrics = evaluate_policy(load_policy(checkpoint), spec, cache.parent, name, self.progress)
        atomic_write_json(cache, {"stamp": stamp, "metrics": metrics})
        return metrics

    def timing(self, teacher: Path, student: Path) -> dict[str, Any]:
        """Per-step CPU ms of teacher and student from `eval.bench` (reused while both are unchanged)."""
        stamp = {"teacher": str(teacher), "student": str(student), "bench": to_dict(self.cfg.bench),
                 "written": [(p / CONFIG_NAME).stat().st_mtime_ns for p in (teacher, student)]}
        cache = self.out / "bench.json"
        cached = _read_json(cache)
        if cached and cached.get("stamp") == stamp:
            return cached["result"]
        result = bench_policies(load_policy(teacher), load_policy(student), self.cfg.bench)
        result["machine"] = environment_info(self.cfg.bench.threads)
        atomic_write_json(cache, {"stamp": stamp, "result": result})
        return result

    def run(self) -> dict[str, Any]:
        """Train, score, time and write ablation.json / .md / .png; returns the JSON content."""
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        checkpoints = self.train()
        # Timed alone, after every run (other processes would slow both policies unevenly).
        timing = self.timing(checkpoints["teacher"], checkpoints["two-stage"])
        teacher_cfg = load_policy(checkpoints["teacher"]).config
        student_cfg = load_policy(checkpoints["two-stage"]).config
        rows = []
        for split in cfg.splits:
            rows.append({"id": "teacher", "policy": "teacher", "name": "teacher", "pretrain_kd": None,
                         "finetune_kd": None, "kd_weight": None, "split": split,
                         "params": timing["teacher"]["params"], "step_ms": timing["teacher"]["step_ms"],
                         **self.scores("teacher", checkpoints["teacher"], split)})
            for v in variants(cfg):
                rows.append({"id": v.id, "policy": f"{v.id} {v.label}", "name": v.name, "pretrain_kd": v.pretrain_kd,
                             "finetune_kd": v.finetune_kd, "kd_weight": v.kd_weight, "split": split,
                             "params": timing["student"]["params"], "step_ms": timing["student"]["step_ms"],
                             **self.scores(v.name, checkpoints[v.name], split)})
        report = {"title": "MiniVLN two-stage distillation ablation",
                  "teacher": {"checkpoint": str(checkpoints["teacher"]),
                              "pretrain_checkpoint": str(checkpoints["teacher_pretrain"]),
                              # what the checkpoints hold, wherever they were read from
                              "digest": checkpoint_digest(checkpoints["teacher"]),
                              "pretrain_digest": checkpoint_digest(checkpoints["teacher_pretrain"]),
                              "shape": model_shape(teacher_cfg), "trained_here": not cfg.teacher},
                  "student": {"preset": cfg.student_preset, "shape": model_shape(student_cfg)},
                  "budget": to_dict(cfg.budget), "config": to_dict(cfg), "speedup": timing["speedup"],
                  "machine": timing["machine"], "goals": goals(rows, cfg.splits), "results": rows}
        write_ablation_report(self.out, report)
        return report


# -- report -----------------------------------------------------------------------------------
def model_shape(config: ModelConfig) -> str:
    """'192 wide, 12 heads, 9 / 2 / 4 layers' (language / panorama / cross-modal)."""
    return (f"{config.hidden_size} wide, {config.num_attention_heads} heads, {config.num_l_layers} / "
            f"{config.num_pano_layers} / {config.num_x_layers} layers")


def goals(rows: list[dict[str, Any]], splits: list[str]) -> dict[str, dict[str, Any]]:
    """Per split, the issue's goals: two-stage SR >= 97% of the teacher's, >= no-KD + 3 points, and
    both stages >= either single stage >= none."""
    out = {}
    for split in splits:
        sr = {r["name"]: r["sr"] for r in rows if r["split"] == split}
        single = (sr["pretrain-kd"], sr["finetune-kd"])
        out[split] = {
            "teacher_sr_ratio": sr["two-stage"] / sr["teacher"] if sr["teacher"] else None,
            "gain_over_no_kd": sr["two-stage"] - sr["no-kd"],
            "reaches_97pct_of_teacher": sr["two-stage"] >= 0.97 * sr["teacher"],
            "beats_no_kd_by_3": sr["two-stage"] >= sr["no-kd"] + 3.0,
            "both_ge_single_ge_none": sr["two-stage"] >= max(single) and min(single) >= sr["no-kd"],
        }
    return out


def render_ablation_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of every policy and split (RGS / RGSPL columns when the task has objects)."""
    grounding = all("rgs" in r for r in rows)
    head = "| id | policy | PT-KD | FT-KD | KDWeight | split | params | ms/step | SR | SPL | nDTW |"
    rule = "|---|---|:-:|:-:|---:|---|---:|---:|---:|---:|---:|"
    if grounding:
        head, rule = head + " RGS | RGSPL |", rule + "---:|---:|"
    mark = {True: "✓", False: "✗", None: ""}
    lines = [head, rule]
    for r in rows:
        weight = "" if r["kd_weight"] is None else f"{r['kd_weight']:g}"
        line = (f"| {r['id']} | {r['policy']} | {mark[r['pretrain_kd']]} | {mark[r['finetune_kd']]} | {weight} | "
                f"{r['split']} | {r['params']:,} | {r['step_ms']:.1f} | {r['sr']:.1f} | {r['spl']:.1f} | "
                f"{r['ndtw']:.1f} |")
        if grounding:
            line += f" {r['rgs']:.1f} | {r['rgspl']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def param_fraction(rows: list[dict[str, Any]]) -> float:
    """Student parameters / teacher parameters, from the report's rows."""
    teacher = next(r["params"] for r in rows if r["name"] == "teacher")
    student = next(r["params"] for r in rows if r["name"] != "teacher")
    return student / teacher


def goal_lines(report_goals: dict[str, dict[str, Any]]) -> list[str]:
    """One Markdown line per split saying which goal is met."""
    said = {True: "met", False: "NOT met"}
    lines = []
    for split, g in report_goals.items():
        ratio = "n/a" if g["teacher_sr_ratio"] is None else f"{g['teacher_sr_ratio']:.2f}"
        lines.append(f"- {split}: two-stage SR / teacher SR = {ratio} (goal >= 0.97: "
                     f"{said[g['reaches_97pct_of_teacher']]}); two-stage - no KD = {g['gain_over_no_kd']:+.1f} SR "
                     f"points (goal >= +3: {said[g['beats_no_kd_by_3']]}); both stages >= either single stage "
                     f">= none: {said[g['both_ge_single_ge_none']]}")
    return lines


def write_ablation_report(out: Path, report: dict[str, Any]) -> None:
    """ablation.json (everything), ablation.md (presets, budget, table, goals) and ablation.png (bars)."""
    atomic_write_json(out / "ablation.json", report)
    b, machine = report["budget"], report["machine"]
    scored = (f"{b['eval_limit']} instructions per split, spread over its houses" if b["eval_limit"]
              else "every instruction of each split")
    teacher = report["teacher"]
    runs = "every run" if teacher["trained_here"] else "every student run (the teacher was given, with its own budget)"
    if teacher["trained_here"] and b.get("teacher_finetune_steps", 0) not in (0, b["finetune_steps"]):
        runs = f"every run (the teacher fine-tunes for {b['teacher_finetune_steps']} steps)"
    text = "\n".join([
        f"# {report['title']}", "",
        f"Teacher: {teacher['shape']} ({teacher['checkpoint']}). "
        f"Student: `{report['student']['preset']}`, {report['student']['shape']}; "
        f"{param_fraction(report['results']):.0%} of the teacher's parameters (the paper's: 12%).",
        f"Budget of {runs}: {b['pretrain_steps']} pretraining and {b['finetune_steps']} fine-tuning steps at batch "
        f"{b['batch_size']}, seed {b['seed']}; scored on {scored}.",
        f"CPU time per decision step from the `minivln bench` code ({machine['threads']} threads, {machine['cpu']}): "
        f"the student is {report['speedup']:.1f}x faster.", "",
        render_ablation_table(report["results"]), "", "## Goals", "", *goal_lines(report["goals"]), "",
        "![ablation](ablation.png)", ""])
    atomic_write_text(out / "ablation.md", text)
    plot_ablation(report["results"], out / "ablation.png", report["title"])


def plot_ablation(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """One panel per split with SR, SPL, nDTW (+ RGS, RGSPL) per policy, and one with the parameter
    count (M) and CPU ms per decision step of the teacher and the student."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = list(BAR_METRICS) + (["rgs", "rgspl"] if all("rgs" in r for r in rows) else [])
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(1, len(splits) + 1, figsize=(5.5 * len(splits) + 3.5, 4.4), squeeze=False,
                             gridspec_kw={"width_ratios": [3] * len(splits) + [1.4]})
    width = 0.8 / len(metrics)
    for ax, split in zip(axes[0], splits):
        sub = [r for r in rows if r["split"] == split]
        x = np.arange(len(sub))
        for k, metric in enumerate(metrics):
            bars = ax.bar(x + (k - (len(metrics) - 1) / 2) * width, [r[metric] for r in sub], width,
                          label=metric.upper())
            ax.bar_label(bars, fmt="%.0f", fontsize=6)
        ax.set_xticks(x, [r["id"] for r in sub], fontsize=8)
        ax.set(title=split, ylim=(0, 105), ylabel="%")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, ncol=len(metrics))
    pair = [next(r for r in rows if r["name"] == "teacher"), next(r for r in rows if r["name"] != "teacher")]
    ax = axes[0][-1]
    params = ax.bar([-0.2, 0.8], [r["params"] / 1e6 for r in pair], 0.4, label="params (M)")
    speed = ax.bar([0.2, 1.2], [r["step_ms"] for r in pair], 0.4, label="ms / step")
    ax.bar_label(params, fmt="%.1f", fontsize=7)
    ax.bar_label(speed, fmt="%.1f", fontsize=7)
    ax.set_xticks([0, 1], ["teacher", "student"])
    ax.set(title="size and CPU time")
    ax.legend(fontsize=7)
    return finish_figure(fig, path, title)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object of a file, or None if it is missing or damaged (then the work is redone)."""
    data = read_json_or_none(path)
    return data if isinstance(data, dict) else None


def run_ablation(cfg: AblationConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train, score and report every policy of the ablation in `out` (rerun to resume)."""
    return Ablation(cfg, out, progress).run()
