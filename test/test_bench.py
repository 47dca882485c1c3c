"""`minivln bench` runs both policies on the same decisions and reports comparable figures."""

from __future__ import annotations

import json

from minivln_core.cli import main


def test_bench_reports_step_times_and_speedup(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--teacher-preset", "tiny-teacher", "--student-preset", "tiny-student", "--out", str(out),
                 "--set", "steps=8", "--set", "warmup=1", "--set", "min_nodes=3", "--set", "houses=2",
                 "--set", "threads=1"]) == 0
    result = json.loads(out.read_text())
    for name in ("teacher", "student"):
        assert result[name]["step"]["n"] == 8 and result[name]["step_ms"] > 0 and result[name]["language_ms"] > 0
    assert result["speedup"] == result["teacher"]["step_ms"] / result["student"]["step_ms"]
    assert result["map_nodes"]["median"] >= 3 and result["machine"]["threads"] == 1
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "faster" in capsys.readouterr().out
