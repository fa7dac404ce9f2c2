"""Neuron models against closed-form LIF responses; strategy validation; lazy, resettable state."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from snn_fusion_ros.snn.cuba_lif import CubaLIF
from snn_fusion_ros.snn.leaky_integrator import CubaLI
from snn_fusion_ros.snn.surrogate import surrogate_spike

pytestmark = pytest.mark.unit


def closed_form_current(x: float, alpha: float, t: int) -> float:
    """I[t] for constant input x from I = 0: x (1 - alpha^(t+1)) / (1 - alpha)."""
    return x * (1.0 - alpha ** (t + 1)) / (1.0 - alpha)


def closed_form_trace(x: float, alpha: float, beta: float, thr: float, steps: int, reset: str):
    """Membrane after reset and spike times of a CUBA LIF under constant input (float64 reference).

    Between spikes V[t] = sum_{k=t0..t} beta^(t-k) I[k] + beta^(t-t0+1) V[t0-1]; with zero reset the
    carried membrane is 0, with subtract reset it is V - thr.
    """
    mem, spikes, v_carry, t0 = [], [], 0.0, 0
    for t in range(steps):
        v = sum(beta ** (t - k) * closed_form_current(x, alpha, k) for k in range(t0, t + 1))
        v += beta ** (t - t0 + 1) * v_carry
        if v > thr:
            spikes.append(t)
            v_carry = 0.0 if reset == "zero" else v - thr
            t0 = t + 1
            mem.append(v_carry)
        else:
            mem.append(v)
    return mem, spikes


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize(("x", "alpha", "beta"), [(0.3, 0.6, 0.8), (0.05, 0.9, 0.95), (1.5, 0.0, 0.5)])
def test_cuba_lif_constant_current_matches_closed_form(x, alpha, beta, reset):
    thr, steps = 1.0, 60
    mem_ref, spk_ref = closed_form_trace(x, alpha, beta, thr, steps, reset)
    lif = CubaLIF(alpha, beta, threshold=thr, reset_mechanism=reset).double()
    inp = torch.full((1, 1), x, dtype=torch.float64)
    mem, spk = [], []
    for t in range(steps):
        s = lif(inp)
        if s.item():
            spk.append(t)
        mem.append(lif.state["mem"].item())
        assert lif.state["syn"].item() == pytest.approx(closed_form_current(x, alpha, t), rel=1e-12)
    assert spk == spk_ref, f"firing times {spk} differ from closed form {spk_ref}"
    assert mem == pytest.approx(mem_ref, rel=1e-9, abs=1e-12)
    assert len(spk) >= 2, "test should exercise repeated firing"


def test_pure_lif_first_spike_time_is_analytic():
    # alpha = 0 -> I = x, V[t] = x (1 - beta^(t+1)) / (1 - beta); first t with V > thr:
    x, beta, thr = 0.3, 0.8, 1.0
    t_first = math.ceil(math.log(1 - thr * (1 - beta) / x) / math.log(beta) - 1)
    lif = CubaLIF(0.0, beta, threshold=thr).double()
    times = [t for t in range(30) if lif(torch.full((1, 1), x, dtype=torch.float64)).item()]
    assert times[0] == t_first
    # zero reset and no current memory: perfectly periodic with period t_first + 1
    assert all(b - a == t_first + 1 for a, b in itertools.pairwise(times))


def test_leaky_integrator_closed_form():
    alpha, beta, x = 0.5, 0.9, 2.0
    li = CubaLI(alpha, beta).double()
    for t in range(20):
        v = li(torch.full((1, 3), x, dtype=torch.float64))
        ref = sum(beta ** (t - k) * closed_form_current(x, alpha, k) for k in range(t + 1))
        assert v[0, 0].item() == pytest.approx(ref, rel=1e-12)


def test_bad_strategies_raise_listing_legal_ones():
    with pytest.raises(ValueError, match="fast_sigmoid"):
        CubaLIF(0.5, 0.5, surrogate="relu")
    with pytest.raises(ValueError, match="subtract"):
        CubaLIF(0.5, 0.5, reset_mechanism="none")
    with pytest.raises(ValueError, match="alpha"):
        CubaLIF(1.5, 0.5)
    with pytest.raises(ValueError, match="threshold"):
        CubaLIF(0.5, 0.5, threshold=0.0)


def test_state_is_lazy_resettable_and_shaped_by_input():
    lif = CubaLIF(0.5, 0.5)
    assert lif.get_state() == {}
    lif(torch.ones(2, 7))
    assert lif.state["mem"].shape == (2, 7)
    lif(torch.ones(3, 7))  # another batch size: fresh zero state
    assert lif.state["mem"].shape == (3, 7)
    snap = lif.get_state()
    lif.reset()
    assert lif.state == {}
    lif.set_state(snap)
    assert torch.equal(lif.state["syn"], snap["syn"])
    with pytest.raises(ValueError, match="state keys"):
        lif.set_state({"mem": snap["mem"]})


@pytest.mark.parametrize("name", ["fast_sigmoid", "atan", "triangle"])
def test_surrogate_forward_is_heaviside_and_gradient_is_positive_near_zero(name):
    f = surrogate_spike(name, 5.0)
    x = torch.tensor([-0.5, -0.01, 0.0, 0.01, 0.5], requires_grad=True)
    y = f(x)
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad is not None and float(x.grad[2]) > 0
    assert float(x.grad[2]) >= float(x.grad[0])


def test_cuba_lif_per_neuron_decays_match_one_layer_per_neuron():
    """A layer with one (alpha, beta) per neuron is the same as separate layers with those scalars."""
    # per-neuron decays are float32 (the network's dtype): the scalar layers get the same rounded values
    pairs = [(float(np.float32(a)), float(np.float32(b))) for a, b in [(0.6, 0.8), (0.9, 0.95), (0.0, 0.5)]]
    layer = CubaLIF([a for a, _ in pairs], [b for _, b in pairs], threshold=1.0).double()
    singles = [CubaLIF(a, b, threshold=1.0).double() for a, b in pairs]
    x = torch.tensor([[0.3, 0.05, 1.5]], dtype=torch.float64)
    fired = 0
    for _ in range(60):
        s = layer(x)
        ref = torch.cat([lif(x[:, i:i + 1]) for i, lif in enumerate(singles)], dim=1)
        assert torch.equal(s, ref)
        torch.testing.assert_close(layer.state["mem"], torch.cat([lif.state["mem"] for lif in singles], dim=1))
        fired += int(s.sum())
    assert fired > 3
    with pytest.raises(ValueError, match="beta must be in"):
        CubaLIF([0.5, 0.5], [0.5, 1.2])
