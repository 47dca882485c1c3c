"""Observations + graph maps -> batched model inputs (panorama mode and navigation mode).

Panorama token order at a node (as DUET): one token per navigable candidate (the view that best
faces it, with the exact angle to the neighbour), then every view not used by a candidate (its
centre angle), then objects. Angles are relative to the agent's current heading/elevation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minivln_core.agent.grounding import InstructionGrounding
from minivln_core.frames import NUM_VIEWS, VIEW_ELEVATIONS, VIEW_HEADINGS, angle_features
from minivln_core.graph.graph_map import GraphMap
from minivln_core.models.policy import NavigationInputs

VIEW_BOX = (1.0, 1.0, 1.0)  # box part of a view's location feature
IMAGE_H, IMAGE_W = 480, 640  # Matterport camera, used to normalise object boxes


@dataclass
class PanoramaTokens:
    """Numpy arrays for one node: V = n_cand + unused views (+ O objects)."""

    img_fts: np.ndarray       # (V, F)
    loc_fts: np.ndarray       # (V, 7)
    nav_types: np.ndarray     # (V,) 1 candidate, 0 other view
    cand_viewpoints: list[str]
    obj_fts: np.ndarray | None = None   # (O, Fo)
    obj_loc_fts: np.ndarray | None = None  # (O, 7)
    obj_ids: list[str] | None = None
    ground_fts: np.ndarray | None = None      # (V, G) instruction-grounding columns (agent.grounding)
    obj_ground_fts: np.ndarray | None = None  # (O, G)


def panorama_tokens(obs, grounding: InstructionGrounding | None = None,
                    instruction: str | None = None) -> PanoramaTokens:
    """Tokens of the current node of one observation (see the module docstring for the order);
    `grounding` adds each token's match with the episode's instruction (or `instruction`, the text
    the policy is given when that differs, e.g. with masked words)."""
    feats = np.asarray(obs.view_features, dtype=np.float32)  # (36, F)
    cands = list(obs.candidates)
    k = len(cands)
    # (K, 3) view index, heading, elevation of each candidate; then the views no candidate uses.
    cand = np.array([(c.view_index, c.heading, c.elevation) for c in cands], dtype=np.float64).reshape(k, 3)
    cand_views = cand[:, 0].astype(np.int64)
    unused = np.ones(NUM_VIEWS, dtype=bool)
    unused[cand_views] = False
    rest = np.flatnonzero(unused)                                                    # (36 - |used|,)
    heads = np.concatenate([cand[:, 1], VIEW_HEADINGS[rest]]) - obs.heading
    elevs = np.concatenate([cand[:, 2], VIEW_ELEVATIONS[rest]]) - obs.elevation
    angles = angle_features(heads, elevs)                                            # (V, 4)
    loc = np.concatenate([angles, np.broadcast_to(VIEW_BOX, (len(heads), 3))], 1).astype(np.float32)
    index = np.concatenate([cand_views, rest])
    nav_types = np.zeros(len(index), dtype=np.int64)
    nav_types[:k] = 1
    tokens = PanoramaTokens(feats[index], loc, nav_types, [c.viewpoint for c in cands])
    objects = getattr(obs, "objects", None)
    if objects is not None and len(objects.obj_ids) > 0:
        d = np.asarray(objects.directions, dtype=np.float64)                           # (O, 2)
        ang = angle_features(d[:, 0] - obs.heading, d[:, 1] - obs.elevation)
        sizes = np.asarray(objects.sizes, dtype=np.float64)                            # (O, 2) w, h px
        box = np.stack([sizes[:, 1] / IMAGE_H, sizes[:, 0] / IMAGE_W,
                        sizes[:, 0] * sizes[:, 1] / (IMAGE_H * IMAGE_W)], 1)
        tokens.obj_fts = np.asarray(objects.features, dtype=np.float32)
        tokens.obj_loc_fts = np.concatenate([ang, box], 1).astype(np.float32)
        tokens.obj_ids = [str(o) for o in objects.obj_ids]
    if grounding is not None:
        instruction = obs.episode.instruction if instruction is None else instruction
        tokens.ground_fts = grounding.columns(instruction, tokens.img_fts)
        if tokens.obj_fts is not None:
            tokens.obj_ground_fts = grounding.columns(instruction, tokens.obj_fts)
    return tokens


def _with_ground(fts: np.ndarray, ground: np.ndarray | None, what: str) -> np.ndarray:
    """(T, F) features and (T, G) grounding columns -> (T, F + G)."""
    if ground is None:
        raise ValueError(f"the model takes grounding columns but these {what} tokens were built without them")
    return np.concatenate([fts, ground], 1)


def _pad(arrays: list[np.ndarray], length: int | None = None, value: float = 0) -> np.ndarray:
    """Stack arrays of shape (n_i, ...) into (B, max n_i, ...) with `value` padding."""
    length = max([len(a) for a in arrays] + [0]) if length is None else length
    tail = arrays[0].shape[1:]
    out = np.full((len(arrays), length) + tail, value, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _lengths_mask(lengths: list[int], length: int) -> torch.Tensor:
    return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]


def object_token_start(tokens: list[PanoramaTokens]) -> int:
    """Local-token index of the first object of every item: objects follow the padded views.

    `encode_panorama` concatenates (B, V_max) view tokens and (B, O_max) object tokens, so in the
    local branch ([stop] first) item i's object j sits at 1 + V_max + j whatever its own V_i.
    """
    return 1 + max(len(t.nav_types) for t in tokens)


def layout_panorama(rows: list[torch.Tensor], tokens: list[PanoramaTokens]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item encoder outputs packed as (V_i + O_i, D) -> the batched layout of `encode_panorama`:
    (B, V_max + O_max, D) with views first and objects after the padded views, and its (B, ...) mask."""
    v_max = max(len(t.nav_types) for t in tokens)
    o_max = max(len(t.obj_ids or []) for t in tokens)
    out = rows[0].new_zeros(len(rows), v_max + o_max, rows[0].shape[1])
    masks = torch.zeros(len(rows), v_max + o_max, dtype=torch.bool, device=out.device)
    for i, (row, tok) in enumerate(zip(rows, tokens)):
        n_v, n_o = len(tok.nav_types), len(tok.obj_ids or [])
        out[i, :n_v] = row[:n_v]
        out[i, v_max: v_max + n_o] = row[n_v: n_v + n_o]
        masks[i, :n_v] = True
        masks[i, v_max: v_max + n_o] = True
    return out, masks


def panorama_batch(tokens: list[PanoramaTokens], device: torch.device,
                   ground: bool = False) -> dict[str, torch.Tensor | None]:
    """Pad a list of PanoramaTokens into the keyword arguments of `DuetPolicy.encode_panorama`;
    `ground`: append the tokens' grounding columns (a model with `ground_feat_size` > 0)."""
    v_len = [len(t.nav_types) for t in tokens]
    views = [_with_ground(t.img_fts, t.ground_fts, "view") if ground else t.img_fts for t in tokens]
    batch = {
        "view_img_fts": torch.from_numpy(_pad(views)).to(device),
        "view_loc_fts": torch.from_numpy(_pad([t.loc_fts for t in tokens])).to(device),
        "view_nav_types": torch.from_numpy(_pad([t.nav_types for t in tokens])).to(device),
        "view_masks": _lengths_mask(v_len, max(v_len)).to(device),
        "obj_img_fts": None, "obj_loc_fts": None, "obj_masks": None,
    }
    if any(t.obj_fts is not None for t in tokens):
        fts = [t.obj_fts if not ground or t.obj_fts is None else _with_ground(t.obj_fts, t.obj_ground_fts, "object")
               for t in tokens]
        dim = next(f.shape[1] for f in fts if f is not None)
        fts = [f if f is not None else np.zeros((0, dim), np.float32) for f in fts]
        locs = [t.obj_loc_fts if t.obj_loc_fts is not None else np.zeros((0, 7), np.float32) for t in tokens]
        o_len = [len(f) for f in fts]
        batch["obj_img_fts"] = torch.from_numpy(_pad(fts)).to(device)
        batch["obj_loc_fts"] = torch.from_numpy(_pad(locs)).to(device)
        batch["obj_masks"] = _lengths_mask(o_len, max(o_len)).to(device)
    return batch


def navigation_batch(maps: list[GraphMap], starts: list[str], observations: list, tokens: list[PanoramaTokens],
                     pano_embeds: torch.Tensor, pano_masks: torch.Tensor, txt_embeds: torch.Tensor,
                     txt_masks: torch.Tensor) -> tuple[NavigationInputs, list[list[str | None]]]:
    """Build NavigationInputs for one step; also return each item's global node list ([None] = stop).

    pano_embeds (B, V', D) and pano_masks (B, V') come from panorama mode of this step; the maps
    have already been updated with this step's node and embeddings.
    """
    device, dtype = pano_embeds.device, pano_embeds.dtype
    b, _, d = pano_embeds.shape
    nodes_per_item: list[list[str | None]] = []
    n_max = 1 + max(len(m.global_nodes()) for m in maps)
    v_max = 1 + pano_embeds.shape[1]
    gmap_embeds = torch.zeros(b, n_max, d, dtype=dtype, device=device)
    step_ids = np.zeros((b, n_max), np.int64)
    pos_fts = np.zeros((b, n_max, 7), np.float32)
    gmasks = np.zeros((b, n_max), bool)
    pair = np.zeros((b, n_max, n_max), np.float32)
    visited = np.zeros((b, n_max), bool)
    vp_pos = np.zeros((b, v_max, 14), np.float32)
    nav = np.zeros((b, v_max), bool)
    node_cand = np.zeros((b, n_max), np.int64)
    cand_visited = np.zeros((b, v_max), bool)
    obj_masks = np.zeros((b, v_max), bool)
    rows, read = [], []
    obj_start = object_token_start(tokens)
    for i, (gmap, start, obs, tok) in enumerate(zip(maps, starts, observations, tokens)):
        # All per-node work is numpy over index arrays: one position-feature call for every node of
        # the map, from which the global tokens, the start and the candidates take their rows.
        order = gmap.global_order()                                                       # (n-1,)
        n = 1 + len(order)
        nodes_per_item.append([None] + gmap.names(order))
        rows.append(gmap.embeddings(order))                                               # (n-1, D)
        everything = np.arange(len(gmap))
        feats = gmap.position_features(everything, obs.viewpoint, obs.heading, obs.elevation)  # (M, 7)
        step_ids[i, 1:n] = gmap.step_ids(order)
        pos_fts[i, 1:n] = feats[order]
        gmasks[i, :n] = True
        pair[i, :n, :n] = gmap.pair_distances(order)
        is_visited = gmap.visited_mask(everything)                                        # (M,)
        visited[i, 1:n] = is_visited[order]
        # Local tokens: [stop] + candidates + views (+ objects); 14-d = start rel. current ‖ candidate.
        cand = gmap.indices(tok.cand_viewpoints)                                          # (K,)
        k = len(cand)
        vp_pos[i, :, :7] = feats[gmap.indices([start])]
        vp_pos[i, 1: 1 + k, 7:] = feats[cand]
        nav[i, : 1 + k] = True
        # Global position (1-based, after [stop]) of every map node, to point nodes at candidates.
        rank = np.empty(len(gmap), np.int64)
        rank[order] = np.arange(1, n)
        cand_visited[i, 1: 1 + k] = is_visited[cand]
        fresh = np.flatnonzero(~is_visited[cand])                                         # candidate slots
        node_cand[i, rank[cand[fresh]]] = 1 + fresh
        if tok.obj_ids:
            obj_masks[i, obj_start: obj_start + len(tok.obj_ids)] = True
        read.append(np.r_[0: 1 + k, obj_start: obj_start + len(tok.obj_ids or [])])   # [stop], candidates, objects
    for i, r in enumerate(rows):
        gmap_embeds[i, 1: 1 + len(r)] = r
    vp_embeds = torch.cat([torch.zeros(b, 1, d, dtype=dtype, device=device), pano_embeds], 1)  # (B, 1+V', D)
    vp_masks = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=device), pano_masks], 1)
    t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    inputs = NavigationInputs(
        txt_embeds=txt_embeds, txt_masks=txt_masks, gmap_img_embeds=gmap_embeds, gmap_step_ids=t(step_ids),
        gmap_pos_fts=t(pos_fts).to(dtype), gmap_masks=t(gmasks), gmap_pair_dists=t(pair).to(dtype),
        gmap_visited_masks=t(visited), vp_img_embeds=vp_embeds, vp_pos_fts=t(vp_pos).to(dtype),
        vp_masks=vp_masks, vp_nav_masks=t(nav), node_cand_index=t(node_cand), vp_cand_visited=t(cand_visited),
        vp_obj_masks=t(obj_masks) if any(tok.obj_ids for tok in tokens) else None,
        vp_query_index=t(query_index(read, v_max)))
    return inputs, nodes_per_item


def query_index(read: list[np.ndarray], length: int) -> np.ndarray:
    """(B, Q) int64 rows of distinct local-token positions: each item's `read` positions, topped up
    to the longest with the first positions it does not read (real outputs, so rows stay distinct
    and every computed value is exact; `NavigationInputs.vp_query_index`)."""
    q = max(len(r) for r in read)
    out = np.empty((len(read), q), np.int64)
    for i, r in enumerate(read):
        spare = np.setdiff1d(np.arange(length), r, assume_unique=True)[: q - len(r)]
        out[i] = np.sort(np.concatenate([r, spare]))
    return out
