"""1-NN reference classifiers (`snn_fusion_ros.snn.baselines`): known answers, the fused-sample weighting."""

from __future__ import annotations

import numpy as np
import pytest

from snn_fusion_ros.snn.baselines import imu_nearest_neighbour, nearest_neighbour_accuracy, nearest_neighbour_predict

pytestmark = pytest.mark.unit


def test_raw_distance_sees_the_offset_that_z_normalising_removes():
    t = np.linspace(0, 1, 50)
    shape = np.sin(2 * np.pi * t)[None, :]  # (1 channel, 50)
    train = [shape, shape + 10.0]  # one shape, two postures (offsets)
    query = [shape + 9.5]
    assert nearest_neighbour_predict(train, np.array([0, 1]), query, normalise=False).tolist() == [1]
    # z-normalised, both training series are the same shape: the first of the tie wins
    assert nearest_neighbour_predict(train, np.array([0, 1]), query, normalise=True).tolist() == [0]


def test_predictions_match_brute_force_distances():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(30, 3, 40))
    test = rng.normal(size=(12, 3, 40))
    y = rng.integers(0, 5, size=30)
    for normalise in (False, True):
        def prep(a, normalise=normalise):
            if not normalise:
                return a.reshape(len(a), -1)
            sd = a.std(axis=2, keepdims=True)
            return ((a - a.mean(axis=2, keepdims=True)) / sd).reshape(len(a), -1)
        d = ((prep(test)[:, None, :] - prep(train)[None, :, :]) ** 2).sum(-1)
        np.testing.assert_array_equal(nearest_neighbour_predict(train, y, test, normalise), y[d.argmin(1)])


def test_constant_channel_normalises_to_zeros_not_nan():
    train = np.zeros((2, 2, 10))
    train[0, 1] = np.arange(10)
    train[1, 1] = -np.arange(10)
    test = train[1:].copy()
    assert nearest_neighbour_accuracy(train, np.array([0, 1]), test, np.array([1])) == 1.0


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        nearest_neighbour_predict(np.zeros((2, 1, 10)), np.array([0, 1]), np.zeros((1, 1, 11)))
    with pytest.raises(ValueError, match="training labels"):
        nearest_neighbour_predict(np.zeros((2, 1, 10)), np.array([0]), np.zeros((1, 1, 10)))
    with pytest.raises(ValueError, match="channels, length"):
        nearest_neighbour_predict(np.zeros((2, 10)), np.array([0, 1]), np.zeros((1, 10)))


def test_imu_baseline_weighs_each_series_by_the_fused_samples_that_use_it():
    n = 100
    t = np.linspace(0, 1, n)
    train = np.zeros((2, n, 3), np.float32)
    train[:, :, 2] = 9.8
    train[1, :, 2] += 5 * np.sin(2 * np.pi * t)  # class 1 moves, class 0 rests
    test = train[[0, 1, 1]].copy()
    test_labels = np.array([0, 1, 0])  # the third series is labelled 0 but moves like class 1: a miss
    fused_index = np.array([0, 0, 0, 1, 2])  # series 0 used three times, the miss once
    fused_labels = test_labels[fused_index]
    res = imu_nearest_neighbour(train, np.array([0, 1]), test, test_labels, fused_index, fused_labels)
    assert res["n_train_series"] == 2 and res["n_test_series"] == 3 and res["n_fused_samples"] == 5
    assert res["raw"]["series_accuracy"] == pytest.approx(2 / 3)
    assert res["raw"]["fused_sample_accuracy"] == pytest.approx(4 / 5)
    # z-normalised, the resting series (constant channels) is all zeros: still nearest to class 0
    assert res["z_normalised"]["fused_sample_accuracy"] == pytest.approx(4 / 5)
