"""The `minivln` command line: help for every command, info counts, eval-trajectories, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures_data import GT_PATH, TOY_SCAN, r2r_record, write_json, write_toy_connectivity
from minivln_core.cli import COMMAND_MODULES, build_parser, main


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert len(commands) == len(COMMAND_MODULES)
    for name in commands:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: minivln" in capsys.readouterr().out


@pytest.mark.parametrize("preset,task,count", [("duet-base", "r2r", 180_489_221),
                                               ("minivln", "reverie", 21_163_518)])
def test_info_prints_the_parameter_count(preset, task, count, capsys):
    assert main(["info", "--preset", preset, "--task", task]) == 0
    assert json.loads(capsys.readouterr().out)["params"] == count


def test_console_script_runs_in_a_subprocess():
    out = subprocess.run([sys.executable, "-m", "minivln_core", "info", "--preset", "minivln"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["params"] == 21_064_925


def test_eval_trajectories_end_to_end(tmp_path, capsys):
    conn = write_toy_connectivity(tmp_path / "conn")
    ann = write_json(tmp_path / "R2R_val.json", [r2r_record(path_id=7, n_instr=2)])
    perfect = [[vp, 0.0, 0.0] for vp in GT_PATH]
    res = write_json(tmp_path / "res.json", [{"instr_id": "7_0", "trajectory": perfect},
                                             {"instr_id": "7_1", "trajectory": perfect[:1]}])
    out = tmp_path / "m.json"
    assert main(["eval-trajectories", "--annotations", str(ann), "--connectivity", str(conn),
                 "--results", str(res), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["num_episodes"] == 2 and metrics["sr"] == pytest.approx(50.0)
    assert "Scored 2 episodes" in capsys.readouterr().out


def test_bad_input_is_one_clear_error_line(tmp_path, capsys):
    conn = write_toy_connectivity(tmp_path / "conn")
    ann = write_json(tmp_path / "R2R_val.json", [r2r_record(path_id=7, n_instr=1)])
    res = write_json(tmp_path / "res.json", [{"instr_id": "7_0", "trajectory": [["nowhere", 0, 0]]}])
    code = main(["eval-trajectories", "--annotations", str(ann), "--connectivity", str(conn), "--results", str(res)])
    err = capsys.readouterr().err
    assert code == 2 and "res.json" in err and "nowhere" in err and TOY_SCAN in err
