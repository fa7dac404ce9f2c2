"""Parameter metadata shared by core config dataclasses and ROS parameter descriptors.

Core configs are frozen dataclasses whose fields carry ``metadata=param(...)``; the ROS layer turns
each field into a declared parameter with a descriptor (type, range, units, description), and
:func:`config_from_mapping` builds a validated config from a plain mapping (YAML, CLI).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def param(description: str, units: str = "", low: float | None = None, high: float | None = None,
          choices: tuple[str, ...] | None = None, runtime: bool = False) -> dict[str, Any]:
    """Metadata for one config field.

    Parameters
    ----------
    description: what the parameter does (shown in the ROS descriptor and README).
    units: physical units, e.g. "ms", "Hz", "m/s^2"; empty for dimensionless.
    low, high: inclusive numeric range, checked by :func:`check_field`.
    choices: legal string values.
    runtime: True when the value may change while a node runs (set-parameters callback).
    """
    return {"description": description, "units": units, "low": low, "high": high,
            "choices": choices, "runtime": runtime}


def check_field(owner: str, name: str, value: Any, meta: Mapping[str, Any]) -> None:
    """Raise ValueError naming the field, its value and the legal range or choices."""
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"{owner}.{name}={value!r} is not one of {list(choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:  # NaN
            raise ValueError(f"{owner}.{name} is NaN")
        if low is not None and value < low:
            raise ValueError(f"{owner}.{name}={value!r} is below the minimum {low}")
        if high is not None and value > high:
            raise ValueError(f"{owner}.{name}={value!r} is above the maximum {high}")


def validate_config(cfg: Any) -> None:
    """Check every field of a config dataclass against its ``param`` metadata."""
    owner = type(cfg).__name__
    for f in dataclasses.fields(cfg):
        if f.metadata:
            check_field(owner, f.name, getattr(cfg, f.name), f.metadata)


def config_from_mapping(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build ``cls`` from a mapping, refusing unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} parameter(s) {unknown}; known: {sorted(known)}")
    return cls(**dict(values))


def without_later_fields(values: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``values`` (a config as a dict) without each field of ``later`` that has the value named there.

    ``later`` maps fields added to a config after keys were hashed from it to the value that means "as
    before"; hashing the result keeps those earlier keys valid.
    """
    return {k: v for k, v in values.items() if not (k in later and v == later[k])}
