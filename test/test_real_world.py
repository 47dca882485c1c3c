"""`minivln real-world`: real-format files -> a world folder with training houses held out.

The synthetic world is written in the real formats (Matterport connectivity, R2R / REVERIE,
DUET's BBoxes.json), so it stands in for ../shared/data here; the real files are used when present.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures_data import write_real_format_data
from minivln_core.cli import main
from minivln_core.data.features import ViewFeatureStore, feature_key
from minivln_core.data.connectivity import load_connectivity
from minivln_core.experiments.export_checkpoint import describe_world


def _items(path: Path) -> list[dict]:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A data folder laid out unlike a world folder (files found by name, at any depth), without val_unseen."""
    return write_real_format_data(tmp_path_factory.mktemp("data"))


def test_held_out_houses_become_val_unseen_and_nothing_is_lost(data, tmp_path, capsys):
    out = tmp_path / "real"
    assert main(["real-world", "--data", str(data), "--out", str(out), "--holdout", "2", "--seed", "3"]) == 0
    info = json.loads((out / "world.json").read_text())
    held = set(info["holdout"]["scans"])
    assert len(held) == 2 and info["houses"] == {"train": 3, "val_unseen": 2, "graphs": 6}   # 5 of the 6 are train
    src = data / "synth" / "annotations"
    for prefix in ("R2R", "REVERIE"):
        split = {s: _items(out / "annotations" / f"{prefix}_{s}.json") for s in ("train", "val_seen", "val_unseen")}
        assert {i["scan"] for i in split["val_unseen"]} == held
        assert not {i["scan"] for i in split["train"] + split["val_seen"]} & held
        before = _items(src / f"{prefix}_train.json") + _items(src / f"{prefix}_val_seen.json")
        after = split["train"] + split["val_seen"] + split["val_unseen"]
        key = "path_id" if prefix == "R2R" else "id"
        assert sorted(str(i[key]) for i in after) == sorted(str(i[key]) for i in before)   # each record once
        assert info["counts"][prefix.lower()] == {s: len(v) for s, v in split.items()}
    # The graphs are links to the source files; the features cover every viewpoint of the used houses.
    link = next((out / "connectivity").glob("*_connectivity.json"))
    assert link.is_symlink() and link.resolve().parent == (data / "synth" / "connectivity").resolve()
    graphs = load_connectivity(out / "connectivity")
    store = ViewFeatureStore(out / "features" / "views.h5")
    used = {i["scan"] for s in ("train", "val_seen", "val_unseen") for i in _items(out / "annotations" / f"R2R_{s}.json")}
    assert len(used) == 5 and len(graphs) == 6   # one house has no annotations here: it gets features all the same
    for scan in graphs:
        for vp in graphs[scan].viewpoints:
            assert store.get(scan, vp).shape == (36, 384), feature_key(scan, vp)
    assert not (out / "annotations" / "R2R_official_val_unseen.json").exists()
    assert "held out" in capsys.readouterr().out
    # A checkpoint trained here says on its card how to rebuild the world (the data is never shipped).
    card_world = describe_world(out, "views")
    assert card_world["rebuild"][0].startswith("minivln real-world --data DATA --out DIR --holdout 2 --seed 3")
    assert card_world["held_out"] == sorted(held) and card_world["real_world"]["counts"] == info["counts"]
    # With a far field the views are twice as wide and the card's rebuild command says so.
    far = tmp_path / "far"
    assert main(["real-world", "--data", str(data), "--out", str(far), "--holdout", "2", "--seed", "3",
                 "--far-field", "6"]) == 0
    scan = sorted(graphs)[0]
    vp = graphs[scan].viewpoints[0]
    wide = ViewFeatureStore(far / "features" / "views.h5").get(scan, vp)                  # (36, 768)
    assert wide.shape == (36, 768) and (wide[:, :384] == store.get(scan, vp)).all()
    assert json.loads((far / "world.json").read_text())["features"]["views_with_far_objects"] > 0
    assert "--seed 3 --far-field 6 " in describe_world(far, "views")["rebuild"][0]
    # Same seed, same draw; the folder can be rebuilt in place.
    assert main(["real-world", "--data", str(data), "--out", str(out), "--holdout", "2", "--seed", "3",
                 "--no-features"]) == 0
    assert json.loads((out / "world.json").read_text())["holdout"]["scans"] == sorted(held)


def test_a_policy_trains_and_is_scored_on_the_held_out_houses(data, tmp_path):
    out = tmp_path / "real"
    assert main(["real-world", "--data", str(data), "--out", str(out), "--holdout", "2"]) == 0
    run = tmp_path / "run"
    assert main(["finetune", "--world", str(out), "--out", str(run), "--quiet", "--set", "preset=tiny-student",
                 "--set", "batch_size=2", "--set", "loop.steps=2", "--set", "loop.eval_every=0",
                 "--set", "eval_limit=4", "--set", "eval_splits=[val_seen,val_unseen]", "--set", "max_steps=5"]) == 0
    scores = json.loads(next((run / "eval").rglob("*val_unseen_metrics.json")).read_text())
    assert scores["num_episodes"] == 4 and 0 <= scores["sr"] <= 100


def test_an_official_val_unseen_is_its_own_split_and_scored(tmp_path):
    data = write_real_format_data(tmp_path / "data", official_val_unseen=True)
    out = tmp_path / "real"
    assert main(["real-world", "--data", str(data), "--out", str(out), "--holdout", "2", "--no-features"]) == 0
    info = json.loads((out / "world.json").read_text())
    src = data / "synth" / "annotations"
    for prefix in ("R2R", "REVERIE"):
        official = _items(out / "annotations" / f"{prefix}_official_val_unseen.json")
        assert official == _items(src / f"{prefix}_val_unseen.json") and official
        assert info["counts"][prefix.lower()]["official_val_unseen"] == len(official)
        held_out = _items(out / "annotations" / f"{prefix}_val_unseen.json")
        assert not {i["scan"] for i in official} & {i["scan"] for i in held_out}
    assert info["houses"]["official_val_unseen"] == 1
    assert main(["real-world", "--data", str(data), "--out", str(out), "--holdout", "2"]) == 0   # with features
    run = tmp_path / "run"
    assert main(["finetune", "--world", str(out), "--out", str(run), "--quiet", "--set", "preset=tiny-student",
                 "--set", "batch_size=2", "--set", "loop.steps=1", "--set", "loop.eval_every=0",
                 "--set", "eval_splits=[official_val_unseen]", "--set", "best_split=official_val_unseen",
                 "--set", "max_steps=5"]) == 0
    scores = json.loads(next((run / "eval").rglob("*official_val_unseen_metrics.json")).read_text())
    official = _items(out / "annotations" / "R2R_official_val_unseen.json")
    assert scores["num_episodes"] == sum(len(i["instructions"]) for i in official)   # one episode per instruction


def test_bad_requests_name_what_is_wrong(data, tmp_path, capsys):
    assert main(["real-world", "--data", str(data), "--out", str(tmp_path / "b"), "--holdout", "5"]) == 2
    err = capsys.readouterr().err
    assert "R2R_train.json" in err and "holdout must be between 1 and 4" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["real-world", "--data", str(empty), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "BBoxes.json" in err and "connectivity" in err


def test_the_real_data_when_present(shared_data, tmp_path):
    assert main(["real-world", "--data", str(shared_data), "--out", str(tmp_path / "real"), "--holdout", "8",
                 "--no-features"]) == 0
    info = json.loads((tmp_path / "real" / "world.json").read_text())
    assert info["houses"]["val_unseen"] == 8 and info["counts"]["r2r"]["val_unseen"] > 0
    assert info["houses"]["graphs"] == 90                     # every house, the official val_unseen ones too
    held = set(info["holdout"]["scans"])
    for prefix in ("R2R", "REVERIE"):
        split = {s: _items(tmp_path / "real" / "annotations" / f"{prefix}_{s}.json")
                 for s in ("train", "val_seen", "val_unseen")}
        seen = {i["scan"] for i in split["train"] + split["val_seen"]}
        unseen = {i["scan"] for i in split["val_unseen"]}
        assert unseen and unseen <= held and not seen & held, prefix   # a held-out house may have no REVERIE
    # REVERIE train exists only in v2: both splits come from that folder, never v1's val_seen with v2's train
    sources = {Path(info["sources"][f"REVERIE_{s}.json"]).parent.name for s in ("train", "val_seen")}
    assert sources == {"v2"}
