"""Open-loop replay of the shipped policy (issue 20): the default navigator (checkpoint embedded-student)
and sim_robot run as two processes over DDS on the embedded world and record 3 episodes; `minivln
replay` with the same checkpoint then reproduces every decision from the node's very state."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("minivln_interfaces.msg", reason="messages not built: run scripts/build_interfaces.sh")

from minivln_core.cli import main  # noqa: E402
from minivln_core.robot.launch import node_command, ros_environment, run_navigator_and_sim  # noqa: E402

EPISODES = 3


def test_open_loop_replay_of_the_shipped_student_over_node_processes(embedded_world, tmp_path) -> None:
    bag, out = tmp_path / "bag", tmp_path / "out"
    env = dict(ros_environment(tmp_path / "roslog"), MINIVLN_CACHE=str(embedded_world.parent))
    nav = node_command("navigator")  # config/navigator.yaml: the shipped embedded-student, max_steps 15
    sim = node_command("sim_robot", {"world": embedded_world, "num_episodes": EPISODES, "record": bag})
    run = run_navigator_and_sim(nav, sim, env, timeout=240, sim_stderr=sys.stderr)
    assert run.sim_code == 0 and not run.timed_out, run
    assert len(run.records) == EPISODES and all(r["state"] == "arrived" for r in run.records), run.records

    episodes = embedded_world / "annotations" / "R2R_val_unseen.json"
    assert main(["replay", "--bag", str(bag), "--checkpoint", "embedded-student", "--episodes", str(episodes),
                 "--out", str(out), "--quiet", "--no-pictures"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["recorded_episodes"] == EPISODES and summary["dropped_inputs"]["count"] == 0
    assert summary["decisions"] == sum(r["steps"] for r in run.records)
    assert summary["agreement"] == 100.0, summary
    # not only the same choices: the node's stop probability and map size at every decision
    assert summary["state_differences"]["count"] == 0, summary["state_differences"]
    assert summary["same_state"] == summary["decisions"] and summary["recorded_max_steps"] is None
    replayed = {e["instr_id"]: e for e in json.loads((out / "episodes.json").read_text())}
    for r in run.records:
        assert replayed[r["instr_id"]]["trajectory"] == r["trajectory"]
        assert [d["recorded_goal_place"] for d in replayed[r["instr_id"]]["decisions"]
                if d["recorded_goal_place"]] == r["goals"]
    margins = [d["replayed_margin"] for e in replayed.values() for d in e["decisions"] if d["replayed_margin"]]
    print(f"\n{summary['decisions']} decisions, 100% agreement, smallest logit margin {min(margins):.3f}")
