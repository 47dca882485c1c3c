"""Configuration of the image feature extractor (ViT / CLIP vision tower) used by `minivln features`.

How the model runs is part of the configuration (`runtime`, `precision`): the same settings are
stored with every feature file and checkpoint, so the robot rebuilds exactly the extractor its
training features came from. Measured speed and feature agreement of each combination:
docs/perception.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from minivln_core.config import Validated, from_dict, to_dict
from minivln_core.errors import ConfigError, DataError
from minivln_core.io_utils import atomic_write_json, decode_json, read_text
from minivln_core.models.shipped import resolve_checkpoint

EXTRACTOR_FILE = "extractor.json"   # extractor settings stored next to a checkpoint


@dataclass(frozen=True)
class ExtractorConfig(Validated):
    """Which vision backbone to run and how.

    With `weights_dir` set, the model (and its image size) come from that local Hugging Face
    folder and the size fields below are ignored. Without it, a ViT of the configured size is
    built with random weights from `seed` (a smoke-test / timing baseline, never real features).
    """

    backend: Literal["vit", "clip"] = "vit"
    weights_dir: str | None = None     # local save_pretrained folder; None = random-initialised ViT
    # -- random-initialised fallback (defaults: ViT-B/16 at 224 px) --------------------------
    image_size: int = 224
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    seed: int = 0
    # -- runtime --------------------------------------------------------------------------
    batch_size: int = 36               # images per forward pass (36 = one panorama)
    threads: int = 0                   # intra-op threads (torch / onnxruntime); 0 = the library's default
    runtime: Literal["torch", "onnx"] = "torch"  # onnx: exported at run time, run by onnxruntime
    precision: Literal["fp32", "bf16", "int8"] = "fp32"  # bf16: torch autocast; int8: dynamic, weights of
    #                                    every linear layer (torch.ao or onnxruntime quantize_dynamic)
    int8: bool = False                 # older spelling of precision: int8 (kept so stored settings load)
    onnx_dir: str | None = None        # cache of exported ONNX files; None = <MINIVLN_CACHE or ~/.cache/minivln>/onnx

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid key."""
        if self.backend not in ("vit", "clip"):
            raise ConfigError(f"config key 'backend' must be 'vit' or 'clip', got {self.backend!r}")
        if self.weights_dir is not None and not self.weights_dir.strip():
            raise ConfigError("config key 'weights_dir' is empty (use null for random weights)")
        if self.backend == "clip" and self.weights_dir is None:
            raise ConfigError("config key 'weights_dir' is required for backend 'clip' "
                              "(the random-initialised fallback is a ViT)")
        for key in ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads",
                    "intermediate_size", "batch_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"config key '{key}' must be > 0, got {getattr(self, key)}")
        if self.threads < 0:
            raise ConfigError(f"config key 'threads' must be >= 0, got {self.threads}")
        if self.runtime not in ("torch", "onnx"):
            raise ConfigError(f"config key 'runtime' must be 'torch' or 'onnx', got {self.runtime!r}")
        if self.precision not in ("fp32", "bf16", "int8"):
            raise ConfigError(f"config key 'precision' must be 'fp32', 'bf16' or 'int8', got {self.precision!r}")
        if self.int8 and self.precision not in ("fp32", "int8"):
            raise ConfigError(f"config key 'int8': true means precision int8, which contradicts precision "
                              f"{self.precision!r} (set only precision)")
        if self.runtime == "onnx" and self.resolved_precision == "bf16":
            raise ConfigError("config key 'precision': bf16 runs only with runtime 'torch' (onnxruntime's CPU "
                              "provider has no bf16 MatMul kernel); use fp32 or int8 with runtime 'onnx'")
        if self.onnx_dir is not None and not self.onnx_dir.strip():
            raise ConfigError("config key 'onnx_dir' is empty (use null for the default cache folder)")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"config key 'num_heads': {self.num_heads} does not divide hidden_size "
                              f"{self.hidden_size}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"config key 'patch_size': {self.patch_size} does not divide image_size "
                              f"{self.image_size}")

    @property
    def resolved_precision(self) -> str:
        """The precision that runs: `precision`, or int8 when the older `int8: true` is set."""
        return "int8" if self.int8 else self.precision


def parse_variant(spec: str) -> tuple[str, str, str | None]:
    """How to run an extractor, as one word: "onnx-int8" -> ("onnx", "int8", None); a distilled extractor
    folder may follow a colon: "torch-bf16:runs/vit4/student" -> ("torch", "bf16", "runs/vit4/student")."""
    head, colon, folder = spec.partition(":")
    runtime, _, precision = head.partition("-")
    if (runtime not in ("torch", "onnx") or precision not in ("fp32", "bf16", "int8")
            or (runtime, precision) == ("onnx", "bf16") or (colon and not folder)):
        raise ConfigError(f"extractor variant {spec!r} is not <torch|onnx>-<fp32|bf16|int8>[:<extractor folder>] "
                          "(onnx runs fp32 or int8)")
    return runtime, precision, folder or None


def with_variant(config: ExtractorConfig, spec: str) -> ExtractorConfig:
    """`config` run the variant's way (runtime, precision, and the distilled folder's weights if named)."""
    runtime, precision, folder = parse_variant(spec)
    changes = {"runtime": runtime, "precision": precision, "int8": False}
    if folder:
        changes["weights_dir"] = folder
    return replace(config, **changes)


def embedded_world_extractor() -> ExtractorConfig:
    """The extractor of the embedded world's features (`minivln pipeline`, sim_robot's default world).

    A small seeded random ViT: the embedded world has no pretrained weights to load, and a
    4-layer 192-wide ViT on 112 px crops encodes a viewpoint's 36 views in about 0.2 s.
    """
    return ExtractorConfig(image_size=112, patch_size=16, hidden_size=192, num_layers=4, num_heads=3,
                           intermediate_size=768, seed=0)


# -- extractor settings ------------------------------------------------------------------------
def save_extractor_config(checkpoint: str | Path, config: ExtractorConfig) -> Path:
    """Write the extractor settings next to a checkpoint (read back by `load_extractor_config`)."""
    path = Path(checkpoint) / EXTRACTOR_FILE
    atomic_write_json(path, to_dict(config))
    return path


def load_extractor_config(checkpoint: str | Path, features_file: str | Path | None = None,
                          weights_dir: str | None = None) -> ExtractorConfig:
    """The extractor the training features were built with.

    Read from `<checkpoint>/extractor.json`, else from the `extractor_config` attribute of a view
    feature file (`features/views_vit.h5` of a world). `weights_dir`, when given, replaces the
    recorded folder (the weights usually live elsewhere on the robot than on the training machine).
    """
    sidecar = resolve_checkpoint(checkpoint) / EXTRACTOR_FILE   # a folder or a shipped name
    if sidecar.is_file():
        source, text = sidecar, read_text(sidecar)
    elif features_file:
        import h5py

        source = Path(features_file)
        if not source.is_file():
            raise DataError(source, "feature file does not exist (features_file)")
        with h5py.File(source, "r") as f:
            text = f.attrs.get("extractor_config")
        if text is None:
            raise DataError(source, "has no 'extractor_config' attribute (build it with `minivln features --world`)")
    else:
        raise DataError(sidecar, "missing: store the extractor settings next to the checkpoint "
                                 "(save_extractor_config) or give the world's feature file (features_file)")
    try:
        config = from_dict(ExtractorConfig, decode_json(source, text))
        if weights_dir:
            config = replace(config, weights_dir=str(weights_dir))
    except ConfigError as exc:
        raise DataError(source, f"invalid extractor settings ({exc})") from None
    return config
