"""REVERIE object features from BBoxes.json (`perception.semantic_objects`) and the real-house world with them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures_data import TOY_POSITIONS, TOY_SCAN, write_json, write_real_format_data, write_toy_connectivity
from minivln_core.cli import main
from minivln_core.data.bboxes import ObjectIndex
from minivln_core.data.features import ObjectFeatureStore
from minivln_core.data.reverie import load_reverie
from minivln_core.errors import DataError
from minivln_core.perception.semantic import NameEmbedder, normalise_name
from minivln_core.perception.semantic_objects import build_semantic_objects


def box(views: list[int], boxes: list[list[float]], name: str = "chair") -> dict:
    return {"name": name, "visible_pos": views, "bbox2d": boxes}


@pytest.fixture(scope="module")
def embedder() -> NameEmbedder:
    return NameEmbedder()


@pytest.fixture()
def toy(tmp_path) -> tuple[Path, Path]:
    conn = write_toy_connectivity(tmp_path / "conn")
    centred = [[300, 220, 40, 40]]                                    # centre (320, 240): the view's centre
    bboxes = {
        f"{TOY_SCAN}_a": {
            "10": box([13], centred, "Bath#Cabinet"),                 # view 13: heading 30 deg, elevation 0
            "2": box([0, 25], [[0, 0, 10, 10], [100, 0, 200, 100]]),  # largest box in view 25 (elev +30)
            "3": box([], [], "door"),                                 # never seen: left out
            "4": box([5], [[0, 0, 5, 5]], ""),                       # no name: left out
            "x7": box([7], centred, "sofa_chair")},
        f"{TOY_SCAN}_c": {"5": box([], [], "lamp")},                   # nothing seen at c: no entry
        f"{TOY_SCAN}_ghost": {"6": box([0], centred)},                 # not in the graph: ignored
    }
    return write_json(tmp_path / "BBoxes.json", bboxes), conn


def test_one_row_per_seen_named_object_with_its_best_view(toy, embedder, tmp_path):
    bboxes, conn = toy
    stats = build_semantic_objects(bboxes, conn, tmp_path / "objects.h5", embedder=embedder)
    assert stats == {"scans": 1, "objects": 3, "viewpoints_with_objects": 1, "objects_never_seen": 2}
    with ObjectFeatureStore(tmp_path / "objects.h5") as store:
        assert store.dim == 384
        a = store.get(TOY_SCAN, "a")
        assert a.obj_ids == ["2", "10", "x7"]                          # numeric ids in numeric order
        np.testing.assert_allclose(a.features, embedder.embed(["chair", "bath cabinet", "sofa chair"]), atol=1e-6)
        np.testing.assert_array_equal(a.bboxes, [[100, 0, 200, 100], [300, 220, 40, 40], [300, 220, 40, 40]])
        np.testing.assert_array_equal(a.sizes, [[200, 100], [40, 40], [40, 40]])
        # a box centred in view ix points along the view's centre
        np.testing.assert_allclose(a.directions[1], [math.radians(30), 0.0], atol=1e-6)
        np.testing.assert_allclose(a.directions[2], [math.radians(210), math.radians(-30)], atol=1e-6)
        # view 25 looks up 30 deg at heading 30 deg; the box is above its centre and to the left
        head, elev = a.directions[0]
        assert math.radians(0) < head < math.radians(30) and elev > math.radians(30)
        for vp in TOY_POSITIONS:
            if vp != "a":
                assert len(store.get(TOY_SCAN, vp)) == 0
    # deterministic: a second build writes the same rows
    build_semantic_objects(ObjectIndex.load(bboxes), conn, tmp_path / "again.h5", embedder=NameEmbedder())
    with ObjectFeatureStore(tmp_path / "again.h5") as again, ObjectFeatureStore(tmp_path / "objects.h5") as first:
        np.testing.assert_array_equal(again.get(TOY_SCAN, "a").features, first.get(TOY_SCAN, "a").features)


def test_unknown_scans_are_named(toy, embedder, tmp_path):
    bboxes, conn = toy
    with pytest.raises(DataError, match="noSuchScan"):
        build_semantic_objects(bboxes, conn, tmp_path / "bad.h5", scans=["noSuchScan"], embedder=embedder)


def test_reverie_names_are_split_into_words():
    assert normalise_name("kitchen#counter") == "kitchen counter"
    assert normalise_name(" Bath_#Cabinet ") == "bath cabinet"


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory) -> Path:
    """Real-format files without val_unseen, as ../shared/data is laid out."""
    return write_real_format_data(tmp_path_factory.mktemp("data"))


def _expert_rgs(world: Path, split: str, out: Path) -> dict:
    assert main(["evaluate", "--expert", "--world", str(world), "--task", "reverie", "--split", split,
                 "--out", str(out)]) == 0
    return json.loads(next(out.rglob(f"*{split}_metrics.json")).read_text())


def test_the_real_world_builder_writes_objects_an_oracle_grounds(synth_data, tmp_path):
    world = tmp_path / "world"
    assert main(["real-world", "--data", str(synth_data), "--out", str(world), "--holdout", "2"]) == 0
    info = json.loads((world / "world.json").read_text())
    assert info["features"]["objects"]["objects"] > 0
    index = ObjectIndex.load(world / "annotations" / "BBoxes.json")
    with ObjectFeatureStore(world / "features" / "objects.h5") as store:
        for split in ("train", "val_seen", "val_unseen"):
            for ep in load_reverie(world / "annotations" / f"REVERIE_{split}.json", bboxes=index):
                assert ep.goal_viewpoints
                for vp in ep.goal_viewpoints:                   # the target can be pointed at wherever it is seen
                    assert ep.obj_id in store.get(ep.scan, vp).obj_ids, (split, ep.instr_id, vp)
    for split in ("train", "val_unseen"):                      # this small world has no REVERIE val_seen
        metrics = _expert_rgs(world, split, tmp_path / split)
        assert metrics["sr"] == 100 and metrics["rgs"] == 100 and metrics["rgspl"] == 100
    # a policy with the object-grounding head trains on these objects and is scored on RGS
    run = tmp_path / "run"
    assert main(["finetune", "--world", str(world), "--out", str(run), "--quiet", "--set", "preset=tiny-student",
                 "--set", "task=reverie", "--set", "batch_size=2", "--set", "loop.steps=2", "--set",
                 "loop.eval_every=0", "--set", "eval_limit=4", "--set", "eval_splits=[val_unseen]",
                 "--set", "max_steps=5"]) == 0
    scores = json.loads(next((run / "eval").rglob("*val_unseen_metrics.json")).read_text())
    assert scores["num_episodes"] == 4 and 0 <= scores["rgs"] <= 100
    config = json.loads((run / "last" / "config.json").read_text())
    assert config["model"]["obj_feat_size"] == 384


def test_a_path_that_is_not_a_walk_is_named(synth_data, tmp_path):
    bad = tmp_path / "data"
    bad.mkdir()
    src = synth_data / "synth"
    shutil.copytree(src / "connectivity", bad / "connectivity")
    (bad / "annotations").mkdir()
    for path in (src / "annotations").glob("*.json"):
        (bad / "annotations" / path.name).write_text(path.read_text())
    items = json.loads((bad / "annotations" / "R2R_train.json").read_text())
    items[2]["path"] = [items[2]["path"][0], "nowhere"]
    (bad / "annotations" / "R2R_train.json").write_text(json.dumps(items))
    with pytest.raises(DataError, match=rf"R2R_train.json.*{items[2]['path_id']}_0.*'nowhere' \(path item 1\) is not in scan"):
        from minivln_core.experiments.real_world import build_real_world

        build_real_world(bad, tmp_path / "world", holdout=1, features=False)


def test_real_objects_at_the_goals(shared_data, embedder, tmp_path):
    """The real BBoxes.json on a slice of REVERIE v2 houses: the target object is a row wherever it is seen."""
    from minivln_core.experiments.real_world import find_sources

    src = find_sources(shared_data)
    if "REVERIE_train.json" not in src:
        pytest.skip(f"no REVERIE train/val_seen folder under {shared_data}")
    assert src["REVERIE_train.json"].parent == src["REVERIE_val_seen.json"].parent   # one version, never mixed
    index = ObjectIndex.load(src["BBoxes.json"])
    episodes = load_reverie(src["REVERIE_val_seen.json"], bboxes=index, tokenize=False)
    scans = sorted({ep.scan for ep in episodes})[:2]                    # two houses keep it fast
    out = tmp_path / "objects.h5"
    stats = build_semantic_objects(index, src["connectivity"], out, scans=scans, embedder=embedder)
    assert stats["objects"] > 100
    with ObjectFeatureStore(out) as store:
        mine = [ep for ep in episodes if ep.scan in scans]
        assert mine
        for ep in mine:
            for vp in ep.goal_viewpoints:
                assert ep.obj_id in store.get(ep.scan, vp).obj_ids, (ep.instr_id, vp)
            row = store.get(ep.scan, ep.goal_viewpoints[0])
            feats = row.features[row.obj_ids.index(ep.obj_id)]
            name = normalise_name(index.objects_at(ep.scan, ep.goal_viewpoints[0])[ep.obj_id].name)
            np.testing.assert_allclose(feats, embedder.embed([name])[0], atol=1e-6)
            assert (row.bboxes[:, 2:] > 0).all() and (row.directions[:, 0] >= 0).all()
