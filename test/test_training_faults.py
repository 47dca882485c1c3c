"""SIGKILL at seeded random points of `minivln pretrain`, `minivln finetune`, `minivln distill-pretrain`
(stage-1 distillation) and `minivln finetune --teacher` (stage 2), then the same command again.

Each command first runs uninterrupted on a tiny world (counting its checkpoint and log writes).
Then a chain of runs in a fresh folder is killed, one after the other, at points drawn from a
seeded generator: at a random time (start-up included), in the middle of a safetensors write
(the file cut in half, then SIGKILL), between the two renames that swap a checkpoint directory
into place, and half-way through a line of metrics.jsonl. After every kill, no directory under
its final name (`last`, `best`, `policy`) may be incomplete, and the rerun must resume from the
last complete checkpoint. The final run must end with the uninterrupted run's weights, metrics
log and best checkpoint; the largest difference is printed (the nondeterminism measured).

The kills come from inside the child at exact points: this file, run as a script, arms the
fault (`arm`) and then calls `minivln_core.cli.main`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
COMMON = ["--set", "preset=tiny-student", "--set", "loop.save_every=1", "--set", "loop.log_every=1",
          "--set", "loop.eval_every=2", "--set", "eval_splits=[val_unseen]", "--set", "threads=1", "--quiet"]
TEACHER = "{teacher}"  # replaced by the tiny teacher checkpoint of the `teacher` fixture
COMMANDS = {  # name -> minivln command and its arguments
    "pretrain": ("pretrain", ["--set", "batch_size=2", "--set", "eval_limit=2", "--set", "loop.steps=4"]),
    "finetune": ("finetune", ["--set", "batch_size=4", "--set", "eval_limit=4", "--set", "loop.steps=4",
                              "--set", "max_steps=6"]),
    "distill-pretrain": ("distill-pretrain", ["--set", "batch_size=2", "--set", "eval_limit=2", "--set", "loop.steps=4",
                                              "--set", f"teacher={TEACHER}"]),
    "finetune-kd": ("finetune", ["--set", "batch_size=4", "--set", "eval_limit=4", "--set", "loop.steps=4",
                                 "--set", "max_steps=6", "--set", f"teacher={TEACHER}", "--set", "kd_weight=0.1"]),
}
KILLS = ("time", "weights", "swap", "log")
# kinds of kill per command, in order (the points are drawn at random); both commands share the
# Trainer, checkpoint and log code, so between them every kind is covered in 5 runs per command
CHAINS = {"pretrain": ("swap", "log", "time"), "finetune": ("weights", "swap", "time"),
          "distill-pretrain": ("weights", "log", "time"), "finetune-kd": ("swap", "weights", "time")}
TOLERANCE = 1e-6


# -- the child: arm one fault, then run the command -----------------------------------------------
def arm(spec: dict) -> None:
    """Count checkpoint/log writes and SIGKILL this process at the `spec["nth"]` one of `spec["kind"]`.

    weights: after a safetensors file is written, cut it in half and die (a write torn by a kill);
    swap:    die between the two renames that swap a checkpoint directory (old one moved aside);
    log:     write half of a metrics.jsonl line and die.
    With `spec["count"]` (a path) nothing is killed and the counts are written there at exit.
    """
    import atexit

    import minivln_core.models.checkpoint as checkpoint
    import minivln_core.train.state as state
    from minivln_core.train.logger import RunLogger

    seen = dict.fromkeys(KILLS[1:], 0)

    def hit(kind: str) -> bool:
        seen[kind] += 1
        return spec.get("kind") == kind and seen[kind] == spec.get("nth")

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    real_save = checkpoint.save_file

    def save_file(tensors, filename, *args, **kwargs):
        real_save(tensors, filename, *args, **kwargs)
        if hit("weights"):
            with open(filename, "r+b") as fh:
                fh.truncate(os.path.getsize(filename) // 2)
            die()

    checkpoint.save_file = state.save_file = save_file
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if os.path.isdir(dst) and str(dst).endswith(".old") and hit("swap"):
            die()

    os.replace = replace
    real_log = RunLogger.log

    def log(self, step, scalars, prefix=""):
        if self.enabled and hit("log"):
            line = json.dumps({"step": int(step), **{f"{prefix}{k}": float(v) for k, v in scalars.items()}})
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line[: len(line) // 2])
            die()
        return real_log(self, step, scalars, prefix)

    RunLogger.log = log
    if spec.get("count"):
        atexit.register(lambda: Path(spec["count"]).write_text(json.dumps(seen)))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    arm(json.loads(sys.argv[1]))
    from minivln_core.cli import main

    sys.exit(main(sys.argv[2:]))


# -- the test ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from minivln_core.data.synth import SynthConfig, generate_world

    root = tmp_path_factory.mktemp("faults_world")
    generate_world(root, SynthConfig(houses=3, paths_per_house=8, reverie_per_house=4, feature_dim=16))
    return root


@pytest.fixture(scope="module")
def teacher(world, tmp_path_factory) -> Path:
    """A frozen tiny teacher for the distillation commands (its layers map 3/2/2 -> the student's 1/1/1)."""
    import torch

    from minivln_core.models import DuetPolicy, preset
    from minivln_core.models.checkpoint import save_pretrained

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("faults_teacher") / "teacher"
    save_pretrained(DuetPolicy(preset("tiny-teacher", image_feat_size=16)), out, {"kind": "test"})
    return out


def run(command: str, world: Path, out: Path, spec: dict, kill_after: float | None = None,
        teacher: Path | None = None) -> tuple[int, str, float]:
    """(return code, stderr, seconds) of one run of `command`, armed with `spec`."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cli, extra = COMMANDS[command]
    extra = [a.replace(TEACHER, str(teacher)) for a in extra]
    args = [sys.executable, __file__, json.dumps(spec), cli, "--world", str(world), "--out", str(out),
            *COMMON, *extra]
    started = time.monotonic()
    with open(out.parent / f"{out.name}.stderr", "w+") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        try:
            proc.wait(timeout=kill_after if kill_after is not None else 300)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        err.seek(0)
        return proc.returncode, err.read(), time.monotonic() - started


def saved_step(run_dir: Path) -> int | None:
    """Step of the training checkpoint a rerun must resume from (None: it starts over)."""
    from minivln_core.train.state import TRAINER_NAME, is_complete

    for name in ("last", ".last.old"):  # a swap killed between its renames leaves only .last.old
        if is_complete(run_dir / name):
            return json.loads((run_dir / name / TRAINER_NAME).read_text())["step"]
    return None


def check_nothing_partial(run_dir: Path) -> None:
    """A directory under its final name is always whole (never loaded as if whole when it is not)."""
    from minivln_core.models.checkpoint import read_checkpoint_info
    from minivln_core.train.state import is_complete

    if (run_dir / "last").exists():
        assert is_complete(run_dir / "last")
    for name in ("best", "policy"):
        if (run_dir / name).exists():
            read_checkpoint_info(run_dir / name)


def metrics_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def max_difference(a: Path, b: Path) -> float:
    """Largest absolute difference between the tensors of two safetensors files (same keys required)."""
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    return max(float((x[k].double() - y[k].double()).abs().max()) if x[k].numel() else 0.0 for k in x)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_sigkill_anywhere_then_rerun_ends_like_an_uninterrupted_run(world, teacher, tmp_path, command) -> None:
    straight = tmp_path / "straight"
    code, err, seconds = run(command, world, straight, {"count": str(tmp_path / "counts.json")}, teacher=teacher)
    assert code == 0, err[-3000:]
    counts = json.loads((tmp_path / "counts.json").read_text())
    rng = np.random.default_rng(2024 + list(COMMANDS).index(command))
    killed = tmp_path / "killed"
    kills: list[str] = []
    for kind in CHAINS[command]:
        # writes from the first third of a run, so each rerun still has work left to be killed in
        spec = {"kind": kind, "nth": int(rng.integers(1, max(counts[kind] // 3, 1) + 1))} if kind != "time" else {}
        delay = float(rng.uniform(0.3, 0.8)) * seconds if kind == "time" else None
        before = saved_step(killed) if killed.exists() else None
        code, err, _ = run(command, world, killed, spec, kill_after=delay, teacher=teacher)
        if before is not None and (kind != "time" or code == 0):  # a timed kill may come before resumption
            assert f"from step {before}" in err, (kind, before, err[-2000:])  # where the last run left off
        if code == 0:
            kills.append(f"{kind}: finished first")
            continue
        assert code == -signal.SIGKILL, err[-3000:]
        check_nothing_partial(killed)
        where = f"at {delay:.1f} s" if kind == "time" else f"at write {spec['nth']}"
        kills.append(f"{kind} {where} -> checkpoint at step {saved_step(killed)}")
    assert sum("finished" not in k for k in kills) >= 2, kills
    before = saved_step(killed)
    code, err, _ = run(command, world, killed, {}, teacher=teacher)
    assert code == 0, err[-3000:]
    if before is not None:
        assert f"from step {before}" in err, err[-2000:]

    # the same end as the uninterrupted run
    assert json.loads((killed / "last" / "trainer.json").read_text())["step"] == \
        json.loads((straight / "last" / "trainer.json").read_text())["step"]
    diffs = {name: max_difference(straight / name / "model.safetensors", killed / name / "model.safetensors")
             for name in ("last", "best") + (("policy",) if "pretrain" in command else ())}
    diffs["optimizer"] = max_difference(straight / "last" / "optimizer.safetensors",
                                        killed / "last" / "optimizer.safetensors")
    rows_a, rows_b = metrics_rows(straight), metrics_rows(killed)
    assert [sorted(r) for r in rows_a] == [sorted(r) for r in rows_b], "the same log lines, once each"
    diffs["metrics"] = max(abs(a[k] - b[k]) for a, b in zip(rows_a, rows_b) for k in a)
    leftovers = sorted(p.name for p in killed.iterdir() if p.name.startswith(".") and p.is_dir())
    print(f"\n{command}: kills {kills}; largest differences {diffs}; leftovers {leftovers}")
    assert all(d <= TOLERANCE for d in diffs.values()), diffs
    assert not leftovers, "temporary directories of killed writes are cleaned up"
