"""The one resumable training loop shared by pretraining, fine-tuning and distillation.

A *task* is an nn.Module whose forward(step) draws this process's share of the step's global
batch (a pure function of seed and step), computes the loss and returns (loss, scalars). The
trainer wraps the task in DistributedDataParallel under torchrun, sets the learning rate, clips
gradients, logs, evaluates, keeps the best checkpoint and writes `last/` atomically so the same
command, rerun after a crash or SIGKILL, continues from the last checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from tqdm import tqdm

from minivln_core.train import distributed as D
from minivln_core.train.logger import RunLogger, mean_dict
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


@dataclass(frozen=True)
class LoopConfig:
    """How long to train and how often to log, evaluate and save."""

    steps: int = 1000
    log_every: int = 10
    eval_every: int = 200     # 0 = only at the end
    save_every: int = 100     # resumable checkpoint cadence (also after every evaluation)
    seed: int = 0


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
        self.meta = meta or {}
        self.progress = progress and self.info.is_main
        self.optimizer = build_optimizer(task, optim)
        self.ddp_task = D.wrap(task, self.info)
        self.logger = RunLogger(self.run_dir, enabled=self.info.is_main)
        self.best: float | None = None
        self.start_step = 0

    @property
    def last_dir(self) -> Path:
        return self.run_dir / "last"

    def resume(self) -> int:
        """Load `last/` when it is complete; returns the step to continue from."""
        if is_complete(self.last_dir):
            self.start_step, trainer = load_training_state(self.last_dir, self.task, self.optimizer)
            self.best = trainer.get("best")
            log.info("resuming %s from step %d (best so far %s)", self.run_dir, self.start_step, self.best)
        elif self.last_dir.exists():
            log.warning("ignoring %s: it is not a complete checkpoint", self.last_dir)
        self.logger.truncate(self.start_step)  # lines logged after the checkpoint (all of them when starting over)
        return self.start_step

    def _save(self, step: int) -> None:
        if self.info.is_main:
            save_training_state(self.last_dir, self.task, self.optimizer, step, {"best": self.best},
                                {**self.meta, "step": step})
        D.barrier(self.info)

    def run(self, evaluate: EvalFn | None = None, save_best: SaveBestFn | None = None) -> dict[str, Any]:
        """Train to the end; returns {'steps', 'best', 'seconds'}."""
        start = self.resume()
        total = self.loop.steps
        window: list[dict[str, float]] = []
        started = time.perf_counter()
        bar = tqdm(total=total, initial=start, desc=self.meta.get("name", "train"), unit="it",
                   disable=not self.progress, dynamic_ncols=True)
        self.task.train()
        for step in range(start, total):
            set_lr(self.optimizer, lr_at(step, total, self.optim_cfg))
            torch.manual_seed(step_seed(self.loop.seed, step, 1 + self.info.rank))  # dropout masks
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
            metrics, score = evaluate(step)
            self.task.train()
            self.logger.log(step, metrics, prefix="")
            if score is not None and (self.best is None or score > self.best):
                self.best = score
                if save_best is not None:
                    save_best(step, metrics)
            self.logger.plot(title=self.meta.get("name", "training"))
        self.best = D.broadcast_object(self.best, self.info)
