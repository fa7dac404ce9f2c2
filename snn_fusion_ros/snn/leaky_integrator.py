"""Current-based leaky integrator (no spikes): the readout neuron.

Equations, per step ``t`` (tensors (batch, classes)):

.. math::

    I[t] = \\alpha I[t-1] + x[t]

    V[t] = \\beta_r V[t-1] + I[t]

The class scores of a window are ``softmax(V[t_end])`` with ``t_end`` the last step of the window;
the decision is ``argmax V[t_end]``. In NIR it is exported as a ``CubaLIF`` whose threshold is
``+inf`` (never fires), in Lava as a LIF whose threshold is never reached.
"""

from __future__ import annotations

import torch

from snn_fusion_ros.snn.base import NeuronBase


class CubaLI(NeuronBase):
    """Leaky integrator layer; call with the input current (batch, n), returns the membrane (batch, n).

    Parameters
    ----------
    alpha: synaptic current decay per step, in [0, 1].
    beta: membrane decay per step, in [0, 1].
    """

    state_names = ("syn", "mem")

    def __init__(self, alpha: float, beta: float) -> None:
        super().__init__()
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.ensure_state(x)
        syn = self.alpha * self.state["syn"] + x
        mem = self.beta * self.state["mem"] + syn
        self.state["syn"] = syn
        self.state["mem"] = mem
        return mem
