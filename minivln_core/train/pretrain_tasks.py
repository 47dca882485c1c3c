"""DUET pretraining samples and the four proxy-task losses (MLM, MRC, SAP, OG; reference section c.1).

One sample per episode, teacher-forced along the ground-truth path: the environment walks the path
from the start to the sample's *end node*, every node's panorama is encoded and the episode's
GraphMap is updated exactly as `NavigationAgent.step` does (same tokens, same map calls), then one
navigation forward runs at the end node. The end node depends on the task: MLM and OG end at the
goal; MRC and SAP end at the goal with probability 0.2, else at a random earlier gt node (the start
included, as DUET; REVERIE skips nodes from which the target object is already visible).

Trajectories longer than `max_traj_nodes` + 1 nodes keep gradients only through their first
`max_traj_nodes` panoramas and the end node; the nodes in between are still encoded (without
gradient) so the map is the agent's map and stays connected.

Every random draw of a sample comes from `sample_rng(seed, step, global_sample_index)`, so a sample
does not depend on how the global batch is split over processes. Losses weigh every sample 1/B
(token losses are averaged within a sample first), which also makes them independent of sharding.

Letters in shape comments: B samples, L instruction tokens, V panorama tokens, N global tokens
([stop] + map nodes), D hidden size, C region classes, M masked items of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from minivln_core.agent.agent import policy_grounding
from minivln_core.agent.inputs import (NUM_VIEWS, PanoramaTokens, layout_panorama, navigation_batch,
                                       object_token_start, panorama_batch, panorama_tokens)
from minivln_core.data.episodes import Episode
from minivln_core.data.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID, decode
from minivln_core.env.nav_env import NavEnv, Observation
from minivln_core.graph.graph_map import GraphMap
from minivln_core.models.policy import DuetPolicy, NavigationInputs
from minivln_core.models.pretrain import DuetPretrainModel
from minivln_core.train.trainer import step_seed

TASKS = ("mlm", "mrc", "sap", "og")
IGNORE = -100
MLM_PROB = 0.15                  # fraction of instruction tokens masked
MLM_RANDOM_IDS = (1996, 29611)   # bert-base-uncased whole-word range used for random replacements
MRC_PROB = 0.15                  # fraction of end-node views whose feature is zeroed
END_AT_GOAL_PROB = 0.2           # MRC / SAP: chance the sample ends at the goal
SAMPLE_SALT = 50_000             # step_seed salt offset of per-sample draws (clear of the other streams)


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of sample `index` of the global batch of `step`."""
    return np.random.default_rng(step_seed(seed, step, SAMPLE_SALT + index))


# -- per-sample random choices -------------------------------------------------------------------
def choose_end(episode: Episode, task: str, rng: np.random.Generator) -> int:
    """Index in `episode.path` of the sample's end node (MLM/OG: goal; MRC/SAP: goal w.p. 0.2)."""
    goal = len(episode.path) - 1
    if task in ("mlm", "og"):
        return goal
    seen_goal = set(episode.goal_viewpoints)
    earlier = [k for k in range(goal) if episode.path[k] not in seen_goal]
    if not earlier or rng.random() < END_AT_GOAL_PROB:
        return goal
    return int(earlier[rng.integers(len(earlier))])


def mask_instruction(ids: Sequence[int], rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """BERT masking: (input ids, labels) with labels = original id at masked positions, -100 elsewhere.

    15% of the non-special tokens (at least one): 80% -> [MASK], 10% -> random id, 10% kept.
    """
    ids = list(ids)
    labels = [IGNORE] * len(ids)
    maskable = np.array([k for k, t in enumerate(ids) if t not in (PAD_ID, CLS_ID, SEP_ID)], dtype=np.int64)
    if maskable.size == 0:
        return ids, labels
    chosen = maskable[rng.random(maskable.size) < MLM_PROB]
    if chosen.size == 0:
        chosen = maskable[rng.integers(maskable.size)][None]
    action = rng.random(chosen.size)
    random_ids = rng.integers(*MLM_RANDOM_IDS, size=chosen.size)
    for k, u, r in zip(chosen.tolist(), action.tolist(), random_ids.tolist()):
        labels[k] = ids[k]
        if u < 0.8:
            ids[k] = MASK_ID
        elif u < 0.9:
            ids[k] = int(r)
    return ids, labels


def choose_masked_views(rng: np.random.Generator) -> list[int]:
    """View indices (0..35) whose feature is zeroed: each w.p. 0.15, at least one."""
    views = np.flatnonzero(rng.random(NUM_VIEWS) < MRC_PROB)
    if views.size == 0:
        views = np.array([rng.integers(NUM_VIEWS)])
    return [int(v) for v in views]


# -- token bookkeeping ---------------------------------------------------------------------------
def view_token_positions(obs: Observation) -> list[list[int]]:
    """For each view index, its panorama token positions (candidates first, then unused views).

    A view facing two candidates has two tokens; a view used by a candidate has no token of its own.
    """
    positions: list[list[int]] = [[] for _ in range(NUM_VIEWS)]
    for k, cand in enumerate(obs.candidates):
        positions[cand.view_index].append(k)
    used = {c.view_index for c in obs.candidates}
    rest = [ix for ix in range(NUM_VIEWS) if ix not in used]
    for j, ix in enumerate(rest):
        positions[ix].append(len(obs.candidates) + j)
    return positions


def sap_labels(nodes: Sequence[str | None], tokens: PanoramaTokens, next_vp: str | None) -> tuple[int, int]:
    """(global, local) action labels: 0 = stop; else the next node's global index and 1 + candidate index."""
    if next_vp is None:
        return 0, 0
    return list(nodes).index(next_vp), 1 + tokens.cand_viewpoints.index(next_vp)


def og_label(tokens: PanoramaTokens, obj_id: str | None, obj_start: int) -> int:
    """Local token index of the annotated object at the end node, or -100 if it is not there.

    obj_start: local index of the batch's first object token (`object_token_start`)."""
    if obj_id is None or not tokens.obj_ids or str(obj_id) not in tokens.obj_ids:
        return IGNORE
    return obj_start + tokens.obj_ids.index(str(obj_id))


# -- batch building --------------------------------------------------------------------------------
@dataclass
class PretrainBatch:
    """Model inputs at the end nodes plus every task's targets (only the drawn task's are filled)."""

    task: str
    inputs: NavigationInputs               # built by navigation_batch at the end nodes
    nodes: list[list[str | None]]          # global tokens per sample ([None] = stop)
    tokens: list[PanoramaTokens]           # end-node panorama tokens per sample
    mlm_labels: torch.Tensor | None        # (B, L) original ids at masked positions, -100 elsewhere
    mrc_index: torch.Tensor | None         # (M, 2) (sample, local token) of masked view tokens
    mrc_targets: torch.Tensor | None       # (M, C) softmax of the stored class scores
    global_labels: torch.Tensor            # (B,) SAP label over global tokens (0 = stop)
    local_labels: torch.Tensor             # (B,) SAP label over local tokens (0 = stop)
    og_labels: torch.Tensor                # (B,) OG label over local tokens, -100 if absent


def _encode_panoramas(policy: DuetPolicy, tokens: list[PanoramaTokens], device: torch.device) -> list[torch.Tensor]:
    """Encode panoramas in one call; each item's valid tokens (views then objects), (V_i, D)."""
    if not tokens:
        return []
    ground = policy.config.ground_feat_size > 0
    pano, masks = policy.encode_panorama(**panorama_batch(tokens, device, ground))  # (P, V', D), (P, V')
    # Packed per item (views then objects); `layout_panorama` restores the batched layout.
    return [pano[p][masks[p]] for p in range(len(tokens))]


def _walk(env: NavEnv, i: int, path: list[str], masked_views: list[int]) -> list[Observation]:
    """Observations of agent i along `path` (already started at path[0]); end-node views masked."""
    walk = [env.observation(i)]
    for vp in path[1:]:
        env.hop(i, vp)
        walk.append(env.observation(i))
    if masked_views:
        feats = np.array(walk[-1].view_features, dtype=np.float32)  # (36, F) writable copy
        feats[masked_views] = 0.0
        walk[-1] = replace(walk[-1], view_features=feats)
    return walk


def build_batch(policy: DuetPolicy, env: NavEnv, task: str, episodes: Sequence[Episode],
                sample_ids: Sequence[int], step: int, seed: int, max_traj_nodes: int = 20) -> PretrainBatch:
    """Teacher-force each episode to its end node, replaying the agent's map updates; targets for `task`."""
    if task not in TASKS:
        raise ValueError(f"unknown pretraining task '{task}' (choose {', '.join(TASKS)})")
    device = next(policy.parameters()).device
    rngs = [sample_rng(seed, step, s) for s in sample_ids]
    ends = [choose_end(ep, task, rng) for ep, rng in zip(episodes, rngs)]
    txt_ids, mlm_labels, masked_views = [], [], []
    for ep, rng in zip(episodes, rngs):
        ids, labels = mask_instruction(ep.instr_encoding, rng) if task == "mlm" else (list(ep.instr_encoding), [])
        txt_ids.append(ids)
        mlm_labels.append(labels)
        masked_views.append(choose_masked_views(rng) if task == "mrc" else [])
    env.start(list(episodes))
    walks = [_walk(env, i, ep.path[: end + 1], views)
             for i, (ep, end, views) in enumerate(zip(episodes, ends, masked_views))]
    grounding = policy_grounding(policy.config)
    # Grounding sees the instruction the policy is given: MLM's masked words are not there to match.
    texts = [decode(ids) if grounding is not None and task == "mlm" else ep.instruction
             for ids, ep in zip(txt_ids, episodes)]
    tokens = [[panorama_tokens(obs, grounding, text) for obs in walk] for walk, text in zip(walks, texts)]

    # Encode all panoramas: with gradient for the first max_traj_nodes nodes and the end node.
    keys = [(i, t) for i, walk in enumerate(walks) for t in range(len(walk))]
    keep = [(i, t) for i, t in keys if t < max_traj_nodes or t == len(walks[i]) - 1]
    rest = [(i, t) for i, t in keys if not (t < max_traj_nodes or t == len(walks[i]) - 1)]
    encoded = dict(zip(keep, _encode_panoramas(policy, [tokens[i][t] for i, t in keep], device)))
    with torch.no_grad():
        encoded.update(zip(rest, _encode_panoramas(policy, [tokens[i][t] for i, t in rest], device)))

    # Replay the agent's map updates node by node (NavigationAgent.step).
    maps = []
    for i, walk in enumerate(walks):
        gmap = GraphMap()
        for t, obs in enumerate(walk):
            gmap.update(obs.viewpoint, obs.position, {c.viewpoint: c.position for c in obs.candidates}, t)
            pano = encoded[(i, t)]                                                  # (V_i, D)
            gmap.set_visited_embedding(obs.viewpoint, pano.mean(0))
            cands = tokens[i][t].cand_viewpoints  # candidate tokens come first (visited ones skipped)
            gmap.add_ghost_embeddings(cands, pano[: len(cands)])
        maps.append(gmap)

    # Language (masked for MLM) and one navigation input at the end nodes.
    length = max(len(ids) for ids in txt_ids)
    ids = torch.full((len(episodes), length), PAD_ID, dtype=torch.long)
    for i, row in enumerate(txt_ids):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    txt_masks = ids != PAD_ID
    txt_masks[:, 0] = True
    txt = policy.encode_language(ids.to(device), txt_masks.to(device))                 # (B, L, D)
    end_obs = [walk[-1] for walk in walks]
    end_tokens = [tok[-1] for tok in tokens]
    pano, pano_masks = layout_panorama([encoded[(i, len(walk) - 1)] for i, walk in enumerate(walks)],
                                       end_tokens)                                    # (B, V + O, D)
    inputs, nodes = navigation_batch(maps, [ep.start for ep in episodes], end_obs, end_tokens, pano, pano_masks,
                                     txt, txt_masks.to(device))

    labels = None
    if task == "mlm":
        labels = torch.full((len(episodes), length), IGNORE, dtype=torch.long)
        for i, row in enumerate(mlm_labels):
            labels[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        labels = labels.to(device)
    mrc_index = mrc_targets = None
    if task == "mrc":
        index, targets = [], []
        for i, (obs, views) in enumerate(zip(end_obs, masked_views)):
            probs = _softmax(env.features.logits(obs.scan, obs.viewpoint))             # (36, C)
            positions = view_token_positions(obs)
            for ix in views:
                for p in positions[ix]:
                    index.append((i, 1 + p))                                        # local token = 1 + pano token
                    targets.append(probs[ix])
        mrc_index = torch.tensor(index, dtype=torch.long, device=device).view(-1, 2)
        mrc_targets = torch.from_numpy(np.stack(targets)).to(device)
    sap = [sap_labels(nodes[i], end_tokens[i], None if end == len(ep.path) - 1 else ep.path[end + 1])
           for i, (ep, end) in enumerate(zip(episodes, ends))]
    obj_start = object_token_start(end_tokens)
    og = [og_label(tok, ep.obj_id, obj_start) if end == len(ep.path) - 1 else IGNORE
          for tok, ep, end in zip(end_tokens, episodes, ends)]
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=device)  # noqa: E731
    return PretrainBatch(task, inputs, nodes, end_tokens, labels, mrc_index, mrc_targets,
                         as_long([g for g, _ in sap]), as_long([l for _, l in sap]), as_long(og))


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of stored class scores / log-probs, float32."""
    z = np.asarray(scores, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).astype(np.float32)


# -- losses ----------------------------------------------------------------------------------------
def _sample_mean(values: torch.Tensor, owners: torch.Tensor, batch: int, anchor: torch.Tensor) -> torch.Tensor:
    """Mean over samples of each sample's mean value ((M,) values owned by samples (M,)); 0 if M = 0.

    `anchor` (any finite model output) keeps an empty loss attached to the graph for backward().
    """
    if values.numel() == 0:
        return anchor.sum() * 0.0
    sums = values.new_zeros(batch).index_add(0, owners, values)                     # (B,)
    counts = torch.bincount(owners, minlength=batch).clamp(min=1).to(values.dtype)   # (B,)
    return (sums / counts).mean()


def mlm_loss(model: DuetPretrainModel, batch: PretrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """CE of the tied LM head on the summed global + local text streams at masked positions."""
    x, policy = batch.inputs, model.policy
    _, g_text = policy.global_encoder(x.txt_embeds, x.txt_masks, x.gmap_img_embeds, x.gmap_step_ids,
                                      x.gmap_pos_fts, x.gmap_masks, x.gmap_pair_dists,
                                      update_text=True)                               # (B, L, D)
    _, l_text = policy.local_encoder(x.txt_embeds, x.txt_masks, x.vp_img_embeds, x.vp_pos_fts, x.vp_masks,
                                     update_text=True)                               # (B, L, D)
    text = g_text + l_text
    where = batch.mlm_labels != IGNORE                                               # (B, L)
    logits = model.mlm_head(text[where])                                             # (M, vocab)
    target = batch.mlm_labels[where]                                                 # (M,)
    owners = where.nonzero()[:, 0]
    loss = _sample_mean(F.cross_entropy(logits, target, reduction="none"), owners, where.shape[0], text)
    return loss, {"acc": float((logits.argmax(-1) == target).float().mean()) if target.numel() else 0.0,
                  "n": float(target.numel())}


def mrc_loss(model: DuetPretrainModel, batch: PretrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """KL(stored class distribution || MRC head) on the local-branch outputs of masked view tokens."""
    x = batch.inputs
    local = model.policy.local_encoder(x.txt_embeds, x.txt_masks, x.vp_img_embeds, x.vp_pos_fts,
                                       x.vp_masks)                                   # (B, 1+V, D)
    idx = batch.mrc_index                                                            # (M, 2)
    log_probs = F.log_softmax(model.mrc_head(local[idx[:, 0], idx[:, 1]]), -1)       # (M, C)
    kl = F.kl_div(log_probs, batch.mrc_targets, reduction="none").sum(-1)            # (M,)
    loss = _sample_mean(kl, idx[:, 0], local.shape[0], local)
    return loss, {"kl": float(kl.detach().mean()) if kl.numel() else 0.0, "n": float(kl.numel())}


def sap_loss(model: DuetPretrainModel, batch: PretrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """CE(global) + CE(local) + CE(fused, global label); accuracy of the fused argmax."""
    out = model.policy.navigate(batch.inputs)
    g, loc = batch.global_labels, batch.local_labels
    loss = (F.cross_entropy(out.global_logits, g) + F.cross_entropy(out.local_logits, loc)
            + F.cross_entropy(out.fused_logits, g))
    return loss, {"acc": float((out.fused_logits.argmax(-1) == g).float().mean()), "n": float(g.numel())}


def og_loss(model: DuetPretrainModel, batch: PretrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """CE over the end node's object tokens; samples without the annotated object weigh 0."""
    out = model.policy.navigate(batch.inputs)
    if out.obj_logits is None:
        raise ValueError("object grounding needs a model with objects (task reverie)")
    valid = (batch.og_labels != IGNORE).nonzero()[:, 0]                              # (M,)
    logits, target = out.obj_logits[valid], batch.og_labels[valid]                   # (M, 1+V), (M,)
    ce = F.cross_entropy(logits, target, reduction="none")
    loss = _sample_mean(ce, valid, out.obj_logits.shape[0], out.local_embeds)
    acc = float((logits.argmax(-1) == target).float().mean()) if target.numel() else 0.0
    return loss, {"acc": acc, "n": float(target.numel())}


LOSSES = {"mlm": mlm_loss, "mrc": mrc_loss, "sap": sap_loss, "og": og_loss}


def task_loss(model: DuetPretrainModel, batch: PretrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of the batch's task and its statistics (acc or kl, and n = items scored)."""
    return LOSSES[batch.task](model, batch)
