"""Training throughput on a CPU: fine-tuning steps timed under several settings, interleaved.

`minivln bench-train` runs this. A *variant* is a set of training settings: how many processes
(gloo DDP over loopback, the global batch split between them, as under torchrun), torch threads per
process, the dropout generator (`dropout_rng`, models.dropout) and the precision (fp32, or bf16
autocast for forward and backward with fp32 master weights and optimiser). Each measurement starts
the variant's processes afresh, runs `warmup` untimed and `steps` timed optimiser steps of the same
global batches, and the variants take turns round after round, so a machine that slows down
during the run slows every variant alike. Throughput is training samples (episodes) per second.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from minivln_core.config import Validated
from minivln_core.errors import ConfigError
from minivln_core.provenance import cpu_info
from minivln_core.train import distributed as D
from minivln_core.train.finetune import FinetuneConfig, build_finetune_task
from minivln_core.train.optim import build_optimizer
from minivln_core.train.precision import Precision, autocast, resolve_precision
from minivln_core.train.spawn import spawn_ranks



@dataclass(frozen=True)
class Variant(Validated):
    """Training settings to time."""

    processes: int = 1                              # DDP processes (gloo on loopback); 1 = plain
    threads: int = 0                                # torch threads per process (0 = torch's default)
    dropout_rng: Literal["torch", "numpy"] = "torch"
    precision: Precision = "fp32"                   # bf16: torch.autocast on the CPU (train.precision)
    # Learning settings that also change the cost (None: the fine-tuning default). ml_weight 0 drops
    # DAgger's teacher-forced rollout (~1/3 of a step's decisions); attention dropout 0 lets attention
    # take the fused kernel in training.
    ml_weight: float | None = None
    attention_dropout: float | None = None

    def validate(self) -> None:
        if self.processes < 1 or self.threads < 0:
            raise ConfigError("variant keys 'processes' (>= 1) and 'threads' (>= 0) are out of range")
        if (self.ml_weight is not None and self.ml_weight < 0) or not 0 <= (self.attention_dropout or 0) < 1:
            raise ConfigError("variant keys 'ml_weight' (>= 0) and 'attention_dropout' (in [0, 1)) are out of range")

    def finetune_config(self, cfg: FinetuneConfig) -> FinetuneConfig:
        """`cfg` with this variant's settings."""
        cfg = replace(cfg, threads=self.threads, dropout_rng=self.dropout_rng)
        if self.ml_weight is not None:
            cfg = replace(cfg, ml_weight=self.ml_weight)
        if self.attention_dropout is not None:
            cfg = replace(cfg, attention_probs_dropout_prob=self.attention_dropout)
        return cfg


@dataclass(frozen=True)
class ThroughputConfig(Validated):
    """What `minivln bench-train` times."""

    preset: str = "duet-small"
    train_alg: Literal["dagger", "imitation"] = "dagger"
    batch_size: int = 16
    max_steps: int = 15
    houses: int = 8                 # houses of the generated world (when no world is given)
    world: str | None = None        # an existing world folder instead
    # A policy to start from (a checkpoint folder or a shipped name, e.g. synth60-teacher with houses=60):
    # DAgger from a trained policy runs longer sampled rollouts than from random weights, as real runs do.
    init: str | None = None
    features: str = "views"
    warmup: int = 1                 # untimed steps per measurement
    steps: int = 3                  # timed steps per measurement
    rounds: int = 3                 # measurements per variant, interleaved
    baseline: Variant = field(default_factory=Variant)    # today's default: one process, fp32, torch dropout
    # the fast settings: 2 gloo ranks of 1 thread, numpy dropout masks, bf16 autocast where native
    fast: Variant = field(default_factory=lambda: Variant(processes=2, threads=1, dropout_rng="numpy",
                                                          precision="auto"))
    bf16: bool = False              # also time "baseline_bf16" and "fast_fp32" (what bf16 adds to each)

    def validate(self) -> None:
        if min(self.batch_size, self.steps, self.rounds) < 1 or self.warmup < 0:
            raise ConfigError("config keys 'batch_size', 'steps', 'rounds' must be >= 1 and 'warmup' >= 0")
        for name, v in self.variants().items():
            if self.batch_size % v.processes:
                raise ConfigError(f"variant '{name}': batch_size {self.batch_size} does not split over "
                                  f"{v.processes} processes")

    def variants(self) -> dict[str, Variant]:
        out = {"baseline": self.baseline, "fast": self.fast}
        if self.bf16:
            out.update(baseline_bf16=replace(self.baseline, precision="bf16"),
                       fast_fp32=replace(self.fast, precision="fp32"))
        return out


def _worker(cfg: FinetuneConfig, variant: Variant, start: int, warmup: int, steps: int) -> list[float]:
    """One rank of a measurement: build the task, run the steps; returns the timed steps' seconds."""
    info = D.init_distributed()
    task, _ = build_finetune_task(cfg, info)
    optimizer = build_optimizer(task, cfg.optim)
    ddp = D.wrap(task, info, find_unused=getattr(task, "ddp_find_unused", True))  # as the trainer does
    task.train()
    times = []
    for step in range(start, start + warmup + steps):
        D.barrier(info)
        began = time.perf_counter()
        torch.manual_seed(step)
        with autocast(variant.precision):
            loss, _ = ddp(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:  # as the trainer does
            torch.nn.utils.clip_grad_norm_(task.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        D.barrier(info)
        times.append(time.perf_counter() - began)
    if info.enabled:
        torch.distributed.destroy_process_group()
    return times[warmup:]


def measure(cfg: FinetuneConfig, variant: Variant, start: int, warmup: int, steps: int) -> list[float]:
    """Seconds per optimiser step of `variant` (its processes started afresh, spawn)."""
    return spawn_ranks(_worker, variant.processes, variant.finetune_config(cfg), variant, start, warmup, steps)


def run_throughput(cfg: ThroughputConfig, progress: bool = True) -> dict[str, Any]:
    """Time every variant, interleaved; returns the report (baseline, fast, speedup, settings, CPU)."""
    from minivln_core.data.synth import SynthConfig, generate_world

    with tempfile.TemporaryDirectory(prefix="minivln-throughput-world-") as tmp:
        world = cfg.world
        if world is None:
            world = str(Path(tmp) / "world")
            generate_world(world, SynthConfig(houses=cfg.houses, seed=0))
        ft = FinetuneConfig(world=world, features=cfg.features, preset=cfg.preset, batch_size=cfg.batch_size,
                            train_alg=cfg.train_alg, max_steps=cfg.max_steps, eval_splits=[], init=cfg.init)
        times: dict[str, list[float]] = {name: [] for name in cfg.variants()}
        for r in range(cfg.rounds):
            for name, variant in cfg.variants().items():
                # Every variant sees the same global batches in a round: step numbers fix them.
                times[name] += measure(ft, variant, r * (cfg.warmup + cfg.steps), cfg.warmup, cfg.steps)
                if progress:
                    print(f"[bench-train] round {r + 1}/{cfg.rounds} {name}: "
                          f"{statistics.median(times[name]):.2f} s/step so far", flush=True)
    report: dict[str, Any] = {"preset": cfg.preset, "init": cfg.init, "train_alg": cfg.train_alg,
                              "batch_size": cfg.batch_size,
                              "steps_per_measurement": cfg.steps, "rounds": cfg.rounds, "cpu": cpu_info(),
                              "torch": torch.__version__}
    for name, variant in cfg.variants().items():
        step_s = statistics.median(times[name])
        report[name] = {"settings": asdict(variant), "precision_used": resolve_precision(variant.precision),
                        "step_s": step_s, "samples_per_s": cfg.batch_size / step_s,
                        "step_s_all": [round(t, 4) for t in times[name]]}
    report["speedup"] = report["fast"]["samples_per_s"] / report["baseline"]["samples_per_s"]
    return report


def throughput_chart(report: dict[str, Any], path: Path) -> None:
    """Samples per second of every variant, one bar each (median step; the dots are single steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minivln_core.io_utils import finish_figure

    names = [k for k, v in report.items() if isinstance(v, dict) and "step_s" in v]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, name in enumerate(names):
        r = report[name]
        ax.bar(i, r["samples_per_s"], 0.6, color="#4a6fa5" if name.startswith("fast") else "#9aa9bf")
        ax.scatter([i] * len(r["step_s_all"]), [report["batch_size"] / t for t in r["step_s_all"]], s=8,
                   color="black", zorder=3)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names])
    ax.set_ylabel("training samples / s")
    finish_figure(fig, path, f"{report['preset']} {report['train_alg']}, batch {report['batch_size']}: "
                             f"fast {report['speedup']:.2f}x ({report['cpu']['model']})")
