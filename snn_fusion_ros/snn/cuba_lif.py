"""Current-based leaky integrate-and-fire neuron (CUBA LIF), discrete time.

Equations, per step ``t`` (all tensors (batch, neurons)):

.. math::

    I[t] = \\alpha I[t-1] + x[t]

    V[t] = \\beta V[t-1] + I[t]

    s[t] = H(V[t] - \\vartheta)

    V[t] \\leftarrow V[t] (1 - s[t])  \\quad\\text{(reset "zero")}  \\quad\\text{or}\\quad
    V[t] - \\vartheta s[t] \\quad\\text{(reset "subtract")}

with ``alpha = exp(-dt / tau_syn)``, ``beta = exp(-dt / tau_mem)``. The same order (current, then
membrane with the new current, then threshold, then immediate reset) is used by Lava's LIF process
and by the Euler discretisation of NIR's ``CubaLIF`` with ``r = tau_mem / dt``, ``w_in = tau_syn / dt``.

For a constant input ``x`` from ``I = V = 0`` the sub-threshold trace is closed-form:
``I[t] = x (1 - alpha^(t+1)) / (1 - alpha)`` and
``V[t] = sum_{k=0..t} beta^(t-k) I[k]`` (see the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from snn_fusion_ros.snn.base import CurrentBased, SpikingNeuron


class CubaLIF(SpikingNeuron):
    """CUBA LIF layer; call with the input current ``x`` (batch, neurons), returns spikes (batch, neurons).

    Parameters
    ----------
    alpha, beta: synaptic current and membrane decays per step, in [0, 1]: one value, or one per neuron
        (see :class:`~snn_fusion_ros.snn.base.CurrentBased`).
    threshold, reset_mechanism, surrogate, surrogate_slope: see :class:`SpikingNeuron`.
    """

    state_names = CurrentBased.state_names

    def __init__(self, alpha: float | Sequence[float], beta: float | Sequence[float], threshold: float = 1.0,
                 reset_mechanism: str = "zero",
                 surrogate: str = "fast_sigmoid", surrogate_slope: float = 10.0) -> None:
        super().__init__(threshold, reset_mechanism, surrogate, surrogate_slope)
        self.dynamics = CurrentBased(alpha, beta)  # shares ``state`` with this layer (below)
        self.dynamics.state = self.state

    @property
    def alpha(self) -> float | torch.Tensor:
        """Synaptic decay per step (a float, or a per-neuron tensor on the module's device)."""
        return self.dynamics.alpha

    @property
    def beta(self) -> float | torch.Tensor:
        """Membrane decay per step (a float, or a per-neuron tensor on the module's device)."""
        return self.dynamics.beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.dynamics.state = self.state  # reset() / set_state() replace the dict
        spk, mem = self.fire_and_reset(self.dynamics.integrate(x))
        self.state["mem"] = mem
        return spk
