"""Surrogate gradients of the Heaviside spike function.

Forward pass: ``spike = H(x) = 1[x > 0]`` with ``x = mem - threshold``. Backward pass: the derivative
of a smooth stand-in, scaled by ``slope`` (k):

* ``fast_sigmoid``: ``dS/dx = 1 / (1 + k |x|)^2`` (Zenke & Ganguli 2018)
* ``atan``: ``dS/dx = (k/2) / (1 + (pi k x / 2)^2)``
* ``triangle``: ``dS/dx = max(0, 1 - k |x|) * k``
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from snn_fusion_ros.snn.config import SURROGATES


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float, kind: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.slope = slope
        ctx.kind = kind
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        k = ctx.slope
        if ctx.kind == 0:
            d = 1.0 / (1.0 + k * x.abs()) ** 2
        elif ctx.kind == 1:
            d = (k / 2.0) / (1.0 + (math.pi * k * x / 2.0) ** 2)
        else:
            d = torch.clamp(1.0 - k * x.abs(), min=0.0) * k
        return grad * d, None, None


def surrogate_spike(name: str, slope: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``f(x) -> H(x)`` whose gradient is the surrogate ``name``.

    Raises ValueError naming the legal surrogates when ``name`` is unknown.
    """
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {list(SURROGATES)}")
    if slope <= 0:
        raise ValueError(f"surrogate slope must be > 0, got {slope}")
    kind = SURROGATES.index(name)

    def spike(x: torch.Tensor) -> torch.Tensor:
        return _Spike.apply(x, slope, kind)

    return spike
