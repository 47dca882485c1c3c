"""A corpus of malformed input files, generated from code into a temporary folder (no data is committed).

Each `Case` writes one broken file (or folder) next to valid ones and names the project reader
that must refuse it, plus the record and field the error has to name (None when the problem is
the whole file, e.g. a truncated one). Bases are the toy scan of `fixtures_data` (annotations,
connectivity, boxes), small HDF5 feature files and a tiny checkpoint; broken variants are cut
short at several lengths, have wrong types, miss fields, repeat ids or name unknown viewpoints.
Rosbag files are not here yet (the replay code is being written; see docs/reliability.md).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from fixtures_data import (TOY_EDGES, TOY_POSITIONS, TOY_SCAN, bbox_entries, connectivity_entries, r2r_record,
                           reverie_record, toy_graph, write_json)

EXTRACTOR = "extractor.json"
CUTS = (0, 1, 0.25, 0.5, 0.9, -1)  # truncation points: bytes kept (int) or fraction of the file (float)
DIM = 6


@dataclass(frozen=True)
class Case:
    """One malformed input: `write(folder)` creates it and returns what `reader` is given."""

    name: str
    reader: str                          # key of READERS
    write: Callable[[Path], Path]
    record: Any = None                   # the record the message must name (None: a file-level problem)
    field: str | None = None             # the field the message must name


# -- valid bases ------------------------------------------------------------------------------------
def _views() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"{TOY_SCAN}_{vp}": rng.normal(size=(36, DIM + 3)).astype(np.float32) for vp in TOY_POSITIONS}


def write_views(path: Path, mutate: Callable[[h5py.File], None] | None = None, attrs: dict | None = None) -> Path:
    """A view feature file of the toy scan (DIM features + 3 logit columns), then `mutate(file)`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, value in {"feature_dim": DIM, **(attrs or {})}.items():
            f.attrs[name] = value
        for key, array in _views().items():
            f.create_dataset(key, data=array)
        if mutate is not None:
            mutate(f)
    return path


def write_objects(path: Path, mutate: Callable[[h5py.Dataset], None] | None = None) -> Path:
    """An object feature file with 2 objects at viewpoint c, then `mutate(dataset)`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(f"{TOY_SCAN}_c", data=np.ones((2, DIM), np.float32))
        ds.attrs["obj_ids"] = np.array(["42", "9"], dtype=h5py.string_dtype())
        ds.attrs["directions"] = np.zeros((2, 2), np.float32)
        ds.attrs["sizes"] = np.ones((2, 2), np.float32)
        ds.attrs["bboxes"] = np.ones((2, 4), np.float32)
        if mutate is not None:
            mutate(ds)
    return path


def write_connectivity(folder: Path, entries: Any | None = None, text: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TOY_SCAN}_connectivity.json"
    if text is not None:
        path.write_bytes(text)
    else:
        write_json(path, connectivity_entries(TOY_POSITIONS, TOY_EDGES) if entries is None else entries)
    return folder


def write_checkpoint(folder: Path) -> Path:
    """A tiny-student checkpoint (config.json + model.safetensors) and its extractor.json."""
    import torch

    from minivln_core.perception.config import save_extractor_config
    from minivln_core.models import DuetPolicy, preset
    from minivln_core.models.checkpoint import save_pretrained
    from minivln_core.perception.config import ExtractorConfig

    torch.manual_seed(0)
    save_pretrained(DuetPolicy(preset("tiny-student", image_feat_size=16)), folder)
    save_extractor_config(folder, ExtractorConfig(image_size=32, patch_size=8, hidden_size=16, num_layers=1,
                                                  num_heads=2, intermediate_size=32))
    return folder


def _cut(data: bytes, cut: float | int) -> bytes:
    if isinstance(cut, float):
        return data[: int(len(data) * cut)]
    return data[:cut] if cut >= 0 else data[: len(data) + cut]


def _truncated(make: Callable[[Path], Path], file: Callable[[Path], Path], cut: float | int) -> Callable[[Path], Path]:
    """`make(folder)`, then cut the file `file(result)` short."""
    def write(folder: Path) -> Path:
        out = make(folder)
        target = file(out)
        target.write_bytes(_cut(target.read_bytes(), cut))
        return out
    return write


def _after(make: Callable[[Path], Path], action: Callable[[Path], Any]) -> Callable[[Path], Path]:
    """`make(folder)`, then `action` on its result (which is returned)."""
    def write(folder: Path) -> Path:
        out = make(folder)
        action(out)
        return out
    return write


def _directory(name: str) -> Callable[[Path], Path]:
    """A directory where a file is expected."""
    def write(folder: Path) -> Path:
        (folder / name).mkdir(parents=True)
        return folder / name
    return write


def _json_file(name: str, data: Any) -> Callable[[Path], Path]:
    return lambda folder: write_json(folder / name, data)


def _bytes_file(name: str, data: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        return folder / name
    return write


def _mutated(record: dict, change: Callable[[dict], None]) -> dict:
    record = copy.deepcopy(record)
    change(record)
    return record


def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda record: record.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda record: record.pop(key)


# -- cases ----------------------------------------------------------------------------------------
def annotation_cases() -> list[Case]:
    cases: list[Case] = []
    good = json.dumps([r2r_record(7), r2r_record(8)]).encode()
    for cut in CUTS:
        cases.append(Case(f"r2r-truncated-{cut}", "r2r", _bytes_file("R2R_val.json", _cut(good, cut))))
    cases += [
        Case("r2r-not-utf8", "r2r", _bytes_file("R2R_val.json", good.replace(b"sofa", b"so\xe9a"))),
        Case("r2r-nested-too-deep", "r2r", _bytes_file("R2R_val.json", b"[" * 100_000 + b"]" * 100_000)),
        Case("r2r-huge-integer", "r2r", _bytes_file("R2R_val.json", b'[{"path_id": ' + b"9" * 5000 + b"}]")),
        Case("r2r-object-not-array", "r2r", _json_file("R2R_val.json", {"records": [r2r_record()]})),
        Case("r2r-record-not-object", "r2r", _json_file("R2R_val.json", [r2r_record(), "7"]), 1),
        Case("r2r-directory", "r2r", _directory("R2R_val.json")),
        Case("r2r-jsonl-bad-line", "r2r", _bytes_file("R2R_train.jsonl", b'{"instr_id": "1_0"}\n{"instr\n')),
    ]
    breakages = [("heading-string", _set("heading", "north"), "heading"),
                 ("heading-inf", _set("heading", 1e999), "heading"),
                 ("path-not-list", _set("path", "a b"), "path"), ("path-number", _set("path", ["a", 7]), "path"),
                 ("scan-list", _set("scan", [TOY_SCAN]), "scan"), ("no-scan", _drop("scan"), "scan"),
                 ("no-path", _drop("path"), "path"), ("no-heading", _drop("heading"), "heading"),
                 ("no-path-id", _drop("path_id"), "path_id"), ("path-id-float", _set("path_id", 2.5), "path_id"),
                 ("no-instructions", _drop("instructions"), "instructions"),
                 ("instructions-null", _set("instructions", [None]), "instructions"),
                 ("distance-negative", _set("distance", -3), "distance"),
                 ("encodings-wrong-type", _set("instr_encodings", "101 102"), "instr_encodings"),
                 ("encoding-out-of-vocab", _set("instr_encodings", [[101, -5, 102], [101, 102]]), "instr_encodings")]
    for name, change, field in breakages:
        records = [r2r_record(7), _mutated(r2r_record(8), change)]
        cases.append(Case(f"r2r-{name}", "r2r", _json_file("R2R_val.json", records), 1, field))
    cases += [
        Case("r2r-duplicated-id", "r2r", _json_file("R2R_val.json", [r2r_record(7), r2r_record(7)]), 1, "instr_id"),
        Case("r2r-unknown-viewpoint", "r2r", _json_file("R2R_val.json", [r2r_record(7, path=["a", "b", "nowhere"])]),
             "7_0", "path"),
        Case("r2r-unknown-scan", "r2r", _json_file("R2R_val.json", [r2r_record(7, scan="otherScan")]), "7_0", "scan"),
        Case("r2r-not-a-walk", "r2r", _json_file("R2R_val.json", [r2r_record(7, path=["a", "d"])]), "7_0", "path"),
        Case("reverie-objid-float", "reverie",
             _json_file("REVERIE_val.json", [_mutated(reverie_record(), _set("objId", 1.5))]), 0, "objId"),
        Case("reverie-no-path-id", "reverie",
             _json_file("REVERIE_val.json", [_mutated(reverie_record(), lambda r: (r.pop("path_id"), r.pop("id")))]),
             0, "path_id"),
        Case("reverie-duplicated-id", "reverie",
             _json_file("REVERIE_val.json", [reverie_record(7, 42), reverie_record(7, 42)]), 1, "instr_id"),
        Case("reverie-unknown-goal-viewpoint", "reverie-jsonl",
             _bytes_file("REVERIE_train.jsonl", json.dumps({"instr_id": "5_9_0", "scan": TOY_SCAN, "path": ["a", "b"],
                                                            "heading": 0.0, "instr_encoding": [101, 102], "objId": 9,
                                                            "pos_vps": ["c", "ghost"]}).encode() + b"\n"),
             "5_9_0", "goal_viewpoints"),
        Case("reverie-truncated", "reverie", _bytes_file("REVERIE_val.json",
                                                         json.dumps([reverie_record()]).encode()[:100])),
    ]
    return cases


def connectivity_cases() -> list[Case]:
    good = json.dumps(connectivity_entries(TOY_POSITIONS, TOY_EDGES)).encode()
    cases = [Case(f"connectivity-truncated-{cut}", "connectivity",
                  lambda folder, cut=cut: write_connectivity(folder, text=_cut(good, cut))) for cut in CUTS]
    entries = connectivity_entries(TOY_POSITIONS, TOY_EDGES)

    def broken(index: int, change: Callable[[dict], None]) -> list[dict]:
        out = copy.deepcopy(entries)
        change(out[index])
        return out

    cases += [
        Case("connectivity-not-utf8", "connectivity", lambda folder: write_connectivity(folder, text=good + b"\xff")),
        Case("connectivity-nested-too-deep", "connectivity",
             lambda folder: write_connectivity(folder, text=b"[" * 100_000)),
        Case("connectivity-object", "connectivity", lambda folder: write_connectivity(folder, {"a": 1})),
        Case("connectivity-entry-not-object", "connectivity",
             lambda folder: write_connectivity(folder, entries[:2] + [["a"]] + entries[3:]), 2),
        Case("connectivity-directory", "connectivity",
             lambda folder: _directory(f"{TOY_SCAN}_connectivity.json")(folder).parent),
        Case("connectivity-missing-scan", "connectivity-list",
             _after(write_connectivity, lambda d: (d / "scans.txt").write_text(f"{TOY_SCAN}\nghostScan\n"))),
    ]
    for name, index, change, field in [
            ("no-image-id", 1, _drop("image_id"), "image_id"), ("image-id-number", 1, _set("image_id", 5), "image_id"),
            ("no-pose", 2, _drop("pose"), "pose"), ("pose-15", 2, lambda e: e["pose"].pop(), "pose"),
            ("pose-string", 2, lambda e: e["pose"].__setitem__(3, "1.0"), "pose"),
            ("pose-bool", 2, lambda e: e["pose"].__setitem__(3, True), "pose"),
            ("pose-nan", 2, lambda e: e["pose"].__setitem__(7, float("nan")), "pose"),
            ("included-string", 3, _set("included", "yes"), "included"),
            ("no-included", 3, _drop("included"), "included"),
            ("unobstructed-short", 4, lambda e: e["unobstructed"].pop(), "unobstructed"),
            ("unobstructed-ints", 4, lambda e: e.__setitem__("unobstructed", [0] * len(entries)), "unobstructed"),
            ("visible-short", 4, lambda e: e["visible"].pop(), "visible"),
            ("visible-ints", 4, lambda e: e.__setitem__("visible", [1] * len(entries)), "visible"),
            ("height-string", 0, _set("height", "1.5m"), "height"),
            ("duplicated-image-id", 3, _set("image_id", "a"), "image_id")]:
        cases.append(Case(f"connectivity-{name}", "connectivity",
                          lambda folder, i=index, c=change: write_connectivity(folder, broken(i, c)), index, field))
    return cases


def bbox_cases() -> list[Case]:
    good = json.dumps(bbox_entries()).encode()
    cases = [Case(f"bboxes-truncated-{cut}", "bboxes", _bytes_file("BBoxes.json", _cut(good, cut))) for cut in CUTS]
    key = f"{TOY_SCAN}_c"

    def broken(change: Callable[[dict], None]) -> dict:
        data = copy.deepcopy(bbox_entries())
        change(data)
        return data

    cases += [
        Case("bboxes-not-utf8", "bboxes", _bytes_file("BBoxes.json", good.replace(b"lamp", b"l\xe4mp"))),
        Case("bboxes-array", "bboxes", _json_file("BBoxes.json", [1, 2])),
        Case("bboxes-bad-key", "bboxes", _json_file("BBoxes.json", {"noscan": {}}), "noscan"),
        Case("bboxes-objects-not-mapping", "bboxes",
             _json_file("BBoxes.json", broken(lambda d: d.__setitem__(key, [1]))), key),
        Case("bboxes-view-out-of-range", "bboxes",
             _json_file("BBoxes.json", broken(lambda d: d[key]["42"].__setitem__("visible_pos", [3, 99]))),
             f"{key}/42", "visible_pos"),
        Case("bboxes-box-count", "bboxes", _json_file("BBoxes.json", broken(lambda d: d[key]["42"]["bbox2d"].pop())),
             f"{key}/42", "bbox2d"),
        Case("bboxes-box-nan", "bboxes",
             _json_file("BBoxes.json",
                        broken(lambda d: d[key]["42"]["bbox2d"].__setitem__(0, [1, float("nan"), 2, 3]))),
             f"{key}/42", "bbox2d"),
        Case("bboxes-name-number", "bboxes",
             _json_file("BBoxes.json", broken(lambda d: d[key]["42"].__setitem__("name", 3))), f"{key}/42", "name"),
    ]
    return cases


def feature_cases() -> list[Case]:
    key = f"{TOY_SCAN}_b"
    cases = [Case(f"views-truncated-{cut}", "views",
                  _truncated(lambda folder: write_views(folder / "views.h5"), lambda path: path, cut)) for cut in CUTS]
    cases += [Case(f"objects-truncated-{cut}", "objects",
                   _truncated(lambda folder: write_objects(folder / "objects.h5"), lambda path: path, cut))
              for cut in (0.5, -1)]

    def replace(name: str, data: Any) -> Callable[[h5py.File], None]:
        def mutate(f: h5py.File) -> None:
            del f[name]
            f[name] = data
        return mutate

    cases += [
        Case("views-not-hdf5", "views", _bytes_file("views.h5", b"this is not an HDF5 file\n" * 10)),
        Case("views-directory", "views", _directory("views.h5")),
        Case("views-missing-viewpoint", "views",
             lambda folder: write_views(folder / "views.h5", lambda f: f.__delitem__(key)), key),
        Case("views-wrong-shape", "views",
             lambda folder: write_views(folder / "views.h5", replace(key, np.zeros((35, DIM + 3), np.float32))), key),
        Case("views-one-dimensional", "views",
             lambda folder: write_views(folder / "views.h5", replace(key, np.zeros(36, np.float32))), key),
        Case("views-strings", "views",
             lambda folder: write_views(folder / "views.h5",
                                        replace(key, np.array([["x"] * (DIM + 3)] * 36, dtype="S1"))), key),
        Case("views-compound", "views",
             lambda folder: write_views(folder / "views.h5",
                                        replace(key, np.zeros((36, DIM + 3), dtype=[("a", "f4"), ("b", "i4")]))), key),
        Case("views-nan", "views",
             lambda folder: write_views(folder / "views.h5", replace(key, np.full((36, DIM + 3), np.nan, np.float32))),
             key),
        Case("views-group", "views",
             lambda folder: write_views(folder / "views.h5", lambda f: (f.__delitem__(key), f.create_group(key))), key),
        Case("views-feature-dim-string", "views", lambda folder: write_views(folder / "views.h5",
                                                                            attrs={"feature_dim": "six"}),
             None, "feature_dim"),
        Case("views-feature-dim-too-wide", "views", lambda folder: write_views(folder / "views.h5",
                                                                              attrs={"feature_dim": 99}),
             f"{TOY_SCAN}_a"),
        Case("objects-no-ids", "objects", lambda folder: write_objects(folder / "objects.h5",
                                                                      lambda ds: ds.attrs.__delitem__("obj_ids")),
             f"{TOY_SCAN}_c", "obj_ids"),
        Case("objects-id-count", "objects",
             lambda folder: write_objects(folder / "objects.h5",
                                          lambda ds: ds.attrs.__setitem__("obj_ids", np.array(["1"], dtype="S1"))),
             f"{TOY_SCAN}_c", "obj_ids"),
        Case("objects-sizes-shape", "objects",
             lambda folder: write_objects(folder / "objects.h5",
                                          lambda ds: ds.attrs.__setitem__("sizes", np.ones((2, 3), np.float32))),
             f"{TOY_SCAN}_c", "sizes"),
        Case("objects-directions-strings", "objects",
             lambda folder: write_objects(folder / "objects.h5",
                                          lambda ds: ds.attrs.__setitem__("directions", np.array([[b"a", b"b"]] * 2))),
             f"{TOY_SCAN}_c", "directions"),
    ]
    return cases


def checkpoint_cases() -> list[Case]:
    cases = [Case(f"checkpoint-weights-truncated-{cut}", "checkpoint",
                  _truncated(write_checkpoint, lambda d: d / "model.safetensors", cut)) for cut in (0, 8, 0.5, -1)]
    cases += [Case(f"checkpoint-config-truncated-{cut}", "checkpoint",
                   _truncated(write_checkpoint, lambda d: d / "config.json", cut)) for cut in (0, 0.5)]

    def edit_config(change: Callable[[dict], None]) -> Callable[[Path], Path]:
        def write(folder: Path) -> Path:
            write_checkpoint(folder)
            info = json.loads((folder / "config.json").read_text())
            change(info)
            (folder / "config.json").write_text(json.dumps(info))
            return folder
        return write

    def garble_header(folder: Path) -> Path:  # same size, so only the safetensors parser can notice
        write_checkpoint(folder)
        path = folder / "model.safetensors"
        data = bytearray(path.read_bytes())
        data[8:40] = b"\xff" * 32
        path.write_bytes(bytes(data))
        return folder

    cases += [
        Case("checkpoint-missing", "checkpoint", lambda folder: folder / "absent"),
        Case("checkpoint-no-config", "checkpoint", _after(write_checkpoint, lambda d: (d / "config.json").unlink())),
        Case("checkpoint-no-weights", "checkpoint",
             _after(write_checkpoint, lambda d: (d / "model.safetensors").unlink())),
        Case("checkpoint-wrong-format", "checkpoint", edit_config(_set("format", "torch-pickle")), None, "format"),
        Case("checkpoint-config-not-utf8", "checkpoint",
             _after(write_checkpoint, lambda d: (d / "config.json").write_bytes(b'{"format": "\xff"}'))),
        Case("checkpoint-model-unknown-key", "checkpoint", edit_config(lambda i: i["model"].__setitem__("layers", 3)),
             None, "model"),
        Case("checkpoint-model-wrong-type", "checkpoint",
             edit_config(lambda i: i["model"].__setitem__("hidden_size", "big")), None, "model"),
        Case("checkpoint-model-not-mapping", "checkpoint", edit_config(_set("model", [1, 2])), None, "model"),
        Case("checkpoint-weights-bytes-string", "checkpoint", edit_config(_set("weights_bytes", "many"))),
        Case("checkpoint-garbled-header", "checkpoint", garble_header),
        Case("checkpoint-other-size", "checkpoint",
             edit_config(lambda i: i["model"].__setitem__("image_feat_size", 24))),
        Case("extractor-not-json", "extractor",
             _after(write_checkpoint, lambda d: (d / EXTRACTOR).write_text("{oops"))),
        Case("extractor-not-utf8", "extractor",
             _after(write_checkpoint, lambda d: (d / EXTRACTOR).write_bytes(b"\xff\xfe"))),
        Case("extractor-unknown-key", "extractor",
             _after(write_checkpoint, lambda d: (d / EXTRACTOR).write_text('{"size": 3}'))),
        Case("extractor-bad-value", "extractor",
             _after(write_checkpoint, lambda d: (d / EXTRACTOR).write_text('{"image_size": -32}'))),
    ]
    return cases


def all_cases() -> list[Case]:
    """Every case of the corpus."""
    return annotation_cases() + connectivity_cases() + bbox_cases() + feature_cases() + checkpoint_cases()


# -- readers --------------------------------------------------------------------------------------
def _read_views(path: Path) -> None:
    from minivln_core.data.features import ViewFeatureStore

    store = ViewFeatureStore(path)
    for vp in TOY_POSITIONS:
        store.get(TOY_SCAN, vp)
        store.logits(TOY_SCAN, vp)


def _read_objects(path: Path) -> None:
    from minivln_core.data.features import ObjectFeatureStore

    ObjectFeatureStore(path).get(TOY_SCAN, "c")


def _read_r2r(path: Path) -> None:
    from minivln_core.data.r2r import load_r2r, validate_against

    validate_against(load_r2r(path, tokenize=False), {TOY_SCAN: toy_graph()}, path)


def _read_reverie(path: Path) -> None:
    from minivln_core.data.r2r import validate_against
    from minivln_core.data.reverie import load_reverie

    validate_against(load_reverie(path, tokenize=False), {TOY_SCAN: toy_graph()}, path, require_walk=False)


def _read_connectivity(folder: Path) -> None:
    from minivln_core.data.connectivity import load_connectivity

    load_connectivity(folder, [TOY_SCAN])


def _read_connectivity_list(folder: Path) -> None:
    from minivln_core.data.connectivity import load_connectivity

    load_connectivity(folder)


def _read_bboxes(path: Path) -> None:
    from minivln_core.data.bboxes import load_bboxes

    load_bboxes(path)


def _read_checkpoint(folder: Path) -> None:
    from minivln_core.models.checkpoint import from_pretrained

    from_pretrained(folder)


def _read_extractor(folder: Path) -> None:
    from minivln_core.perception.config import load_extractor_config

    load_extractor_config(folder)


READERS: dict[str, Callable[[Path], None]] = {
    "r2r": _read_r2r, "reverie": _read_reverie, "reverie-jsonl": _read_reverie, "connectivity": _read_connectivity,
    "connectivity-list": _read_connectivity_list, "bboxes": _read_bboxes, "views": _read_views,
    "objects": _read_objects, "checkpoint": _read_checkpoint, "extractor": _read_extractor,
}
