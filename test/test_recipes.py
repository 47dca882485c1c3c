"""Training recipes (`minivln run-recipe`, config/recipes/*.yaml): the shipped recipes give exactly
the commands of the shell scripts they replaced, bad recipes fail naming the file, and a tiny recipe
runs end to end (skipping a step that is done, stopping at a step that fails)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from minivln_core.cli import main
from minivln_core.errors import ConfigError
from minivln_core.experiments.recipes import StepFailed, load_recipe, plan, recipe_path, run_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "config" / "recipes").glob("*.yaml"))


# -- the commands of the scripts before they became wrappers, transcribed line by line ---------------
# (bash's `[ -f X ] || cmd` and `[ A -nt B ] && continue` appear as the dry run prints them:
# `[ -e X ] || cmd` and `[ A -nt B ] || cmd`; the closing inline Python as a `# table` line)
def q(*words: str) -> str:
    return shlex.join(["minivln", *words])


def old_teacher(out="runs/recipe", preset="minivln-small", imitation="1000", dagger="1000", threads="1"):
    lines = [f"[ -e {out}/world/world.json ] || " + q("synth", "--out", f"{out}/world", "--houses", "60")]
    common = ["--world", f"{out}/world", "--quiet", "--set", "features=views", "--set", "batch_size=16",
              "--set", "optim.lr=5e-4", "--set", "eval_limit=150", "--set", f"threads={threads}",
              # added with the recipe's training-speed parameters (their defaults are the old behaviour)
              "--set", "loop.processes=1", "--set", "loop.precision=fp32", "--set", "dropout_rng=torch",
              "--set", "attention_probs_dropout_prob=0.1"]  # the model's default
    lines.append(q("finetune", "--out", f"{out}/imitation", *common, "--set", f"preset={preset}",
                   "--set", "train_alg=imitation", "--set", f"loop.steps={imitation}", "--set", "loop.eval_every=500"))
    lines.append(q("finetune", "--out", f"{out}/dagger", *common, "--set", f"init={out}/imitation/last",
                   "--set", "train_alg=dagger", "--set", f"loop.steps={dagger}", "--set", "loop.eval_every=250",
                   "--set", "ml_weight=0.2"))  # added with the recipe's ml_weight parameter (the default)
    for stage in ("imitation", "dagger"):
        for split in ("val_seen", "val_unseen"):
            scores = f"{out}/{stage}/final/last_{split}_metrics.json"
            lines.append(f"[ {scores} -nt {out}/{stage}/last/model.safetensors ] || " + q(
                "evaluate", "--checkpoint", f"{out}/{stage}/last", "--world", f"{out}/world", "--split", split,
                "--features", "views", "--batch-size", "16", "--out", f"{out}/{stage}/final") + " > /dev/null")
    return lines + [f"# table teacher -> {out}/recipe.md"]


def old_distill(out="runs/distill", jobs="2", finetune="250", teacher_finetune="400", seeds="0 1"):
    lines = [f"[ -e {out}/world/world.json ] || " + q("synth", "--out", f"{out}/world", "--houses", "60")]
    seeds = seeds.split()
    first = f"{out}/ablation_seed{seeds[0]}"
    runs = []
    for seed in seeds:
        run = f"{out}/ablation_seed{seed}"
        teacher = [] if run == first else ["--teacher", f"{first}/teacher/finetune/best",
                                           "--teacher-pretrain", f"{first}/teacher/pretrain/policy"]
        lines.append(q("ablation", "--world", f"{out}/world", "--jobs", jobs, "--out", run, "--quiet", *teacher,
                       "--set", "threads=1", "--set", "budget.pretrain_steps=500",
                       "--set", f"budget.finetune_steps={finetune}",
                       "--set", f"budget.teacher_finetune_steps={teacher_finetune}", "--set", "budget.batch_size=16",
                       "--set", "budget.eval_every=125", "--set", "budget.eval_limit=800",
                       "--set", f"budget.seed={seed}", "--set", "finetune.train_alg=dagger",
                       "--set", "finetune.eval_limit=100", "--set", "pretrain.optim.lr=1e-3",
                       "--set", "pretrain.optim.warmup_steps=50"))
        runs.append(run)
    if len(runs) >= 2:
        lines.append(q("ablation-seeds", *runs, "--out", f"{out}/seeds"))
    return lines


def old_modality(world="runs/main/world", out="runs/modality", steps="2000"):
    lines = []
    for ablation in ("none", "blind", "no_language"):
        lines.append(q("finetune", "--world", world, "--out", f"{out}/{ablation}", "--quiet", "--set", "features=views",
                       "--set", "preset=minivln-small", "--set", "train_alg=imitation", "--set", "batch_size=16",
                       "--set", "optim.lr=5e-4", "--set", f"loop.steps={steps}", "--set", "loop.eval_every=500",
                       "--set", "eval_limit=150", "--set", f"ablation={ablation}", "--set", "threads=1"))
        for split in ("val_seen", "val_unseen"):
            lines.append(q("evaluate", "--checkpoint", f"{out}/{ablation}/last", "--world", world, "--split", split,
                           "--features", "views", "--ablation", ablation, "--batch-size", "16",
                           "--out", f"{out}/{ablation}/final") + " > /dev/null")
    return lines + [f"# table modality -> {out}/modality_ablation.md"]


# (recipe, run-recipe arguments, the old script's commands); the same non-default values as the
# wrapper test below passes positionally
CASES = [
    ("teacher", [], old_teacher()),
    ("teacher", ["--out", "/tmp/t", "--set", "preset=minivln", "--set", "imitation_steps=20",
                 "--set", "dagger_steps=30", "--set", "threads=4"],
     old_teacher("/tmp/t", "minivln", "20", "30", "4")),
    ("distill", [], old_distill()),
    ("distill", ["--out", "/tmp/d", "--set", "jobs=3", "--set", "student_finetune_steps=10",
                 "--set", "teacher_finetune_steps=20", "--set", "seeds=5 1 2"],
     old_distill("/tmp/d", "3", "10", "20", "5 1 2")),
    ("distill", ["--set", "seeds=[7]"], old_distill(seeds="7")),   # one seed: no ablation-seeds
    ("modality_ablation", [], old_modality()),
    ("modality_ablation", ["--set", "world=/tmp/w", "--out", "/tmp/m", "--set", "train_steps=5"],
     old_modality("/tmp/w", "/tmp/m", "5")),
]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    loaded = load_recipe(path)
    assert loaded.recipe.description and plan(loaded)
    assert recipe_path(path.stem) == path  # found by its bare name too


def test_the_three_scripts_have_their_recipes():
    assert {p.stem for p in RECIPES} >= {"teacher", "distill", "modality_ablation"}


@pytest.mark.parametrize("name,args,expected", CASES)
def test_dry_run_gives_the_old_scripts_commands(name, args, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # bare names resolve from anywhere; nothing is written
    assert main(["run-recipe", name, "--dry-run", *args]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert not any(tmp_path.iterdir())


WRAPPERS = [("teacher_recipe", ["/tmp/t", "minivln", "20", "30"], {"THREADS": "4"}, CASES[1][2]),
            ("distill_recipe", ["/tmp/d", "3", "10", "20", "5 1 2"], {}, CASES[3][2]),
            ("modality_ablation", ["/tmp/w", "/tmp/m", "5"], {}, CASES[6][2]),
            ("teacher_recipe", [], {}, CASES[0][2])]


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "minivln").exists(), reason="the wrappers run .venv/bin/minivln")
@pytest.mark.parametrize("script,args,env,expected", WRAPPERS)
def test_the_shell_wrappers_map_their_arguments(script, args, env, expected):
    out = subprocess.run(["bash", str(REPO / "scripts" / f"{script}.sh"), *args], capture_output=True, text=True,
                         env={**os.environ, **env, "DRY_RUN": "1"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == expected


# -- bad recipes ---------------------------------------------------------------------------------
def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_unknown_key_names_the_file_and_key(tmp_path):
    path = write(tmp_path, "params: {out: x}\nsteps:\n  - run: synth --out {out}\n    skip_if_exist: x\n")
    with pytest.raises(ConfigError, match=r"r\.yaml.*'steps\[0\]\.skip_if_exist'"):
        load_recipe(path)


def test_an_unknown_placeholder_names_the_file_and_step(tmp_path):
    path = write(tmp_path, "params: {out: x}\nsteps:\n  - run: synth --out {out}\n"
                           "  - name: later\n    foreach: {s: [a]}\n    run: synth --out {outt}/{s}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: steps\[1\] 'later'.*unknown placeholder '\{outt\}'"):
        load_recipe(path)


def test_a_placeholder_typo_in_a_step_that_would_not_run_still_fails(tmp_path):
    path = write(tmp_path, "params: {seeds: [0]}\nsteps:\n  - run: synth --out x\n"
                           "  - run: ablation-seeds {seedz}\n    skip_if_fewer: {seeds: 2}\n")
    with pytest.raises(ConfigError, match=r"steps\[1\] 'ablation-seeds'.*'\{seedz\}'"):
        load_recipe(path)


def test_bad_overrides_name_the_file_and_parameter(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"teacher\.yaml: unknown recipe parameter 'presett'"):
        load_recipe("teacher", ["presett=x"])
    with pytest.raises(ConfigError, match=r"teacher\.yaml: --set imitation_steps=many: expected an integer"):
        load_recipe("teacher", ["imitation_steps=many"])
    with pytest.raises(ConfigError, match=r"distill\.yaml: --set seeds=0 x \(item 1\): expected an integer"):
        load_recipe("distill", ["seeds=0 x"])
    assert main(["run-recipe", "teacher", "--set", "presett=x", "--dry-run"]) == 2
    assert "minivln run-recipe: error:" in capsys.readouterr().err
    assert main(["run-recipe", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err
    assert main(["run-recipe", "no_such_recipe"]) == 2
    assert "no_such_recipe" in capsys.readouterr().err


def test_a_step_needs_exactly_one_action(tmp_path):
    path = write(tmp_path, "steps:\n  - name: both\n    run: synth --out x\n    table: teacher\n")
    with pytest.raises(ConfigError, match=r"steps\[0\] 'both'.*exactly one of run, steps, table"):
        load_recipe(path)


# -- running ---------------------------------------------------------------------------------------
def test_a_tiny_recipe_runs_end_to_end_and_skips_what_is_done(tmp_path, capsys):
    recipe = write(tmp_path, "params: {out: unused, houses: 5}\nsteps:\n"
                             "  - run: synth --out {out}/world --houses {houses}\n"
                             "    skip_if_exists: '{out}/world/world.json'\n"
                             "  - name: again\n"
                             "    run: synth --out {out}/copy --houses {houses}\n"
                             "    skip_if_exists: '{out}/world/world.json'\n")
    out = tmp_path / "run"
    assert main(["run-recipe", str(recipe), "--out", str(out), "--set", "houses=2"]) == 0
    assert "synthetic world written to" in capsys.readouterr().out
    assert json.loads((out / "world" / "world.json").read_text())
    assert not (out / "copy").exists()                      # skipped: world.json existed by then
    stamp = (out / "world" / "world.json").stat().st_mtime_ns
    assert main(["run-recipe", str(recipe), "--out", str(out), "--set", "houses=2"]) == 0   # a rerun resumes
    assert (out / "world" / "world.json").stat().st_mtime_ns == stamp


def test_a_failing_step_stops_the_recipe_and_is_named(tmp_path, capsys):
    recipe = write(tmp_path, "params: {out: x}\nsteps:\n"
                             "  - name: bad world\n    run: synth --out {out}/w --houses 2 --set no_such_key=1\n"
                             "  - run: synth --out {out}/later --houses 2\n")
    assert main(["run-recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no_such_key" in err                               # the step's own error line
    assert "r.yaml: steps[0] 'bad world' failed with exit code 2" in err
    assert not (tmp_path / "run" / "later").exists()
    # arguments argparse refuses (SystemExit) stop the recipe the same way
    recipe = write(tmp_path, "steps:\n  - run: no-such-command\n", "r2.yaml")
    assert main(["run-recipe", str(recipe)]) == 2
    assert "steps[0] 'no-such-command' failed with exit code 2" in capsys.readouterr().err


def fake_recipe(tmp_path: Path, text: str):
    return load_recipe(write(tmp_path, text))


def test_foreach_loops_nest_and_list_parameters_expand(tmp_path):
    loaded = fake_recipe(tmp_path, "params: {seeds: [3, 4, 5], out: o}\nsteps:\n"
                                   "  - foreach: {s: 'seeds[1:]'}\n    steps:\n"
                                   "      - run: a {s}\n      - foreach: {k: [x, y]}\n        run: b {s}{k}\n"
                                   "  - run: c {out}/r{seeds} --first {seeds[0]} '{{literal}}'\n")
    assert [a.argv for a in plan(loaded)] == [("a", "4"), ("b", "4x"), ("b", "4y"), ("a", "5"), ("b", "5x"),
                                             ("b", "5y"), ("c", "o/r3", "o/r4", "o/r5", "--first", "3", "{literal}")]
    assert plan(loaded)[2].where.endswith("steps[0].steps[1] 'b' (s=4, k=y)")


def test_skip_if_newer_is_bash_nt(tmp_path):
    loaded = fake_recipe(tmp_path, f"params: {{d: {tmp_path}}}\nsteps:\n  - run: evaluate\n"
                                   "    skip_if_newer: {path: '{d}/scores', than: '{d}/model'}\n")
    (action,) = plan(loaded)
    assert not action.skip_reason()                          # no scores: run
    (tmp_path / "scores").write_text("")
    assert action.skip_reason()                              # scores, no model: skip (like -nt)
    (tmp_path / "model").write_text("")
    os.utime(tmp_path / "model", ns=(1, (tmp_path / "scores").stat().st_mtime_ns + 10**9))
    assert not action.skip_reason()                          # a checkpoint newer than the scores: run


def test_steps_get_their_own_stdout_and_thread_count(tmp_path, capsys):
    loaded = fake_recipe(tmp_path, "steps:\n  - run: loud\n    discard_stdout: true\n  - run: threads\n"
                                   "  - run: loud\n")
    threads = torch.get_num_threads()
    calls = []

    def command(argv):
        calls.append((argv[0], torch.get_num_threads()))
        if argv[0] == "threads":
            torch.set_num_threads(threads + 1)  # as finetune --set threads=N does
        print("printed by", argv[0])
        return 0

    assert run_recipe(loaded, command) == 0
    assert capsys.readouterr().out == "printed by threads\nprinted by loud\n"
    assert [c[1] for c in calls] == [threads] * 3 and torch.get_num_threads() == threads
    with pytest.raises(StepFailed, match=r"steps\[0\] 'loud' failed with exit code 3") as exc:
        run_recipe(loaded, lambda argv: 3)
    assert exc.value.code == 3


@pytest.mark.parametrize("table,runs,file", [("teacher", ("imitation", "dagger"), "recipe.md"),
                                             ("modality", ("none", "blind", "no_language"), "modality_ablation.md")])
def test_tables_read_the_scores_like_the_scripts_did(table, runs, file, tmp_path, capsys):
    for i, run in enumerate(runs):
        for split in ("val_seen", "val_unseen"):
            metrics = {"sr": 50 + i, "spl": 40.04, "ndtw": 60.25, "num_episodes": 12}
            (tmp_path / run / "final").mkdir(parents=True, exist_ok=True)
            (tmp_path / run / "final" / f"last_{split}_metrics.json").write_text(json.dumps(metrics))
    loaded = fake_recipe(tmp_path, f"params: {{out: {tmp_path}}}\nsteps:\n  - table: {table}\n")
    assert run_recipe(loaded, lambda argv: 1) == 0
    text = (tmp_path / file).read_text()
    assert capsys.readouterr().out == text
    if table == "teacher":
        assert text.splitlines()[:3] == ["| stage | split | SR | SPL | nDTW | episodes |", "|---|---|---:|---:|---:|---:|",
                                         "| imitation | val_seen | 50.0 | 40.0 | 60.2 | 12 |"]
    else:
        assert text.splitlines()[-1] == "| no language | val_unseen | 52.0 | 40.0 | 60.2 |"


def test_bash_accepts_the_wrappers():
    if not shutil.which("bash"):
        pytest.skip("no bash")
    for script in ("teacher_recipe", "distill_recipe", "modality_ablation"):
        subprocess.run(["bash", "-n", str(REPO / "scripts" / f"{script}.sh")], check=True)


def test_teacher_table_lists_the_scored_stages_only(tmp_path) -> None:
    """score_stages=dagger leaves imitation unscored: the table has the DAgger rows alone; nothing scored is an error."""
    from minivln_core.experiments.recipes import teacher_table

    with pytest.raises(FileNotFoundError, match="no stage has been scored"):
        teacher_table(tmp_path)
    (tmp_path / "dagger" / "final").mkdir(parents=True)
    for split, sr in (("val_seen", 71.0), ("val_unseen", 70.5)):
        (tmp_path / "dagger" / "final" / f"last_{split}_metrics.json").write_text(
            json.dumps({"sr": sr, "spl": 60.0, "ndtw": 65.0, "num_episodes": 10}))
    rows = teacher_table(tmp_path).splitlines()[2:]
    assert rows == ["| dagger | val_seen | 71.0 | 60.0 | 65.0 | 10 |", "| dagger | val_unseen | 70.5 | 60.0 | 65.0 | 10 |"]
    plans = plan(load_recipe("teacher", ["score_stages=dagger"]))
    commands = [a.command() for a in plans if not a.table]
    assert any("dagger/final" in c for c in commands) and not any("imitation/final" in c for c in commands)


def test_teacher_table_adds_remote_grounding_for_reverie(tmp_path) -> None:
    from minivln_core.experiments.recipes import teacher_table

    (tmp_path / "dagger" / "final").mkdir(parents=True)
    for split in ("val_seen", "val_unseen"):
        (tmp_path / "dagger" / "final" / f"last_{split}_metrics.json").write_text(
            json.dumps({"sr": 40.0, "spl": 30.0, "ndtw": 35.0, "rgs": 25.0, "rgspl": 20.5, "num_episodes": 8}))
    lines = teacher_table(tmp_path).splitlines()
    assert "RGS | RGSPL" in lines[0] and lines[2] == "| dagger | val_seen | 40.0 | 30.0 | 35.0 | 25.0 | 20.5 | 8 |"


def test_the_real_house_recipe_builds_one_world_for_both_tasks() -> None:
    for task in ("r2r", "reverie"):
        commands = [a.command() for a in plan(load_recipe("real_teacher", [f"task={task}", f"out=runs/real/{task}"]))
                    if not a.table]
        assert commands[0].endswith("minivln real-world --data ../shared/data --out runs/real/world --holdout 8 --seed 0")
        assert all(f"--set task={task}" in c for c in commands if " finetune " in f" {c}")
        assert all(f"--task {task}" in c for c in commands if "evaluate" in c)
