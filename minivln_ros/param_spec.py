"""How a node's ROS parameters are written down once, and declared.

A node's parameters are one frozen dataclass whose fields are `param(...)`: the field name is the
parameter name, its annotation the parameter type, and `param` holds the default, description and
inclusive range. `specs_of(cls)` reads that back as the name -> Spec table that `declare` (and the
check of config/*.yaml, test/test_ros_params.py) work from, so nothing is listed twice.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

PARAM_TYPES = (bool, int, float, str)  # the rclpy parameter types the nodes use (no arrays, no bytes)
_SPEC = "minivln_ros.spec"  # the dataclass field metadata key holding a field's Spec

T = TypeVar("T")


class ParamError(ValueError):
    """A parameter value that cannot be used."""


@dataclass(frozen=True)
class Spec:
    """One parameter: default (its type is the parameter type), description, inclusive range."""

    default: Any
    description: str
    low: float | None = None
    high: float | None = None


def param(default: Any, description: str, low: float | None = None, high: float | None = None) -> Any:
    """A parameter field of a params dataclass: `max_steps: int = param(15, "...", 1, 1000)`."""
    return dataclasses.field(default=default, metadata={_SPEC: Spec(default, description, low, high)})


def specs_of(cls: type) -> dict[str, Spec]:
    """The name -> Spec table of a params dataclass, in field order.

    TypeError (at import of the module declaring `cls`) for a field that is not a `param`, whose
    default is not exactly of the annotated type (rclpy takes the parameter type from the default:
    `120` would declare an integer where a float is meant), or whose range does not fit.
    """
    hints = typing.get_type_hints(cls)
    table: dict[str, Spec] = {}
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_SPEC)
        kind = hints[f.name]
        where = f"{cls.__name__}.{f.name}"
        if spec is None:
            raise TypeError(f"{where} is not declared with param(...)")
        if kind not in PARAM_TYPES or type(spec.default) is not kind:
            raise TypeError(f"{where}: default {spec.default!r} is not a {getattr(kind, '__name__', kind)} "
                            f"(parameter types: {', '.join(t.__name__ for t in PARAM_TYPES)})")
        if (spec.low is None) != (spec.high is None):
            raise TypeError(f"{where}: a range needs both ends")
        if spec.low is not None and (kind not in (int, float) or not spec.low <= spec.default <= spec.high):
            raise TypeError(f"{where}: range [{spec.low}, {spec.high}] does not suit default {spec.default!r}")
        table[f.name] = spec
    return table


def _descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, description=spec.description)
    if spec.low is not None and isinstance(spec.default, bool):
        raise TypeError(f"bool parameter {name} cannot have a range")
    if spec.low is not None and isinstance(spec.default, int):
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    elif spec.low is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                        step=0.0)]
    return desc


def declare(node: Node, specs: dict[str, Spec], cls: type[T]) -> T:
    """Declare `specs` (`specs_of(cls)`) on `node` and return their values as `cls`; ParamError for a bad value.

    Ranges go into the descriptors, so rclpy enforces them for later `set_parameters` calls too.
    """
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        try:
            value = node.declare_parameter(name, spec.default, _descriptor(name, spec)).value
        except Exception as exc:  # rclpy raises InvalidParameterValueException / type errors here
            raise ParamError(f"parameter '{name}': {exc}") from None
        if type(value) is not type(spec.default):
            raise ParamError(f"parameter '{name}' must be a {type(spec.default).__name__}, got {value!r}")
        values[name] = value
    missing = {f.name for f in dataclasses.fields(cls)} - set(values)
    assert not missing, f"{cls.__name__} fields without a spec: {missing}"
    return cls(**values)
