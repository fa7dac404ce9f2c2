"""Non-spiking reference classifiers, measured beside the network in the same run on the same split.

A spiking network's accuracy says little alone: the UCR/UEA archives' reference classifier,
1-nearest-neighbour with Euclidean distance (1-NN), tells whether a modality's data are hard or the
network's path for it is weak. ``snn-fusion task basic-motions`` reports it for its test split and
``snn-fusion eval`` for the IMU modality (:func:`imu_nearest_neighbour`).

Series are compared sample by sample (equal lengths), every channel at once. ``normalise=True``
z-normalises each channel of each series first (the archives' convention, shape only);
``normalise=False`` keeps the values (in m/s^2 for the IMU: the posture, i.e. where gravity points,
and the amplitude of a movement count too). A channel with zero variance normalises to zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _matrix(series: Sequence[np.ndarray] | np.ndarray, normalise: bool) -> np.ndarray:
    """(N, C, L) series -> (N, C * L) float64 rows; z-normalised per channel when asked."""
    a = np.stack([np.asarray(x, np.float64) for x in series])
    if a.ndim != 3:
        raise ValueError(f"expected series of shape (channels, length), got {a.shape[1:]}")
    if normalise:
        mu = a.mean(axis=2, keepdims=True)
        sd = a.std(axis=2, keepdims=True)
        a = (a - mu) / np.where(sd > 0, sd, 1.0)
    return a.reshape(len(a), -1)


def nearest_neighbour_predict(train: Sequence[np.ndarray] | np.ndarray, y_train: np.ndarray,
                              test: Sequence[np.ndarray] | np.ndarray, normalise: bool = True) -> np.ndarray:
    """The label of each test series' nearest training series (squared Euclidean distance; ties: first).

    ``train`` / ``test``: (channels, length) series, all of one shape."""
    tr, te = _matrix(train, normalise), _matrix(test, normalise)
    if tr.shape[1] != te.shape[1]:
        raise ValueError(f"train and test series differ in size: {tr.shape[1]} vs {te.shape[1]} values")
    y = np.asarray(y_train)
    if len(y) != len(tr):
        raise ValueError(f"{len(y)} training labels for {len(tr)} training series")
    # |a - b|^2 = |a|^2 - 2 a.b + |b|^2, row by row of the test set (memory O(N_train))
    sq = (tr ** 2).sum(1)
    return np.array([y[int(np.argmin(sq - 2.0 * tr @ row))] for row in te], dtype=y.dtype)


def nearest_neighbour_accuracy(train: Sequence[np.ndarray] | np.ndarray, y_train: np.ndarray,
                               test: Sequence[np.ndarray] | np.ndarray, y_test: np.ndarray,
                               normalise: bool = True) -> float:
    """Fraction of test series whose nearest training series has their label."""
    return float(np.mean(nearest_neighbour_predict(train, y_train, test, normalise) == np.asarray(y_test)))


def imu_nearest_neighbour(train_accel: np.ndarray, train_labels: np.ndarray, test_accel: np.ndarray,
                          test_labels: np.ndarray, fused_imu_index: np.ndarray, fused_labels: np.ndarray
                          ) -> dict[str, Any]:
    """1-NN on the raw accelerometer windows the IMU encoder node receives, as ``snn-fusion eval`` reports it.

    ``*_accel`` (N, n, 3) m/s^2 (the data set's windows); ``fused_imu_index`` (F,) the IMU series of each
    fused test sample, ``fused_labels`` (F,) their labels. ``fused_sample_accuracy`` weighs each test
    series by the fused samples that use it, like ``modality_accuracy["imu"]`` of the network, which it
    is to be read against."""
    tr = np.asarray(train_accel).transpose(0, 2, 1)
    te = np.asarray(test_accel).transpose(0, 2, 1)
    idx = np.asarray(fused_imu_index, dtype=np.int64)
    out: dict[str, Any] = {
        "name": "1-NN Euclidean on the IMU encoder's input (the accelerometer window of each test series; "
                "every training series as reference; same split, same run)",
        "n_train_series": len(tr), "n_test_series": len(te), "n_fused_samples": len(idx),
    }
    for key, normalise in (("raw", False), ("z_normalised", True)):
        pred = nearest_neighbour_predict(tr, train_labels, te, normalise)
        out[key] = {"series_accuracy": float(np.mean(pred == np.asarray(test_labels))),
                    "fused_sample_accuracy": float(np.mean(pred[idx] == np.asarray(fused_labels)))}
    return out
