"""Optional online pair-based STDP on the fusion weights ``w_fuse`` (off by default).

Trace formulation, per step ``t`` (``pre`` = hidden spikes (P,), ``post`` = fusion spikes (F,)):

.. math::

    x[t] = x[t-1] e^{-dt/\\tau_+} + pre[t] \\qquad y[t] = y[t-1] e^{-dt/\\tau_-} + post[t]

    \\Delta W = \\eta \\, (A_+ \\, post[t] \\, x[t]^T - A_- \\, y[t-1] e^{-dt/\\tau_-} \\, pre[t]^T)

    W \\leftarrow \\mathrm{clip}(W + \\Delta W, w_{min}, w_{max})

Potentiation when a fusion neuron fires after a hidden neuron, depression for the opposite order.
:meth:`OnlineSTDP.state_dict` / :meth:`load_state_dict` carry the learned weights and traces so
the node can checkpoint them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from snn_fusion_ros.params import param, validate_config
from snn_fusion_ros.snn.network import FusionNet


@dataclass(frozen=True)
class STDPConfig:
    """Parameters of online STDP (all runtime-changeable)."""

    enabled: bool = field(default=False, metadata=param("learn the fusion weights online with STDP", runtime=True))
    learning_rate: float = field(default=1e-4, metadata=param("eta, scale of every update", "", 0.0, 1.0, runtime=True))
    a_plus: float = field(default=1.0, metadata=param("potentiation amplitude", "", 0.0, 10.0, runtime=True))
    a_minus: float = field(default=1.05, metadata=param("depression amplitude", "", 0.0, 10.0, runtime=True))
    tau_plus_ms: float = field(default=20.0, metadata=param("presynaptic trace time constant", "ms", 0.01, 1e4))
    tau_minus_ms: float = field(default=20.0, metadata=param("postsynaptic trace time constant", "ms", 0.01, 1e4))
    w_min: float = field(default=-2.0, metadata=param("lower weight bound", "", -100.0, 100.0))
    w_max: float = field(default=2.0, metadata=param("upper weight bound", "", -100.0, 100.0))

    def __post_init__(self) -> None:
        validate_config(self)
        if self.w_min >= self.w_max:
            raise ValueError(f"STDPConfig.w_min={self.w_min} must be below w_max={self.w_max}")


def stdp_window_numpy(w: np.ndarray, pre: np.ndarray, post: np.ndarray, x: np.ndarray, y: np.ndarray,
                      decay_plus: float, decay_minus: float, cfg: STDPConfig
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the rule over one window. ``w`` (F, P), ``pre`` (T, P) bool, ``post`` (T, F) bool,
    traces ``x`` (P,), ``y`` (F,); returns new ``(w, x, y)`` (inputs not modified)."""
    w = w.astype(np.float32, copy=True)
    x = x.astype(np.float32, copy=True)
    y = y.astype(np.float32, copy=True)
    eta = cfg.learning_rate
    for t in range(pre.shape[0]):
        p = pre[t].astype(np.float32)
        q = post[t].astype(np.float32)
        x = x * decay_plus + p
        y = y * decay_minus  # decayed to t, without post[t]: simultaneous pairs count as LTP only
        if p.any():
            w -= eta * cfg.a_minus * np.outer(y, p)
        if q.any():
            w += eta * cfg.a_plus * np.outer(q, x)
        y = y + q
    np.clip(w, cfg.w_min, cfg.w_max, out=w)
    return w, x, y


class OnlineSTDP:
    """Pair-based trace STDP applied to ``model.w_fuse`` after each streaming window.

    Usage: ``stdp = OnlineSTDP(model, cfg)``; after every ``model.step(...)`` call ``stdp.update()``.
    Sets ``model.record_spikes = True`` while enabled.
    """

    def __init__(self, model: FusionNet, config: STDPConfig | None = None) -> None:
        self.model = model
        self.config = config or STDPConfig()
        n_pre = model.w_fuse.shape[1]
        n_post = model.w_fuse.shape[0]
        self.x = np.zeros(n_pre, dtype=np.float32)
        self.y = np.zeros(n_post, dtype=np.float32)
        self.updates = 0
        model.record_spikes = self.config.enabled

    def configure(self, config: STDPConfig) -> None:
        self.config = config
        self.model.record_spikes = config.enabled

    def update(self) -> bool:
        """Apply STDP for the window just stepped; returns False when disabled or nothing recorded."""
        if not self.config.enabled or not self.model.last_spikes:
            return False
        dt = self.model.config.step_ms
        dp = math.exp(-dt / self.config.tau_plus_ms)
        dm = math.exp(-dt / self.config.tau_minus_ms)
        w = self.model.w_fuse.detach().numpy()
        w_new, self.x, self.y = stdp_window_numpy(w, self.model.last_spikes["hidden"],
                                                  self.model.last_spikes["fusion"], self.x, self.y, dp, dm,
                                                  self.config)
        with torch.no_grad():
            self.model.w_fuse.copy_(torch.from_numpy(w_new))
        self.model.last_spikes = {}
        self.updates += 1
        return True

    def reset_traces(self) -> None:
        self.x[:] = 0.0
        self.y[:] = 0.0

    def state_dict(self) -> dict[str, Any]:
        """Learned weights and traces as float32 numpy arrays plus the update count."""
        return {"w_fuse": self.model.w_fuse.detach().numpy().copy(), "x": self.x.copy(), "y": self.y.copy(),
                "updates": np.array(self.updates, dtype=np.int64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; shapes must match the model."""
        w = np.asarray(state["w_fuse"], dtype=np.float32)
        if w.shape != tuple(self.model.w_fuse.shape):
            raise ValueError(f"w_fuse shape {w.shape} does not match the model {tuple(self.model.w_fuse.shape)}")
        x = np.asarray(state["x"], dtype=np.float32)
        y = np.asarray(state["y"], dtype=np.float32)
        if x.shape != self.x.shape or y.shape != self.y.shape:
            raise ValueError(f"trace shapes {x.shape}, {y.shape} do not match {self.x.shape}, {self.y.shape}")
        with torch.no_grad():
            self.model.w_fuse.copy_(torch.from_numpy(w))
        self.x, self.y = x.copy(), y.copy()
        self.updates = int(np.asarray(state.get("updates", 0)).reshape(-1)[0])
