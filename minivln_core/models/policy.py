"""The DUET navigation policy (teacher and student are this one class with two presets).

Three call modes, as in DUET: `language` once per episode, then at every decision step
`panorama` (encode the current node's views) and `navigation` (global + local cross-modal
encoders, heads and dynamic fusion). Submodule names are checkpoint keys; distillation pairs
teacher and student layers by these names and indices.

Letters in shape comments: B batch, L instruction tokens, V panorama tokens (views + objects),
O objects, N global tokens ([stop] + map nodes), D hidden size, F view feature size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from minivln_core.models.config import ModelConfig
from minivln_core.models.encoders import (GlobalMapEncoder, ImageEmbeddings, LanguageEncoder, LocalEncoder,
                                          TextEmbeddings, Trace)
from minivln_core.models.layers import ClsPrediction

NEG_INF = float("-inf")


@dataclass
class NavigationInputs:
    """Batched inputs of one navigation step (built by the agent from the graph map)."""

    txt_embeds: torch.Tensor            # (B, L, D) from language mode
    txt_masks: torch.Tensor             # (B, L) bool
    gmap_img_embeds: torch.Tensor       # (B, N, D) node features; zeros at [stop] and padding
    gmap_step_ids: torch.Tensor         # (B, N) long; t+1 of the last visit, 0 for ghosts/[stop]
    gmap_pos_fts: torch.Tensor          # (B, N, 7)
    gmap_masks: torch.Tensor            # (B, N) bool, valid tokens
    gmap_pair_dists: torch.Tensor       # (B, N, N) metres over the agent's graph
    gmap_visited_masks: torch.Tensor    # (B, N) bool, True on visited nodes ([stop] False)
    vp_img_embeds: torch.Tensor         # (B, 1+V, D) [stop] (zeros) + panorama encoder outputs
    vp_pos_fts: torch.Tensor            # (B, 1+V, 14)
    vp_masks: torch.Tensor              # (B, 1+V) bool, valid tokens
    vp_nav_masks: torch.Tensor          # (B, 1+V) bool, [stop] and navigable candidates
    node_cand_index: torch.Tensor       # (B, N) long: local token of the candidate leading to an
                                        #   unvisited node, 0 if the node is not a current candidate
    vp_cand_visited: torch.Tensor       # (B, 1+V) bool: candidate tokens whose node is visited
    vp_obj_masks: torch.Tensor | None = None  # (B, 1+V) bool, object tokens (REVERIE)
    txt_kv: torch.Tensor | None = None  # (B, S, H, L, d) `DuetPolicy.text_key_values(txt_embeds)`, cached
                                        #   per episode; None = projected from txt_embeds here
    vp_query_index: torch.Tensor | None = None  # (B, Q) long, distinct per row, covering [stop], the
                                        #   candidates and the objects: the local tokens whose outputs are
                                        #   read. In eval mode the last local layer finishes only these (None = all);
                                        #   `local_embeds` elsewhere then hold that layer's cross-attention


@dataclass
class NavigationOutputs:
    """Logits of one step: index 0 is [stop], index j of global/fused is global node j."""

    global_logits: torch.Tensor         # (B, N), −inf on visited nodes and padding
    local_logits: torch.Tensor          # (B, 1+V), −inf off the candidates
    fused_logits: torch.Tensor          # (B, N), the action distribution
    fuse_weights: torch.Tensor          # (B,) weight of the global branch
    global_embeds: torch.Tensor         # (B, N, D)
    local_embeds: torch.Tensor          # (B, 1+V, D)
    obj_logits: torch.Tensor | None = None  # (B, 1+V), −inf off object tokens
    traces: dict[str, Trace] = field(default_factory=dict)


class DuetPolicy(nn.Module):
    """Dual-scale graph transformer policy (DUET), configurable from the 181M teacher to the student."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.embeddings = TextEmbeddings(config)
        self.lang_encoder = LanguageEncoder(config)
        self.img_embeddings = ImageEmbeddings(config)
        self.global_encoder = GlobalMapEncoder(config)
        self.local_encoder = LocalEncoder(config)
        self.global_sap_head = ClsPrediction(d)
        self.local_sap_head = ClsPrediction(d)
        self.sap_fuse_linear = ClsPrediction(d, input_size=2 * d) if config.fusion == "dynamic" else None
        self.og_head = ClsPrediction(d) if config.has_objects else None
        self.feat_dropout = nn.Dropout(config.feat_dropout)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT-style initialisation: normal(0, 0.02) weights, zero bias, LayerNorm 1/0."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Number of parameters (the figure the presets are checked against)."""
        return sum(p.numel() for p in self.parameters())

    # -- mode: language ----------------------------------------------------------------------
    def encode_language(self, txt_ids: torch.Tensor, txt_masks: torch.Tensor,
                        trace: Trace | None = None) -> torch.Tensor:
        """(B, L) ids and bool masks -> (B, L, D); run once per instruction."""
        embeds = self.embeddings(txt_ids, txt_masks)
        if trace is not None:
            trace.embedding = embeds
        return self.lang_encoder(embeds, txt_masks, trace)

    def text_key_values(self, txt_embeds: torch.Tensor) -> torch.Tensor:
        """(B, L, D) encoded instruction -> (B, S, H, L, d) cross-attention keys and values of every
        cross-modal layer, S = 4 * num_x_layers ordered [global k0, v0, k1, v1, ..., local k0, v0, ...].

        They depend on the instruction only, so the agent computes them once per episode and
        navigation steps reuse them (`NavigationInputs.txt_kv`) with identical results."""
        pairs = (self.global_encoder.encoder.text_key_values(txt_embeds)
                 + self.local_encoder.encoder.text_key_values(txt_embeds))
        return torch.stack([t for kv in pairs for t in kv], 1)

    def _split_kv(self, txt_kv: torch.Tensor | None) -> tuple[list | None, list | None]:
        """(B, S, H, L, d) -> per-layer (k, v) lists of the global and the local encoder."""
        if txt_kv is None:
            return None, None
        n = self.config.num_x_layers
        pairs = [(txt_kv[:, 2 * i], txt_kv[:, 2 * i + 1]) for i in range(2 * n)]
        return pairs[:n], pairs[n:]

    # -- mode: panorama ----------------------------------------------------------------------
    def encode_panorama(self, view_img_fts: torch.Tensor, view_loc_fts: torch.Tensor,
                        view_nav_types: torch.Tensor, view_masks: torch.Tensor,
                        obj_img_fts: torch.Tensor | None = None, obj_loc_fts: torch.Tensor | None = None,
                        obj_masks: torch.Tensor | None = None,
                        trace: Trace | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (B, V, F) (+ objects (B, O, Fo)) -> panorama tokens (B, V+O, D) and masks (B, V+O).

        With `ground_feat_size` G > 0 every token carries its G grounding columns after its features:
        views (B, V, F + G), objects (B, O, Fo + G)."""
        img = self.img_embeddings
        view_fts, view_ground = self._split_ground(view_img_fts, self.config.image_feat_size, "view")
        embeds = img.embed_views(self.feat_dropout(view_fts), view_ground)
        loc, types, masks = view_loc_fts, view_nav_types, view_masks
        if obj_img_fts is not None and obj_img_fts.shape[1] > 0:
            if self.og_head is None:
                raise ValueError("this model has no object inputs (obj_feat_size is 0)")
            obj_fts, obj_ground = self._split_ground(obj_img_fts, self.config.obj_feat_size, "object")
            embeds = torch.cat([embeds, img.embed_objects(self.feat_dropout(obj_fts), obj_ground)], 1)
            loc = torch.cat([loc, obj_loc_fts], 1)
            types = torch.cat([types, torch.full_like(obj_masks, 2, dtype=types.dtype)], 1)
            masks = torch.cat([masks, obj_masks], 1)
        out = img(embeds, loc, types, masks, self.embeddings.token_type_embeddings, trace)
        return out, masks

    def _split_ground(self, fts: torch.Tensor, size: int, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, size + G) -> features (B, T, size) and grounding columns (B, T, G) (None when G = 0)."""
        ground = self.config.ground_feat_size
        if fts.shape[-1] != size + ground:
            raise ValueError(f"{what} tokens have {fts.shape[-1]} columns, the model expects {size} features"
                             + (f" + {ground} grounding columns" if ground else ""))
        if not ground:
            return fts, None
        return fts[..., :size], fts[..., size:]

    # -- mode: navigation --------------------------------------------------------------------
    def navigate(self, inputs: NavigationInputs, traces: bool = False) -> NavigationOutputs:
        """Global and local cross-modal encoding, prediction heads and dynamic fusion."""
        x = inputs
        tr = {"global": Trace(), "local": Trace()} if traces else {}
        global_kv, local_kv = self._split_kv(x.txt_kv)
        g = self.global_encoder(x.txt_embeds, x.txt_masks, x.gmap_img_embeds, x.gmap_step_ids, x.gmap_pos_fts,
                                x.gmap_masks, x.gmap_pair_dists, tr.get("global"), text_kv=global_kv)  # (B, N, D)
        # Inference only: traces (distillation) record every token of every layer, and in training the
        # skipped rows would draw no dropout masks, so runs would no longer repeat those made before.
        query = None if traces or self.training else x.vp_query_index
        loc = self.local_encoder(x.txt_embeds, x.txt_masks, x.vp_img_embeds, x.vp_pos_fts, x.vp_masks,
                                 tr.get("local"), text_kv=local_kv, query_index=query)  # (B, 1+V, D)
        if self.sap_fuse_linear is not None:
            w = torch.sigmoid(self.sap_fuse_linear(torch.cat([g[:, 0], loc[:, 0]], -1))).squeeze(-1)  # (B,)
        else:
            fixed = {"average": 0.5, "global": 1.0, "local": 0.0}[self.config.fusion]
            w = torch.full((g.shape[0],), fixed, dtype=g.dtype, device=g.device)
        global_logits = self.global_sap_head(g).squeeze(-1) * w[:, None]
        global_logits = global_logits.masked_fill(x.gmap_visited_masks | ~x.gmap_masks, NEG_INF)
        local_logits = self.local_sap_head(loc).squeeze(-1) * (1 - w[:, None])
        local_logits = local_logits.masked_fill(~x.vp_nav_masks, NEG_INF)
        fused = fuse_logits(global_logits, local_logits, x.node_cand_index, x.vp_cand_visited)
        obj_logits = None
        if self.og_head is not None and x.vp_obj_masks is not None:
            obj_logits = self.og_head(loc).squeeze(-1).masked_fill(~x.vp_obj_masks, NEG_INF)
        return NavigationOutputs(global_logits, local_logits, fused, w, g, loc, obj_logits, tr)

    def forward(self, mode: str, **kwargs):
        """Dispatch on DUET's three modes: 'language', 'panorama', 'navigation'."""
        if mode == "language":
            return self.encode_language(**kwargs)
        if mode == "panorama":
            return self.encode_panorama(**kwargs)
        if mode == "navigation":
            return self.navigate(**kwargs)
        raise ValueError(f"unknown mode '{mode}' (expected language, panorama or navigation)")


def fuse_logits(global_logits: torch.Tensor, local_logits: torch.Tensor, node_cand_index: torch.Tensor,
                vp_cand_visited: torch.Tensor) -> torch.Tensor:
    """DUET's dynamic fusion without Python loops.

    fused = global; fused[stop] += local[stop]; an unvisited node that is a current candidate gets
    that candidate's local logit; any other unvisited node gets the "backtrack" sum of the local
    logits of candidates that are already visited (0 if none). Visited/padded nodes stay −inf.
    global_logits (B, N), local_logits (B, 1+V), node_cand_index (B, N), vp_cand_visited (B, 1+V).
    """
    backtrack = local_logits.masked_fill(~vp_cand_visited, 0.0).sum(-1, keepdim=True)   # (B, 1)
    cand = local_logits.gather(1, node_cand_index)                                      # (B, N)
    add = torch.where(node_cand_index > 0, cand, backtrack.expand_as(cand))              # (B, N)
    add = torch.cat([local_logits[:, :1], add[:, 1:]], 1)                                # [stop] term
    return global_logits + add
