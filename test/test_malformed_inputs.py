"""Malformed annotation, connectivity, bounding-box, HDF5 feature and checkpoint files give one clear error.

Every case of `malformed_corpus` (generated into tmp folders) must raise `DataError` naming the
file, and the record and field where the problem is in one record -- never a traceback from deep
inside json, h5py, safetensors or torch (no chained library exception either). The same files
reach the command line as one `minivln <command>: error: ...` line and exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from malformed_corpus import READERS, all_cases
from minivln_core.errors import DataError

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_malformed_file_names_file_record_and_field(case, tmp_path: Path) -> None:
    target = case.write(tmp_path / "in")
    with pytest.raises(DataError) as excinfo:
        READERS[case.reader](target)
    error = excinfo.value
    message = str(error)
    assert Path(error.path).is_relative_to(tmp_path / "in"), message      # names the broken file or folder
    assert message.startswith(error.path)
    if case.record is not None:
        assert f"record {case.record}" in message, message
    if case.field is not None:
        assert f"field '{case.field}'" in message, message
    assert error.__cause__ is None, f"a library exception leaks through: {error.__cause__!r}"


def test_the_corpus_covers_every_reader_and_kind_of_damage() -> None:
    names = " ".join(c.name for c in CASES)
    assert set(READERS) == {c.reader for c in CASES}
    for kind in ("truncated", "not-utf8", "duplicated", "unknown", "no-", "string", "nan"):
        assert kind in names, kind
    assert len(CASES) >= 100


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from minivln_core.data.synth import SynthConfig, generate_world

    root = tmp_path_factory.mktemp("malformed_world")
    generate_world(root, SynthConfig(houses=2, paths_per_house=3, reverie_per_house=1, feature_dim=8))
    return root


def _copy(world: Path, into: Path) -> Path:
    import shutil

    shutil.copytree(world, into)
    return into


def _unknown_viewpoint(world: Path) -> tuple[str, str, str]:
    path = world / "annotations" / "R2R_val_unseen.json"
    records = json.loads(path.read_text())
    records[0]["path"][-1] = "ghostViewpoint"
    path.write_text(json.dumps(records))
    return path.name, f"record {records[0]['path_id']}_0", "field 'path'"


def _first_episode(world: Path) -> dict:
    return json.loads((world / "annotations" / "R2R_val_unseen.json").read_text())[0]


def _truncated_connectivity(world: Path) -> tuple[str, str, str]:
    path = world / "connectivity" / f"{_first_episode(world)['scan']}_connectivity.json"
    path.write_bytes(path.read_bytes()[:100])
    return path.name, "not valid JSON", ""


def _truncated_features(world: Path) -> tuple[str, str, str]:
    path = world / "features" / "views.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path.name, "HDF5", ""


def _string_features(world: Path) -> tuple[str, str, str]:
    first = _first_episode(world)
    key = f"{first['scan']}_{first['path'][0]}"   # read by the first evaluated episode
    path = world / "features" / "views.h5"
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = np.array([["x"] * 8] * 36, dtype="S1")
    return path.name, f"record {key}", "expected numbers"


@pytest.mark.parametrize("damage", [_unknown_viewpoint, _truncated_connectivity, _truncated_features, _string_features])
def test_the_command_line_prints_one_line_and_exits_2(world, tmp_path, capsys, damage) -> None:
    from minivln_core.cli import main

    broken = _copy(world, tmp_path / "world")
    name, *expected = damage(broken)
    assert main(["evaluate", "--expert", "--world", str(broken), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("minivln evaluate: error: "), err
    assert name in err and all(text in err for text in expected), err
