"""The reference backend: :class:`FusionNet` in PyTorch, CPU (or CUDA when asked and present).

Threads: ``torch.set_num_threads(num_threads)`` is process-wide; the default 1 is deliberate (batch-1
matrix-vector products of this size do not profit from more threads and may suffer from contention,
see doc/backends.md for the measurements). Pass ``num_threads=None`` to leave torch's setting alone.
"""

from __future__ import annotations

import numpy as np

from snn_fusion_ros.backends.base import Backend, Capabilities
from snn_fusion_ros.snn.artifact import ModelArtifact
from snn_fusion_ros.snn.network import FusionNet, softmax_np
from snn_fusion_ros.snn.stdp import OnlineSTDP, STDPConfig

DEVICES = ("cpu", "cuda", "auto")


class TorchBackend(Backend):
    """PyTorch reference backend.

    Options
    -------
    device: "cpu" (default), "cuda" (error when CUDA is absent) or "auto" (CUDA when available).
    num_threads: torch intra-op threads to set (default 1), or None to keep the current value.
    stdp: an :class:`~snn_fusion_ros.snn.stdp.STDPConfig`; when given, :attr:`stdp` (an
        :class:`~snn_fusion_ros.snn.stdp.OnlineSTDP`) updates the fusion weights after every window
        while ``stdp.config.enabled``; its ``state_dict()`` is what a node checkpoints.
    """

    name = "torch"

    def __init__(self, device: str = "cpu", num_threads: int | None = 1, stdp: STDPConfig | None = None) -> None:
        super().__init__()
        import torch

        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; expected one of {list(DEVICES)}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' requested but torch.cuda.is_available() is False")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
            torch.set_num_threads(int(num_threads))
        self.model: FusionNet | None = None
        self.stdp_config = stdp
        self.stdp: OnlineSTDP | None = None

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return False, f"torch not importable: {exc}"
        return True, ""

    def load(self, artifact: ModelArtifact) -> None:
        self.model = artifact.build_model().to(self.device)
        self.artifact = artifact
        if self.stdp_config is not None:
            if self.device != "cpu":
                raise ValueError("online STDP runs on the CPU weights; use device='cpu' with stdp")
            self.stdp = OnlineSTDP(self.model, self.stdp_config)
        self.reset()

    def reset(self) -> None:
        if self.model is not None:
            self.model.reset()

    def _step(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("torch backend: load() an artifact first")
        probs = softmax_np(self.model.step_values(inputs))
        if self.stdp is not None:
            self.stdp.update()
        return probs

    def capabilities(self) -> Capabilities:
        dev = "torch:cuda:0" if self.device == "cuda" else "torch:cpu"
        return Capabilities(hardware_present=self.device == "cuda", device=dev, online_learning=True)
