"""DuetPolicy: parameter counts of the presets, shapes, masks, fusion, determinism, checkpoints."""

from __future__ import annotations

import json

import pytest
import numpy as np
import torch

from minivln_core.errors import ConfigError, DataError
from minivln_core.models import DuetPolicy, NavigationInputs, preset
from minivln_core.models.checkpoint import from_pretrained, load_meta, save_pretrained
from minivln_core.models.encoders import Trace
from minivln_core.models.policy import fuse_logits

NEG_INF = float("-inf")


@pytest.mark.parametrize("name,task,count", [
    ("duet-base", "r2r", 180_489_221), ("duet-base", "reverie", 181_082_118),
    ("minivln", "r2r", 21_064_925), ("minivln", "reverie", 21_163_518)])
def test_preset_parameter_counts_match_the_reference(name, task, count):
    with torch.device("meta"):  # no memory needed for the 181M model
        model = DuetPolicy(preset(name, task))
    assert model.num_parameters() == count


def test_student_is_about_twelve_percent_of_teacher():
    with torch.device("meta"):
        t = DuetPolicy(preset("duet-base")).num_parameters()
        s = DuetPolicy(preset("minivln")).num_parameters()
    assert 0.11 < s / t < 0.125


def test_unknown_preset_and_bad_config_are_named():
    with pytest.raises(ConfigError, match="nope"):
        preset("nope")
    with pytest.raises(ConfigError, match="num_attention_heads"):
        preset("tiny-student", hidden_size=25)


def _inputs(model: DuetPolicy, b=2, length=7, v=5, n=4, objects=0, seed=0):
    """Random but well-formed inputs for the three modes (B=b, L, V views, N global tokens)."""
    g = torch.Generator().manual_seed(seed)
    c = model.config
    ids = torch.randint(1000, 2000, (b, length), generator=g)
    ids[:, 0], ids[1, -2:] = 101, 0
    txt_masks = ids != 0
    txt = model.encode_language(ids, txt_masks)
    kw = dict(view_img_fts=torch.randn(b, v, c.image_feat_size, generator=g),
              view_loc_fts=torch.randn(b, v, 7, generator=g),
              view_nav_types=torch.tensor([[1, 1, 0, 0, 0]] * b), view_masks=torch.ones(b, v, dtype=torch.bool))
    if objects:
        kw.update(obj_img_fts=torch.randn(b, objects, c.obj_feat_size, generator=g),
                  obj_loc_fts=torch.randn(b, objects, 7, generator=g),
                  obj_masks=torch.ones(b, objects, dtype=torch.bool))
    pano, pano_masks = model.encode_panorama(**kw)
    vv = pano.shape[1]
    d = c.hidden_size
    gmap_masks = torch.ones(b, n, dtype=torch.bool)
    gmap_masks[1, -1] = False
    visited = torch.zeros(b, n, dtype=torch.bool)
    visited[:, 1] = True
    nav = torch.zeros(b, 1 + vv, dtype=torch.bool)
    nav[:, :3] = True
    node_cand = torch.zeros(b, n, dtype=torch.long)
    node_cand[:, 2] = 1
    cand_vis = torch.zeros(b, 1 + vv, dtype=torch.bool)
    cand_vis[:, 2] = True
    obj_masks = None
    if objects:
        obj_masks = torch.zeros(b, 1 + vv, dtype=torch.bool)
        obj_masks[:, 1 + v:] = True
    nav_in = NavigationInputs(
        txt_embeds=txt, txt_masks=txt_masks,
        gmap_img_embeds=torch.cat([torch.zeros(b, 1, d), torch.randn(b, n - 1, d, generator=g)], 1),
        gmap_step_ids=torch.tensor([[0, 1, 0, 0]] * b), gmap_pos_fts=torch.randn(b, n, 7, generator=g),
        gmap_masks=gmap_masks, gmap_pair_dists=torch.rand(b, n, n, generator=g) * 5,
        gmap_visited_masks=visited,
        vp_img_embeds=torch.cat([torch.zeros(b, 1, d), pano], 1), vp_pos_fts=torch.randn(b, 1 + vv, 14, generator=g),
        vp_masks=torch.cat([torch.ones(b, 1, dtype=torch.bool), pano_masks], 1), vp_nav_masks=nav,
        node_cand_index=node_cand, vp_cand_visited=cand_vis, vp_obj_masks=obj_masks)
    return txt, pano, nav_in


def test_shapes_and_masks_in_all_three_modes():
    torch.manual_seed(0)
    model = DuetPolicy(preset("tiny-teacher", "reverie")).eval()
    txt, pano, nav_in = _inputs(model, objects=3)
    assert txt.shape == (2, 7, 48) and pano.shape == (2, 8, 48)
    out = model("navigation", inputs=nav_in)
    assert out.fused_logits.shape == (2, 4) and out.local_logits.shape == (2, 9)
    assert torch.isinf(out.global_logits[:, 1]).all()          # visited node
    assert torch.isinf(out.global_logits[1, 3])                  # padding
    assert torch.isinf(out.local_logits[:, 3:]).all()            # non-candidates
    assert torch.isfinite(out.fused_logits[:, 0]).all()          # stop allowed
    assert torch.isinf(out.obj_logits[:, :6]).all() and torch.isfinite(out.obj_logits[:, 6:]).all()
    assert ((out.fuse_weights > 0) & (out.fuse_weights < 1)).all()


def test_last_local_layer_finishing_only_the_read_tokens_is_exact():
    """vp_query_index ([stop], candidates, objects, topped up with other tokens) changes no logit and
    no kept row; the rows it skips really are skipped (they differ), and traces still see every row."""
    from dataclasses import replace

    from minivln_core.agent.inputs import query_index

    torch.manual_seed(0)
    model = DuetPolicy(preset("tiny-teacher", "reverie")).eval()
    _, pano, nav_in = _inputs(model, objects=3)
    length = nav_in.vp_masks.shape[1]                                     # 1 + V + O = 9
    nav_in.vp_nav_masks[1, 2] = False                                     # item 1: one candidate fewer
    nav_in.vp_obj_masks[1, 8] = False                                     #   and one object fewer
    read = [np.r_[0:3, 6:9], np.r_[0:2, 6:8]]                             # [stop], candidates, objects
    index = query_index(read, length)
    assert index.shape == (2, 6) and all(len(set(row)) == 6 for row in index.tolist())
    assert set(index[1].tolist()) >= set(read[1].tolist())
    full = model.navigate(nav_in)
    pruned = model.navigate(replace(nav_in, vp_query_index=torch.from_numpy(index)))
    for key in ("fused_logits", "global_logits", "local_logits", "obj_logits", "fuse_weights", "global_embeds"):
        torch.testing.assert_close(getattr(pruned, key), getattr(full, key), msg=key)
    rows = torch.from_numpy(index)[:, :, None].expand(-1, -1, full.local_embeds.shape[-1])
    torch.testing.assert_close(pruned.local_embeds.gather(1, rows), full.local_embeds.gather(1, rows))
    skipped = torch.ones(2, length, dtype=torch.bool).scatter(1, torch.from_numpy(index), False)
    assert not torch.allclose(pruned.local_embeds[skipped], full.local_embeds[skipped])
    traced = model.navigate(replace(nav_in, vp_query_index=torch.from_numpy(index)), traces=True)
    torch.testing.assert_close(traced.local_embeds, full.local_embeds)   # distillation sees every token
    model.train()                                   # training takes the full layer (same dropout draws)
    runs = []
    for index in (None, torch.from_numpy(index)):
        torch.manual_seed(5)
        runs.append(model.navigate(replace(nav_in, vp_query_index=index)).local_embeds)
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_padding_does_not_change_outputs():
    model = DuetPolicy(preset("tiny-student")).eval()
    ids = torch.tensor([[101, 1005, 1006, 102]])
    a = model.encode_language(ids, ids != 0)
    padded = torch.tensor([[101, 1005, 1006, 102, 0, 0]])
    b = model.encode_language(padded, padded != 0)
    assert torch.allclose(a, b[:, :4], atol=1e-5)


def test_fusion_rule_on_a_hand_built_case():
    # Global nodes: [stop], visited A, ghost B (current candidate, local token 1), ghost C (not a candidate).
    # Local tokens: [stop], cand->B, cand->A (visited: backtrack), a plain view (masked).
    g = torch.tensor([[0.5, NEG_INF, 1.0, 2.0]])
    loc = torch.tensor([[0.25, 3.0, -1.0, NEG_INF]])
    node_cand = torch.tensor([[0, 0, 1, 0]])
    cand_vis = torch.tensor([[False, False, True, False]])
    fused = fuse_logits(g, loc, node_cand, cand_vis)
    assert fused[0, 0] == pytest.approx(0.75)     # stop: 0.5 + 0.25
    assert fused[0, 1] == NEG_INF                  # visited stays masked
    assert fused[0, 2] == pytest.approx(4.0)      # B: 1.0 + its candidate 3.0
    assert fused[0, 3] == pytest.approx(1.0)      # C: 2.0 + backtrack sum (-1.0)
    # No visited candidate: backtrack is 0.
    fused = fuse_logits(g, loc, node_cand, torch.zeros_like(cand_vis))
    assert fused[0, 3] == pytest.approx(2.0)


def test_model_fusion_matches_manual_rule():
    model = DuetPolicy(preset("tiny-student")).eval()
    _, _, nav_in = _inputs(model)
    out = model.navigate(nav_in)
    g, loc = out.global_logits, out.local_logits
    expected = g.clone()
    expected[:, 0] += loc[:, 0]
    for i in range(2):
        for j in range(1, 4):
            if nav_in.node_cand_index[i, j] > 0:
                expected[i, j] += loc[i, nav_in.node_cand_index[i, j]]
            else:
                expected[i, j] += loc[i, nav_in.vp_cand_visited[i]].sum()
    assert torch.equal(torch.isinf(expected), torch.isinf(out.fused_logits))
    fin = torch.isfinite(expected)
    assert torch.allclose(expected[fin], out.fused_logits[fin])


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    model = DuetPolicy(preset("tiny-student")).eval()
    _, _, nav_in = _inputs(model)
    a = model.navigate(nav_in).fused_logits
    b = model.navigate(nav_in).fused_logits
    assert torch.equal(a, b)
    model.train()
    c = model.navigate(nav_in).fused_logits
    assert not torch.allclose(a[torch.isfinite(a)], c[torch.isfinite(c)])


def test_traces_expose_per_head_pre_softmax_scores_and_match_fast_path():
    model = DuetPolicy(preset("tiny-teacher")).eval()
    ids = torch.tensor([[101, 1005, 1006, 102, 0]])
    masks = ids != 0
    trace = Trace()
    with_trace = model.encode_language(ids, masks, trace)
    fast = model.encode_language(ids, masks)
    assert torch.allclose(with_trace, fast, atol=1e-5)  # explicit scores path == fused SDPA path
    assert len(trace.hidden) == 3 and len(trace.scores) == 3
    assert trace.scores[0].shape == (1, 4, 5, 5)         # (B, H, L, L)
    assert (trace.scores[0][..., 4] < -1000).all()       # padded key carries the additive mask
    # Pre-softmax: rows do not sum to one.
    assert not torch.allclose(trace.scores[0].sum(-1), torch.ones(1, 4, 5))
    _, _, nav_in = _inputs(model)
    out = model.navigate(nav_in, traces=True)
    fast = model.navigate(nav_in)
    assert torch.allclose(out.fused_logits[torch.isfinite(out.fused_logits)],
                          fast.fused_logits[torch.isfinite(fast.fused_logits)], atol=1e-5)
    for branch, tokens in (("global", 4), ("local", 6)):
        tr = out.traces[branch]
        assert len(tr.hidden) == 2 and tr.scores[0].shape == (2, 4, tokens, tokens)
        assert tr.cross_scores[0].shape == (2, 4, tokens, 7)
    pano_trace = Trace()
    model.encode_panorama(view_img_fts=torch.randn(1, 5, 768), view_loc_fts=torch.randn(1, 5, 7),
                          view_nav_types=torch.zeros(1, 5, dtype=torch.long),
                          view_masks=torch.ones(1, 5, dtype=torch.bool), trace=pano_trace)
    assert pano_trace.embedding.shape == (1, 5, 48) and pano_trace.scores[1].shape == (1, 4, 5, 5)


def test_graph_bias_changes_global_attention():
    model = DuetPolicy(preset("tiny-student")).eval()
    with torch.no_grad():
        model.global_encoder.sprel_linear.weight.fill_(-2.0)
    _, _, nav_in = _inputs(model)
    a = model.navigate(nav_in).global_logits
    nav_in.gmap_pair_dists = nav_in.gmap_pair_dists * 3
    b = model.navigate(nav_in).global_logits
    fin = torch.isfinite(a)
    assert not torch.allclose(a[fin], b[fin])


def test_view_feature_size_is_configurable():
    model = DuetPolicy(preset("tiny-student", image_feat_size=512))
    assert model.img_embeddings.img_linear.in_features == 512


def test_checkpoint_round_trip(tmp_path):
    model = DuetPolicy(preset("tiny-teacher", "reverie", image_feat_size=40)).eval()
    save_pretrained(model, tmp_path / "ckpt", meta={"preset": "tiny-teacher", "task": "reverie"})
    loaded = from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config
    assert load_meta(tmp_path / "ckpt")["task"] == "reverie"
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.allclose(a, b), k
    _, _, nav_in = _inputs(model, objects=2)
    assert torch.allclose(model.navigate(nav_in).fused_logits.nan_to_num(neginf=-1),
                          loaded.navigate(nav_in).fused_logits.nan_to_num(neginf=-1))
    # Saving again over an existing checkpoint replaces it whole.
    save_pretrained(loaded, tmp_path / "ckpt")
    assert from_pretrained(tmp_path / "ckpt").config == model.config


def test_incomplete_or_foreign_checkpoints_are_refused(tmp_path):
    model = DuetPolicy(preset("tiny-student"))
    ckpt = save_pretrained(model, tmp_path / "c")
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])      # truncated weights
    with pytest.raises(DataError, match="incomplete"):
        from_pretrained(ckpt)
    (ckpt / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DataError, match="config.json"):
        from_pretrained(ckpt)
    with pytest.raises(DataError, match="does not exist"):
        from_pretrained(tmp_path / "missing")


def test_cached_text_key_values_give_the_same_navigation_outputs():
    # The agent projects the instruction's cross-attention keys/values once per episode; a step that
    # reuses them must equal one that projects them again (padded text keys included).
    torch.manual_seed(0)
    model = DuetPolicy(preset("tiny-teacher", "reverie")).eval()
    txt, _, nav_in = _inputs(model, objects=3)
    plain = model.navigate(nav_in)
    kv = model.text_key_values(nav_in.txt_embeds)
    assert kv.shape == (2, 4 * model.config.num_x_layers, model.config.num_attention_heads, txt.shape[1],
                        model.config.hidden_size // model.config.num_attention_heads)
    nav_in.txt_kv = kv
    cached = model.navigate(nav_in)
    for name in ("global_logits", "local_logits", "fused_logits", "obj_logits"):
        assert torch.allclose(getattr(plain, name), getattr(cached, name), atol=1e-5, equal_nan=True), name
    nav_in.txt_kv = torch.zeros_like(kv)   # a wrong cache must change the outputs (the cache is used)
    assert not torch.allclose(model.navigate(nav_in).fused_logits.nan_to_num(0), plain.fused_logits.nan_to_num(0))
