"""DUET pretraining on expert trajectories (reference section c.1): MLM, MRC, SAP and, for REVERIE, OG.

Each optimiser step draws one proxy task by `mix_ratio` (a pure function of seed and step) and
builds one teacher-forced sample per episode of the step's global batch (see `pretrain_tasks`).
Validation reports, per split, SAP accuracy (fused argmax == label), MLM accuracy, MRC KL and OG
accuracy on a fixed set of samples; the best checkpoint (val_unseen SAP accuracy) is written twice:
`policy/` holds the navigation policy alone (what `minivln finetune --init` takes) and `best/` the
whole pretraining model (text-side stream and MLM/MRC heads included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import nn

from minivln_core.config import Validated
from minivln_core.data.episodes import Episode
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.env.nav_env import NavEnv
from minivln_core.errors import ConfigError, DataError
from minivln_core.eval.evaluate import EvalSpec, build_env
from minivln_core.models import preset
from minivln_core.models.checkpoint import save_pretrained
from minivln_core.models.dropout import use_fast_dropout
from minivln_core.models.pretrain import DuetPretrainModel
from minivln_core.train import distributed as D
from minivln_core.train.batches import global_batch
from minivln_core.train.optim import OptimConfig
from minivln_core.train.pretrain_tasks import TASKS, build_batch, task_loss
from minivln_core.train.spawn import spawn_ranks
from minivln_core.train.trainer import LoopConfig, Trainer, save_run_config, step_seed

log = logging.getLogger("minivln.pretrain")

TASK_SALT = 40_000   # step_seed salt of the per-step task draw
EVAL_STEP = 0        # validation samples are drawn as at this step: the same samples at every evaluation


@dataclass(frozen=True)
class MixRatio(Validated):
    """Relative frequency of each proxy task (DUET: all 1). OG applies to REVERIE only."""

    mlm: float = 1.0
    mrc: float = 1.0
    sap: float = 1.0
    og: float = 1.0

    def validate(self) -> None:
        """Raise ConfigError on a negative weight."""
        for name in TASKS:
            if getattr(self, name) < 0:
                raise ConfigError(f"config key 'mix_ratio.{name}' must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class PretrainConfig(Validated):
    """Pretraining settings; YAML files hold overrides only."""

    world: str = "runs/main/world"          # world folder (see `minivln synth`)
    features: str = "views"                 # view features: <world>/features/<features>.h5
    task: Literal["r2r", "reverie"] = "r2r"
    preset: str = "duet-small"              # model size (image/object feature sizes come from the world)
    grounding: bool = False                 # add instruction-grounding columns (MiniLM name features only)
    mix_ratio: MixRatio = field(default_factory=MixRatio)
    batch_size: int = 8                     # global batch (split over torchrun processes)
    max_traj_nodes: int = 20                # panoramas with gradient before the end node (DUET TRAIN_MAX_STEP)
    max_instr_len: int = 200                # instruction tokens kept ([CLS] ... [SEP])
    threads: int = 0                        # torch CPU threads (0 = default)
    # Dropout masks from numpy's PCG64 ("numpy", models.dropout: several times faster on a CPU, same
    # distribution, reproducible from the step seed) or torch's generator ("torch", the original runs').
    dropout_rng: Literal["torch", "numpy"] = "torch"
    eval_splits: list[str] = field(default_factory=lambda: ["val_seen", "val_unseen"])
    eval_limit: int = 64                    # validation instructions per split (0 = all)
    eval_batch_size: int = 16
    # DUET: lr 5e-5 over 100k steps at batch 64; short CPU runs of small models need a larger step.
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=2e-4, betas=(0.9, 0.98), weight_decay=0.01, warmup_steps=100, schedule="linear", grad_clip=5.0))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=2000, eval_every=250, save_every=100))

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key."""
        for key in ("batch_size", "max_traj_nodes", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be >= 1, got {getattr(self, key)}")
        if self.max_instr_len < 2:
            raise ConfigError(f"config key 'max_instr_len' must be >= 2, got {self.max_instr_len}")
        if self.eval_limit < 0 or self.threads < 0:
            raise ConfigError("config keys 'eval_limit' and 'threads' must be >= 0")
        if not self.task_weights():
            raise ConfigError(f"config key 'mix_ratio': no task of {self.task} has a positive weight")

    def task_weights(self) -> dict[str, float]:
        """Tasks that run for this dataset, with their positive mix weights."""
        names = TASKS if self.task == "reverie" else tuple(t for t in TASKS if t != "og")
        return {t: getattr(self.mix_ratio, t) for t in names if getattr(self.mix_ratio, t) > 0}


class PretrainTask(nn.Module):
    """forward(step) -> (loss, scalars) of the step's task for this process's share of the global batch."""

    def __init__(self, model: DuetPretrainModel, cfg: PretrainConfig, episodes: list[Episode], env: NavEnv,
                 info: D.DistInfo):
        super().__init__()
        self.model = model
        self.config = model.config
        self.cfg = cfg
        self.episodes = episodes
        self.env = env
        self.info = info
        weights = cfg.task_weights()
        self.tasks = list(weights)
        self.probs = np.array([weights[t] for t in self.tasks]) / sum(weights.values())

    def task_at(self, step: int) -> str:
        """The proxy task of `step`, drawn by the mix ratio from (seed, step) alone."""
        rng = np.random.default_rng(step_seed(self.cfg.loop.seed, step, TASK_SALT))
        return self.tasks[int(rng.choice(len(self.tasks), p=self.probs))]

    def samples(self, step: int) -> tuple[str, list[Episode], list[int]]:
        """The step's task, this process's episodes and their global sample indices."""
        index = global_batch(len(self.episodes), self.cfg.batch_size, step, self.cfg.loop.seed)
        positions = D.shard(list(range(self.cfg.batch_size)), self.info)   # global sample indices
        return self.task_at(step), [self.episodes[index[p]] for p in positions], positions

    def forward(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        task, episodes, positions = self.samples(step)
        batch = build_batch(self.model.policy, self.env, task, episodes, positions, step, self.cfg.loop.seed,
                            self.cfg.max_traj_nodes)
        loss, stats = task_loss(self.model, batch)
        scalars = {f"{task}_loss": float(loss.detach())}
        scalars.update({f"{task}_{k}": v for k, v in stats.items() if k != "n"})
        return loss, scalars


def evaluate_tasks(model: DuetPretrainModel, env: NavEnv, episodes: list[Episode], tasks: list[str],
                   cfg: PretrainConfig) -> dict[str, float]:
    """Per task: mean loss and accuracy (MLM/SAP/OG) or KL (MRC) on fixed samples of `episodes`."""
    metrics: dict[str, float] = {}
    size = cfg.eval_batch_size
    with torch.no_grad():
        for task in tasks:
            loss_sum, stat_sum, items = 0.0, 0.0, 0.0
            for start in range(0, len(episodes), size):
                ids = list(range(start, min(start + size, len(episodes))))
                batch = build_batch(model.policy, env, task, [episodes[i] for i in ids], ids, EVAL_STEP,
                                    cfg.loop.seed, cfg.max_traj_nodes)
                loss, stats = task_loss(model, batch)
                loss_sum += float(loss) * len(ids)
                stat_sum += stats.get("acc", stats.get("kl", 0.0)) * stats["n"]
                items += stats["n"]
            metrics[f"{task}_loss"] = loss_sum / max(len(episodes), 1)
            metrics[f"{task}_{'kl' if task == 'mrc' else 'acc'}"] = stat_sum / max(items, 1.0)
    return metrics


def build_pretrain_model(cfg: PretrainConfig, env: NavEnv) -> DuetPretrainModel:
    """A fresh pretraining model sized by the preset and the world's feature stores."""
    sample = env.episodes[0]
    feature_dim = env.features.dim
    overrides: dict[str, Any] = {"image_feat_size": feature_dim}
    if cfg.task == "reverie":
        overrides["obj_feat_size"] = env.objects.dim or feature_dim
    if env.features.has_logits(sample.scan, sample.start):
        classes = env.features.logits(sample.scan, sample.start).shape[1]
    elif "mrc" in cfg.task_weights():
        raise DataError(WorldPaths(Path(cfg.world), cfg.features).view_features,
                        "no class-score columns after the features: MRC needs them (or set mix_ratio.mrc=0)")
    else:
        classes = 1
    return DuetPretrainModel(preset(cfg.preset, cfg.task, cfg.grounding, **overrides), classes)


def run_pretrain(cfg: PretrainConfig, run_dir: Path, meta: dict[str, Any] | None = None,
                 progress: bool = True, make_task: Callable[..., nn.Module] = PretrainTask) -> dict[str, Any]:
    """Pretrain, evaluating every `loop.eval_every` steps; writes `policy/`, `best/` and `last/` under run_dir.

    make_task(model, cfg, episodes, env, info) builds the trained task (stage-1 distillation passes its own).
    """
    run_dir = Path(run_dir)
    if cfg.loop.processes > 1 and not D.in_job():
        return spawn_ranks(run_pretrain, cfg.loop.processes, cfg, run_dir, meta, progress, make_task)
    info = D.init_distributed()
    save_run_config(cfg, run_dir, info)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    paths = WorldPaths(Path(cfg.world), cfg.features).check()
    for split in cfg.eval_splits:  # fail before training, not at the first evaluation
        if not paths.annotations(cfg.task, split).exists():
            raise DataError(paths.annotations(cfg.task, split), f"annotations of eval split '{split}' are missing")
    episodes = load_episodes(paths, cfg.task, "train", cfg.max_instr_len)
    env = build_env(EvalSpec(paths.root, cfg.task, "train", features=cfg.features), episodes)
    torch.manual_seed(cfg.loop.seed)
    model = build_pretrain_model(cfg, env)
    if cfg.dropout_rng == "numpy":
        use_fast_dropout(model)
    task = make_task(model, cfg, episodes, env, info)
    base_meta = {"task": cfg.task, "preset": cfg.preset, "kind": "pretrain", "mrc_classes": model.mrc_classes,
                 **(meta or {})}
    trainer = Trainer(run_dir, task, cfg.optim, cfg.loop, {"name": run_dir.name, **base_meta}, info, progress)
    eval_sets: dict[str, tuple[NavEnv, list[Episode]]] = {}

    def eval_set(split: str) -> tuple[NavEnv, list[Episode]]:
        if split not in eval_sets:
            eps = load_episodes(paths, cfg.task, split, cfg.max_instr_len)
            eps = eps[: cfg.eval_limit] if cfg.eval_limit else eps
            eval_sets[split] = (build_env(EvalSpec(paths.root, cfg.task, split, features=cfg.features), eps), eps)
        return eval_sets[split]

    def evaluate(step: int) -> tuple[dict[str, float], float | None]:
        metrics: dict[str, float] = {}
        for split in cfg.eval_splits:
            split_env, eps = eval_set(split)
            result = evaluate_tasks(model, split_env, eps, task.tasks, cfg)
            metrics.update({f"{split}/{k}": v for k, v in result.items()})
        preferred = ["val_unseen"] + list(cfg.eval_splits)
        score = next((metrics[f"{s}/sap_acc"] for s in preferred if f"{s}/sap_acc" in metrics), None)
        log.info("step %d: %s", step, {k: round(v, 3) for k, v in metrics.items() if k.endswith(("acc", "kl"))})
        return metrics, score

    def save_best(step: int, metrics: dict[str, float]) -> None:
        record = {**base_meta, "step": step, "metrics": metrics}
        save_pretrained(model.to_policy(), run_dir / "policy", record)
        save_pretrained(model, run_dir / "best", record)

    summary = trainer.run(evaluate if cfg.eval_splits else None, save_best)
    if info.is_main and not (run_dir / "policy").exists():
        save_best(cfg.loop.steps, {})
    return summary
