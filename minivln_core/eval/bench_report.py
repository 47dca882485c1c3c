"""`minivln bench`'s report: the timings of `eval.bench`, the int8 agreement, a JSON file and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minivln_core.errors import ConfigError
from minivln_core.eval.agreement import action_agreement
from minivln_core.eval.bench import BenchConfig, bench_extraction, bench_policies, environment_info
from minivln_core.eval.evaluate import EvalSpec
from minivln_core.io_utils import atomic_write_json, finish_figure
from minivln_core.models.inference import for_inference
from minivln_core.models.policy import DuetPolicy


def run_bench(teacher: DuetPolicy, student: DuetPolicy, cfg: BenchConfig, sources: tuple[str, str],
              out: str | Path) -> dict[str, Any]:
    """Time teacher and student (and the configured extras); writes `out` (JSON) and its chart (.png).

    `sources` names where the teacher and the student came from (checkpoint or preset)."""
    result = bench_policies(teacher, student, cfg)
    if cfg.agreement_world:
        if not cfg.int8:
            raise ConfigError("config key 'agreement_world' needs int8: true (it compares int8 with fp32)")
        spec = EvalSpec(Path(cfg.agreement_world), student.config.has_objects and "reverie" or "r2r",
                        cfg.agreement_split, batch_size=16, limit=cfg.agreement_limit,
                        features=cfg.agreement_features)
        result["int8_agreement"] = action_agreement(
            student, for_inference(student, cfg.runtime, "int8", threads=cfg.threads), spec, progress=True)
        if cfg.runtime != "torch":  # the fp32 export should decide exactly like torch
            result["fp32_agreement"] = action_agreement(
                student, for_inference(student, cfg.runtime, threads=cfg.threads), spec, progress=True)
    if cfg.vit_repeats:
        result["perception"] = bench_extraction(cfg.vit_repeats, cfg.threads)
    result["teacher"]["source"], result["student"]["source"] = sources
    result["machine"] = environment_info(cfg.threads)
    out = Path(out)
    atomic_write_json(out, result)
    bench_chart(result, out.with_suffix(".png"))
    return result


def bench_lines(result: dict[str, Any], cfg: BenchConfig) -> list[str]:
    """The human-readable summary of `run_bench`'s result."""
    t, s = result["teacher"], result["student"]
    if "speedup_alone" in result:  # the headline: each policy on its own, as a robot runs it
        ta, sa = result["teacher_alone"], result["student_alone"]
        lines = [f"teacher {t['params'] / 1e6:.1f}M: {ta['step_ms']:.1f} ms/step, student {s['params'] / 1e6:.1f}M: "
                 f"{sa['step_ms']:.1f} ms/step -> {result['speedup_alone']:.1f}x faster, each timed alone "
                 f"({cfg.runtime}, {cfg.threads} threads, {result['machine']['cpu']}); language "
                 f"{ta['language_ms']:.1f} / {sa['language_ms']:.1f} ms",
                 f"interleaved on the same decisions: {t['step_ms']:.1f} / {s['step_ms']:.1f} ms/step -> "
                 f"{result['speedup']:.1f}x"]
    else:
        lines = [f"teacher {t['params'] / 1e6:.1f}M: {t['step_ms']:.1f} ms/step, student {s['params'] / 1e6:.1f}M: "
                 f"{s['step_ms']:.1f} ms/step -> {result['speedup']:.1f}x faster ({cfg.runtime}, {cfg.threads} "
                 f"threads, {result['machine']['cpu']})"]
    if "speedup_torch" in result:
        lines.append(f"torch eager: teacher {result['teacher_torch']['step_ms']:.1f} ms/step, student "
                     f"{result['student_torch']['step_ms']:.1f} ms/step -> {result['speedup_torch']:.1f}x")
    if "student_int8" in result:
        line = f"int8 student: {result['student_int8']['step_ms']:.1f} ms/step ({result['int8_speedup']:.2f}x fp32)"
        if "int8_agreement" in result:
            line += f", argmax agreement with fp32 {100 * result['int8_agreement']['agreement']:.1f}% " \
                    f"of {result['int8_agreement']['steps']} steps"
        lines.append(line)
    if "student_alone" in result:
        alone = [f"{result[k]['step_ms']:.1f}" for k in ("student_alone", "student_int8_alone") if k in result]
        lines.append(f"student without the teacher in between (fp32{', int8' if len(alone) > 1 else ''}): "
                     f"{' / '.join(alone)} ms/step")
    return lines


def bench_chart(result: dict, path: Path) -> None:
    """Bar chart of the decision-step and language times of every timed policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    names = [n for n in ("teacher_torch", "student_torch", "teacher", "student", "student_int8", "teacher_alone",
                         "student_alone", "student_int8_alone") if n in result]
    step = [result[n]["step"]["median"] for n in names]
    p90 = [result[n]["step"]["p90"] for n in names]
    lang = [result[n]["language_ms"] for n in names]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], step, 0.4, yerr=[[0] * len(names), [p - m for p, m in zip(p90, step)]],
           label="decision step (median, p90)")
    ax.bar([i + 0.2 for i in x], lang, 0.4, label="language (once per episode)")
    runtime = result.get("runtime", "torch")
    labels = [n.replace("_torch", "\n(torch)") if n.endswith("_torch") else f"{n}\n({runtime})" for n in names]
    ax.set_xticks(list(x), [f"{lab}\n{result[n]['params'] / 1e6:.1f}M" for lab, n in zip(labels, names)], fontsize=7)
    ax.set(ylabel="ms")
    ax.legend(fontsize=8)
    speedup = result.get("speedup_alone", result["speedup"])
    finish_figure(fig, path, f"CPU time, {result['machine']['threads']} threads: {speedup:.1f}x faster")
