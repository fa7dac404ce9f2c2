"""The one backend registry: name -> implementing class, imported lazily.

Importing this module imports no backend package (torch, lava, akida, nir); each backend module
imports its own package inside its functions, so a missing optional package only disables its backend.
"""

from __future__ import annotations

import importlib
from typing import Any

from snn_fusion_ros.backends.base import Backend

#: backend name -> "module:Class"
BACKENDS: dict[str, str] = {
    "torch": "snn_fusion_ros.backends.torch_backend:TorchBackend",
    "lava": "snn_fusion_ros.backends.lava_backend:LavaBackend",
    "akida": "snn_fusion_ros.backends.akida_backend:AkidaBackend",
    "nir": "snn_fusion_ros.backends.nir_backend:NIRBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``; unknown names raise ValueError listing the valid ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends: {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def backend_availability(name: str) -> tuple[bool, str]:
    """``(available, reason)``; reason is empty when available. Unknown names raise ValueError."""
    return backend_class(name).availability()


def create_backend(name: str, **options: Any) -> Backend:
    """Instantiate backend ``name`` with its keyword ``options`` (see each backend's docstring)."""
    return backend_class(name)(**options)
