"""Training recipes: YAML lists of `minivln` commands with parameters (`minivln run-recipe`).

A recipe (config/recipes/*.yaml) holds what used to be a shell script of `minivln ... --set ...`
lines. Its `params` are the script's variables (output folder, steps, seeds, ...), each overridable
with `--set name=value`; its `steps` are the commands, with `{name}` placeholders filled in:

    params: {out: runs/recipe, houses: 60}
    steps:
      - run: synth --out {out}/world --houses {houses}
        skip_if_exists: "{out}/world/world.json"      # quote a value that starts with '{'
      - foreach: {split: [val_seen, val_unseen]}
        run: evaluate --checkpoint {out}/last --world {out}/world --split {split} --out {out}/final
        discard_stdout: true

A step does one of
  run:    a `minivln` command line (or a list of pieces joined with spaces, so a YAML anchor can
          share a block of flags). It is split like a shell line, then `{name}` / `{name[i]}` are
          filled in each argument; an argument naming a list parameter without an index becomes
          one argument per item, like bash's "${list[@]}".
  steps:  sub-steps, run in order (with `foreach`: a loop body of several commands)
  table:  a named summary table of the run folder `{out}` (TABLES), written there and printed
and may carry
  foreach:        {var: [values] | "list_param" | "list_param[1:]"}: once per value; several
                  variables are nested loops, the first one outermost
  skip_if_exists: PATH: skipped when PATH exists (a stage that is done)
  skip_if_newer:  {path: A, than: B}: skipped when A exists and is newer than B or B is missing
                  (bash's `[ A -nt B ]`: scores written since the checkpoint they score)
  skip_if_fewer:  {list_param: N}: skipped when the list has fewer than N items
  discard_stdout: true: the command's printout is dropped (the scripts' `> /dev/null`)

The whole recipe is resolved before anything runs, so a typo fails at once, naming the file and
step. This module never imports minivln_core.commands or cli (they import it): the caller passes the
function that runs one command line (`minivln` without its name, returning the exit code).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import yaml

from minivln_core.config import build_config, parse_override
from minivln_core.errors import ConfigError
from minivln_core.io_utils import atomic_write_text, read_json
from minivln_core.paths import share_file

log = logging.getLogger("minivln.recipe")

RECIPE_DIR = "config/recipes"  # in the checkout, or share/minivln_ros/config/recipes when installed


# -- the schema ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Newer:
    """`skip_if_newer`: skip while `path` is newer than `than` (or `than` is missing)."""

    path: str = ""
    than: str = ""


@dataclass(frozen=True)
class Step:
    """One entry of a recipe's `steps` (see the module docstring)."""

    name: str = ""                                   # shown in logs and errors (default: the command)
    run: str | list[str] = ""                        # minivln command line, without `minivln`
    steps: list[Step] = field(default_factory=list)  # or sub-steps
    table: str = ""                                  # or a summary table (a key of TABLES)
    foreach: dict[str, list[Any] | str] = field(default_factory=dict)
    skip_if_exists: str = ""
    skip_if_newer: Newer | None = None
    skip_if_fewer: dict[str, int] = field(default_factory=dict)
    discard_stdout: bool = False


@dataclass(frozen=True)
class Recipe:
    """A recipe file: parameters (strings, numbers, true/false or lists of them) and steps."""

    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)


@dataclass(frozen=True)
class LoadedRecipe:
    """A recipe with its parameters' final values (`--set`/`--out` applied)."""

    path: Path
    recipe: Recipe
    params: dict[str, Any]


@dataclass(frozen=True)
class Action:
    """One resolved step: a command line (or a table) and the conditions that skip it."""

    where: str                                   # "<file>: steps[3] 'evaluate' (split=val_seen)"
    argv: tuple[str, ...] = ()
    table: str = ""
    folder: str = ""                             # the table's run folder
    skip_if_exists: str = ""
    skip_if_newer: tuple[str, str] | None = None
    discard_stdout: bool = False

    def command(self) -> str:
        """The command line, shell-quoted."""
        return shlex.join(["minivln", *self.argv])

    def shell(self) -> str:
        """The step as one shell line (its skip conditions as `[ ... ] ||` tests), for --dry-run."""
        if self.table:
            return f"# table {self.table} -> {shlex.quote(str(Path(self.folder) / TABLES[self.table][0]))}"
        guards = []
        if self.skip_if_exists:
            guards.append(f"[ -e {shlex.quote(self.skip_if_exists)} ]")
        if self.skip_if_newer:
            guards.append(f"[ {shlex.quote(self.skip_if_newer[0])} -nt {shlex.quote(self.skip_if_newer[1])} ]")
        line = self.command() + (" > /dev/null" if self.discard_stdout else "")
        return " || ".join([*guards, line])

    def skip_reason(self) -> str:
        """Why the step is skipped now ('' = it runs); checked just before it would run."""
        if self.skip_if_exists and Path(self.skip_if_exists).exists():
            return f"{self.skip_if_exists} exists"
        if self.skip_if_newer and _newer(*self.skip_if_newer):
            return f"{self.skip_if_newer[0]} is newer than {self.skip_if_newer[1]}"
        return ""


class StepFailed(RuntimeError):
    """A step's command returned a non-zero exit code; the recipe stopped there."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# -- summary tables (the scripts' closing inline Python) --------------------------------------------
def _metrics_row(folder: Path, run: str, split: str) -> dict[str, Any]:
    return read_json(folder / run / "final" / f"last_{split}_metrics.json")


def teacher_table(folder: Path) -> str:
    """SR/SPL/nDTW of the imitation and DAgger stages of the teacher recipe, per validation split
    (a stage left out of `score_stages` has no `final/` folder and no row)."""
    stages = [s for s in ("imitation", "dagger") if (folder / s / "final").is_dir()]
    if not stages:
        raise FileNotFoundError(f"{folder}: no stage has been scored (no imitation/final or dagger/final)")
    scores = {(stage, split): _metrics_row(folder, stage, split) for stage in stages for split in ("val_seen", "val_unseen")}
    grounding = all("rgs" in m for m in scores.values())          # REVERIE: remote grounding too
    rows = ["| stage | split | SR | SPL | nDTW |" + (" RGS | RGSPL |" if grounding else "") + " episodes |",
            "|---|---|---:|---:|---:|" + ("---:|---:|" if grounding else "") + "---:|"]
    for (stage, split), m in scores.items():
        extra = f" {m['rgs']:.1f} | {m['rgspl']:.1f} |" if grounding else ""
        rows.append(f"| {stage} | {split} | {m['sr']:.1f} | {m['spl']:.1f} | {m['ndtw']:.1f} |{extra} {m['num_episodes']} |")
    return "\n".join(rows)


def modality_table(folder: Path) -> str:
    """SR/SPL/nDTW of the full, blind and no-language policies of the modality ablation."""
    names = {"none": "full", "blind": "blind", "no_language": "no language"}
    rows = ["| policy | split | SR | SPL | nDTW |", "|---|---|---:|---:|---:|"]
    for ablation, name in names.items():
        for split in ("val_seen", "val_unseen"):
            m = _metrics_row(folder, ablation, split)
            rows.append(f"| {name} | {split} | {m['sr']:.1f} | {m['spl']:.1f} | {m['ndtw']:.1f} |")
    return "\n".join(rows)


# name -> (file written in the run folder, the table's Markdown)
TABLES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "teacher": ("recipe.md", teacher_table),
    "modality": ("modality_ablation.md", modality_table),
}


# -- loading ---------------------------------------------------------------------------------------
def recipe_path(name: str | Path) -> Path:
    """A recipe file: an existing path, else a shipped recipe's name (`teacher` or `teacher.yaml`)."""
    path = Path(name)
    if path.is_file() or len(path.parts) != 1:
        return path  # a missing path is reported by read_yaml, naming it
    try:
        return share_file(RECIPE_DIR, path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    except FileNotFoundError as exc:
        raise ConfigError(f"no recipe file or shipped recipe '{name}': {exc}") from None


def load_recipe(name: str | Path, overrides: Iterable[str] = (), out: str | None = None) -> LoadedRecipe:
    """Read and check a recipe, apply `--set name=value` overrides then `--out`, and resolve every
    step once (so an unknown placeholder fails here, before anything runs)."""
    path = recipe_path(name)
    recipe = build_config(Recipe, yaml_path=path)
    params = dict(recipe.params)
    for key, value in params.items():
        if not _IDENT.match(key):
            raise ConfigError(f"{path}: parameter name '{key}' is not an identifier")
        if not (_scalar(value) or (isinstance(value, list) and all(_scalar(v) for v in value))):
            raise ConfigError(f"{path}: parameter '{key}': expected a string, number, true/false or a "
                              f"list of them, got {value!r}")
    for text in overrides:
        key, value = parse_override(text)
        if key not in params:
            raise ConfigError(f"{path}: unknown recipe parameter '{key}' in --set {text} "
                              f"(parameters: {', '.join(params) or 'none'})")
        params[key] = _coerce_param(params[key], value, text.split("=", 1)[1], f"{path}: --set {text}")
    if out is not None:
        if "out" not in params:
            raise ConfigError(f"{path}: --out given but the recipe has no 'out' parameter")
        params["out"] = out
    loaded = LoadedRecipe(path, recipe, params)
    plan(loaded)
    return loaded


_IDENT = re.compile(r"^[A-Za-z_]\w*$")


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _coerce_param(default: Any, value: Any, raw: str, where: str) -> Any:
    """An override's value checked against the parameter's default: same type; a list also takes
    a space-separated string (`--set seeds="0 1 2"`, as the scripts took them)."""
    if not isinstance(default, list):
        return _coerce_scalar(default, value, raw, where)
    if isinstance(value, str):
        try:
            items, raws = [yaml.safe_load(t) for t in value.split()], value.split()
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: an item is not valid YAML ({exc})") from None
    elif isinstance(value, list):
        items, raws = value, [None] * len(value)
    else:
        items, raws = [value], [raw]
    if not default:
        if not all(_scalar(v) for v in items):
            raise ConfigError(f"{where}: expected a list of strings, numbers or true/false")
        return items
    return [_coerce_scalar(default[0], v, r, f"{where} (item {i})") for i, (v, r) in enumerate(zip(items, raws))]


def _coerce_scalar(default: Any, value: Any, raw: str | None, where: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(default, float):
        with contextlib.suppress(TypeError, ValueError):
            if not isinstance(value, bool):
                return float(value)  # YAML 1.1 reads 5e-4 as a string
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not _scalar(value):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return raw if raw is not None else str(value)  # the text as typed: '010' stays '010'


# -- placeholders ----------------------------------------------------------------------------------
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_PLACEHOLDER = re.compile(r"^([A-Za-z_]\w*)(?:\[(-?\d+)\])?$")
_LIST_REF = re.compile(r"^([A-Za-z_]\w*)(?:\[(-?\d*):(-?\d*)\])?$")


def _placeholders(text: str, where: str, scope: dict[str, Any]) -> list[tuple[str, int | None]]:
    """The (name, index) of every `{name}` / `{name[i]}` in `text`, each a name in `scope`;
    `{{` and `}}` are literal braces."""
    found = []
    for m in _FIELD.finditer(text):
        if m.group(1) is None:
            continue
        p = _PLACEHOLDER.match(m.group(1).strip())
        if not p:
            raise ConfigError(f"{where}: bad placeholder '{m.group(0)}' in {text!r} (use {{name}} or {{name[0]}})")
        if p.group(1) not in scope:
            raise ConfigError(f"{where}: unknown placeholder '{m.group(0)}' (known: {', '.join(sorted(scope))})")
        found.append((p.group(1), None if p.group(2) is None else int(p.group(2))))
    return found


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as YAML and `--set` spell it
    return str(value)


def _fill(text: str, scope: dict[str, Any], where: str, expand: bool = False) -> list[str]:
    """`text` with its placeholders filled in: one string, or with `expand` one string per item of
    the list parameter it names without an index."""
    lists = set()
    for name, index in _placeholders(text, where, scope):
        value = scope[name]
        if index is None and isinstance(value, list):
            lists.add(name)
        elif index is not None:
            if not isinstance(value, list):
                raise ConfigError(f"{where}: '{{{name}[{index}]}}' indexes '{name}', which is not a list")
            if not -len(value) <= index < len(value):
                raise ConfigError(f"{where}: '{{{name}[{index}]}}' is out of range ({name} = {value})")
    if len(lists) > 1 or (lists and not expand):
        raise ConfigError(f"{where}: {text!r} names the list parameter(s) {', '.join(sorted(lists))} without "
                          f"an index{' (only one list may expand an argument)' if expand else ''}")

    def render(local: dict[str, Any]) -> str:
        def one(m: re.Match) -> str:
            if m.group(1) is None:
                return m.group(0)[0]
            name, index = _placeholders(m.group(0), where, local)[0]
            return _text(local[name] if index is None else local[name][index])
        return _FIELD.sub(one, text)

    if not lists:
        return [render(scope)]
    (name,) = lists
    return [render({**scope, name: item}) for item in scope[name]]


# -- resolving -------------------------------------------------------------------------------------
def plan(loaded: LoadedRecipe) -> list[Action]:
    """Every step of the recipe resolved into Actions, in running order (file conditions are
    checked later, when each step is reached)."""
    if not loaded.recipe.steps:
        raise ConfigError(f"{loaded.path}: the recipe has no steps")
    return _plan(loaded.recipe.steps, dict(loaded.params), loaded, "steps")


def _plan(steps: list[Step], scope: dict[str, Any], loaded: LoadedRecipe, prefix: str,
          loop_label: str = "") -> list[Action]:
    actions: list[Action] = []
    for i, step in enumerate(steps):
        key = f"{prefix}[{i}]"
        kinds = [k for k, v in (("run", step.run), ("steps", step.steps), ("table", step.table)) if v]
        label = step.name or _default_name(step)
        where = f"{loaded.path}: {key} '{label}'"
        if len(kinds) != 1:
            raise ConfigError(f"{where}: a step needs exactly one of run, steps, table (got "
                              f"{', '.join(kinds) or 'none'})")
        if step.table and step.table not in TABLES:
            raise ConfigError(f"{where}: unknown table '{step.table}' (known: {', '.join(TABLES)})")
        if step.table and "out" not in loaded.params:
            raise ConfigError(f"{where}: a table step needs an 'out' parameter (the run folder)")
        if step.steps and (step.skip_if_exists or step.skip_if_newer or step.discard_stdout):
            raise ConfigError(f"{where}: skip_if_exists, skip_if_newer and discard_stdout apply to "
                              f"a run step, not to a group of steps")
        loops = {var: _loop_values(var, values, scope, where) for var, values in step.foreach.items()}
        # Names are checked before anything is skipped, so a typo in a step that does not run
        # today (fewer seeds, an empty loop) still fails now.
        _check_names(step, {**scope, **dict.fromkeys(loops)}, loaded, key)
        for name in step.skip_if_fewer:
            if not isinstance(scope.get(name), list):
                raise ConfigError(f"{where}: skip_if_fewer names '{name}', which is not a list parameter")
        if any(len(scope[name]) < n for name, n in step.skip_if_fewer.items()):
            continue
        for values in itertools.product(*loops.values()):
            local = {**scope, **dict(zip(loops, values))}
            at = loop_label + "".join(f", {var}={_text(v)}" for var, v in zip(loops, values))
            here = where + (f" ({at.lstrip(', ')})" if at else "")
            if step.steps:
                actions += _plan(step.steps, local, loaded, f"{key}.steps", at)
            elif step.table:
                actions.append(Action(here, table=step.table, folder=_fill("{out}", local, here)[0]))
            else:
                actions.append(_run_action(step, local, here))
    return actions


def _default_name(step: Step) -> str:
    if step.table:
        return f"table {step.table}"
    if step.run:
        return (" ".join(_pieces(step)).split() or [""])[0]
    return "steps"


def _loop_values(var: str, values: list[Any] | str, scope: dict[str, Any], where: str) -> list[Any]:
    """A `foreach` variable's values: a literal list, or a list parameter (optionally sliced)."""
    if not _IDENT.match(var):
        raise ConfigError(f"{where}: foreach variable '{var}' is not an identifier")
    if var in scope:
        raise ConfigError(f"{where}: foreach variable '{var}' hides the parameter of that name")
    if isinstance(values, list):
        return values
    ref = _LIST_REF.match(values.strip())
    if not ref or ref.group(1) not in scope or not isinstance(scope[ref.group(1)], list):
        raise ConfigError(f"{where}: foreach {var}: {values!r} is not a list parameter "
                          f"(list parameters: {', '.join(k for k, v in scope.items() if isinstance(v, list))})")
    items = scope[ref.group(1)]
    if values.strip().endswith("]"):
        start, stop = (int(x) if x else None for x in ref.group(2, 3))
        items = items[start:stop]
    return list(items)


def _pieces(step: Step) -> list[str]:
    return [step.run] if isinstance(step.run, str) else list(step.run)


def _check_names(step: Step, scope: dict[str, Any], loaded: LoadedRecipe, key: str) -> None:
    """Every placeholder of `step` and its sub-steps names a parameter or loop variable in scope."""
    where = f"{loaded.path}: {key} '{step.name or _default_name(step)}'"
    texts = _pieces(step) + [step.skip_if_exists]
    if step.skip_if_newer:
        texts += [step.skip_if_newer.path, step.skip_if_newer.than]
    for text in texts:
        _placeholders(text, where, scope)
    for i, sub in enumerate(step.steps):
        _check_names(sub, {**scope, **dict.fromkeys(sub.foreach)}, loaded, f"{key}.steps[{i}]")


def _run_action(step: Step, scope: dict[str, Any], where: str) -> Action:
    try:
        words = shlex.split(" ".join(_pieces(step)))
    except ValueError as exc:
        raise ConfigError(f"{where}: run is not a valid command line ({exc})") from None
    if not words:
        raise ConfigError(f"{where}: run is empty")
    argv = tuple(arg for word in words for arg in _fill(word, scope, where, expand=True))
    newer = None
    if step.skip_if_newer:
        if not (step.skip_if_newer.path and step.skip_if_newer.than):
            raise ConfigError(f"{where}: skip_if_newer needs both 'path' and 'than'")
        newer = (_fill(step.skip_if_newer.path, scope, where)[0], _fill(step.skip_if_newer.than, scope, where)[0])
    exists = _fill(step.skip_if_exists, scope, where)[0] if step.skip_if_exists else ""
    return Action(where, argv=argv, skip_if_exists=exists, skip_if_newer=newer,
                  discard_stdout=step.discard_stdout)


def _newer(path: str, than: str) -> bool:
    """bash's `[ path -nt than ]`: path exists and is newer than `than`, or `than` does not exist."""
    try:
        mtime = Path(path).stat().st_mtime_ns
    except FileNotFoundError:
        return False
    try:
        return mtime > Path(than).stat().st_mtime_ns
    except FileNotFoundError:
        return True


# -- running ---------------------------------------------------------------------------------------
def run_recipe(loaded: LoadedRecipe, run_command: Callable[[list[str]], int], dry_run: bool = False) -> int:
    """Run the recipe's steps in order through `run_command(argv) -> exit code` (`minivln` without
    its name); skipped steps are logged. `dry_run` prints the shell lines instead. Raises
    StepFailed at the first non-zero exit code."""
    actions = plan(loaded)
    if dry_run:
        for action in actions:
            print(action.shell())
        return 0
    # A command may set torch's thread count process-wide (finetune --set threads=1); each step
    # starts from the count the recipe started with, as it would in a process of its own.
    threads = torch.get_num_threads()
    for n, action in enumerate(actions, 1):
        reason = action.skip_reason()
        if reason:
            log.info("step %d/%d skipped (%s): %s", n, len(actions), reason, action.command())
            continue
        log.info("step %d/%d: %s", n, len(actions), action.shell())
        if action.table:
            _write_table(action)
            continue
        try:
            code = _call(run_command, action)
        except Exception:
            log.error("%s raised an exception", action.where)
            raise
        finally:
            torch.set_num_threads(threads)
        if code:
            raise StepFailed(f"{action.where} failed with exit code {code}: {action.command()}", code)
    return 0


def _call(run_command: Callable[[list[str]], int], action: Action) -> int:
    with contextlib.ExitStack() as stack:
        if action.discard_stdout:
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        try:
            return int(run_command(list(action.argv)) or 0)
        except SystemExit as exc:  # argparse refuses a step's arguments with SystemExit(2)
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)


def _write_table(action: Action) -> None:
    file, render = TABLES[action.table]
    folder = Path(action.folder)
    table = render(folder)
    atomic_write_text(folder / file, table + "\n")
    print(table)
