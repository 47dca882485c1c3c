"""The policy's per-step modes run by onnxruntime, fp32 or int8: the fast CPU path (docs/speed.md).

Why: at batch 1 a decision is ~150 small kernels (matrices of 20-40 rows); PyTorch eager spends
about as long dispatching them as computing them, and dynamic int8 in eager quantises every
activation in a separate call. onnxruntime runs the same graph with fused LayerNorm / GELU /
attention kernels and, for int8, fused dynamic-quantised MatMuls (u8 activations x s8 weights per
output channel, VNNI). docs/speed.md has the measured figures.

`OnnxPolicy(policy, precision)` is a drop-in for `DuetPolicy` at inference: `NavigationAgent`
(and so the ROS node, evaluation and the benchmark) runs it unchanged. Language mode (once per
episode) stays in torch; panorama and navigation mode run in onnxruntime. Graphs are exported
from the policy's own `encode_panorama` / `navigate` with the TorchScript-based exporter
(dynamic batch, instruction length, map size and panorama size) and cached by
`minivln_core.onnx_cache` under the weights' digest. Navigation needs the instruction's cached
keys/values (`NavigationInputs.txt_kv`, which the agent always sets); without them they are
computed here first.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from minivln_core import onnx_cache
from minivln_core.errors import ConfigError
from minivln_core.io_utils import atomic_write
from minivln_core.models.policy import DuetPolicy, NavigationInputs, NavigationOutputs

log = logging.getLogger("minivln.onnx")

EXPORT_VERSION = 3                    # bump when the exported graphs change for the same weights
Precision = Literal["fp32", "int8"]
# Kept fp32 in int8 graphs: layers with few FLOPs whose errors move the decision most (the 1-, 7-
# and 14-wide position/distance inputs, the view-feature projection and the prediction heads).
KEEP_FP32 = ("pos_embeddings", "sprel_linear", "loc_linear", "img_linear", "sap_head", "sap_fuse_linear", "og_head")
VIEW_INPUTS = ("view_img_fts", "view_loc_fts", "view_nav_types", "view_masks")
OBJECT_INPUTS = ("obj_img_fts", "obj_loc_fts", "obj_masks")
# NavigationInputs fields the graph takes (txt_embeds is only read through txt_kv).
NAV_INPUTS = tuple(f.name for f in fields(NavigationInputs) if f.name not in ("txt_embeds", "vp_obj_masks"))
NAV_OUTPUTS = ("fused_logits", "global_logits", "local_logits", "fuse_weights", "global_embeds", "local_embeds")
# Dynamic axes: B batch, L instruction tokens, N global tokens, V local tokens, P views, O objects.
_AXES = {"txt_masks": {1: "L"}, "txt_kv": {3: "L"}, "gmap_pair_dists": {1: "N", 2: "N"}, "vp_query_index": {1: "Q"},
         "node_cand_index": {1: "N"}, "vp_obj_masks": {1: "V"}, "view_img_fts": {1: "P"},
         "view_loc_fts": {1: "P"}, "view_nav_types": {1: "P"}, "view_masks": {1: "P"},
         "obj_img_fts": {1: "O"}, "obj_loc_fts": {1: "O"}, "obj_masks": {1: "O"}}


def _axes(name: str) -> dict[int, str]:
    if name in _AXES:
        axes = dict(_AXES[name])
    elif name.startswith("gmap"):
        axes = {1: "N"}
    elif name.startswith("vp"):
        axes = {1: "V"}
    else:
        axes = {}
    return {0: "B", **axes}


class _Panorama(nn.Module):
    def __init__(self, policy: DuetPolicy, objects: bool):
        super().__init__()
        self.policy, self.objects = policy, objects

    def forward(self, *args):  # VIEW_INPUTS (+ OBJECT_INPUTS) -> (B, P (+O), D) tokens, (B, P (+O)) masks
        return self.policy.encode_panorama(**dict(zip(VIEW_INPUTS + (OBJECT_INPUTS if self.objects else ()), args)))


class _Navigation(nn.Module):
    def __init__(self, policy: DuetPolicy):
        super().__init__()
        self.policy = policy
        self.names = NAV_INPUTS + (("vp_obj_masks",) if policy.config.has_objects else ())

    def forward(self, *args):  # self.names -> NAV_OUTPUTS (+ obj_logits)
        kwargs = dict(zip(self.names, args))
        out = self.policy.navigate(NavigationInputs(txt_embeds=None, **kwargs))
        extra = (out.obj_logits,) if out.obj_logits is not None else ()
        return tuple(getattr(out, k) for k in NAV_OUTPUTS) + extra


def _examples(policy: DuetPolicy) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Example inputs of panorama and navigation mode (B=2, L=5, N=4, P=6, O=2; values only shape the trace)."""
    c = policy.config
    b, length, n, p, o = 2, 5, 4, 6, 2
    d, h = c.hidden_size, c.num_attention_heads
    ones = lambda *shape: torch.ones(*shape, dtype=torch.bool)  # noqa: E731
    g = c.ground_feat_size  # grounding columns follow every token's features
    pano = {"view_img_fts": torch.zeros(b, p, c.image_feat_size + g), "view_loc_fts": torch.zeros(b, p, 7),
            "view_nav_types": torch.zeros(b, p, dtype=torch.long), "view_masks": ones(b, p)}
    if c.has_objects:
        pano.update(obj_img_fts=torch.zeros(b, o, c.obj_feat_size + g), obj_loc_fts=torch.zeros(b, o, 7),
                    obj_masks=ones(b, o))
    v = 1 + p + (o if c.has_objects else 0)
    nav = {"txt_masks": ones(b, length), "gmap_img_embeds": torch.zeros(b, n, d),
           "gmap_step_ids": torch.zeros(b, n, dtype=torch.long), "gmap_pos_fts": torch.zeros(b, n, 7),
           "gmap_masks": ones(b, n), "gmap_pair_dists": torch.zeros(b, n, n),
           "gmap_visited_masks": torch.zeros(b, n, dtype=torch.bool), "vp_img_embeds": torch.zeros(b, v, d),
           "vp_pos_fts": torch.zeros(b, v, 14), "vp_masks": ones(b, v), "vp_nav_masks": ones(b, v),
           "node_cand_index": torch.zeros(b, n, dtype=torch.long),
           "vp_cand_visited": torch.zeros(b, v, dtype=torch.bool),
           "txt_kv": torch.zeros(b, 4 * c.num_x_layers, h, length, d // h),
           "vp_query_index": torch.arange(3).repeat(b, 1)}
    if c.has_objects:
        nav["vp_obj_masks"] = torch.zeros(b, v, dtype=torch.bool)
    return pano, nav


def _export(module: nn.Module, example: dict[str, torch.Tensor], outputs: list[str], path: Path) -> None:
    names = list(example)
    started = time.perf_counter()

    def write(tmp: Path) -> None:
        with onnx_cache.quiet(), torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(module.eval(), tuple(example.values()), str(tmp), input_names=names,
                              output_names=outputs, dynamic_axes={k: _axes(k) for k in names + outputs},
                              opset_version=17, dynamo=False)

    atomic_write(path, write)
    log.info("exported %s in %.1f s", path.name, time.perf_counter() - started)


def export_policy(policy: DuetPolicy, precision: Precision = "fp32",
                  onnx_dir: str | Path | None = None) -> dict[str, Path]:
    """ONNX files of the policy's modes at `precision`: {'panorama', 'navigation'[, 'panorama_objects']},
    exported (and quantised) only when not cached yet."""
    if precision not in ("fp32", "int8"):
        raise ConfigError(f"onnx policy precision must be fp32 or int8, got {precision!r}")
    folder = Path(onnx_dir).expanduser() if onnx_dir else onnx_cache.default_onnx_dir()
    policy = policy.eval()
    digest = onnx_cache.model_digest(policy, "policy", {"export": EXPORT_VERSION, "config": asdict(policy.config)})
    pano_ex, nav_ex = _examples(policy)
    views = {k: pano_ex[k] for k in VIEW_INPUTS}
    graphs = {"panorama": (_Panorama(policy, False), views, ["pano_embeds", "pano_masks"]),
              "navigation": (_Navigation(policy), nav_ex,
                             list(NAV_OUTPUTS) + (["obj_logits"] if policy.config.has_objects else []))}
    if policy.config.has_objects:
        graphs["panorama_objects"] = (_Panorama(policy, True), pano_ex, ["pano_embeds", "pano_masks"])
    files = {}
    for name, (module, example, outputs) in graphs.items():
        fp32 = folder / f"policy-{name}-{digest}-fp32.onnx"
        if not fp32.is_file():
            _export(module, example, outputs, fp32)
        files[name] = fp32
        if precision == "int8":
            int8 = fp32.with_name(fp32.name.replace("-fp32.onnx", "-int8.onnx"))
            if not int8.is_file():
                onnx_cache.quantize_int8(fp32, int8, per_channel=True, keep_fp32=KEEP_FP32)
            files[name] = int8
    return files


class OnnxPolicy(nn.Module):
    """`DuetPolicy` for inference whose panorama and navigation modes run in onnxruntime.

    Holds the torch policy for language mode (and its `config`, parameters and their count);
    outputs carry no traces (distillation and training use the torch policy)."""

    # Threads for torch's own work around the graphs in `NavigationAgent.step` (padding, the map's
    # embeddings, softmax: microseconds). With more, torch's OpenMP workers and onnxruntime's
    # spinning pool wait for each other's cores: the first parallel torch op after a graph run
    # took ~4 ms at batch 1 on 2 cores, a third of the student's decision.
    torch_threads = 1

    def __init__(self, policy: DuetPolicy, precision: Precision = "fp32", threads: int = 0,
                 onnx_dir: str | Path | None = None):
        super().__init__()
        self.policy = policy.eval()
        self.config = policy.config
        self.precision = precision
        self.files = export_policy(policy, precision, onnx_dir)
        threads = threads or torch.get_num_threads()
        self.sessions = {k: onnx_cache.session(p, threads) for k, p in self.files.items()}
        self._inputs = {k: {i.name for i in s.get_inputs()} for k, s in self.sessions.items()}

    def num_parameters(self) -> int:
        return self.policy.num_parameters()

    def encode_language(self, *args, **kwargs) -> torch.Tensor:
        return self.policy.encode_language(*args, **kwargs)

    def text_key_values(self, txt_embeds: torch.Tensor) -> torch.Tensor:
        return self.policy.text_key_values(txt_embeds)

    def _run(self, graph: str, feeds: dict[str, torch.Tensor]) -> list[np.ndarray]:
        wanted = self._inputs[graph]  # the exporter drops inputs a graph does not read
        return self.sessions[graph].run(None, {k: v.detach().cpu().numpy() for k, v in feeds.items() if k in wanted})

    def encode_panorama(self, view_img_fts, view_loc_fts, view_nav_types, view_masks, obj_img_fts=None,
                        obj_loc_fts=None, obj_masks=None, trace=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Same contract as `DuetPolicy.encode_panorama` (no trace)."""
        if trace is not None:
            raise ValueError("OnnxPolicy does not record traces; distil with the torch policy")
        feeds = dict(zip(VIEW_INPUTS, (view_img_fts, view_loc_fts, view_nav_types, view_masks)))
        graph = "panorama"
        if obj_img_fts is not None and obj_img_fts.shape[1] > 0:
            if not self.config.has_objects:
                raise ValueError("this model has no object inputs (obj_feat_size is 0)")
            feeds.update(zip(OBJECT_INPUTS, (obj_img_fts, obj_loc_fts, obj_masks)))
            graph = "panorama_objects"
        embeds, masks = self._run(graph, feeds)
        return torch.from_numpy(embeds), torch.from_numpy(masks)

    def navigate(self, inputs: NavigationInputs, traces: bool = False) -> NavigationOutputs:
        """Same contract as `DuetPolicy.navigate` (no traces)."""
        if traces:
            raise ValueError("OnnxPolicy does not record traces; distil with the torch policy")
        feeds = {k: getattr(inputs, k) for k in NAV_INPUTS}
        if feeds["txt_kv"] is None:
            feeds["txt_kv"] = self.policy.text_key_values(inputs.txt_embeds)
        if feeds["vp_query_index"] is None:  # every local token (the graph always takes an index)
            feeds["vp_query_index"] = torch.arange(inputs.vp_masks.shape[1]).expand(inputs.vp_masks.shape[0], -1)
        with_objects = self.config.has_objects and inputs.vp_obj_masks is not None
        if self.config.has_objects:
            feeds["vp_obj_masks"] = (inputs.vp_obj_masks if with_objects
                                     else torch.zeros_like(inputs.vp_masks))
        out = [torch.from_numpy(a) for a in self._run("navigation", feeds)]
        obj_logits = out[6] if with_objects else None
        return NavigationOutputs(**dict(zip(NAV_OUTPUTS, out)), obj_logits=obj_logits)

    # DUET's three-mode dispatch, the same function as the torch policy's.
    forward = DuetPolicy.forward
