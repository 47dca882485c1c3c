"""The ablation over seeds: several `minivln ablation` runs that differ only in `budget.seed`,
summarised as mean and standard deviation per policy and split, with the issue's goals judged on
the means and the paired two-stage - no-KD difference per seed (the same seed gives both students
the same batches and dropout masks, so pairing by seed removes part of the noise).

The runs either each train their own teacher (the same teacher settings, other seeds), or share one
teacher: a run trains it and the others are given its checkpoints (`--teacher RUN/teacher/finetune/best
--teacher-pretrain RUN/teacher/pretrain/policy`). Sharing varies the students' seeds alone and costs
one teacher; the runs' teacher settings may then differ, the teacher checkpoints they used may not.

Outputs: ablation_seeds.json, ablation_seeds.md and ablation_seeds.png.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from minivln_core.config import from_dict, to_dict
from minivln_core.errors import ConfigError, DataError
from minivln_core.experiments.distill_ablation import AblationConfig, goal_lines, goals, plot_ablation
from minivln_core.io_utils import atomic_write_json, atomic_write_text, read_json

METRICS = ("sr", "spl", "ndtw", "rgs", "rgspl")
# Config keys that may differ between the runs: how they were run, not what was trained.
FREE_KEYS = ("seed", "jobs", "threads")
# Config keys that say where the teacher comes from: equal, or the runs used the same teacher checkpoints.
TEACHER_KEYS = ("teacher", "teacher_pretrain", "teacher_finetune_steps")


def _comparable(config: dict[str, Any], skip: tuple[str, ...] = FREE_KEYS) -> dict[str, Any]:
    """The config with every key filled in (a report written before a key existed holds its default,
    which is what that run used) and the free keys left out."""
    try:
        config = to_dict(from_dict(AblationConfig, config))
    except ConfigError as exc:
        raise DataError("<ablation.json>", f"config: {exc}") from None
    out = {k: v for k, v in config.items() if k not in skip}
    out["budget"] = {k: v for k, v in config.get("budget", {}).items() if k not in skip}
    return out


def _teacher_used(report: dict[str, Any]) -> tuple[str, str] | None:
    """The stage-2 and stage-1 teacher checkpoints of a run: their weights' digests, or in reports
    older than the digests their resolved folders (None in reports that predate 'pretrain_checkpoint')."""
    teacher = report["teacher"]
    if "digest" in teacher:
        return teacher["digest"], teacher["pretrain_digest"]
    if "pretrain_checkpoint" not in teacher:
        return None
    return str(Path(teacher["checkpoint"]).resolve()), str(Path(teacher["pretrain_checkpoint"]).resolve())


def shares_teacher(reports: list[dict[str, Any]]) -> bool:
    """Whether every run distilled the same teacher checkpoints."""
    used = {_teacher_used(r) for r in reports}
    return len(used) == 1 and None not in used


def load_reports(runs: list[Path]) -> list[dict[str, Any]]:
    """Each run's ablation.json, checked to be the same experiment at different seeds."""
    if len(runs) < 2:
        raise ConfigError("an ablation over seeds needs at least two ablation runs")
    paths = [Path(run) / "ablation.json" for run in runs]
    reports = [read_json(path, "cannot read the ablation report (file does not exist); run `minivln ablation` "
                               "there first") for path in paths]
    # With one shared teacher checkpoint, how each run came by it does not matter.
    free = FREE_KEYS + TEACHER_KEYS if shares_teacher(reports) else FREE_KEYS
    first, first_path = _comparable(reports[0]["config"], free), paths[0]
    first_rows = [(r["name"], r["split"]) for r in reports[0]["results"]]
    seeds = []
    for path, report in zip(paths, reports):
        other = _comparable(report["config"], free)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                raise ConfigError(f"{path}: config key '{key}' differs from {first_path}; only "
                                  f"{', '.join(FREE_KEYS)} may differ between the seeds of one ablation "
                                  "(and the teacher's settings when every run used the same teacher checkpoints)")
        seeds.append(report["config"]["budget"]["seed"])
        rows = [(r["name"], r["split"]) for r in report["results"]]
        if rows != first_rows:
            raise DataError(path, f"its results list other policies or splits than {first_path}'s: {rows}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"the ablation runs must have different seeds, got {seeds}")
    return reports


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean / std / per-seed values of every metric for every (policy, split), goals on the means,
    and the paired two-stage - no-KD SR difference per seed."""
    seeds = [r["config"]["budget"]["seed"] for r in reports]
    rows = []
    for k, base in enumerate(reports[0]["results"]):
        runs = [r["results"][k] for r in reports]
        row = {key: base[key] for key in ("id", "policy", "name", "pretrain_kd", "finetune_kd", "kd_weight",
                                          "split", "params")}
        row["step_ms"] = statistics.median(x["step_ms"] for x in runs)
        for metric in (m for m in METRICS if m in base):
            values = [x[metric] for x in runs]
            row[metric] = statistics.fmean(values)
            row[f"{metric}_std"] = statistics.stdev(values)
            row[f"{metric}_seeds"] = values
        rows.append(row)
    splits = list(dict.fromkeys(r["split"] for r in rows))
    paired = {}
    for split in splits:
        by_name = {r["name"]: r for r in rows if r["split"] == split}
        diffs = [a - b for a, b in zip(by_name["two-stage"]["sr_seeds"], by_name["no-kd"]["sr_seeds"])]
        paired[split] = {"per_seed": diffs, "mean": statistics.fmean(diffs), "std": statistics.stdev(diffs)}
    return {"title": "MiniVLN two-stage distillation ablation over seeds", "seeds": seeds,
            "teacher": reports[0]["teacher"], "shared_teacher": shares_teacher(reports),
            "student": reports[0]["student"], "budget": reports[0]["budget"],
            "goals_on_means": goals(rows, splits), "two_stage_minus_no_kd_sr": paired, "results": rows}


def render_seed_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: mean +- std over seeds of every metric."""
    metrics = [m for m in METRICS if all(m in r for r in rows)]
    lines = ["| id | policy | split | " + " | ".join(m.upper() for m in metrics) + " |",
             "|---|---|---|" + "---:|" * len(metrics)]
    for r in rows:
        cells = " | ".join(f"{r[m]:.1f} +- {r[f'{m}_std']:.1f}" for m in metrics)
        lines.append(f"| {r['id']} | {r['policy']} | {r['split']} | {cells} |")
    return "\n".join(lines)


def write_seed_report(out: Path, summary: dict[str, Any]) -> None:
    """ablation_seeds.json, .md (table, goals on the means, paired differences) and .png (means)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "ablation_seeds.json", summary)
    paired = [f"- {split}: {p['mean']:+.1f} +- {p['std']:.1f} SR points (per seed: "
              + ", ".join(f"{d:+.1f}" for d in p["per_seed"]) + ")"
              for split, p in summary["two_stage_minus_no_kd_sr"].items()]
    text = "\n".join([
        f"# {summary['title']}", "",
        f"Seeds {', '.join(str(s) for s in summary['seeds'])}; teacher {summary['teacher']['shape']}"
        f"{' (one teacher for every seed: ' + summary['teacher']['checkpoint'] + ')' if summary.get('shared_teacher') else ''}; "
        f"student `{summary['student']['preset']}`, {summary['student']['shape']}; per run "
        f"{summary['budget']['pretrain_steps']} pretraining and {summary['budget']['finetune_steps']} fine-tuning "
        "steps. Mean +- standard deviation over the seeds.", "",
        render_seed_table(summary["results"]), "",
        "## Goals, on the means", "", *goal_lines(summary["goals_on_means"]), "",
        "## Two-stage minus no KD, paired by seed", "", *paired, "",
        "![ablation over seeds](ablation_seeds.png)", ""])
    atomic_write_text(out / "ablation_seeds.md", text)
    plot_ablation(summary["results"], out / "ablation_seeds.png", summary["title"] + " (means)")
