"""Pairing unimodal samples of the same class into fused (audio, dvs, imu) samples.

A fused sample of class k takes one audio, one DVS and one IMU sample, each of class k. For class
k, ``n_k = max`` over modalities of the number of class-k samples (or ``per_class``); each modality
contributes its class-k samples in a random order, cycling through fresh permutations until it
has ``n_k`` (so every sample is used and none more than once more than another). The fused list
is then shuffled. Training draws a new pairing per epoch from its own Generator; the test pairing
is drawn once from the build seed and stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snn_fusion_ros.spikes import MODALITIES


@dataclass(frozen=True)
class Pairing:
    """``index[i, m]`` = sample of modality ``MODALITIES[m]`` in fused sample i; ``labels[i]`` its class."""

    index: np.ndarray  # (N, 3) int64
    labels: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        if self.index.ndim != 2 or self.index.shape != (len(self.labels), len(MODALITIES)):
            raise ValueError(f"Pairing.index has shape {self.index.shape}, expected "
                             f"({len(self.labels)}, {len(MODALITIES)})")

    def __len__(self) -> int:
        return len(self.labels)


def pair_samples(labels: dict[str, np.ndarray], rng: np.random.Generator,
                 per_class: int | None = None) -> Pairing:
    """Pair samples of equal class across ``labels`` = {modality: (n_m,) class labels}.

    Parameters
    ----------
    labels: class label per sample, for each of ``MODALITIES`` (all three keys required).
    rng: source of every random choice (order within a class, final shuffle).
    per_class: fused samples per class; default the largest per-class count over modalities.
    """
    missing = [m for m in MODALITIES if m not in labels]
    if missing:
        raise ValueError(f"pair_samples needs labels for {list(MODALITIES)}; missing {missing}")
    labs = {m: np.asarray(labels[m], dtype=np.int64) for m in MODALITIES}
    classes = np.unique(np.concatenate(list(labs.values())))
    idx_parts, lab_parts = [], []
    for k in classes:
        members = {m: np.nonzero(labs[m] == k)[0] for m in MODALITIES}
        empty = [m for m, v in members.items() if len(v) == 0]
        if empty:
            raise ValueError(f"class {int(k)} has no samples in modality {empty}; cannot pair")
        n_k = per_class if per_class is not None else max(len(v) for v in members.values())
        cols = []
        for m in MODALITIES:
            v = members[m]
            reps = -(-n_k // len(v))
            cols.append(np.concatenate([rng.permutation(v) for _ in range(reps)])[:n_k])
        idx_parts.append(np.stack(cols, axis=1))
        lab_parts.append(np.full(n_k, k, dtype=np.int64))
    index = np.concatenate(idx_parts) if idx_parts else np.zeros((0, len(MODALITIES)), np.int64)
    lab = np.concatenate(lab_parts) if lab_parts else np.zeros(0, np.int64)
    order = rng.permutation(len(lab))
    return Pairing(index[order].astype(np.int64), lab[order])
