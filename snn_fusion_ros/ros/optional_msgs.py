"""Message packages this node family can read when they are installed (detected, never required)."""

from __future__ import annotations

import importlib
from typing import Any


def optional_type(module: str, name: str) -> Any | None:
    """The message class ``module.name`` if its package is importable, else None."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def require_type(module: str, name: str, parameter: str) -> Any:
    """Like :func:`optional_type`, but a missing package is a start-up error naming the parameter."""
    cls = optional_type(module, name)
    if cls is None:
        package = module.split(".")[0]
        raise ValueError(f"{parameter} asks for {module}/{name}, but the package '{package}' is not installed "
                         f"(apt install ros-$ROS_DISTRO-{package.replace('_', '-')})")
    return cls
