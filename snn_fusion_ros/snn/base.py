"""Small base class of the neuron models: explicit, resettable, lazily sized state.

Each neuron model lives in its own file (:mod:`cuba_lif`, :mod:`leaky_integrator`) and keeps its
state as plain tensors in ``self.state`` (a dict name -> tensor of shape (batch, neurons)). The state
is created lazily on the first call with the shape of the input (zeros), cleared by :meth:`reset`,
and can be read/written with :meth:`get_state` / :meth:`set_state` (used by streaming inference).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from snn_fusion_ros.snn.config import RESET_MECHANISMS
from snn_fusion_ros.snn.surrogate import surrogate_spike


class NeuronBase(torch.nn.Module):
    """Base of all neuron models.

    Parameters
    ----------
    state_names: names of the state variables, each a tensor (batch, neurons).
    """

    state_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.state: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        """Forget the state; the next call starts from zeros sized like its input."""
        self.state = {}

    def ensure_state(self, like: torch.Tensor) -> None:
        """Create zero state shaped like ``like`` (batch, neurons) if absent or of another shape."""
        for name in self.state_names:
            cur = self.state.get(name)
            if cur is None or cur.shape != like.shape or cur.dtype != like.dtype or cur.device != like.device:
                self.state[name] = torch.zeros_like(like)

    def get_state(self) -> dict[str, torch.Tensor]:
        """Copy of the state tensors (empty before the first call or after :meth:`reset`)."""
        return {k: v.clone() for k, v in self.state.items()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Replace the state; keys must be :attr:`state_names`."""
        if set(state) != set(self.state_names):
            raise ValueError(f"state keys {sorted(state)} do not match {sorted(self.state_names)}")
        self.state = {k: v.clone() for k, v in state.items()}


class CurrentBased(NeuronBase):
    """Current-based (CuBa) dynamics, ``I[t] = alpha I[t-1] + x[t]``, ``V[t] = beta V[t-1] + I[t]``:
    the part the LIF layer and the leaky-integrator readout share.

    Parameters
    ----------
    alpha: synaptic current decay per step, in [0, 1]: one value, or one per neuron (a sequence; then a
        non-persistent buffer that follows the module's device).
    beta: membrane decay per step, in [0, 1], likewise.

    A per-neuron sequence whose values are all equal is stored as that one float.
    """

    state_names = ("syn", "mem")

    def __init__(self, alpha: float | Sequence[float] | torch.Tensor, beta: float | Sequence[float] | torch.Tensor
                 ) -> None:
        super().__init__()
        for name, v in (("alpha", alpha), ("beta", beta)):
            value = _decay(name, v)
            if isinstance(value, torch.Tensor):
                self.register_buffer(name, value, persistent=False)
            else:
                setattr(self, name, value)

    def integrate(self, x: torch.Tensor) -> torch.Tensor:
        """Advance the current by input ``x``; returns the new membrane (not stored: the caller stores it)."""
        self.ensure_state(x)
        syn = self.alpha * self.state["syn"] + x
        self.state["syn"] = syn
        return self.beta * self.state["mem"] + syn


class SpikingNeuron(NeuronBase):
    """Base of spiking neurons: threshold, reset mechanism and surrogate chosen once here.

    Parameters
    ----------
    threshold: firing threshold (dimensionless membrane units); a neuron fires when ``mem > threshold``.
    reset_mechanism: "zero" (``mem <- 0`` after a spike) or "subtract" (``mem <- mem - threshold``).
    surrogate: name of the surrogate gradient (:data:`snn_fusion_ros.snn.config.SURROGATES`).
    surrogate_slope: its slope.
    """

    def __init__(self, threshold: float, reset_mechanism: str = "zero", surrogate: str = "fast_sigmoid",
                 surrogate_slope: float = 10.0) -> None:
        super().__init__()
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"unknown reset_mechanism {reset_mechanism!r}; expected one of {list(RESET_MECHANISMS)}")
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold}")
        self.threshold = float(threshold)
        self.reset_mechanism = reset_mechanism
        self.spike_fn = surrogate_spike(surrogate, surrogate_slope)
        self._reset_zero = reset_mechanism == "zero"

    def fire_and_reset(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(spk, mem_after_reset)`` with ``spk = H(mem - threshold)`` (strict ``>``).

        The reset is not differentiated through (detached), as in snnTorch.
        """
        spk = self.spike_fn(mem - self.threshold)
        s = spk.detach()
        if self._reset_zero:
            mem = mem * (1.0 - s)
        else:
            mem = mem - s * self.threshold
        return spk, mem


def _decay(name: str, value: float | Sequence[float] | torch.Tensor) -> float | torch.Tensor:
    """A decay factor checked to lie in [0, 1]: a float, or a 1-D float32 tensor when the values differ."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; expected a value or one per neuron")
    low, high = float(t.min()), float(t.max())
    if not (0.0 <= low and high <= 1.0) or t.isnan().any():
        raise ValueError(f"{name} must be in [0, 1], got {value if t.numel() == 1 else [low, high]}")
    return low if low == high else t.to(torch.float32)
