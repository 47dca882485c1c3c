"""Object-semantic view features from BBoxes.json (`perception.semantic`, `minivln features --semantic`)."""

from __future__ import annotations

import argparse
import json
import time

import h5py
import numpy as np
import pytest

from fixtures_data import TOY_EDGES, TOY_POSITIONS, TOY_SCAN, connectivity_entries, write_json, write_toy_connectivity
from minivln_core.commands import features as features_cmd
from minivln_core.data.bboxes import ObjectIndex
from minivln_core.data.connectivity import load_scan, parse_connectivity
from minivln_core.data.features import ViewFeatureStore
from minivln_core.errors import DataError
from minivln_core.perception.semantic import (FAR_NOTHING_SEED, NameEmbedder, build_semantic_store, classes_path,
                                              normalise_name, nothing_vector)

OTHER_SCAN = "otherScan002"


def obj(name: str, views: list[int], size: float = 10.0) -> dict:
    return {"name": name, "visible_pos": views, "bbox2d": [[0, 0, size, size] for _ in views]}


@pytest.fixture(scope="module")
def embedder() -> NameEmbedder:
    return NameEmbedder()


@pytest.fixture()
def toy(tmp_path):
    conn = write_toy_connectivity(tmp_path / "conn")
    other = connectivity_entries({"p": (0, 0, 1.5), "q": (1, 0, 1.5), "r": (2, 0, 1.5)}, [("p", "q")])
    other[2]["included"] = False                                          # r is excluded
    write_json(conn / f"{OTHER_SCAN}_connectivity.json", other)
    bboxes = {
        f"{TOY_SCAN}_a": {"1": obj("chair", [0, 1]), "2": obj("table", [1], size=30.0), "3": obj("Chair", [2]),
                          "4": obj("Lamp_Shade", [5]), "5": obj("chair", [5])},
        f"{TOY_SCAN}_c": {"7": obj("table", [3]), "8": obj("chair ", [3]), "9": obj("chair", [3]),
                          "10": obj("door", [])},
        f"{TOY_SCAN}_ghost": {"11": obj("sofa", [0])},                    # not in the connectivity graph
        f"{OTHER_SCAN}_p": {"12": obj("sink", [7])},
        f"{OTHER_SCAN}_r": {"13": obj("toilet", [7])},                    # excluded viewpoint
    }
    return write_json(tmp_path / "BBoxes.json", bboxes), conn


def test_normalise_name():
    assert normalise_name("  Door_Frame \t x") == "door frame x"
    assert normalise_name("") == ""


def test_toy_store_covers_every_included_viewpoint(toy, embedder, tmp_path):
    bboxes, conn = toy
    out = tmp_path / "sem.h5"
    stats = build_semantic_store(bboxes, conn, out, embedder=embedder)
    assert stats["scans"] == 2 and stats["viewpoints"] == len(TOY_POSITIONS) + 2
    assert stats["annotation_viewpoints_not_included"] == 2 and stats["names"] == 4
    classes = json.loads(classes_path(out).read_text())["classes"]
    assert classes == ["chair", "lamp shade", "sink", "table"]          # toilet: only at an excluded vp
    with ViewFeatureStore(out) as store:
        assert store.dim == 384
        expected = {f"{TOY_SCAN}_{vp}" for vp in TOY_POSITIONS} | {f"{OTHER_SCAN}_p", f"{OTHER_SCAN}_q"}
        assert set(store.keys()) == expected
        a, c = store.get(TOY_SCAN, "a"), store.get(TOY_SCAN, "c")
        assert a.shape == (36, 384)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
        # the same set of names -> the same vector, whatever the case, spacing or object count
        np.testing.assert_array_equal(a[0], a[2])
        np.testing.assert_array_equal(a[1], c[3])
        np.testing.assert_allclose(a[0], embedder.embed(["chair"])[0], atol=1e-6)
        mixed = embedder.embed(["chair", "table"]).mean(axis=0)
        np.testing.assert_allclose(a[1], mixed / np.linalg.norm(mixed), atol=1e-6)
        nothing = nothing_vector()
        for key in expected:
            vp_feats = store.get(*key.split("_", 1))
            empty = [ix for ix in range(36) if np.array_equal(vp_feats[ix], nothing)]
            assert len(empty) == 36 - {"a": 4, "c": 1, "p": 1}.get(key.split("_", 1)[1], 0), key
        # class targets: most objects, then larger total area, then name; -1 when nothing is seen
        targets = store.logits(TOY_SCAN, "a")[:, 0]
        assert targets[[0, 1, 2, 5, 6]].tolist() == [0, 3, 0, 0, -1]  # chair, table (bigger), chair, tie -> chair
        assert store.logits(TOY_SCAN, "c")[3, 0] == 0                        # 2 chairs beat 1 table
        assert store.logits(OTHER_SCAN, "p")[7, 0] == 2                      # sink


def test_scan_subset_and_missing_connectivity(toy, embedder, tmp_path):
    bboxes, conn = toy
    build_semantic_store(bboxes, conn, tmp_path / "one.h5", scans=[OTHER_SCAN], embedder=embedder)
    with ViewFeatureStore(tmp_path / "one.h5") as store:
        assert sorted(store.keys()) == [f"{OTHER_SCAN}_p", f"{OTHER_SCAN}_q"]
    with pytest.raises(DataError, match="noSuchScan"):
        build_semantic_store(bboxes, conn, tmp_path / "bad.h5", scans=["noSuchScan"], embedder=embedder)


def test_embeddings_match_sentence_transformers(embedder):
    st = pytest.importorskip("sentence_transformers")
    from minivln_core.data.tokenizer import tokenizer_dir

    names = ["chair", "door frame", "kitchen counter top"]
    reference = st.SentenceTransformer(str(tokenizer_dir()), device="cpu").encode(names)
    np.testing.assert_allclose(embedder.embed(names), reference, atol=1e-5)
    sofa, couch, toilet = embedder.embed(["sofa", "couch", "toilet"])
    assert sofa @ couch > sofa @ toilet


def test_features_command_semantic_mode(toy, tmp_path, capsys):
    bboxes, conn = toy
    parser = argparse.ArgumentParser(prog="minivln")
    features_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["features", "--semantic", "--bboxes", str(bboxes), "--connectivity", str(conn),
                              "--scans", OTHER_SCAN, "--out", str(tmp_path / "cli.h5")])
    assert args.func(args) == 0
    assert "viewpoints: 2" in capsys.readouterr().out
    args = parser.parse_args(["features", "--semantic", "--out", str(tmp_path / "x.h5")])
    with pytest.raises(DataError, match="--bboxes"):
        args.func(args)


def test_real_semantic_store_covers_included_viewpoints(shared_data, embedder, tmp_path):
    bboxes = next(iter(sorted(shared_data.rglob("BBoxes.json"))), None)
    folders = sorted({p.parent for p in shared_data.rglob("*_connectivity.json")},
                     key=lambda d: -len(list(d.glob("*_connectivity.json"))))
    if bboxes is None or not folders:
        pytest.skip(f"no BBoxes.json or connectivity folder under {shared_data}")
    conn = folders[0]
    scans = ObjectIndex.load(bboxes).scans()
    assert scans and all((conn / f"{scan}_connectivity.json").is_file() for scan in scans)
    subset = scans[:3]  # the command builds all 90; three houses keep the test fast
    start = time.perf_counter()
    build_semantic_store(bboxes, conn, tmp_path / "real.h5", scans=subset, embedder=embedder)
    assert time.perf_counter() - start < 60
    with ViewFeatureStore(tmp_path / "real.h5") as store:
        for scan in subset:
            for vp in load_scan(conn, scan).viewpoints:
                assert store.get(scan, vp).shape == (36, 384)


def test_graph_line_of_sight_from_the_file_or_the_edges():
    entries = connectivity_entries(TOY_POSITIONS, TOY_EDGES)
    for entry in entries:
        entry["visible"] = [True] * len(entries)                           # everyone sees everyone
    entries[5]["included"] = False                                         # z: excluded, so never seen
    graph = parse_connectivity(TOY_SCAN, entries)
    assert graph.visible("a") == ["b", "c", "d", "x"] and graph.neighbors("a") == ["b"]
    for entry in entries:
        del entry["visible"]                                               # optional: the edges stand in
    assert parse_connectivity(TOY_SCAN, entries).visible("c") == ["b", "d", "x"]


def test_far_field_adds_what_lies_in_each_direction(embedder, tmp_path):
    # Toy scan (fixtures_data): a(0,0) b(2,0) c(4,0) d(6,0) x(4,2) z(10,10); all in line of sight.
    entries = connectivity_entries(TOY_POSITIONS, TOY_EDGES)
    for entry in entries:
        entry["visible"] = [True] * len(entries)
    conn = tmp_path / "conn"
    write_json(conn / f"{TOY_SCAN}_connectivity.json", entries)
    bboxes = write_json(tmp_path / "BBoxes.json", {
        f"{TOY_SCAN}_a": {"1": obj("chair", [0])}, f"{TOY_SCAN}_b": {"2": obj("sofa", [20])},
        f"{TOY_SCAN}_d": {"3": obj("door", [3, 4])}, f"{TOY_SCAN}_x": {"4": obj("sink", [30])},
        f"{TOY_SCAN}_z": {"5": obj("bed", [12])}})
    near_only = build_semantic_store(bboxes, conn, tmp_path / "near.h5", embedder=embedder)
    stats = build_semantic_store(bboxes, conn, tmp_path / "far.h5", embedder=embedder, far_field=8.0)
    assert stats["views_with_objects"] == near_only["views_with_objects"]
    with ViewFeatureStore(tmp_path / "near.h5") as near, ViewFeatureStore(tmp_path / "far.h5") as far:
        assert far.dim == 2 * 384
        a = far.get(TOY_SCAN, "a")                                         # (36, 768)
        np.testing.assert_array_equal(a[:, :384], near.get(TOY_SCAN, "a"))  # the near half is unchanged
        np.testing.assert_array_equal(far.logits(TOY_SCAN, "a"), near.logits(TOY_SCAN, "a"))
        far_a, blank = a[:, 384:], nothing_vector(384, FAR_NOTHING_SEED)
        # b (2 m) and d (6 m) lie at heading 90 deg = view 15, x (4, 2) at 63 deg = view 14; z is 14 m away
        expected = embedder.embed(["door", "sofa"]).mean(axis=0)
        np.testing.assert_allclose(far_a[15], expected / np.linalg.norm(expected), atol=1e-6)
        np.testing.assert_allclose(far_a[14], embedder.embed(["sink"])[0], atol=1e-6)
        assert all(np.array_equal(far_a[ix], blank) for ix in range(36) if ix not in (14, 15))
        # from d, a (6 m) and b (4 m) lie at heading 270 deg: view 21
        expected = embedder.embed(["chair", "sofa"]).mean(axis=0)
        np.testing.assert_allclose(far.get(TOY_SCAN, "d")[21, 384:], expected / np.linalg.norm(expected), atol=1e-6)
    with h5py.File(tmp_path / "far.h5", "r") as h5:
        assert h5.attrs["far_field_m"] == 8.0 and h5.attrs["feature_dim"] == 768
    with pytest.raises(ValueError, match="far_field"):
        build_semantic_store(bboxes, conn, tmp_path / "bad.h5", embedder=embedder, far_field=-1.0)
