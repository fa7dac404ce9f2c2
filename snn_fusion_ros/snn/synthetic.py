"""Synthetic class-dependent spike sequences (tests, benchmarks, smoke training; not real data).

Each class ``c`` owns, per modality, a random subset of ``frac_active`` of the input neurons that fire
with probability ``p_active`` per step; all other neurons fire with ``p_background``. Randomness only
through the passed :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snn_fusion_ros.snn.config import FusionNetConfig


@dataclass(frozen=True)
class SyntheticSpikes:
    """``inputs[m]``: bool (S, T, N_m); ``labels``: int64 (S,); T = windows * steps_per_window."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray

    def batches(self, batch_size: int):
        """Yield ``(inputs, labels)`` batches in order (numpy)."""
        n = self.labels.shape[0]
        for i in range(0, n, batch_size):
            yield {m: a[i:i + batch_size] for m, a in self.inputs.items()}, self.labels[i:i + batch_size]


def make_synthetic(config: FusionNetConfig, sequences: int, windows: int, rng: np.random.Generator,
                   frac_active: float = 0.15, p_active: float = 0.25, p_background: float = 0.02,
                   pattern_rng_seed: int = 1234) -> SyntheticSpikes:
    """Draw ``sequences`` sequences of ``windows`` windows, one class per sequence (balanced, shuffled).

    The class patterns depend only on ``pattern_rng_seed`` (so train and test sets drawn with
    different ``rng`` share them).
    """
    prng = np.random.default_rng(pattern_rng_seed)
    c = config.num_classes
    t_len = windows * config.steps_per_window
    labels = rng.permutation(np.arange(sequences) % c).astype(np.int64)
    inputs: dict[str, np.ndarray] = {}
    for m, n in config.input_sizes.items():
        probs = np.full((c, n), p_background)
        for k in range(c):
            idx = prng.choice(n, size=max(1, round(frac_active * n)), replace=False)
            probs[k, idx] = p_active
        p = probs[labels][:, None, :]  # (S, 1, N)
        inputs[m] = rng.random((sequences, t_len, n)) < p
    return SyntheticSpikes(inputs=inputs, labels=labels)


def train_synthetic_artifact(path, config: FusionNetConfig, seed: int = 0, epochs: int = 8, sequences: int = 64,
                             windows: int = 4, lr: float = 0.01, **synthetic: float):
    """Train a :class:`FusionNet` on synthetic spikes (deterministic in ``seed``) and save an artifact.

    For tests and benchmarks only (the shipped model is trained on real data). ``synthetic`` is passed
    to :func:`make_synthetic` (``frac_active``, ``p_active``, ``p_background``). Returns the artifact path.
    """
    from snn_fusion_ros.snn.artifact import save_artifact
    from snn_fusion_ros.snn.network import FusionNet
    from snn_fusion_ros.snn.training import readout_abs_max, train

    model = FusionNet(config)
    data = make_synthetic(config, sequences, windows, np.random.default_rng(seed), **synthetic)
    history = train(model, lambda: data.batches(16), epochs=epochs, lr=lr, seed=seed, progress=False)
    names = [f"class{k}" for k in range(config.num_classes)]
    extra = {"train_history": history, "seed": seed, "readout_abs_max": readout_abs_max(model, data.inputs)}
    return save_artifact(path, model, names, {"synthetic": True}, extra,
                         name="synthetic", created_by="snn_fusion_ros.snn.synthetic.train_synthetic_artifact")
