"""Backends running the fusion SNN: torch (reference), lava (Loihi 2), akida (Akida), nir (SpiNNaker 2).

See ``doc/backends.md``. :func:`create_backend` builds one by name; nothing here imports an
optional package.
"""

from snn_fusion_ros.backends.base import Backend, BackendNotAvailable, Capabilities
from snn_fusion_ros.backends.registry import BACKENDS, backend_availability, backend_class, create_backend

__all__ = ["BACKENDS", "Backend", "BackendNotAvailable", "Capabilities", "backend_availability", "backend_class",
           "create_backend"]
