"""`minivln bench --place`: new place -> goal, per extractor variant, as the robot experiences it.

What a person waits for at every new place is `OnlineNavigator.decide` with a cache miss: the
panorama sliced into 36 views, the ViT on them, the policy's decision (the node only converts
messages around this call). Each variant of the extractor (runtime and precision, or a distilled
extractor folder from `minivln distill-vit`) gets its own navigator over the same policy, and
every round times every variant at every place, the variant order rotated from place to place
(interleaved: machine noise hits all alike, and no variant always runs right after the same one).
A second decision at the same place (cache hit, new episode) times the policy alone; perception
is the difference.

The places are the start viewpoints of evenly spread episodes of a world split, rendered by the
simulated robot (`sim.world_robot.SimWorld`, the panoramas `sim_robot` publishes). How much each
variant changes what the robot does is measured against the features the policy was trained on
(the world's feature file): decision agreement in lockstep over the split's episodes
(`eval.agreement`), optionally SR end to end, and the relative feature error at the timed places.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from minivln_core.agent.agent import NavigationAgent
from minivln_core.agent.online import OnlineNavigator
from minivln_core.config import Validated
from minivln_core.data.features import ViewFeatureStore
from minivln_core.distill.vit import feature_errors
from minivln_core.errors import ConfigError
from minivln_core.io_utils import atomic_write_json, atomic_write_text, finish_figure
from minivln_core.eval.evaluate import EvalSpec, build_env, spread_subset
from minivln_core.perception.config import ExtractorConfig, load_extractor_config, parse_variant, with_variant
from minivln_core.perception.panorama import DEFAULT_PANO_WIDTH, encode_panorama
from minivln_core.perception.variant_choice import AGREEMENT_BAR, fastest_meeting, latency_and_agreement, remember
from minivln_core.perception.vit import FeatureExtractor
from minivln_core.provenance import cpu_info
from minivln_core.sim.world_robot import SimWorld

log = logging.getLogger("minivln.bench")

VARIANTS = ("torch-fp32", "torch-bf16", "torch-int8", "onnx-int8")


@dataclass(frozen=True)
class PlaceBenchConfig(Validated):
    """Which policy, world and extractor variants; how many places and rounds."""

    world: str = ""                     # a generated world whose features/<features>.h5 the policy learnt on
    checkpoint: str = "embedded-student"
    features: str = "views_vit"
    # "<runtime>-<precision>" of the policy's extractor, or "<runtime>-<precision>:<folder>" to run a
    # distilled extractor (`minivln distill-vit` OUT/student) instead of the recorded one
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    split: str = "val_unseen"
    places: int = 8                     # timed places per round (start viewpoints of spread episodes)
    rounds: int = 3
    threads: int = 2
    max_steps: int = 15                 # decisions per episode in the agreement / SR rollouts (the navigator's)
    agreement_limit: int = 0            # episodes scored for decision agreement (0 = the whole split, -1 = skip)
    score_sr: bool = False              # also roll every variant out end to end and report SR
    # keep the measurement for the navigator's `extractor_variant: auto` (perception/variant_choice.py): always
    # in the user cache; with record_in_checkpoint also in the checkpoint folder's place_variants.json (to ship it)
    remember: bool = True
    record_in_checkpoint: bool = False

    def validate(self) -> None:
        if self.places < 1 or self.rounds < 1 or self.threads < 0 or self.agreement_limit < -1:
            raise ConfigError("config keys 'places', 'rounds' (>= 1), 'threads' (>= 0) and 'agreement_limit' "
                              "(>= -1) are out of range")
        if not self.variants:
            raise ConfigError("config key 'variants' is empty")
        for spec in self.variants:
            try:
                parse_variant(spec)
            except ConfigError as exc:
                raise ConfigError(f"config key 'variants': {exc}") from None


def variant_config(base: ExtractorConfig, spec: str, threads: int) -> ExtractorConfig:
    """The policy's extractor settings run the variant's way, on `threads` threads."""
    return replace(with_variant(base, spec), threads=threads)


class RenderedFeatures:
    """A view-feature store that renders and encodes viewpoints on demand (what the robot would compute)."""

    def __init__(self, world: SimWorld, extractor: FeatureExtractor):
        self.world, self.extractor = world, extractor
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.extractor.dim

    def get(self, scan: str, vp: str) -> np.ndarray:
        """(36, D) features of the viewpoint's heading-0 panorama (cached)."""
        key = (scan, vp)
        if key not in self._cache:
            self._cache[key] = encode_panorama(self.extractor, self.world.heading0_panorama(scan, vp), 0.0)
        return self._cache[key]


def _stats(samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "min_ms": float(ms.min()),
            "n": int(ms.size)}


def bench_places(cfg: PlaceBenchConfig, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Time every variant at every place for `rounds` rounds, then score agreement (SR results go to
    `out_dir`); returns the report dict."""
    from minivln_core.models.loading import load_policy
    from minivln_core.eval.agreement import action_agreement

    if not cfg.world:
        raise ConfigError("config key 'world' is required (a generated world with rendered view features)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    features_file = Path(cfg.world) / "features" / f"{cfg.features}.h5"
    base = load_extractor_config(cfg.checkpoint, features_file=features_file)
    policy = load_policy(cfg.checkpoint).eval()
    world = SimWorld(cfg.world, split=cfg.split, pano_width=DEFAULT_PANO_WIDTH)
    episodes = spread_subset(list(world.episodes), cfg.places + 1)
    warm, timed = episodes[0], episodes[1:] or episodes
    navigators: dict[str, OnlineNavigator] = {}
    for spec in cfg.variants:  # one agent each: NavigationAgent keeps no state between episodes     # export / quantise / load outside the timed region
        nav = OnlineNavigator(NavigationAgent(policy), FeatureExtractor(variant_config(base, spec, cfg.threads)))
        _decide_at(nav, world, warm, fresh=True)
        navigators[spec] = nav
    latency = {s: [] for s in cfg.variants}
    policy_only = {s: [] for s in cfg.variants}
    errors = {s: [] for s in cfg.variants}
    with ViewFeatureStore(features_file) as trained, tqdm(total=cfg.rounds * len(timed) * len(cfg.variants),
                                                          desc="place latency", disable=not progress) as bar:
        for r in range(cfg.rounds):
            for k, episode in enumerate(timed):
                shift = (r * len(timed) + k) % len(cfg.variants)
                for spec in cfg.variants[shift:] + cfg.variants[:shift]:
                    first = _decide_at(navigators[spec], world, episode, fresh=True)
                    again = _decide_at(navigators[spec], world, episode, fresh=False)
                    if not first.encoded or again.encoded:
                        raise RuntimeError("the place cache did not behave: a fresh place must be encoded once")
                    latency[spec].append(first.latency)
                    policy_only[spec].append(again.latency)
                    if r == 0:
                        ref = trained.get(episode.scan, episode.start)                       # (36, D)
                        errors[spec].append(feature_errors(first.observation.view_features, ref)["rel_error"])
                    bar.update(1)
    report: dict[str, Any] = {"cpu": cpu_info(), "torch": torch.__version__, "threads": cfg.threads,
                              "checkpoint": cfg.checkpoint, "world": str(cfg.world), "split": cfg.split,
                              "extractor": {"image_size": base.image_size, "layers": base.num_layers,
                                            "hidden_size": base.hidden_size, "weights_dir": base.weights_dir},
                              "places": len(timed), "rounds": cfg.rounds, "variants": {}}
    spec_eval = EvalSpec(Path(cfg.world), "r2r", cfg.split, 8, cfg.max_steps, max(cfg.agreement_limit, 0),
                         cfg.features)
    for spec in cfg.variants:
        row: dict[str, Any] = {"place": _stats(latency[spec]), "policy": _stats(policy_only[spec]),
                               "perception_median_ms": (statistics.median(latency[spec])
                                                        - statistics.median(policy_only[spec])) * 1000.0,
                               "feature_rel_error_median": float(np.median(errors[spec]))}
        store = RenderedFeatures(world, navigators[spec].extractor.extractor)
        if cfg.agreement_limit >= 0:
            row["agreement"] = action_agreement(policy, policy, spec_eval, progress=progress,
                                                candidate_features=store)
        if cfg.score_sr:
            from minivln_core.agent.rollout import evaluate as rollout_eval
            from minivln_core.eval.evaluate import score

            env = build_env(spec_eval)
            env.features = store
            records = rollout_eval(NavigationAgent(policy, spec_eval.max_steps), env, progress=progress)
            row["sr"] = score(spec_eval, records, out_dir, spec.replace(":", "_").replace("/", "_"))["sr"]
        report["variants"][spec] = row
    report["fastest_meeting_bar"] = fastest_meeting_bar(report["variants"])
    return report


def fastest_meeting_bar(rows: dict[str, dict[str, Any]], bar: float = AGREEMENT_BAR) -> str | None:
    """The variant with the lowest median place latency whose agreement is >= bar (None if none is scored)."""
    return fastest_meeting(latency_and_agreement(rows), bar)


def _decide_at(nav: OnlineNavigator, world: SimWorld, episode, fresh: bool):
    """One decision at the episode's start place: `fresh` forgets every place first (a new place)."""
    if fresh:
        nav.extractor.cache.clear()
        nav.places.clear()
    world.start(episode)
    nav.begin(episode.instruction)
    return nav.decide(world.panorama(), world.position(), world.heading(), world.waypoints())


# -- report ------------------------------------------------------------------------------------
def run_place_bench(cfg: PlaceBenchConfig, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """`bench_places`, written to `out` (JSON) with its chart beside it (.png)."""
    out = Path(out)
    report = bench_places(cfg, out.parent / f"{out.stem}_sr", progress)
    if cfg.remember and cfg.agreement_limit >= 0:
        report["remembered_in"] = [str(p) for p in remember(cfg.checkpoint, report,
                                                            in_checkpoint=cfg.record_in_checkpoint)]
    atomic_write_json(out, report)
    place_chart(report, out.with_suffix(".png"))
    atomic_write_text(out.with_suffix(".md"), place_markdown(report))
    return report


def place_lines(report: dict[str, Any]) -> list[str]:
    """One line per variant: place latency, perception and policy parts, agreement."""
    cpu = report["cpu"]
    flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none"
    lines = [f"new place -> goal, {report['threads']} threads, {cpu['model']} ({flags}); {report['places']} places "
             f"x {report['rounds']} rounds"]
    for spec, row in report["variants"].items():
        line = (f"{spec:>28}: {row['place']['median_ms']:8.0f} ms (perception {row['perception_median_ms']:.0f}, "
                f"policy {row['policy']['median_ms']:.1f}), feature rel. error {row['feature_rel_error_median']:.3f}")
        if "agreement" in row:
            line += f", agreement {100 * row['agreement']['agreement']:.2f}% of {row['agreement']['steps']} steps"
            line += f" ({flips(row['agreement'])})"
        if "sr" in row:
            line += f", SR {row['sr']:.1f}"
        lines.append(line)
    lines.append(f"fastest variant with >= {100 * AGREEMENT_BAR:.0f}% agreement: {report['fastest_meeting_bar']}")
    if report.get("remembered_in"):
        lines.append("kept for the navigator's extractor_variant=auto in " + ", ".join(report["remembered_in"]))
    return lines


def flips(agreement: dict[str, Any]) -> str:
    """How close the flipped decisions were for the reference: "18 flips, ref. margin median 0.021 (all 0.74)"."""
    margins = agreement.get("disagreement_margins")
    if margins is None:                                         # a report written before margins were kept
        return f"{agreement['steps'] - agreement['agreeing_steps']} flips"
    if not margins:
        return "0 flips"
    return (f"{len(margins)} flips, ref. margin median {statistics.median(margins):.3f} "
            f"(all {agreement['reference_margin_median']:.3f})")


def short_name(spec: str) -> str:
    """A variant for a table: a distilled extractor's folder by its run name ("onnx-int8:runs/vit4/student" ->
    "onnx-int8:vit4")."""
    head, colon, folder = spec.partition(":")
    if not colon:
        return spec
    path = Path(folder)
    return f"{head}:{path.parent.name if path.name == 'student' else path.name}"


def place_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table (one row per variant) with the CPU and the chosen variant."""
    cpu = report["cpu"]
    flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "none"
    lines = [f"New place -> goal on {cpu['model']} ({flags}), {report['threads']} threads, torch {report['torch']}; "
             f"{report['places']} places x {report['rounds']} rounds, interleaved; policy `{report['checkpoint']}`, "
             f"split {report['split']}.", "",
             "| variant | place -> goal, median ms | p90 ms | perception ms | policy ms | feature rel. error "
             "| decision agreement | flipped decisions | SR |", "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for spec, row in report["variants"].items():
        agree = row.get("agreement")
        agreement = f"{100 * agree['agreement']:.2f}% ({agree['steps']} steps)" if agree else "-"
        flipped = flips(agree) if agree else "-"
        sr = f"{row['sr']:.1f}" if "sr" in row else "-"
        name = short_name(spec)
        if spec == report.get("fastest_meeting_bar"):
            name = f"**{name}**"
        lines.append(f"| {name} | {row['place']['median_ms']:.0f} | {row['place']['p90_ms']:.0f} | "
                     f"{row['perception_median_ms']:.0f} | {row['policy']['median_ms']:.1f} | "
                     f"{row['feature_rel_error_median']:.3f} | {agreement} | {flipped} | {sr} |")
    best = report.get("fastest_meeting_bar")
    lines += ["", f"Fastest variant with >= {100 * AGREEMENT_BAR:.0f}% decision agreement: "
                  f"{short_name(best) if best else 'none'}."]
    return "\n".join(lines) + "\n"


def place_chart(report: dict[str, Any], path: Path) -> None:
    """Horizontal bars: median place latency per variant split into perception and policy, with the 1 s goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["variants"]
    names = list(rows)
    policy = [rows[n]["policy"]["median_ms"] for n in names]
    perception = [max(rows[n]["place"]["median_ms"] - p, 0.0) for n, p in zip(names, policy)]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.6))
    y = range(len(names))
    ax.barh(list(y), perception, label="perception (36 views)")
    ax.barh(list(y), policy, left=perception, label="policy decision")
    ax.axvline(1000.0, color="k", ls="--", lw=1, label="1 s goal")
    labels = []
    for n in names:
        agree = rows[n].get("agreement")
        labels.append(short_name(n) if agree is None else f"{short_name(n)}\nagreement {100 * agree['agreement']:.2f}%")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="ms from panorama to goal (median)")
    ax.legend(fontsize=8, loc="lower right")
    finish_figure(fig, path, f"New place -> goal on {report['cpu']['model']}, {report['threads']} threads")
