"""The one resumable training loop shared by pretraining, fine-tuning and distillation.

A *task* is an nn.Module whose forward(step) draws this process's share of the step's global
batch (a pure function of seed and step), computes the loss and returns (loss, scalars). The
trainer wraps the task in DistributedDataParallel under torchrun, sets the learning rate, clips
gradients, logs, evaluates, keeps the best checkpoint and writes `last/` atomically so the same
command, rerun after a crash or SIGKILL, continues from the last checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from minivln_core.config import Validated, save_yaml
from minivln_core.errors import ConfigError
from minivln_core.provenance import provenance
from minivln_core.train import distributed as D
from minivln_core.train.logger import RunLogger, mean_dict
from minivln_core.train.precision import Precision, autocast
from minivln_core.train.optim import OptimConfig, build_optimizer, lr_at, set_lr
from minivln_core.train.state import is_complete, load_training_state, save_training_state

log = logging.getLogger("minivln.train")

# evaluate(step) -> (metrics to log, score to maximise for the best checkpoint, or None)
EvalFn = Callable[[int], tuple[dict[str, float], float | None]]
# save_best(step, metrics) -> writes the best model wherever the task wants it
SaveBestFn = Callable[[int, dict[str, float]], None]


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, step, salt): randomness survives resumption."""
    x = (seed * 1_000_003 + step * 7919 + salt * 104_729) & 0x7FFF_FFFF_FFFF_FFFF
    x ^= x >> 31
    x = (x * 0x5851F42D4C957F2D) & 0x7FFF_FFFF_FFFF_FFFF
    return x ^ (x >> 29)


def save_run_config(cfg: Any, run_dir: Path, info: D.DistInfo) -> None:
    """The run's resolved config as `run_dir/config.yaml` (rank 0): the run describes itself, and
    `minivln export-checkpoint` reads how a shipped checkpoint was trained from it."""
    if info.is_main:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, Path(run_dir) / "config.yaml")


@dataclass(frozen=True)
class LoopConfig(Validated):
    """How long to train and how often to log, evaluate and save."""

    steps: int = 1000
    log_every: int = 10
    eval_every: int = 200     # 0 = only at the end
    save_every: int = 100     # resumable checkpoint cadence (also after every evaluation)
    seed: int = 0
    precision: Precision = "fp32"  # forward under bf16 autocast: 'bf16', 'auto' (bf16 where native), 'fp32'
    processes: int = 1             # gloo ranks spawned on this machine (train.spawn); the batch is split

    def validate(self) -> None:
        if self.processes < 1:
            raise ConfigError(f"loop key 'processes' must be >= 1, got {self.processes}")


class Trainer:
    """Runs a task for `loop.steps` optimiser steps; resumes from `run_dir/last` if it is whole."""

    def __init__(self, run_dir: str | Path, task: nn.Module, optim: OptimConfig,
                 loop: LoopConfig, meta: dict[str, Any] | None = None, info: D.DistInfo | None = None,
                 progress: bool = True):
        self.run_dir = Path(run_dir)
        self.info = info or D.DistInfo()
        self.task = task                      # checkpointed whole (policy + any projections); has .config
        self.optim_cfg = optim
        self.loop = loop
        # Every checkpoint records the code and CPU that trained it (model cards print them).
        self.meta = {"provenance": provenance(), **(meta or {})}
        self.progress = progress and self.info.is_main
        self.optimizer = build_optimizer(task, optim)
        # A task whose every step reaches all its parameters says so (DDP then skips its search).
        self.ddp_task = D.wrap(task, self.info, find_unused=getattr(task, "ddp_find_unused", True))
        self.logger = RunLogger(self.run_dir, enabled=self.info.is_main)
        self.best: float | None = None
        self.start_step = 0
        self.seconds_before = 0.0             # training wall time of the runs this one resumes
        self._started = time.perf_counter()

    @property
    def last_dir(self) -> Path:
        return self.run_dir / "last"

    def resume(self) -> int:
        """Load `last/` when it is complete; returns the step to continue from."""
        if is_complete(self.last_dir):
            self.start_step, trainer = load_training_state(self.last_dir, self.task, self.optimizer)
            self.best = trainer.get("best")
            self.seconds_before = float(trainer.get("seconds", 0.0))
            log.info("resuming %s from step %d (best so far %s)", self.run_dir, self.start_step, self.best)
        elif self.last_dir.exists():
            log.warning("ignoring %s: it is not a complete checkpoint", self.last_dir)
        self.logger.truncate(self.start_step)  # lines logged after the checkpoint (all of them when starting over)
        return self.start_step

    def _save(self, step: int) -> None:
        if self.info.is_main:
            seconds = self.seconds_before + time.perf_counter() - self._started
            save_training_state(self.last_dir, self.task, self.optimizer, step,
                                {"best": self.best, "seconds": round(seconds, 1)},
                                {**self.meta, "step": step, "train_seconds": round(seconds, 1)})
        D.barrier(self.info)

    def run(self, evaluate: EvalFn | None = None, save_best: SaveBestFn | None = None) -> dict[str, Any]:
        """Train to the end; returns {'steps', 'best', 'seconds'}."""
        start = self.resume()
        total = self.loop.steps
        window: list[dict[str, float]] = []
        started = self._started = time.perf_counter()
        bar = tqdm(total=total, initial=start, desc=self.meta.get("name", "train"), unit="it",
                   disable=not self.progress, dynamic_ncols=True)
        self.task.train()
        for step in range(start, total):
            set_lr(self.optimizer, lr_at(step, total, self.optim_cfg))
            torch.manual_seed(step_seed(self.loop.seed, step, 1 + self.info.rank))  # dropout masks
            with autocast(self.loop.precision):
                loss, scalars = self.ddp_task(step)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.optim_cfg.grad_clip > 0:
                scalars["grad_norm"] = float(nn.utils.clip_grad_norm_(self.task.parameters(),
                                                                      self.optim_cfg.grad_clip))
            self.optimizer.step()
            window.append({"loss": float(loss.detach()), **scalars})
            done = step + 1
            bar.update(1)
            if done % self.loop.log_every == 0 or done == total:
                row = D.mean_over_ranks(mean_dict(window), self.info)
                row["lr"] = self.optimizer.param_groups[0]["lr"]
                self.logger.log(done, row, prefix="train/")
                bar.set_postfix(loss=f"{row['loss']:.3f}")
                window = []
            evaluated = False
            if evaluate is not None and ((self.loop.eval_every and done % self.loop.eval_every == 0)
                                         or done == total):
                evaluated = True
                self._evaluate(done, evaluate, save_best)
            if evaluated or done % self.loop.save_every == 0 or done == total:
                self._save(done)
        bar.close()
        if self.info.is_main:
            self.logger.plot(title=self.meta.get("name", "training"))
        self.logger.close()
        return {"steps": total, "best": self.best, "seconds": time.perf_counter() - started}

    def _evaluate(self, step: int, evaluate: EvalFn, save_best: SaveBestFn | None) -> None:
        """Rank 0 evaluates; the others wait. A better score writes the best checkpoint."""
        if self.info.is_main:
            self.task.eval()
            threads = torch.get_num_threads()
            if self.info.enabled:  # the other ranks wait idle: rank 0 may use every core meanwhile
                torch.set_num_threads(max(threads, os.cpu_count() or 1))
            try:
                metrics, score = evaluate(step)
            finally:
                torch.set_num_threads(threads)
            self.task.train()
            self.logger.log(step, metrics, prefix="")
            if score is not None and (self.best is None or score > self.best):
                self.best = score
                if save_best is not None:
                    save_best(step, metrics)
            self.logger.plot(title=self.meta.get("name", "training"))
        self.best = D.broadcast_object(self.best, self.info)
