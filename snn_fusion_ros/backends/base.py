"""The backend interface: one trained fusion network, one streaming window per :meth:`Backend.step`.

A backend loads a verified :class:`~snn_fusion_ros.snn.artifact.ModelArtifact`, keeps the network
state between calls (batch 1) and returns class probabilities for each window. Inputs are
``{modality: (steps_per_window, N_m) bool}``; a modality absent from the dict is all-zero input.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.snn.artifact import ModelArtifact


@dataclass(frozen=True)
class Capabilities:
    """What a loaded backend runs on.

    Attributes
    ----------
    hardware_present: True only when a neuromorphic chip (or GPU for torch) really runs the model.
    device: e.g. "torch:cpu", "torch:cuda:0", "akida:software", "akida:AKD1000", "lava:Loihi2SimCfg".
    online_learning: whether the backend supports online STDP on its weights.
    """

    hardware_present: bool
    device: str
    online_learning: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def limit_blas_threads(n: int = 1) -> None:
    """Cap numpy's BLAS thread pools (OpenBLAS, MKL, BLIS) at ``n`` threads, process-wide.

    A backend streams batch 1: its numpy products are matrix-vector products (the NIR executor, the
    Akida host side, Lava's Dense processes) that gain nothing from BLAS threads. When the other cores
    are busy (a robot's other nodes, a training run) OpenBLAS's spinning workers make them far slower:
    one 512 x 864 float64 product took 7.1 ms with OpenBLAS's 2 threads against 0.11 ms with 1, on the
    2-core VM with both cores loaded. Every :class:`Backend` calls this with 1 when it is made; like
    the torch backend's ``torch.set_num_threads``, it is process-wide.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=int(n), user_api="blas")


class BackendNotAvailable(RuntimeError):
    """The backend's package or hardware is absent; the message says which and why."""


class Backend(ABC):
    """Abstract streaming backend. Subclasses set :attr:`name` and implement the abstract methods."""

    name: str = ""

    def __init__(self) -> None:
        limit_blas_threads(1)
        self.artifact: ModelArtifact | None = None
        self.steps = 0
        self.last_step_ms = float("nan")
        self.errors = 0

    # -- the interface ---------------------------------------------------------------------------
    @abstractmethod
    def load(self, artifact: ModelArtifact) -> None:
        """Prepare the network of ``artifact`` and reset its state."""

    @abstractmethod
    def reset(self) -> None:
        """Zero the network state (as at the start of a stream)."""

    def step(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Advance one window; returns class probabilities, float32 (num_classes,), summing to 1.

        Raises ValueError (:class:`InputRejected` "unknown_modality") for an unknown modality key,
        listing the known ones, and :class:`InputRejected` "bad_shape" for a wrongly shaped window.
        """
        art = self._require_loaded()
        checked = check_inputs(inputs, art.config.input_sizes, art.config.steps_per_window)
        t0 = time.perf_counter()
        try:
            probs = self._step(checked)
        except Exception:
            self.errors += 1
            raise
        self.last_step_ms = (time.perf_counter() - t0) * 1e3
        self.steps += 1
        return probs

    @abstractmethod
    def _step(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Backend-specific window step on validated inputs (bool arrays, known modalities)."""

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """Where the loaded model runs (valid before :meth:`load` too)."""

    def health(self) -> dict[str, Any]:
        """Diagnostics: backend name, model version, windows stepped, last step time, errors."""
        caps = self.capabilities()
        return {"backend": self.name, "loaded": self.artifact is not None,
                "model_version": self.artifact.version if self.artifact else "",
                "windows": self.steps, "last_step_ms": self.last_step_ms, "errors": self.errors,
                **caps.as_dict()}

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release runtime resources (processes, devices); default: nothing to release."""

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """``(True, "")`` when the backend can run here, else ``(False, reason)``; never raises."""
        return True, ""

    # -- helpers ---------------------------------------------------------------------------------
    def _require_loaded(self) -> ModelArtifact:
        if self.artifact is None:
            raise RuntimeError(f"backend {self.name!r}: call load(artifact) before step()")
        return self.artifact


def check_inputs(inputs: Mapping[str, np.ndarray], sizes: Mapping[str, int], steps: int) -> dict[str, np.ndarray]:
    """Validate a window dict against the network's modalities; returns bool arrays.

    Unknown keys raise :class:`InputRejected` ("unknown_modality", a ValueError) listing the known
    modalities; arrays not shaped ``(steps, N_m)`` raise "bad_shape".
    """
    out: dict[str, np.ndarray] = {}
    for m, a in inputs.items():
        if m not in sizes:
            raise InputRejected("unknown_modality", f"modality {m!r}; known modalities: {list(sizes)}")
        arr = np.asarray(a)
        if arr.shape != (steps, sizes[m]):
            raise InputRejected("bad_shape", f"{m} window has shape {arr.shape}, expected {(steps, sizes[m])}")
        out[m] = arr if arr.dtype == np.bool_ else arr != 0
    return out
