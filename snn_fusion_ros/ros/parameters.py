"""ROS parameters from core config dataclasses: declared with descriptors, validated atomically.

Every field of a config dataclass (with :func:`snn_fusion_ros.params.param` metadata) becomes a
parameter ``<prefix>.<field>`` with type, range, units and description. A change is applied only
if the whole new config validates (never half-applied); fields not marked ``runtime`` are
read-only while the node runs.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _ros_type(tp: Any, default: Any):
    from rcl_interfaces.msg import ParameterType

    origin = typing.get_origin(tp)
    if tp is bool or isinstance(default, bool):
        return ParameterType.PARAMETER_BOOL
    if tp is int or (isinstance(default, int) and not isinstance(default, bool)):
        return ParameterType.PARAMETER_INTEGER
    if tp is float or isinstance(default, float):
        return ParameterType.PARAMETER_DOUBLE
    if tp is str or isinstance(default, str):
        return ParameterType.PARAMETER_STRING
    if origin in (tuple, list) or isinstance(default, (tuple, list)):
        args = typing.get_args(tp)
        inner = args[0] if args else (type(default[0]) if default else float)
        if inner is int:
            return ParameterType.PARAMETER_INTEGER_ARRAY
        if inner is str:
            return ParameterType.PARAMETER_STRING_ARRAY
        return ParameterType.PARAMETER_DOUBLE_ARRAY
    raise TypeError(f"config field type {tp!r} has no ROS parameter type")


def descriptor_for(field: dataclasses.Field, default: Any, hints: dict[str, Any]):
    """ParameterDescriptor (type, range, units in the description, read_only) for one field."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    meta = field.metadata or {}
    ptype = _ros_type(hints.get(field.name, type(default)), default)
    units = meta.get("units", "")
    text = meta.get("description", field.name) + (f" [{units}]" if units else "")
    if meta.get("choices"):
        text += f" (one of: {', '.join(meta['choices'])})"
    d = ParameterDescriptor(name=field.name, type=ptype, description=text,
                            read_only=not meta.get("runtime", False), dynamic_typing=False)
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        if ptype == ParameterType.PARAMETER_INTEGER:
            d.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        elif ptype == ParameterType.PARAMETER_DOUBLE:
            d.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    if units:
        d.additional_constraints = f"units: {units}"
    return d


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    return value


def declare_config(node, prefix: str, cls: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Declare one parameter per field of ``cls`` under ``prefix`` and build the validated config.

    Raises ValueError naming the parameter when the values from YAML / command line are invalid.
    """
    hints = typing.get_type_hints(cls)
    defaults = cls()  # type: ignore[call-arg]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        default = getattr(defaults, f.name)
        if overrides and f.name in overrides:
            default = overrides[f.name]
        name = f"{prefix}.{f.name}" if prefix else f.name
        ros_default = list(default) if isinstance(default, tuple) else default
        p = node.declare_parameter(name, ros_default, descriptor_for(f, default, hints))
        values[f.name] = _coerce(p.value, getattr(defaults, f.name))
    return cls(**values)


class ConfigBinding:
    """Keeps a config in sync with the node's parameters, refusing invalid or read-only changes.

    ``on_change(new_config)`` is called after a change is accepted.
    """

    def __init__(self, node, prefix: str, config: Any, on_change: Callable[[Any], None] | None = None) -> None:
        self.prefix = prefix
        self.config = config
        self._on_change = on_change
        self._runtime = {f.name for f in dataclasses.fields(config) if (f.metadata or {}).get("runtime")}
        node.add_on_set_parameters_callback(self._callback)

    def _callback(self, params):
        from rcl_interfaces.msg import SetParametersResult

        mine = {}
        for p in params:
            if not (p.name.startswith(self.prefix + ".") if self.prefix else "." not in p.name):
                continue
            field = p.name[len(self.prefix) + 1:] if self.prefix else p.name
            if field not in self._runtime:
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} cannot change while the node runs (restart it)")
            mine[field] = _coerce(p.value, getattr(self.config, field))
        if not mine:
            return SetParametersResult(successful=True)
        try:
            new = dataclasses.replace(self.config, **mine)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.config = new
        if self._on_change:
            self._on_change(new)
        return SetParametersResult(successful=True)
