"""Transformer building blocks that expose per-head pre-softmax attention scores.

`nn.MultiheadAttention` is not used anywhere: distillation needs the scores of every head before
the softmax (QK^T / sqrt(d) + additive mask + bias), which it hides. Masks are additive float
tensors broadcastable to (B, H, Lq, Lk): 0 where a key may be attended, MASK_VALUE where not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from minivln_core.models.config import ModelConfig

# BERT's additive mask value: finite (no NaN for fully masked rows), far below any real score.
MASK_VALUE = -10000.0


def additive_mask(valid: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, Lk) bool valid-keys -> (B, 1, 1, Lk) additive mask."""
    return (~valid).to(dtype)[:, None, None, :] * MASK_VALUE


class Attention(nn.Module):
    """Multi-head attention with separate Q/K/V projections (BERT layout; no output projection).

    `forward` returns the context (B, Lq, D) and, when asked, the pre-softmax scores (B, H, Lq, Lk).
    """

    def __init__(self, config: ModelConfig, ctx_dim: int | None = None):
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(ctx_dim or d, d)
        self.value = nn.Linear(ctx_dim or d, d)
        self.dropout_p = config.attention_probs_dropout_prob
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        # False: training applies `self.dropout` to materialised probabilities instead of the fused
        # kernel's own dropout (models.dropout.use_fast_dropout swaps in a faster mask generator).
        self.fused_dropout = True

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, d)

    def key_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context (B, Lk, Dc) -> keys and values (B, H, Lk, d): cacheable when the context is fixed."""
        return self._heads(self.key(context)), self._heads(self.value(context))

    def forward(self, hidden: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None,
                return_scores: bool = False,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`kv` = key_values(context) computed earlier (the instruction's, once per episode)."""
        q = self._heads(self.query(hidden))    # (B, H, Lq, d)
        k, v = self.key_values(context) if kv is None else kv  # (B, H, Lk, d) each
        b, _, lq, _ = q.shape
        unfused = return_scores or (self.training and self.dropout_p > 0 and not self.fused_dropout)
        if unfused:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, Lq, Lk)
            if mask is not None:
                scores = scores + mask
            probs = self.dropout(scores.softmax(dim=-1))
            ctx = probs @ v
            scores = scores if return_scores else None
        else:
            # Same computation through the fused kernel (no scores materialised for the caller).
            scores = None
            ctx = F.scaled_dot_product_attention(
                q, k, v, attn_mask=None if mask is None else mask.to(q.dtype),
                dropout_p=self.dropout_p if self.training else 0.0, scale=1.0 / math.sqrt(self.head_dim))
        return ctx.transpose(1, 2).reshape(b, lq, -1), scores


class AddNorm(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm (BERT's post-LN output sub-block)."""

    def __init__(self, in_dim: int, config: ModelConfig):
        super().__init__()
        self.dense = nn.Linear(in_dim, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class AttentionBlock(nn.Module):
    """Attention followed by its post-LN output (self-attention when context is the input)."""

    def __init__(self, config: ModelConfig, ctx_dim: int | None = None):
        super().__init__()
        self.att = Attention(config, ctx_dim)
        self.output = AddNorm(config.hidden_size, config)

    def forward(self, hidden, context, mask, return_scores=False, kv=None):
        ctx, scores = self.att(hidden, context, mask, return_scores, kv)
        return self.output(ctx, hidden), scores


class FeedForward(nn.Module):
    """Post-LN FFN: D -> intermediate (GELU, erf form) -> D, dropout, residual, LayerNorm."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = AddNorm(config.intermediate_size, config)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(F.gelu(self.intermediate(hidden)), hidden)


class BertLayer(nn.Module):
    """Post-LN self-attention layer of the language encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention = AttentionBlock(config)
        self.ffn = FeedForward(config)

    def forward(self, hidden, mask, return_scores=False):
        hidden, scores = self.attention(hidden, hidden, mask, return_scores)
        return self.ffn(hidden), scores


class PreLNLayer(nn.Module):
    """Pre-LN transformer layer of the panorama encoder (x + attn(LN(x)); x + FFN(LN(x)))."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        d, eps = config.hidden_size, config.pano_layer_norm_eps
        self.norm1 = nn.LayerNorm(d, eps=eps)
        self.att = Attention(config)
        self.out_proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=eps)
        self.linear1 = nn.Linear(d, config.intermediate_size)
        self.linear2 = nn.Linear(config.intermediate_size, d)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden, mask, return_scores=False):
        x = self.norm1(hidden)
        ctx, scores = self.att(x, x, mask, return_scores)
        hidden = hidden + self.dropout(self.out_proj(ctx))
        ffn = self.linear2(self.dropout(F.gelu(self.linear1(self.norm2(hidden)))))
        return hidden + self.dropout(ffn), scores


class CrossModalLayer(nn.Module):
    """Visual tokens attend to text (cross-attention), then to each other (+ optional graph
    bias folded into the mask), then FFN; all post-LN. Text is never updated at navigation time."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.cross_attention = AttentionBlock(config)
        self.self_attention = AttentionBlock(config)
        self.ffn = FeedForward(config)
        if config.lang2visn_attn:
            # Pretraining (MLM): a text-side stream that reuses the same cross-attention (LXMERT).
            self.lang_self_attention = AttentionBlock(config)
            self.lang_ffn = FeedForward(config)

    def forward(self, visual, visual_mask, text, text_mask, return_scores=False, text_kv=None, query_index=None):
        """text_kv: this layer's cached (keys, values) of `text`, (B, H, L, d) each, or None.

        query_index (B, Q) long, distinct positions per row: only these tokens are carried through
        self-attention (as queries; every token stays a key/value) and the FFN; the other rows of the
        output are their cross-attention outputs. Exact for the rows kept, ~70% less work per row
        dropped: the last layer of a branch whose other outputs are never read (see DuetPolicy.navigate).
        It needs a per-key `visual_mask` (B, 1, 1, Lk), as the local branch has (no graph bias rows)."""
        visual, cross_scores = self.cross_attention(visual, text, text_mask, return_scores, text_kv)
        if query_index is None:
            visual, self_scores = self.self_attention(visual, visual, visual_mask, return_scores)
            return self.ffn(visual), cross_scores, self_scores
        rows = query_index[:, :, None].expand(-1, -1, visual.shape[-1])                  # (B, Q, D)
        kept, self_scores = self.self_attention(visual.gather(1, rows), visual, visual_mask, return_scores)
        return visual.scatter(1, rows, self.ffn(kept)), cross_scores, self_scores

    def forward_text(self, text, text_mask, visual, visual_mask) -> torch.Tensor:
        """Text-side stream (pretraining only): text attends to the visual tokens, then to itself."""
        text, _ = self.cross_attention(text, visual, visual_mask)
        text, _ = self.lang_self_attention(text, text, text_mask)
        return self.lang_ffn(text)


class ClsPrediction(nn.Module):
    """DUET's prediction head: Linear(in -> D) -> ReLU -> LayerNorm -> Linear(D -> 1)."""

    def __init__(self, hidden_size: int, input_size: int | None = None, eps: float = 1e-12):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_size or hidden_size, hidden_size), nn.ReLU(),
            nn.LayerNorm(hidden_size, eps=eps), nn.Linear(hidden_size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
