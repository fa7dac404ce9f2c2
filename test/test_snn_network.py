"""FusionNet: determinism, streaming == batched decisions, missing modalities, modality dropout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.params import config_from_mapping
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.snn.synthetic import make_synthetic
from snn_fusion_ros.snn.training import apply_modality_dropout, evaluate_decisions, train

pytestmark = pytest.mark.unit

SMALL = FusionNetConfig(audio_neurons=24, dvs_neurons=40, imu_neurons=12, hidden_neurons=24, fusion_neurons=24,
                        num_classes=3)


def _train(seed: int = 0, epochs: int = 8, dropout: float = 0.3):
    model = FusionNet(SMALL)
    data = make_synthetic(SMALL, 48, 4, np.random.default_rng(seed))
    hist = train(model, lambda: data.batches(16), epochs=epochs, lr=0.01, seed=seed, progress=False,
                 modality_dropout=dropout)
    return model, hist


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return _train()


@pytest.fixture(scope="module")
def test_set():
    return make_synthetic(SMALL, 24, 5, np.random.default_rng(99))


def test_config_validation_names_field_and_range():
    with pytest.raises(ValueError, match="hidden_neurons"):
        FusionNetConfig(hidden_neurons=0)
    with pytest.raises(ValueError, match="reset_mechanism"):
        FusionNetConfig(reset_mechanism="never")
    with pytest.raises(ValueError, match="known"):
        config_from_mapping(FusionNetConfig, {"tau_mem": 3})
    cfg = FusionNetConfig(dvs_neurons=128)
    assert cfg.input_sizes == {"audio": 64, "dvs": 128, "imu": 48}
    assert cfg.alpha == pytest.approx(np.exp(-5 / 10))
    for f in dataclasses.fields(FusionNetConfig):
        assert f.metadata.get("description"), f"{f.name} lacks param() metadata"


def test_init_is_deterministic_in_seed():
    a, b, c = FusionNet(SMALL), FusionNet(SMALL), FusionNet(dataclasses.replace(SMALL, seed=1))
    for k, v in a.artifact_tensors().items():
        assert torch.equal(v, b.artifact_tensors()[k])
    assert not torch.equal(a.w_fuse, c.w_fuse)
    mask = a.rec_mask("audio")
    assert torch.all(torch.diagonal(mask) == 0)
    assert 0.1 < float(mask.mean()) < 0.3  # recurrent_density 0.2


def test_training_is_deterministic_and_learns(trained):
    model, hist = trained
    model2, hist2 = _train()
    assert hist == hist2
    for k, v in model.artifact_tensors().items():
        assert torch.equal(v, model2.artifact_tensors()[k]), k
    assert hist["loss"][-1] < hist["loss"][0]


def test_trained_network_classifies_and_survives_missing_modality(trained, test_set):
    model, _ = trained
    dec = evaluate_decisions(model, test_set.inputs)
    acc = float((dec == test_set.labels[:, None]).mean())
    assert acc >= 0.9, f"accuracy {acc}"
    for drop in ("audio", "dvs", "imu"):
        partial = {m: a for m, a in test_set.inputs.items() if m != drop}
        acc_m = float((evaluate_decisions(model, partial) == test_set.labels[:, None]).mean())
        assert acc_m >= 0.8, f"accuracy without {drop}: {acc_m}"


def test_streaming_equals_batched(trained, test_set):
    model, _ = trained
    s = SMALL.steps_per_window
    with torch.no_grad():
        v = model({m: torch.from_numpy(a.astype(np.float32)) for m, a in test_set.inputs.items()})
    ends = model.window_end_values(v).numpy()
    model.reset()
    n_seq, t_len = test_set.labels.shape[0], next(iter(test_set.inputs.values())).shape[1]
    streamed = np.zeros_like(ends)
    for i in range(n_seq):
        model.reset()
        for w in range(t_len // s):
            streamed[i, w] = model.step_values({m: a[i, w * s:(w + 1) * s] for m, a in test_set.inputs.items()})
    assert np.array_equal(streamed.argmax(-1), ends.argmax(-1))
    np.testing.assert_allclose(streamed, ends, rtol=1e-4, atol=1e-4)


def test_step_scores_are_softmax_of_window_end_membrane(trained, test_set):
    model, _ = trained
    model.reset()
    win = {m: a[0, :10] for m, a in test_set.inputs.items()}
    p = model.step(win)
    model.reset()
    v = model.step_values(win)
    assert p.dtype == np.float32 and p.shape == (3,)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(p, np.exp(v - v.max()) / np.exp(v - v.max()).sum(), rtol=1e-5)


def test_missing_modality_is_zero_input(trained, test_set):
    model, _ = trained
    win = {m: a[1, :10] for m, a in test_set.inputs.items()}
    model.reset()
    a = model.step_values({"audio": win["audio"], "imu": win["imu"]})
    model.reset()
    b = model.step_values({**win, "dvs": np.zeros_like(win["dvs"])})
    np.testing.assert_array_equal(a, b)


def test_step_rejects_unknown_modality_and_bad_shape(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="known modalities") as ei:
        model.step({"lidar": np.zeros((10, 3), bool)})
    assert isinstance(ei.value, InputRejected) and ei.value.reason == "unknown_modality"
    with pytest.raises(InputRejected, match="expected") as ei:
        model.step({"audio": np.zeros((9, 24), bool)})
    assert ei.value.reason == "bad_shape"


def test_modality_dropout_zeroes_exactly_one_modality_per_dropped_sample():
    g = torch.Generator().manual_seed(0)
    x = {m: torch.ones(200, 2, 3) for m in ("audio", "dvs", "imu")}
    y = apply_modality_dropout(x, 0.5, g)
    present = torch.stack([y[m].flatten(1).amax(1) for m in ("audio", "dvs", "imu")], 1)  # (200, 3)
    n_missing = (present == 0).sum(1)
    assert set(n_missing.tolist()) <= {0, 1}
    assert 60 < int((n_missing == 1).sum()) < 140
    assert apply_modality_dropout(x, 0.0, g) is x


def test_population_time_constants_are_checked_and_one_value_means_shared():
    cfg = dataclasses.replace(SMALL, population_tau_mem_ms=[20, 20, 200], population_tau_syn_ms=(10, 10, 20))
    assert cfg.population_tau_mem_ms == (20.0, 20.0, 200.0)  # a list from YAML/JSON becomes a tuple of floats
    d = cfg.population_decays()
    assert d["audio"] == d["dvs"] == pytest.approx((cfg.alpha, cfg.beta))
    assert d["imu"] == pytest.approx((np.exp(-cfg.step_ms / 20.0), np.exp(-cfg.step_ms / 200.0)))
    alpha, beta = cfg.hidden_decays()
    h = SMALL.hidden_neurons
    assert alpha.shape == beta.shape == (3 * h,) and beta[2 * h] > beta[2 * h - 1] == beta[0]
    assert not cfg.uniform_populations and SMALL.uniform_populations
    same = dataclasses.replace(SMALL, population_tau_mem_ms=(20.0,) * 3, population_tau_syn_ms=(10.0,) * 3)
    assert same.uniform_populations and isinstance(FusionNet(same).hidden.alpha, float)
    for bad, match in (((20.0, 200.0), "one value per modality"), ((0.0, 20.0, 20.0), "below the minimum"),
                       ((float("nan"),) * 3, "is NaN"), ((float("inf"),) * 3, "above the maximum"),
                       ("200", "list of numbers"), ((None, 1, 2), "list of numbers")):
        with pytest.raises(ValueError, match=f"population_tau_mem_ms.*{match}"):
            dataclasses.replace(SMALL, population_tau_mem_ms=bad)


def test_population_time_constants_change_only_their_own_population():
    """Slower IMU neurons: the audio and DVS populations spike exactly as with shared time constants, the
    IMU population differently; batched and streamed runs still agree."""
    slow_imu = dataclasses.replace(SMALL, input_gain=3.0, population_tau_mem_ms=(20.0, 20.0, 200.0),
                                   population_tau_syn_ms=(10.0, 10.0, 40.0))
    shared, per_pop = FusionNet(dataclasses.replace(slow_imu, population_tau_mem_ms=(), population_tau_syn_ms=())), \
        FusionNet(slow_imu)
    data = make_synthetic(SMALL, 4, 6, np.random.default_rng(5))
    x = {m: torch.from_numpy(a.astype(np.float32)) for m, a in data.inputs.items()}
    with torch.no_grad():
        _, spk_shared = shared(x, return_spikes=True)
        v, spk = per_pop(x, return_spikes=True)
    h = SMALL.hidden_neurons
    assert spk_shared["hidden"][..., :h].sum() > 0 and spk_shared["hidden"][..., 2 * h:].sum() > 0
    assert torch.equal(spk["hidden"][..., :2 * h], spk_shared["hidden"][..., :2 * h])
    assert not torch.equal(spk["hidden"][..., 2 * h:], spk_shared["hidden"][..., 2 * h:])
    ends = per_pop.window_end_values(v).numpy()
    s = SMALL.steps_per_window
    for i in range(ends.shape[0]):
        per_pop.reset()
        streamed = [per_pop.step_values({m: a[i, w * s:(w + 1) * s] for m, a in data.inputs.items()})
                    for w in range(ends.shape[1])]
        np.testing.assert_allclose(np.stack(streamed), ends[i], rtol=1e-4, atol=1e-4)
