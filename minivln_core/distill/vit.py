"""Distil the view extractor as MiniVLN distils the policy: a shallower ViT that reproduces the features.

On the robot the ViT costs more than the policy by two orders of magnitude (docs/perception.md):
36 views of ViT-B/16 are seconds on two cores, a decision milliseconds. The paper never touches
perception; here the same idea is applied to it. The student is the teacher with fewer layers:

* same width, patch size and input size, so its CLS feature is a drop-in replacement (no
  projection, the policy is unchanged);
* initialised from the teacher: embeddings, final LayerNorm (and classifier) copied, student layer
  m from teacher layer round(m * L / S) (`uniform`: 12 -> 4 takes layers 3, 6, 9, 12 as the
  paper's student layer m learns from teacher layer 3m) or the first S layers (`first`);
* trained to reproduce, by MSE, the features the policy was trained on (`perception.view_dataset`:
  the world's feature file, rendered views of its training houses), scored on the held-out
  houses' views by relative error ||f - t|| / ||t - mean(t)|| and cosine.

The trained student is written as a Hugging Face folder (`<out>/student`: config.json +
model.safetensors), so every runtime and precision of `FeatureExtractor` runs it from
`weights_dir` alone; with a real pretrained ViT-B/16 folder as the teacher the same command
distils it. Training is the project's resumable loop (`train.trainer`): rerunning the command
continues from `<out>/last`.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minivln_core.config import Validated, from_dict
from minivln_core.errors import ConfigError, DataError
from minivln_core.io_utils import atomic_directory, atomic_write_json
from minivln_core.perception.config import ExtractorConfig
from minivln_core.perception.view_dataset import (ViewSplit, build_view_dataset, dataset_matches, extractor_settings,
                                                  load_view_dataset)
from minivln_core.perception.vit import FeatureExtractor, Preprocessing, _normalise_into, forward_features
from minivln_core.train import distributed as D
from minivln_core.train.batches import global_batch
from minivln_core.train.optim import OptimConfig
from minivln_core.train.spawn import spawn_ranks
from minivln_core.train.trainer import LoopConfig, Trainer, save_run_config

log = logging.getLogger("minivln.perception")

STUDENT_DIR = "student"
DATASET_FILE = "views.h5"


@dataclass(frozen=True)
class DistillVitConfig(Validated):
    """What to distil, into how many layers, on which views, and how long."""

    world: str = ""                     # a generated world with rendered view features
    features: str = "views_vit"         # <world>/features/<features>.h5: the features to reproduce
    weights_dir: str | None = None      # the teacher's local HF folder, if not where the feature file says
    layers: int = 4                     # student transformer layers (the teacher's width: drop-in features)
    layer_map: Literal["uniform", "first"] = "uniform"   # which teacher layers initialise the student's
    # the student's input side in pixels (0 = the teacher's): fewer tokens, (S / patch)^2 + 1 of them
    # (224 -> 160 at patch 16: 197 -> 101), position embeddings resampled from the teacher's grid
    image_size: int = 0
    views_per_viewpoint: int = 6        # of the 36 views, kept per viewpoint (seeded)
    batch_size: int = 32                # views per step (global, split over loop.processes)
    eval_limit: int = 512               # held-out views scored per evaluation (0 = all)
    threads: int = 0                    # torch threads (0 = default)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, warmup_steps=100, schedule="linear",
                                                                   grad_clip=1.0))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(steps=2000, eval_every=250, save_every=100))

    def validate(self) -> None:
        if self.layers < 1:
            raise ConfigError(f"config key 'layers' must be >= 1, got {self.layers}")
        if self.layer_map not in ("uniform", "first"):
            raise ConfigError(f"config key 'layer_map' must be 'uniform' or 'first', got {self.layer_map!r}")
        if not 1 <= self.views_per_viewpoint <= 36:
            raise ConfigError(f"config key 'views_per_viewpoint' must be in 1..36, got {self.views_per_viewpoint}")
        if self.batch_size < 1 or self.eval_limit < 0 or self.threads < 0:
            raise ConfigError("config keys 'batch_size' (>= 1), 'eval_limit' and 'threads' (>= 0) are out of range")
        if self.image_size < 0:
            raise ConfigError(f"config key 'image_size' must be >= 0 (0 = the teacher's), got {self.image_size}")


def teacher_layers(teacher: int, student: int, layer_map: str = "uniform") -> list[int]:
    """0-based teacher layer that initialises each student layer (12, 4 -> [2, 5, 8, 11])."""
    if not 1 <= student <= teacher:
        raise ConfigError(f"config key 'layers': the student needs 1..{teacher} layers (the teacher's), got {student}")
    if layer_map == "first":
        return list(range(student))
    return [round((m + 1) * teacher / student) - 1 for m in range(student)]


def make_student(teacher: nn.Module, kind: str, layers: int, layer_map: str = "uniform",
                 image_size: int = 0) -> nn.Module:
    """A copy of the teacher ViT with `layers` of its layers (same class, so it saves and loads alike),
    at input side `image_size` if given (position embeddings resampled to its patch grid)."""
    if kind == "clip":
        raise ConfigError("distilling a CLIP vision tower is not supported (backend 'vit' only)")
    t_vit = teacher.vit if kind == "vit_cls" else teacher
    config = copy.deepcopy(teacher.config)
    chosen = teacher_layers(config.num_hidden_layers, layers, layer_map)
    config.num_hidden_layers = layers
    if image_size:
        if image_size % config.patch_size:
            raise ConfigError(f"config key 'image_size': {image_size} is not a multiple of the patch size "
                              f"{config.patch_size}")
        config.image_size = image_size
    if kind == "vit_cls":
        student = type(teacher)(config)
        student.classifier.load_state_dict(teacher.classifier.state_dict())
        student.classifier.requires_grad_(False)   # kept for the logits, not trained (the loss is on features)
        s_vit = student.vit
    else:
        from transformers import ViTModel

        student = s_vit = ViTModel(config, add_pooling_layer=False)
    embeddings = t_vit.embeddings.state_dict()
    embeddings["position_embeddings"] = resample_positions(embeddings["position_embeddings"],
                                                           config.image_size // config.patch_size)
    s_vit.embeddings.load_state_dict(embeddings)
    s_vit.layernorm.load_state_dict(t_vit.layernorm.state_dict())
    for m, t in enumerate(chosen):
        vit_blocks(s_vit)[m].load_state_dict(vit_blocks(t_vit)[t].state_dict())
    return student


def resample_positions(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, 1 + g*g, D) CLS + patch-grid position embeddings -> (1, 1 + grid*grid, D) (bicubic on the grid)."""
    g = int(round((pos.shape[1] - 1) ** 0.5))
    if g == grid:
        return pos
    patches = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)                      # (1, D, g, g)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


def vit_blocks(vit: nn.Module) -> nn.ModuleList:
    """The transformer layers of a ViTModel (`layers` in transformers 5, `encoder.layer` before)."""
    return vit.layers if hasattr(vit, "layers") else vit.encoder.layer


def to_pixels(crops: np.ndarray, prep: Preprocessing) -> torch.Tensor:
    """(N, C, C, 3) uint8 crops -> (N, 3, S, S) float32 model input (the extractor's normalisation).

    Crops of another side C are area-resized to S first: the teacher's 224 crop of a view covers
    the same part of it as a smaller student's crop (both take crop/resize = 224/248 of the short side).
    """
    size = prep.crop_size
    out = np.empty((len(crops), 3, size, size), np.float32)
    for k, crop in enumerate(crops):
        if crop.shape[0] != size:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)      # (S, S, 3)
        _normalise_into(crop, prep, out[k])
    return torch.from_numpy(out)


def feature_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """mse, relative error ||f - t|| / ||t - mean(t)|| (error against the features' spread), cosines."""
    cos = (pred * target).sum(1) / np.maximum(np.linalg.norm(pred, axis=1) * np.linalg.norm(target, axis=1), 1e-12)
    spread = max(float(np.linalg.norm(target - target.mean(0))), 1e-12)   # identical rows: no spread
    return {"mse": float(((pred - target) ** 2).mean()), "rel_error": float(np.linalg.norm(pred - target) / spread),
            "mean_cos": float(cos.mean()), "min_cos": float(cos.min())}


class VitDistillTask(nn.Module):
    """forward(step) -> (MSE between student and target features, scalars) on this rank's share."""

    ddp_find_unused = False

    def __init__(self, student: nn.Module, kind: str, cfg: DistillVitConfig, train: ViewSplit, prep: Preprocessing,
                 info: D.DistInfo):
        super().__init__()
        self.student = student
        self.kind = kind
        self.config = cfg          # written into every checkpoint's config.json
        self.train_split = train
        self.prep = prep
        self.info = info

    def forward(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        index = D.shard(global_batch(len(self.train_split), self.config.batch_size, step, self.config.loop.seed),
                        self.info)
        pixels = to_pixels(self.train_split.crops[index], self.prep)                      # (B, 3, S, S)
        feats, _ = forward_features(self.student, self.kind, pixels)                        # (B, D)
        target = torch.from_numpy(self.train_split.targets[index])                          # (B, D)
        return F.mse_loss(feats.float(), target), {}

    @torch.inference_mode()
    def encode(self, split: ViewSplit, limit: int = 0, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Student features (n, D) and targets (n, D) of `limit` views spread evenly over `split` (0 = all)."""
        n = len(split)
        rows = np.arange(n) if not limit or limit >= n else np.linspace(0, n - 1, limit).round().astype(int)
        out = [forward_features(self.student, self.kind, to_pixels(split.crops[rows[i:i + batch]], self.prep))[0]
               for i in range(0, len(rows), batch)]
        return torch.cat(out).float().numpy(), split.targets[rows]


def teacher_config(cfg: DistillVitConfig, features: Path) -> ExtractorConfig:
    """The extractor recorded in the feature file, run as the torch fp32 reference (its weights are copied)."""
    if not features.is_file():
        raise DataError(features, "feature file does not exist (render and encode the world's views with "
                                  "`minivln features --world`, or pick the file with --set features=NAME)")
    settings = extractor_settings(features)
    if not settings:
        raise DataError(features, "has no 'extractor_config' attribute: it was not built by `minivln features --world`")
    try:
        config = from_dict(ExtractorConfig, settings)
    except ConfigError as exc:
        raise DataError(features, f"invalid extractor settings ({exc})") from None
    changes: dict[str, Any] = {"runtime": "torch", "precision": "fp32", "int8": False}
    if cfg.weights_dir:
        changes["weights_dir"] = cfg.weights_dir
    return replace(config, **changes)


def save_student(student: nn.Module, directory: Path, meta: dict[str, Any]) -> Path:
    """The student as a Hugging Face folder (config.json, model.safetensors) + distill.json, atomically."""
    with atomic_directory(directory) as tmp:
        student.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "distill.json").write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def run_distill_vit(cfg: DistillVitConfig, run_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Build the view dataset (once), distil, keep the best student by held-out relative error."""
    run_dir = Path(run_dir)
    if not cfg.world:
        raise ConfigError("config key 'world' is required (a generated world with rendered view features)")
    if cfg.loop.processes > 1 and not D.in_job():   # both cores: gloo ranks, the batch split between them
        return spawn_ranks(run_distill_vit, cfg.loop.processes, cfg, run_dir, progress)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = D.init_distributed()
    save_run_config(cfg, run_dir, info)
    features = Path(cfg.world) / "features" / f"{cfg.features}.h5"
    tcfg = teacher_config(cfg, features)
    teacher = FeatureExtractor(tcfg)
    data_path = run_dir / DATASET_FILE
    if info.is_main and not dataset_matches(data_path, features, teacher.prep, cfg.views_per_viewpoint, cfg.loop.seed):
        build_view_dataset(cfg.world, features, teacher.prep, data_path, cfg.views_per_viewpoint, cfg.loop.seed,
                           progress=progress)
    D.barrier(info)
    splits, _ = load_view_dataset(data_path)
    torch.manual_seed(cfg.loop.seed)
    student = make_student(teacher.model, teacher.kind, cfg.layers, cfg.layer_map, cfg.image_size)
    prep = Preprocessing.for_vit(cfg.image_size) if cfg.image_size else teacher.prep   # the student's input
    task = VitDistillTask(student, teacher.kind, cfg, splits["train"], prep, info)
    sizes = {"teacher_parameters": sum(p.numel() for p in teacher.model.parameters()),
             "student_parameters": sum(p.numel() for p in student.parameters()),
             "teacher_layers": teacher.model.config.num_hidden_layers, "student_layers": cfg.layers,
             "teacher_image_size": teacher.prep.crop_size, "student_image_size": prep.crop_size,
             "init_layers": teacher_layers(teacher.model.config.num_hidden_layers, cfg.layers, cfg.layer_map)}
    del teacher
    held_out = splits["val"] if len(splits["val"]) else splits["train"]

    def evaluate(step: int) -> tuple[dict[str, float], float | None]:
        errors = feature_errors(*task.encode(held_out, cfg.eval_limit))
        log.info("step %d: held-out rel. error %.4f, min cos %.4f", step, errors["rel_error"], errors["min_cos"])
        return {f"val/{k}": v for k, v in errors.items()}, -errors["rel_error"]

    init = {f"init/{k}": v for k, v in feature_errors(*task.encode(held_out, cfg.eval_limit)).items()}
    trainer = Trainer(run_dir, task, cfg.optim, cfg.loop, {"name": run_dir.name, "kind": "distill-vit", **sizes},
                      info, progress)

    def save_best(step: int, metrics: dict[str, float]) -> None:
        meta = {"step": step, "source_features": str(features.resolve()), "teacher": tcfg.weights_dir or "random",
                **sizes, **init, **metrics}
        save_student(student, run_dir / STUDENT_DIR, meta)

    summary = trainer.run(evaluate, save_best)
    result = {**summary, **sizes, **init, "views": {k: len(v) for k, v in splits.items()},
              "student_dir": str(run_dir / STUDENT_DIR)}
    if info.is_main:
        atomic_write_json(run_dir / "distill_vit.json", result)
    return result
