"""DAgger fine-tuning of a navigation policy (DUET's recipe, section c.2 of the reference).

Each iteration runs the same episodes twice: a teacher-forced rollout (weight `ml_weight`) and a
rollout with sampled actions, both supervised at every visited state by the map-level expert
(the unvisited node minimising d(current, v) + d(v, goal) on the full graph). The loss is the
cross-entropy of the fused logits, summed over steps and divided by the batch size; REVERIE adds
object grounding at goal viewpoints. Validation rollouts are greedy; the best checkpoint is chosen
by `best_metric` on `best_split`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from minivln_core.config import Validated
from minivln_core.agent.agent import NavigationAgent, StepResult
from minivln_core.agent.rollout import apply_decisions
from minivln_core.data.episodes import Episode
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.env.expert import map_expert
from minivln_core.errors import ConfigError
from minivln_core.eval.evaluate import EvalSpec, build_env, evaluate_policy
from minivln_core.models import DuetPolicy, preset
from minivln_core.models.checkpoint import save_pretrained
from minivln_core.models.dropout import use_fast_dropout
from minivln_core.models.loading import load_policy
from minivln_core.train import distributed as D
from minivln_core.train.batches import global_batch
from minivln_core.train.optim import OptimConfig
from minivln_core.train.spawn import spawn_ranks
from minivln_core.train.trainer import LoopConfig, Trainer, save_run_config, step_seed

log = logging.getLogger("minivln.finetune")


@dataclass(frozen=True)
class FinetuneConfig(Validated):
    """Fine-tuning settings; YAML files hold overrides only."""

    world: str = "runs/main/world"          # world folder (see `minivln synth`)
    features: str = "views"                 # view features: <world>/features/<features>.h5
    ablation: Literal["none", "blind", "no_language"] = "none"  # train and evaluate without vision / language
    task: Literal["r2r", "reverie"] = "r2r"
    preset: str = "duet-small"              # model size when no init checkpoint is given
    grounding: bool = False                 # a fresh preset gets instruction-grounding columns (agent/grounding.py)
    init: str | None = None                 # policy checkpoint to start from (e.g. pretraining's policy/)
    batch_size: int = 8                     # global batch (split over torchrun processes)
    train_alg: Literal["dagger", "imitation"] = "dagger"  # imitation: teacher-forced rollout only, weight 1
    ml_weight: float = 0.2                  # weight of the teacher-forced rollout (dagger)
    sample_feedback: Literal["sample", "argmax"] = "sample"  # how the second rollout acts
    og_weight: float = 1.0                  # REVERIE object grounding loss weight
    max_steps: int = 15                     # decisions per episode (the last one stops)
    hidden_dropout_prob: float | None = None  # override the model's dropout for fine-tuning
    attention_probs_dropout_prob: float | None = None  # override the attention dropout
    feat_dropout: float | None = None       # override the dropout on raw view features
    eval_splits: list[str] = field(default_factory=lambda: ["val_seen", "val_unseen"])
    eval_limit: int = 0                     # instructions per validation split (0 = all)
    eval_batch_size: int = 16
    best_split: str = "val_unseen"
    best_metric: str = "spl"
    threads: int = 0                        # torch CPU threads (0 = default)
    # Dropout masks from numpy's PCG64 ("numpy", models.dropout: several times faster on a CPU, same
    # distribution, reproducible from the step seed) or torch's generator ("torch", the original runs').
    dropout_rng: Literal["torch", "numpy"] = "torch"
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=50, grad_clip=40.0,
                                                                   schedule="constant"))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=1000, eval_every=250, save_every=50))


class FinetuneTask(nn.Module):
    """forward(step) -> (loss, scalars) for this process's share of the step's global batch."""

    # Every step reaches every parameter of an R2R policy (DDP need not search for unused ones);
    # tested by test_two_process_dagger_reaches_every_parameter_every_step.
    @property
    def ddp_find_unused(self) -> bool:
        return self.cfg.task != "r2r"

    def __init__(self, policy: DuetPolicy, cfg: FinetuneConfig, episodes: list[Episode], env,
                 info: D.DistInfo, extra_loss: Callable[..., tuple[torch.Tensor, dict]] | None = None):
        super().__init__()
        self.policy = policy
        self.config = policy.config
        self.cfg = cfg
        self.episodes = episodes
        self.env = env
        self.info = info
        self.agent = NavigationAgent(policy, max_steps=cfg.max_steps)
        self.extra_loss = extra_loss  # called after every decision (stage 2 adds its terms here: distill.stage2)

    def forward(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        index = D.shard(global_batch(len(self.episodes), self.cfg.batch_size, step, self.cfg.loop.seed), self.info)
        batch = [self.episodes[i] for i in index]
        scalars: dict[str, float] = {}
        loss = torch.zeros(())
        plan = ([("teacher", 1.0)] if self.cfg.train_alg == "imitation"
                else [("teacher", self.cfg.ml_weight), (self.cfg.sample_feedback, 1.0)])
        for feedback, weight in plan:
            if weight == 0:
                continue
            part, stats = self.rollout(batch, index, feedback, step)
            loss = loss + weight * part
            scalars.update({f"{feedback}_{k}": v for k, v in stats.items()})
        return loss, scalars

    def rollout(self, batch: list[Episode], index: list[int], feedback: str,
                step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """One rollout of the batch with expert labels at every step; returns (loss, stats)."""
        env, agent = self.env, self.agent
        observations = env.start(batch)
        states = agent.begin([ep.instr_encoding for ep in batch])
        gens = [torch.Generator().manual_seed(step_seed(self.cfg.loop.seed, step, 10_000 + i)) for i in index]

        def expert(state, obs):
            graph = env.graphs[obs.scan]
            return map_expert(graph, state.graph_map, obs.viewpoint, obs.episode.goal, state.graph_map.ghosts)

        nav_loss, og_loss, extra, decisions = torch.zeros(()), torch.zeros(()), torch.zeros(()), 0
        extra_stats: list[dict] = []
        active, current = list(range(len(batch))), observations
        while active:
            res = agent.step([states[i] for i in active], current, feedback=feedback, expert=expert,
                             generators=[gens[i] for i in active])
            nav_loss = nav_loss + F.cross_entropy(res.outputs.fused_logits, res.labels, reduction="sum")
            og_loss = og_loss + self._grounding_loss(res, current)
            if self.extra_loss is not None:
                part, stats = self.extra_loss(res, [states[i] for i in active], current)
                extra = extra + part
                extra_stats.append(stats)
            decisions += len(active)
            current = apply_decisions(env, active, res.decisions)
            active = [obs.index for obs in current]
        n = len(batch)
        loss = (nav_loss + self.cfg.og_weight * og_loss + extra) / n
        stats = {"nav_loss": float(nav_loss.detach()) / n, "steps": decisions / n}
        if self.config.has_objects:
            stats["og_loss"] = float(og_loss.detach()) / n
        for key in (extra_stats[0] if extra_stats else {}):
            stats[key] = sum(s[key] for s in extra_stats) / n
        return loss, stats

    def _grounding_loss(self, res: StepResult, observations) -> torch.Tensor:
        """REVERIE: CE over object tokens at viewpoints from which the target object is visible."""
        logits = res.outputs.obj_logits
        if logits is None:
            return torch.zeros(())
        total = torch.zeros(())
        for i, (obs, tok) in enumerate(zip(observations, res.tokens)):
            ep = obs.episode
            if not tok.obj_ids or ep.obj_id is None or obs.viewpoint not in ep.goal_viewpoints:
                continue
            if str(ep.obj_id) not in tok.obj_ids:
                continue
            target = res.obj_start + tok.obj_ids.index(str(ep.obj_id))  # local token index
            total = total + F.cross_entropy(logits[i: i + 1], torch.tensor([target]), reduction="sum")
        return total


def build_policy(cfg: FinetuneConfig, feature_dim: int) -> DuetPolicy:
    """The policy to fine-tune: from `init` if given, else a fresh preset; dropout overrides applied."""
    if cfg.init:
        base = load_policy(cfg.init)
        config = base.config
        if cfg.grounding and not config.ground_feat_size:
            raise ConfigError(f"config key 'grounding': the init checkpoint {cfg.init} has no grounding columns "
                              "(it applies to a fresh preset, or to a checkpoint trained with it)")
    else:
        base, config = None, preset(cfg.preset, cfg.task, cfg.grounding, image_feat_size=feature_dim)
    changes = {k: getattr(cfg, k) for k in ("hidden_dropout_prob", "attention_probs_dropout_prob", "feat_dropout")
               if getattr(cfg, k) is not None}
    config = replace(config, **changes)
    policy = DuetPolicy(config)
    if base is not None:
        policy.load_state_dict(base.state_dict())
    return policy


def build_finetune_task(cfg: FinetuneConfig, info: D.DistInfo,
                        make_task: Callable[..., nn.Module] = FinetuneTask) -> tuple[nn.Module, WorldPaths]:
    """The trained task (policy + rollouts over the world's train episodes) and the world's paths.

    Sets the torch threads; the policy is built right after seeding torch with `loop.seed`."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    paths = WorldPaths(Path(cfg.world), cfg.features).check()
    episodes = load_episodes(paths, cfg.task, "train")
    train_spec = EvalSpec(paths.root, cfg.task, "train", cfg.batch_size // max(info.world_size, 1), cfg.max_steps,
                          features=cfg.features, ablation=cfg.ablation)
    env = build_env(train_spec, episodes)
    episodes = env.episodes  # with the ablation applied
    feature_dim = env.features.get(episodes[0].scan, episodes[0].start).shape[1]
    torch.manual_seed(cfg.loop.seed)
    policy = build_policy(cfg, feature_dim)
    if cfg.dropout_rng == "numpy":
        use_fast_dropout(policy)
    return make_task(policy, cfg, episodes, env, info), paths


def run_finetune(cfg: FinetuneConfig, run_dir: Path, meta: dict[str, Any] | None = None,
                 progress: bool = True, make_task: Callable[..., nn.Module] = FinetuneTask) -> dict[str, Any]:
    """Fine-tune, evaluating every `loop.eval_every` steps; writes `best/` and `last/` under run_dir.

    make_task(policy, cfg, episodes, env, info) builds the trained task (stage-2 distillation passes
    its own, `distill.stage2.run_distill_finetune`), like `train.pretrain.run_pretrain`'s.
    """
    if cfg.loop.processes > 1 and not D.in_job():
        return spawn_ranks(run_finetune, cfg.loop.processes, cfg, run_dir, meta, progress, make_task)
    info = D.init_distributed()
    save_run_config(cfg, run_dir, info)
    task, paths = build_finetune_task(cfg, info, make_task)
    policy = task.policy
    trainer = Trainer(run_dir, task, cfg.optim, cfg.loop, {"name": run_dir.name, "kind": "finetune", **(meta or {})},
                      info, progress)

    def evaluate(step: int) -> tuple[dict[str, float], float | None]:
        metrics: dict[str, float] = {}
        for split in cfg.eval_splits:
            spec = EvalSpec(paths.root, cfg.task, split, cfg.eval_batch_size, cfg.max_steps, cfg.eval_limit,
                            cfg.features, cfg.ablation)
            result = evaluate_policy(policy, spec, run_dir / "eval" / f"step{step:06d}", "policy", progress=False)
            metrics.update({f"{split}/{k}": v for k, v in result.items()})
        score = metrics.get(f"{cfg.best_split}/{cfg.best_metric}")
        log.info("step %d: %s", step, {k: round(v, 2) for k, v in metrics.items() if k.endswith(("/sr", "/spl"))})
        return metrics, score

    def save_best(step: int, metrics: dict[str, float]) -> None:
        save_pretrained(policy, run_dir / "best", {"step": step, "task": cfg.task, "kind": "finetune",
                                                   "metrics": metrics, **(meta or {})})

    summary = trainer.run(evaluate, save_best)
    if info.is_main and not (run_dir / "best").exists():
        save_best(cfg.loop.steps, {})
    return summary
