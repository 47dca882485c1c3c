"""Image features for the 36 panorama views: a ViT (DUET recipe) or a CLIP vision tower, on CPU.

Recipe (reference d.5, the VLN-HAMT/DUET extraction of `vit_base_patch16_224`): resize the
shorter image side to 248 px (for a 224 px model; `round(size * 248 / 224)` otherwise) with
bicubic interpolation, centre-crop `size` x `size`, scale to [0, 1] and normalise with
mean = std = 0.5. The feature is the CLS token of the final hidden state *after* the last
LayerNorm; when the folder holds a `ViTForImageClassification`, its classifier applied to that
token gives the 1000 ImageNet logits DUET stores after the 768 feature columns.

CLIP (`CLIPVisionModelWithProjection`): shorter side -> `size.shortest_edge` of the folder's
`preprocessor_config.json` (default 224), centre-crop `crop_size`, CLIP's mean/std from the same
file (defaults: OpenAI's published constants); the feature is `image_embeds` (not normalised).

Weights only ever come from a local folder (`local_files_only=True`). Without one, a ViT of the
configured size is built with seeded random weights - useful for timing and smoke tests only,
and announced with a WARNING.

How it runs (`ExtractorConfig.runtime` / `precision`, measured in docs/perception.md): torch fp32
(the reference), torch bf16 autocast (oneDNN bf16 matmuls on CPUs with avx512_bf16/AMX), torch
dynamic int8 (`torch.ao` quantised linear layers), or onnxruntime fp32 / dynamic int8 on a graph
exported from the same model at run time (`perception.onnx_vit`). All of them take the same
preprocessed batch and return the same CLS features, so every caller - `minivln features`,
`encode_panorama`, the robot's `CachedExtractor` - gets the fast path from the config alone.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import cv2
import numpy as np
import torch

from minivln_core.errors import DataError
from minivln_core.frames import NUM_VIEWS
from minivln_core.io_utils import read_json
from minivln_core.perception.config import ExtractorConfig

log = logging.getLogger("minivln.perception")

RESIZE_RATIO = 248 / 224                       # timm crop_pct 0.9 for vit_base_patch16_224
VIT_MEAN = VIT_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's published normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preprocessing:
    """Resize-shorter-side, centre-crop and normalise settings."""

    crop_size: int                          # S: the model's input side
    resize_short: int                       # shorter side after the resize (>= S)
    mean: tuple[float, float, float] = VIT_MEAN
    std: tuple[float, float, float] = VIT_STD

    @staticmethod
    def for_vit(image_size: int) -> "Preprocessing":
        """The DUET/timm recipe scaled to `image_size` (224 -> 248)."""
        return Preprocessing(image_size, max(image_size, int(round(image_size * RESIZE_RATIO))))


def _resized_crop(image: np.ndarray, prep: Preprocessing, index: int) -> np.ndarray:
    """One HxWx3 uint8 RGB image -> its (S, S, 3) uint8 centre crop after the bicubic resize."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) == 0:
        raise ValueError(f"image {index}: expected an HxWx3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    h, w = arr.shape[:2]
    short, size = prep.resize_short, prep.crop_size
    if h <= w:  # long side scaled like torchvision's Resize(int): truncated, never below `short`
        new_h, new_w = short, max(short, int(short * w / h))
    else:
        new_h, new_w = max(short, int(short * h / w)), short
    resized = cv2.resize(arr, (new_w, new_h), interpolation=cv2.INTER_CUBIC)  # (new_h, new_w, 3)
    top, left = int(round((new_h - size) / 2)), int(round((new_w - size) / 2))
    return resized[top:top + size, left:left + size]                          # (S, S, 3) view


def _normalise_into(crop: np.ndarray, prep: Preprocessing, out: np.ndarray) -> None:
    """(S, S, 3) uint8 -> `out` (3, S, S) float32, one channel plane at a time (cache-sized passes)."""
    for c in range(3):
        plane = out[c]                                                        # (S, S)
        np.divide(crop[:, :, c], np.float32(255.0), out=plane, dtype=np.float32)
        plane -= np.float32(prep.mean[c])
        plane /= np.float32(prep.std[c])


def preprocess_image(image: np.ndarray, prep: Preprocessing, index: int = 0) -> np.ndarray:
    """One HxWx3 uint8 RGB image -> (3, S, S) float32 normalised model input."""
    out = np.empty((3, prep.crop_size, prep.crop_size), np.float32)
    _normalise_into(_resized_crop(image, prep, index), prep, out)
    return out


def preprocess(images: Sequence[np.ndarray], prep: Preprocessing) -> np.ndarray:
    """A list of HxWx3 uint8 RGB images -> one contiguous (N, 3, S, S) float32 batch.

    Each image is resized and cropped, then normalised straight into its slot of the batch
    (channel planes, no float HxWx3 temporary, no transpose copy, no final stack): for 36 views,
    49 ms instead of 114 ms from 480x640 and 14 ms instead of 79 ms from the robot's 331x248
    views, with the same float32 arithmetic (bit-identical results).
    """
    size = prep.crop_size
    out = np.empty((len(images), 3, size, size), np.float32)                  # (N, 3, S, S)
    for k, img in enumerate(images):
        _normalise_into(_resized_crop(img, prep, k), prep, out[k])
    return out


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object")
    return data


def _side(value: Any, default: int) -> int:
    """An image side from a processor config entry (int, {"shortest_edge"}, {"height", "width"})."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        for key in ("shortest_edge", "height", "width"):
            if isinstance(value.get(key), int):
                return int(value[key])
    return default


def _clip_preprocessing(folder: Path, image_size: int) -> Preprocessing:
    path = folder / "preprocessor_config.json"
    cfg = _read_json(path) if path.is_file() else {}
    crop = _side(cfg.get("crop_size"), image_size)
    mean = tuple(float(v) for v in cfg.get("image_mean", CLIP_MEAN))
    std = tuple(float(v) for v in cfg.get("image_std", CLIP_STD))
    if len(mean) != 3 or len(std) != 3:
        raise DataError(path, "image_mean and image_std must hold 3 numbers")
    return Preprocessing(crop, max(crop, _side(cfg.get("size"), crop)), mean, std)  # type: ignore[arg-type]


def forward_features(model: torch.nn.Module, kind: str,
                     pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, 3, S, S) -> features (B, D) and logits (B, C) or None; the function every runtime computes."""
    if kind == "clip":
        return model(pixel_values=pixels).image_embeds, None
    if kind == "vit_cls":
        cls = model.vit(pixel_values=pixels).last_hidden_state[:, 0]         # (B, D) post-LayerNorm
        return cls, model.classifier(cls)
    return model(pixel_values=pixels).last_hidden_state[:, 0], None


def _has_bf16_matmul() -> bool:
    """Whether the CPU multiplies bf16 natively (avx512_bf16 / AMX); elsewhere bf16 is emulated, slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class FeatureExtractor:
    """ViT / CLIP image encoder: `encode(images) -> (N, D)` float32 on CPU."""

    def __init__(self, config: ExtractorConfig | None = None):
        self.config = config or ExtractorConfig()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)  # process-wide, like the other commands
        self.random_weights = self.config.weights_dir is None
        if self.random_weights:
            self.model, self.kind, self.prep = self._random_vit()
        else:
            self.model, self.kind, self.prep = self._load(Path(self.config.weights_dir).expanduser())
        self.model.eval()
        mcfg = self.model.config
        self._dim = int(mcfg.projection_dim if self.kind == "clip" else mcfg.hidden_size)
        self._num_logits = int(mcfg.num_labels) if self.kind == "vit_cls" else 0
        self.precision = self.config.resolved_precision
        self.onnx: Any = None           # perception.onnx_vit.OnnxRunner with runtime 'onnx'
        if self.config.runtime == "onnx":
            self._start_onnx()
        elif self.precision == "int8":
            from minivln_core.models.quantize import dynamic_int8

            self.model = dynamic_int8(self.model, inplace=True)
        elif self.precision == "bf16" and not _has_bf16_matmul():
            log.warning("precision bf16 on a CPU without avx512_bf16/AMX: bf16 is emulated and slower than fp32")

    # -- construction ---------------------------------------------------------------------
    def _random_vit(self) -> tuple[torch.nn.Module, str, Preprocessing]:
        from transformers import ViTConfig, ViTModel

        c = self.config
        vcfg = ViTConfig(hidden_size=c.hidden_size, num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
                         intermediate_size=c.intermediate_size, image_size=c.image_size, patch_size=c.patch_size)
        with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's RNG
            torch.manual_seed(c.seed)
            model = ViTModel(vcfg, add_pooling_layer=False)
        log.warning("=" * 72)
        log.warning("NO weights_dir: the ViT (%d layers, %d wide) has RANDOM weights (seed %d). Its features "
                    "carry no visual meaning - use them for timing and smoke tests only.",
                    c.num_layers, c.hidden_size, c.seed)
        log.warning("=" * 72)
        return model, "vit", Preprocessing.for_vit(c.image_size)

    def _load(self, folder: Path) -> tuple[torch.nn.Module, str, Preprocessing]:
        if not folder.is_dir():
            raise DataError(folder, "model folder does not exist (weights_dir)")
        if not (folder / "config.json").is_file():
            raise DataError(folder, "not a Hugging Face model folder (no config.json); save one with "
                                    "save_pretrained() (weights_dir)")
        meta = _read_json(folder / "config.json")
        model_type = meta.get("model_type")
        architectures = meta.get("architectures") or []
        if self.config.backend == "vit":
            if model_type != "vit":
                raise DataError(folder, f"holds a '{model_type}' model, expected model_type 'vit' (backend vit)")
            from transformers import ViTForImageClassification, ViTModel

            with_head = "ViTForImageClassification" in architectures
            kind = "vit_cls" if with_head else "vit"
            loader: Callable[..., torch.nn.Module] = (
                ViTForImageClassification.from_pretrained if with_head
                else lambda p, **kw: ViTModel.from_pretrained(p, add_pooling_layer=False, **kw))
        else:
            if model_type not in ("clip", "clip_vision_model"):
                raise DataError(folder, f"holds a '{model_type}' model, expected a CLIP model (backend clip)")
            from transformers import CLIPVisionModelWithProjection

            kind, loader = "clip", CLIPVisionModelWithProjection.from_pretrained
        try:
            model = loader(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise DataError(folder, f"cannot load the {self.config.backend} model: {exc}") from None
        size = model.config.image_size
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        prep = _clip_preprocessing(folder, size) if kind == "clip" else Preprocessing.for_vit(size)
        log.info("loaded %s (%s) from %s", type(model).__name__, kind, folder)
        return model, kind, prep

    def _start_onnx(self) -> None:
        """Export (once, cached) and open the onnxruntime session of this model at `self.precision`."""
        from minivln_core.perception.onnx_vit import OnnxRunner, cached_export

        def forward(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return forward_features(self.model, self.kind, pixels)

        path = cached_export(self.model, forward, self.kind, self.prep.crop_size, self.num_logits > 0,
                             self.precision, self.config.onnx_dir)
        self.onnx = OnnxRunner(path, self.config.threads)
        log.info("onnxruntime %s extractor from %s", self.precision, path)

    # -- properties -----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """D, the feature width (768 for ViT-B, CLIP's projection_dim for CLIP)."""
        return self._dim

    @property
    def image_size(self) -> int:
        """Side of the square crop the model takes (224 for ViT-B/16)."""
        return self.prep.crop_size

    @property
    def num_logits(self) -> int:
        """Number of classifier logits (1000 for an ImageNet ViT), 0 without a classifier."""
        return self._num_logits

    def describe(self) -> dict[str, Any]:
        """Plain facts about the extractor, for HDF5 attributes and logs."""
        return {"backend": self.config.backend, "model_kind": self.kind, "weights_dir": self.config.weights_dir or "",
                "random_weights": self.random_weights, "runtime": self.config.runtime, "precision": self.precision,
                "int8": self.precision == "int8", "feature_dim": self.dim, "num_logits": self.num_logits,
                "image_size": self.prep.crop_size}

    # -- inference ------------------------------------------------------------------------
    def _run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, 3, S, S) float32 -> features (B, D) and logits (B, C) or None, float32, on the configured runtime."""
        if self.onnx is not None:
            return self.onnx(pixels)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            f, lg = forward_features(self.model, self.kind, torch.from_numpy(pixels))
            return f.float().numpy(), (None if lg is None else lg.float().numpy())

    def encode_with_logits(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Features (N, D) float32 and logits (N, C) float32 (None without a classifier)."""
        feats: list[np.ndarray] = []
        logits: list[np.ndarray] = []
        step = self.config.batch_size
        for start in range(0, len(images), step):
            f, lg = self._run(preprocess(images[start:start + step], self.prep))  # (B, 3, S, S) -> (B, D), (B, C)
            feats.append(f)
            if lg is not None:
                logits.append(lg)
        out = np.concatenate(feats) if feats else np.zeros((0, self.dim), np.float32)
        if not self.num_logits:
            return out, None
        return out, (np.concatenate(logits) if logits else np.zeros((0, self.num_logits), np.float32))

    def encode(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """HxWx3 uint8 RGB images -> (N, D) float32 features."""
        return self.encode_with_logits(images)[0]

    def logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Classifier logits (N, C); ValueError when the model has no classifier."""
        if not self.num_logits:
            raise ValueError("this model has no classifier head (load a ViTForImageClassification folder)")
        return self.encode_with_logits(images)[1]  # type: ignore[return-value]

    def encode_panorama(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """The 36 views of one viewpoint (Matterport order) -> (36, D) float32."""
        if len(views) != NUM_VIEWS:
            raise ValueError(f"a panorama has {NUM_VIEWS} views, got {len(views)}")
        return self.encode(views)


class ViewpointCache:
    """Bounded LRU of per-viewpoint (36, D) features with hit/miss counters (thread-safe)."""

    def __init__(self, size: int = 512):
        if size < 0:
            raise ValueError(f"cache size must be >= 0, got {size}")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self.lock = threading.RLock()

    def get(self, key: Hashable) -> np.ndarray | None:
        """The cached features of `key` (counted as a hit) or None (counted as a miss)."""
        with self.lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        """Store read-only features, evicting the least recently used entry beyond `size`."""
        if not self.size:
            return
        value.flags.writeable = False
        with self.lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self.lock:
            self._entries.clear()


Views = Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]]


class CachedExtractor:
    """A FeatureExtractor in front of a ViewpointCache: a cached viewpoint is never encoded again."""

    def __init__(self, extractor: FeatureExtractor, cache_size: int = 512):
        self.extractor = extractor
        self.cache = ViewpointCache(cache_size)

    def encode_viewpoint(self, key: Hashable, views: Views) -> np.ndarray:
        """(36, D) read-only features of viewpoint `key`; `views` (or the callable's result) used on a miss."""
        with self.cache.lock:  # held across the encode so concurrent callers never encode a key twice
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            feats = self.extractor.encode_panorama(views() if callable(views) else views)  # (36, D)
            self.cache.put(key, feats)
            return feats

    @property
    def hits(self) -> int:
        """Calls answered from the cache."""
        return self.cache.hits

    @property
    def misses(self) -> int:
        """Calls that ran the encoder."""
        return self.cache.misses

    @property
    def dim(self) -> int:
        """D of the wrapped extractor."""
        return self.extractor.dim
