"""Embeddings and the four encoders of the DUET policy (language, panorama, global, local).

Each encoder returns its output and, on request, a `Trace`: the input embedding, the hidden
state after every layer and every layer's pre-softmax attention scores (per head).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from minivln_core.models.config import LOC_FEAT_SIZE, POS_FEAT_SIZE, ModelConfig
from minivln_core.models.layers import BertLayer, CrossModalLayer, PreLNLayer, additive_mask
from minivln_core.models.text_backbone import BACKBONE_DIM, backbone_states

POS_LAYER_NORM_EPS = 1e-5  # position-feature LayerNorms (see GlobalMapEncoder)


@dataclass
class Trace:
    """Intermediate tensors of one encoder, for distillation.

    embedding: (B, L, D) input of the first layer; hidden[m]: (B, L, D) output of layer m;
    scores[m]: (B, H, L, L) self-attention scores; cross_scores[m]: (B, H, L, Ltext).
    """

    embedding: torch.Tensor | None = None
    hidden: list[torch.Tensor] = field(default_factory=list)
    scores: list[torch.Tensor] = field(default_factory=list)
    cross_scores: list[torch.Tensor] = field(default_factory=list)


class TextEmbeddings(nn.Module):
    """word + learned position + token type (+ projected frozen backbone states) -> LayerNorm -> dropout."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.backbone = config.text_backbone
        self.backbone_linear = (nn.Linear(BACKBONE_DIM[self.backbone], d) if self.backbone != "none" else None)
        self.word_embeddings = nn.Embedding(config.vocab_size, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
        self.LayerNorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, txt_ids: torch.Tensor, txt_masks: torch.Tensor | None = None) -> torch.Tensor:
        b, length = txt_ids.shape
        positions = torch.arange(length, device=txt_ids.device)[None].expand(b, length)
        types = torch.zeros_like(txt_ids)
        x = self.word_embeddings(txt_ids) + self.position_embeddings(positions) + self.token_type_embeddings(types)
        if self.backbone_linear is not None:
            masks = txt_masks if txt_masks is not None else txt_ids != 0
            states = backbone_states(self.backbone, txt_ids, masks)                # (B, L, 384)
            x = x + self.backbone_linear(states.to(self.backbone_linear.weight.dtype))
        return self.dropout(self.LayerNorm(x))  # (B, L, D)


class LanguageEncoder(nn.Module):
    """Post-LN BERT layers over the instruction, run once per episode."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_l_layers))

    def forward(self, embeds: torch.Tensor, masks: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        mask = additive_mask(masks, embeds.dtype)  # (B, 1, 1, L)
        hidden = embeds
        for layer in self.layer:
            hidden, scores = layer(hidden, mask, trace is not None)
            if trace is not None:
                trace.hidden.append(hidden)
                trace.scores.append(scores)
        return hidden  # (B, L, D)


class ImageEmbeddings(nn.Module):
    """Panorama tokens: visual + location + navigable type + token type 1, then the panorama encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.img_linear = nn.Linear(config.image_feat_size, d)
        self.img_layer_norm = nn.LayerNorm(d, eps=eps)
        self.loc_linear = nn.Linear(LOC_FEAT_SIZE, d)
        self.loc_layer_norm = nn.LayerNorm(d, eps=eps)
        # Objects share img_linear when their feature size equals the view feature size.
        self.separate_obj = config.has_objects and config.obj_feat_size != config.image_feat_size
        if self.separate_obj:
            self.obj_linear = nn.Linear(config.obj_feat_size, d)
            self.obj_layer_norm = nn.LayerNorm(d, eps=eps)
        # The grounding columns get their own projection so a few numbers are not lost among F features.
        self.ground_linear = nn.Linear(config.ground_feat_size, d) if config.ground_feat_size else None
        self.nav_type_embedding = nn.Embedding(3, d)  # 0 view, 1 navigable view, 2 object
        self.layer_norm = nn.LayerNorm(d, eps=eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pano_encoder = nn.ModuleList(PreLNLayer(config) for _ in range(config.num_pano_layers))
        self.final_norm = (nn.LayerNorm(d, eps=config.pano_layer_norm_eps) if config.num_pano_layers > 0
                           else nn.Identity())

    def _grounded(self, projected: torch.Tensor, ground: torch.Tensor | None) -> torch.Tensor:
        """(B, T, D) projected features + the projected (B, T, G) grounding columns, if the model has them."""
        if self.ground_linear is None:
            return projected
        return projected + self.ground_linear(ground)

    def embed_views(self, view_fts: torch.Tensor, ground: torch.Tensor | None = None) -> torch.Tensor:
        """(B, V, F) (+ (B, V, G) grounding) -> (B, V, D)."""
        return self.img_layer_norm(self._grounded(self.img_linear(view_fts), ground))

    def embed_objects(self, obj_fts: torch.Tensor, ground: torch.Tensor | None = None) -> torch.Tensor:
        """(B, O, Fo) (+ (B, O, G) grounding) -> (B, O, D)."""
        if self.separate_obj:
            return self.obj_layer_norm(self._grounded(self.obj_linear(obj_fts), ground))
        return self.embed_views(obj_fts, ground)

    def forward(self, img_embeds, loc_fts, nav_types, masks, type_embedding: nn.Embedding,
                trace: Trace | None = None) -> torch.Tensor:
        """img_embeds (B, V, D) already projected; loc_fts (B, V, 7); nav_types (B, V); masks (B, V)."""
        types = torch.ones_like(nav_types)
        x = (img_embeds + self.loc_layer_norm(self.loc_linear(loc_fts))
             + self.nav_type_embedding(nav_types) + type_embedding(types))
        hidden = self.dropout(self.layer_norm(x))
        if trace is not None:
            trace.embedding = hidden
        mask = additive_mask(masks, hidden.dtype)
        for layer in self.pano_encoder:
            hidden, scores = layer(hidden, mask, trace is not None)
            if trace is not None:
                trace.hidden.append(hidden)
                trace.scores.append(scores)
        return self.final_norm(hidden)  # (B, V, D)


class CrossModalEncoder(nn.Module):
    """A stack of cross-modal layers (visual queries, text keys)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.x_layers = nn.ModuleList(CrossModalLayer(config) for _ in range(config.num_x_layers))

    def forward_both(self, visual, visual_mask, text, text_mask,
                     visual_key_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Co-attention (pretraining MLM): each layer updates both streams from the previous layer's.

        visual_mask may carry a (B, 1, N, N) graph bias for the visual self-attention; text queries
        attend to the visual tokens through `visual_key_mask` (B, 1, 1, N), the padding alone.
        """
        key_mask = visual_mask if visual_key_mask is None else visual_key_mask
        for layer in self.x_layers:
            new_text = layer.forward_text(text, text_mask, visual, key_mask)
            visual, _, _ = layer(visual, visual_mask, text, text_mask)
            text = new_text
        return visual, text

    def text_key_values(self, text: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's cross-attention keys/values of the text (B, L, D) -> [(B, H, L, d) x 2] per layer.

        The instruction does not change during an episode, so the agent computes these once and
        passes them back at every step (`text_kv`) instead of re-projecting L tokens per layer."""
        return [layer.cross_attention.att.key_values(text) for layer in self.x_layers]

    def forward(self, visual, visual_mask, text, text_mask, trace: Trace | None = None,
                text_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                query_index: torch.Tensor | None = None) -> torch.Tensor:
        """query_index (B, Q): the last layer computes only these tokens fully (CrossModalLayer)."""
        last = len(self.x_layers) - 1
        for i, layer in enumerate(self.x_layers):
            visual, cross_scores, self_scores = layer(visual, visual_mask, text, text_mask, trace is not None,
                                                      None if text_kv is None else text_kv[i],
                                                      query_index if i == last else None)
            if trace is not None:
                trace.hidden.append(visual)
                trace.scores.append(self_scores)
                trace.cross_scores.append(cross_scores)
        return visual


class GlobalMapEncoder(nn.Module):
    """Coarse scale: [stop] + map nodes, with step ids, position features and the graph bias."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        # [stop]'s position feature is all zeros, so this LayerNorm sees exactly its bias (zero at
        # init): with BERT's eps 1e-12 its gradient is ~1e6. A 1e-5 eps keeps early training sane.
        self.gmap_pos_embeddings = nn.Sequential(
            nn.Linear(POS_FEAT_SIZE, d), nn.LayerNorm(d, eps=POS_LAYER_NORM_EPS))
        self.gmap_step_embeddings = nn.Embedding(config.max_action_steps, d)
        self.encoder = CrossModalEncoder(config)
        # One Linear(1, 1) maps metres to an attention bias shared by all heads and layers.
        self.sprel_linear = nn.Linear(1, 1) if config.graph_sprels else None

    def forward(self, txt_embeds, txt_masks, node_embeds, step_ids, pos_fts, masks, pair_dists,
                trace: Trace | None = None, update_text: bool = False, text_kv=None):
        """node_embeds (B, N, D) with zeros at [stop]; step_ids (B, N); pos_fts (B, N, 7);
        masks (B, N) bool; pair_dists (B, N, N) metres. Returns (B, N, D), and with
        `update_text` (pretraining MLM) also the text stream (B, L, D)."""
        x = node_embeds + self.gmap_step_embeddings(step_ids) + self.gmap_pos_embeddings(pos_fts)
        if trace is not None:
            trace.embedding = x
        key_mask = additive_mask(masks, x.dtype)  # (B, 1, 1, N)
        mask = key_mask
        if self.sprel_linear is not None:
            bias = self.sprel_linear(pair_dists.unsqueeze(-1).to(x.dtype)).squeeze(-1)  # (B, N, N)
            mask = key_mask + bias.unsqueeze(1)  # (B, 1, N, N): the map's own self-attention only
        if update_text:
            return self.encoder.forward_both(x, mask, txt_embeds, additive_mask(txt_masks, x.dtype), key_mask)
        return self.encoder(x, mask, txt_embeds, additive_mask(txt_masks, x.dtype), trace, text_kv)


class LocalEncoder(nn.Module):
    """Fine scale: [stop] + the current node's panorama tokens, with 14-d position features."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.hidden_size
        self.vp_pos_embeddings = nn.Sequential(
            nn.Linear(2 * POS_FEAT_SIZE, d), nn.LayerNorm(d, eps=POS_LAYER_NORM_EPS))
        self.encoder = CrossModalEncoder(config)

    def forward(self, txt_embeds, txt_masks, vp_embeds, pos_fts, masks, trace: Trace | None = None,
                update_text: bool = False, text_kv=None, query_index=None):
        """vp_embeds (B, 1+V, D) with zeros at [stop]; pos_fts (B, 1+V, 14); masks (B, 1+V);
        query_index (B, Q) or None: the tokens the last layer must finish (CrossModalLayer).
        Returns (B, 1+V, D), and with `update_text` (pretraining MLM) also the text stream."""
        x = vp_embeds + self.vp_pos_embeddings(pos_fts)
        if trace is not None:
            trace.embedding = x
        args = (x, additive_mask(masks, x.dtype), txt_embeds, additive_mask(txt_masks, x.dtype))
        if update_text:
            return self.encoder.forward_both(*args)
        return self.encoder(*args, trace, text_kv, query_index)
