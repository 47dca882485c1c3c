"""The committed result summaries (docs/results/) check out: each Table III (IV, V) seed report is what
the code renders from its JSON, its goals follow from its rows, each summary over seeds is what
`ablation-seeds` computes from the committed seed reports, and docs/results.md quotes the figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from minivln_core.experiments.distill_ablation import goals, write_ablation_report
from minivln_core.experiments.distill_ablation_seeds import load_reports, summarise

DOCS = Path(__file__).resolve().parents[1] / "docs"
SEED_REPORTS = sorted(DOCS.glob("results/table*_*/seed*/ablation.json"))
SEED_SUMMARIES = sorted(DOCS.glob("results/table*_*/seeds/ablation_seeds.json"))
# docs/results/<folder> -> the results.md section that quotes its seeds' val_unseen figures
SECTIONS = {"table3_synth60": "## Table III with a converged teacher on the 60-house world",
            "table45_synth60": "## Tables IV and V on the 60-house world"}


@pytest.mark.parametrize("path", SEED_REPORTS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_a_seed_report_is_rendered_from_its_json(path, tmp_path, monkeypatch):
    report = json.loads(path.read_text())
    assert path.parent.name == f"seed{report['config']['budget']['seed']}"
    splits = list(dict.fromkeys(r["split"] for r in report["results"]))
    assert goals(report["results"], splits) == report["goals"]
    monkeypatch.setattr("minivln_core.experiments.distill_ablation.plot_ablation", lambda *a, **k: None)
    write_ablation_report(tmp_path, report)
    assert (tmp_path / "ablation.md").read_text() == (path.parent / "ablation.md").read_text()


@pytest.mark.parametrize("path", SEED_SUMMARIES, ids=lambda p: p.parent.parent.name)
def test_a_summary_over_seeds_is_computed_from_the_committed_seeds(path):
    committed = json.loads(path.read_text())
    runs = [path.parent.parent / f"seed{seed}" for seed in committed["seeds"]]
    assert json.loads(json.dumps(summarise(load_reports(runs)))) == committed


@pytest.mark.parametrize("folder, section", SECTIONS.items())
def test_results_md_quotes_every_committed_seed(folder, section):
    reports = [json.loads(p.read_text()) for p in SEED_REPORTS if p.parent.parent.name == folder]
    if not reports:
        pytest.skip(f"no seed report committed in docs/results/{folder}")
    text = (DOCS / "results.md").read_text()
    assert section in text
    body = text.split(section, 1)[1].split("\n## ", 1)[0].replace("**", "")
    for report in reports:
        for row in report["results"]:
            if row["split"] == "val_unseen":
                triple = f"{row['sr']:.1f} / {row['spl']:.1f} / {row['ndtw']:.1f}"
                assert re.search(re.escape(triple), body), (folder, row["name"], triple)


def test_every_committed_table_has_its_section():
    assert {p.parent.parent.name for p in SEED_REPORTS} <= set(SECTIONS)
