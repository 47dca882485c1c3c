"""config/navigator.yaml and config/sim_robot.yaml against the parameter specs of minivln_ros/params.py.

Each file's `/**/<node>: ros__parameters:` must set exactly the spec's names (rclpy silently ignores
an unknown one, so a misspelt key would go unnoticed), each value of the spec's type as rclpy
reads the file, within the declared range, and equal to the spec default unless DELIBERATE lists
it. No ROS node is started: the file is typed the way rcl's params-file parser types it. The top
key is `/**/<node>`, which matches the node in any namespace: a bare `<node>:` matches only the
un-namespaced node, so `namespace:=robot1` would silently drop the whole file.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")

from minivln_ros.param_spec import param, specs_of  # noqa: E402
from minivln_ros.params import NAVIGATOR, SIM_ROBOT, NavigatorParams, Spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPECS = {"navigator": NAVIGATOR, "sim_robot": SIM_ROBOT}  # node name = config/<node>.yaml; top key /**/<node>

# (node, parameter) -> why its params file sets something other than the spec default. Empty:
# today both files spell out the defaults (they document them).
DELIBERATE: dict[tuple[str, str], str] = {}


# -- scalars as rcl types them ----------------------------------------------------------------------
# rcl_yaml_param_parser (get_value in parse.c) does not use YAML's tag resolution: a quoted scalar
# is a string; else one of its bool words, then an integer (strtol, base 0), then a double
# (strtod, or YAML's .inf/.nan), else a string. So `y` and `off` are bools, `'5'` is a string and
# `1e3` a double, unlike PyYAML's reading. rclpy then refuses an integer for a float parameter
# (no conversion), which is why config/*.yaml writes floats with a point.
TRUE = {"Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
FALSE = {"N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
INTEGER = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")  # what strtol(s, 0) reads whole
HEX = re.compile(r"\s*[+-]?0[xX]")
SPECIAL_FLOATS = {f"{sign}.{word}" for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")} | {
    ".nan", ".NaN", ".NAN"}


def rcl_scalar(node: yaml.ScalarNode) -> bool | int | float | str:
    """The value rcl reads from one scalar of a params file."""
    text = node.value
    if node.style in ("'", '"'):
        return text
    if text in TRUE or text in FALSE:
        return text in TRUE
    match = INTEGER.fullmatch(text)
    if match:
        digits = match[2]
        base = 16 if digits[:2] in ("0x", "0X") else 8 if digits.startswith("0") else 10
        value = int(digits, base) * (-1 if match[1] == "-" else 1)
        if -2**63 <= value < 2**63:  # else strtol overflows (ERANGE) and rcl tries a double
            return value
    if text in SPECIAL_FLOATS:
        return float(text.replace(".", "", 1))
    if "_" not in text:  # Python's float() takes 1_000, strtod does not
        try:
            value = float.fromhex(text) if HEX.match(text) else float(text)  # strtod reads C99 hex floats too
        except (ValueError, OverflowError):
            return text
        if not _out_of_range(text, value):
            return value
    return text


def _out_of_range(text: str, value: float) -> bool:
    """Whether strtod reports ERANGE (then rcl keeps the text): an overflow, or an underflow below normal."""
    if math.isinf(value):
        return "inf" not in text.lower()
    return abs(value) < sys.float_info.min and not HEX.match(text) and Decimal(text) != 0


# -- the checker ------------------------------------------------------------------------------------
def _mapping(node: yaml.Node, where: str, problems: list[str]) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        problems.append(f"{where}: not a mapping")
        return {}
    keys = [key.value for key, _ in node.value]
    problems += [f"{where}: '{key}' appears {n} times" for key, n in Counter(keys).items() if n > 1]
    return {key.value: value for key, value in node.value}


def params_file_problems(text: str, node: str, specs: dict[str, Spec],
                         deliberate: frozenset[str] = frozenset()) -> list[str]:
    """What in a params file's `/**/<node>: ros__parameters:` disagrees with `specs` (empty: nothing).

    `deliberate` names the parameters allowed to differ from their spec default.
    """
    problems: list[str] = []
    key = f"/**/{node}"  # the node in any namespace
    top = _mapping(yaml.compose(text), "file", problems)
    problems += [f"file: top key '{name}' matches the un-namespaced node only (write '{key}')"
                 for name in top if name == node]
    problems += [f"file: unknown node '{name}'" for name in top if name not in (node, key)]
    sections = _mapping(top[key], key, problems) if key in top else {}
    problems += [f"{key}: unknown section '{name}'" for name in sections if name != "ros__parameters"]
    if "ros__parameters" not in sections:
        return problems + [f"no '{key}: ros__parameters:' section"]
    values = _mapping(sections["ros__parameters"], "ros__parameters", problems)
    problems += [f"unknown parameter '{name}'" for name in values if name not in specs]
    problems += [f"missing parameter '{name}'" for name in specs if name not in values]
    for name, spec in specs.items():
        if name in values:
            problems += _value_problems(name, values[name], spec, name in deliberate)
    return problems


def _value_problems(name: str, node: yaml.Node, spec: Spec, deliberate: bool) -> list[str]:
    kind = type(spec.default)
    if not isinstance(node, yaml.ScalarNode) or (node.style is None and node.value == ""):
        return [f"'{name}': not a single value"]  # rcl: arrays / nested names / "no value"
    value = rcl_scalar(node)
    if type(value) is not kind:
        return [f"'{name}': {node.value!r} reads as {type(value).__name__}, the parameter is {kind.__name__}"]
    if spec.low is not None and not spec.low <= value <= spec.high:  # NaN fails this too, as in rclpy
        return [f"'{name}': {value!r} is outside [{spec.low}, {spec.high}]"]
    if value != spec.default and not deliberate:
        return [f"'{name}': {value!r} differs from the default {spec.default!r} (list it in DELIBERATE)"]
    if value == spec.default and deliberate:
        return [f"'{name}': listed in DELIBERATE but equals the default"]
    return []


# -- the files --------------------------------------------------------------------------------------
@pytest.mark.parametrize("node", sorted(SPECS))
def test_params_file_sets_exactly_the_spec(node) -> None:
    text = (REPO / "config" / f"{node}.yaml").read_text()
    deliberate = frozenset(name for (where, name) in DELIBERATE if where == node)
    assert params_file_problems(text, node, SPECS[node], deliberate) == []


def test_deliberate_exceptions_name_real_parameters() -> None:
    assert all(node in SPECS and name in SPECS[node] and reason for (node, name), reason in DELIBERATE.items())


# -- the checker can fail -----------------------------------------------------------------------------
NAVIGATOR_YAML = (REPO / "config" / "navigator.yaml").read_text()


def _edit(old: str, new: str) -> str:
    assert NAVIGATOR_YAML.count(old) == 1, old
    return NAVIGATOR_YAML.replace(old, new)


@pytest.mark.parametrize("text, problem", [
    (_edit("    max_steps: 15 ", "    max_step: 15\n    max_steps: 15 "), "unknown parameter 'max_step'"),
    (_edit("    max_steps: 15 ", "    max_stepz: 15 "), "unknown parameter 'max_stepz'"),
    (_edit("    max_steps: 15 ", "    # max_steps: 15 "), "missing parameter 'max_steps'"),
    (_edit("    max_steps: 15 ", "    max_steps: 15\n    max_steps: 15 "),
     "ros__parameters: 'max_steps' appears 2 times"),
    (_edit("goal_timeout: 120.0", "goal_timeout: 120"), "'goal_timeout': '120' reads as int"),
    (_edit("max_steps: 15", "max_steps: 15.0"), "'max_steps': '15.0' reads as float"),
    (_edit("max_steps: 15", "max_steps: '15'"), "'max_steps': '15' reads as str"),
    (_edit("int8: false", "int8: 'false'"), "'int8': 'false' reads as str"),
    (_edit("policy_runtime: torch", "policy_runtime: on"), "'policy_runtime': 'on' reads as bool"),
    (_edit("max_steps: 15", "max_steps: 0"), "'max_steps': 0 is outside [1, 1000]"),
    (_edit("place_tolerance: 0.5", "place_tolerance: .nan"), "'place_tolerance': nan is outside"),
    (_edit("max_steps: 15", "max_steps: 16"), "'max_steps': 16 differs from the default 15"),
    (_edit("max_steps: 15", "max_steps: [15]"), "'max_steps': not a single value"),
    (_edit("max_steps: 15 ", "max_steps: "), "'max_steps': not a single value"),
    (_edit("/**/navigator:", "/**/navigatr:"), "no '/**/navigator: ros__parameters:' section"),
    (_edit("/**/navigator:", "navigator:"), "file: top key 'navigator' matches the un-namespaced node only"),
    (NAVIGATOR_YAML + "/**/sim_robot:\n  ros__parameters:\n    world: ''\n", "file: unknown node '/**/sim_robot'"),
])
def test_the_checker_reports_a_bad_params_file(text, problem) -> None:
    problems = params_file_problems(text, "navigator", NAVIGATOR)
    assert any(p.startswith(problem) for p in problems), problems


def test_the_checker_accepts_a_deliberate_difference_only_when_listed() -> None:
    text = _edit("max_steps: 15", "max_steps: 16")
    assert params_file_problems(text, "navigator", NAVIGATOR, frozenset({"max_steps"})) == []
    assert params_file_problems(NAVIGATOR_YAML, "navigator", NAVIGATOR, frozenset({"max_steps"})) == [
        "'max_steps': listed in DELIBERATE but equals the default"]


@pytest.mark.parametrize("text, value", [  # as a node reads them (checked against rcl in ROS 2 Kilted)
    ("120", 120), ("+5", 5), ("-7", -7), ("0x10", 16), ("010", 8), ("08", 8.0), ("1" + "0" * 20, 1e20),
    ("15.0", 15.0), ("1.", 1.0), ("1e3", 1000.0), ("0x1p3", 8.0), ("-.inf", -math.inf), ("inf", math.inf),
    ("y", True), ("Off", False), ("true", True), ("'5'", "5"), ('""', ""), ("r2r", "r2r"), ("/tf", "/tf"),
    ("1e400", "1e400"), ("1e-400", "1e-400"), ("1_000", "1_000"), ("panorama/compressed", "panorama/compressed"),
])
def test_scalars_are_typed_like_rcl(text, value) -> None:
    read = rcl_scalar(yaml.compose(f"k: {text}").value[0][1])
    assert read == value and type(read) is type(value)


# -- the spec itself ----------------------------------------------------------------------------------
def test_the_values_class_and_the_spec_table_are_one() -> None:
    assert list(NAVIGATOR) == [f.name for f in dataclasses.fields(NavigatorParams)]
    assert dataclasses.asdict(NavigatorParams()) == {name: spec.default for name, spec in NAVIGATOR.items()}


@pytest.mark.parametrize("annotation, args, words", [
    (float, (120, "an int default for a float"), "is not a float"),
    (int, (True, "a bool default for an int"), "is not a int"),
    (bytes, (b"", "a byte string"), "parameter types"),
    (bool, (False, "a ranged bool", 0, 1), "range"),
    (int, (0, "a default out of range", 1, 10), "range"),
    (int, (5, "half a range", 1), "both ends"),
])
def test_a_badly_declared_parameter_fails_at_import(annotation, args, words) -> None:
    cls = dataclasses.make_dataclass("Bad", [("x", annotation, param(*args))], frozen=True)
    with pytest.raises(TypeError, match=words):
        specs_of(cls)
