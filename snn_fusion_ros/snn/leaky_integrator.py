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

from snn_fusion_ros.snn.base import CurrentBased


class CubaLI(CurrentBased):
    """Leaky integrator layer; call with the input current (batch, n), returns the membrane (batch, n).

    Parameters
    ----------
    alpha: synaptic current decay per step, in [0, 1].
    beta: membrane decay per step, in [0, 1].
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.state["mem"] = self.integrate(x)
        return mem
