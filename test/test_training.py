"""Training on the real (quick) data set: encode cache, validation split, resume, a short run that learns.

Uses the ``--quick`` build in the default data cache (built once, ~25 s; the Asterisk .deb and aeon
wheel are fetched from Debian / PyPI on first use and cached).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from snn_fusion_ros.data.encode import (
    EncoderConfigs,
    SensorNoise,
    encode_split,
    node_encoder_configs,
    windows_to_array,
)
from snn_fusion_ros.snn import train_cli
from snn_fusion_ros.snn.artifact import load_artifact
from snn_fusion_ros.snn.training import (
    MISSING_SET_NAMES,
    MISSING_SETS,
    apply_missing_dropout,
    augment_spikes,
    last_window_scores,
    missing_set_weights,
    readout_abs_max,
)
from snn_fusion_ros.spikes import MODALITIES, SpikeWindow

pytestmark = pytest.mark.unit

pytest.importorskip("espeakng_loader", reason="espeakng-loader not installed")


@pytest.fixture(scope="module")
def quick_train(quick_key, tmp_path_factory):
    from snn_fusion_ros.data.dataset import load_split

    return encode_split(load_split("train", key=quick_key), cache_dir=tmp_path_factory.mktemp("enc"), progress=False)


def test_node_configs_match_the_parameter_file():
    cfgs = node_encoder_configs()
    # audio: 32 channels x ON/OFF x 4 delay taps (0, 150, 300, 450 ms)
    assert cfgs.audio.delay_steps == (0, 30, 60, 90)
    # IMU: population code, 16 neurons per channel x 6 channels, accelerometer full scale 30 m/s^2
    assert (cfgs.imu.coding, cfgs.imu.population_size, cfgs.imu.accel_full_scale) == ("population", 16, 30.0)
    assert cfgs.num_neurons == {"audio": 256, "dvs": 512, "imu": 96}, cfgs.num_neurons
    assert cfgs.steps_per_window == 10
    assert EncoderConfigs.from_dict(cfgs.to_dict()) == cfgs
    assert json.loads(json.dumps(cfgs.to_dict())) == cfgs.to_dict()


def test_shipped_model_was_trained_with_the_parameter_file_encoders():
    """The launch file gives the nodes config/snn_fusion.yaml; the shipped model must expect exactly those
    encodings (a YAML edit without retraining would make the fusion node reject every window of that modality)."""
    from snn_fusion_ros.models import resolve_model

    art, cfgs = load_artifact(resolve_model("")), node_encoder_configs()
    assert EncoderConfigs.from_dict(art.encoder_config) == cfgs
    assert art.config.input_sizes == cfgs.num_neurons


def test_windows_placed_by_stamp():
    w = SpikeWindow("imu", np.ones((10, 3), bool), stamp_ns=100_000_000, step_ns=5_000_000, seq=0)
    late = SpikeWindow("imu", np.ones((10, 3), bool), stamp_ns=2_000_000_000, step_ns=5_000_000, seq=1)
    arr = windows_to_array([w, late], n_windows=4, steps=10, neurons=3, window_ns=50_000_000)
    assert arr.shape == (40, 3)
    assert arr[10:20].all() and not arr[:10].any() and not arr[20:].any()


def test_encode_cache_is_deterministic(quick_key, tmp_path):
    from snn_fusion_ros.data.dataset import load_split

    ds = load_split("test", key=quick_key)
    a = encode_split(ds, cache_dir=tmp_path / "a", progress=False)
    b = encode_split(ds, cache_dir=tmp_path / "b", progress=False, workers=2)
    fa, fb = (tmp_path / d / f"{a.key}.npz" for d in ("a", "b"))
    assert a.key == b.key
    assert fa.read_bytes() == fb.read_bytes(), "same data and configs must give byte-identical cache files"
    c = encode_split(ds, cache_dir=tmp_path / "a", progress=False)  # read back from the cache
    for m in MODALITIES:
        assert a.spikes[m].dtype == bool and a.spikes[m].shape[1:] == (200, node_encoder_configs().num_neurons[m])
        np.testing.assert_array_equal(a.spikes[m], c.spikes[m])
        assert a.spikes[m].any(), f"{m}: no spikes at all"
    noisy = encode_split(ds, noise=SensorNoise(audio_snr_db=0.0, dvs_noise_hz=20.0, imu_noise_std=1.0),
                         cache_dir=tmp_path / "a", progress=False)
    assert noisy.key != a.key
    for m in MODALITIES:
        assert not np.array_equal(noisy.spikes[m], a.spikes[m]), f"{m}: noise changed nothing"


def test_encode_matches_streaming_node_encoder(quick_key):
    """Chunked pushes through the node encoder give the cached tensor (what the nodes publish)."""
    from snn_fusion_ros.data.dataset import load_split
    from snn_fusion_ros.encoders.imu import ImuEncoder

    ds = load_split("test", key=quick_key)
    enc = encode_split(ds, use_cache=False, progress=False)
    cfg = node_encoder_configs().imu
    e = ImuEncoder(cfg)
    wins = []
    for lo in range(0, len(ds.imu_stamps_ns), 7):
        wins += e.push(ds.imu_stamps_ns[lo: lo + 7], ds.imu_accel[0][lo: lo + 7], None)
    wins += e.flush()
    arr = windows_to_array(wins, 20, 10, cfg.num_neurons, 50_000_000)
    np.testing.assert_array_equal(arr, enc.spikes["imu"][0])


def test_validation_split_is_disjoint(quick_train):
    tr, va = train_cli.split_validation(quick_train, 0.3, np.random.default_rng(0))
    spk = quick_train.speakers
    assert not set(spk[tr["audio"]]) & set(spk[va["audio"]]), "a speaker is in both parts"
    assert "allison" in set(spk[tr["audio"]]), "the real recorded speaker stays in training"
    assert len(va["audio"]) > 0 and len(va["dvs"]) > 0 and len(va["imu"]) > 0
    assert tr["dvs"].max() < va["dvs"].min(), "DVS validation must be a contiguous final block"
    for m in MODALITIES:
        assert not set(tr[m].tolist()) & set(va[m].tolist())
        assert len(tr[m]) + len(va[m]) == len(quick_train.labels[m])
    assert set(quick_train.labels["imu"][tr["imu"]].tolist()) == set(range(10)), "every class keeps IMU series"


def test_validation_can_hold_out_whole_accents(quick_train):
    tr, va = train_cli.split_validation(quick_train, 0.3, np.random.default_rng(0), "accent")
    spk = quick_train.speakers

    def accents(idx):
        return {s.split(":")[1].split("+")[0] for s in spk[idx] if s.startswith("espeak:")}

    assert accents(va["audio"]) and not accents(tr["audio"]) & accents(va["audio"]), "an accent is in both parts"
    n_bases = len(accents(np.arange(len(spk))))
    assert len(accents(va["audio"])) == int(np.ceil(0.3 * n_bases))
    assert "allison" in set(spk[tr["audio"]])
    for m in MODALITIES:
        assert len(tr[m]) + len(va[m]) == len(quick_train.labels[m])
    voice = train_cli.split_validation(quick_train, 0.3, np.random.default_rng(0), "voice")
    np.testing.assert_array_equal(voice[1]["dvs"], va["dvs"])
    with pytest.raises(ValueError, match="audio_holdout"):
        train_cli.split_validation(quick_train, 0.3, np.random.default_rng(0), "country")


@pytest.mark.parametrize("appended", [("espeak:fr-be+m1", "espeak:es-419+f1"),  # read no English words
                                      ("carlo", "armelle")])  # further recorded voices (train_voices "asterisk")
def test_appended_voices_always_train_and_leave_validation_as_it_was(quick_train, appended):
    import dataclasses

    n = len(quick_train.labels["audio"])
    extra = np.arange(0, n, 3)  # stand-ins for the appended voices' utterances
    speakers = np.concatenate([quick_train.speakers, np.where(extra % 2 == 0, *appended)])
    enc = dataclasses.replace(quick_train, speakers=speakers,
                              labels={**quick_train.labels, "audio": np.concatenate(
                                  [quick_train.labels["audio"], quick_train.labels["audio"][extra]])},
                              spikes={**quick_train.spikes, "audio": np.concatenate(
                                  [quick_train.spikes["audio"], quick_train.spikes["audio"][extra]])})
    for holdout in ("accent", "voice"):
        tr, va = train_cli.split_validation(enc, 0.3, np.random.default_rng(0), holdout)
        plain_tr, plain_va = train_cli.split_validation(quick_train, 0.3, np.random.default_rng(0), holdout)
        for m in MODALITIES:
            np.testing.assert_array_equal(va[m], plain_va[m], err_msg=f"{holdout}: validation {m} changed")
        np.testing.assert_array_equal(tr["audio"], np.concatenate([plain_tr["audio"], n + np.arange(len(extra))]))


def test_recorded_voices_enter_the_pairing_pool_repeat_times_and_default_run_keys_stay(quick_train):
    import dataclasses
    import hashlib

    from snn_fusion_ros.data.audio import espeak_base

    tr, _ = train_cli.split_validation(quick_train, 0.2, np.random.default_rng(0), "accent")
    audio = tr["audio"]
    recorded = np.array([espeak_base(s) is None for s in quick_train.speakers[audio].tolist()])
    assert recorded.any() and not recorded.all(), "the quick build trains on a real voice and on eSpeak voices"
    np.testing.assert_array_equal(train_cli.repeat_recorded(quick_train, audio, 1), audio)
    counts = np.bincount(train_cli.repeat_recorded(quick_train, audio, 3), minlength=len(quick_train.speakers))
    assert np.all(counts[audio[recorded]] == 3) and np.all(counts[audio[~recorded]] == 1)
    assert counts.sum() == len(audio) + 2 * recorded.sum(), "nothing outside the training part enters"

    def real_share(repeat: int) -> float:
        rows, _ = train_cli.paired_index(quick_train, dict(tr, audio=train_cli.repeat_recorded(
            quick_train, audio, repeat)), np.random.default_rng(1))
        return float(np.mean([espeak_base(s) is None for s in quick_train.speakers[rows[:, 0]].tolist()]))

    p1, p4 = real_share(1), real_share(4)
    assert 0 < p1 < 1 and abs(p4 - 4 * p1 / (3 * p1 + 1)) < 0.05, (p1, p4)  # drawn 4 times as often
    with pytest.raises(ValueError, match="repeat"):
        train_cli.repeat_recorded(quick_train, audio, 0)
    with pytest.raises(ValueError, match="recorded_audio_repeat"):
        _settings(recorded_audio_repeat=0)
    # the key of a default run is what it was before the setting existed, so its checkpoints still resume
    cfgs = node_encoder_configs()
    old = dataclasses.asdict(train_cli.TrainSettings())
    del old["epochs"], old["recorded_audio_repeat"], old["weight_ema"], old["replicate"], old["audio_channel_shift"]
    del old["selection_score"], old["missing_weights"], old["population_tau_mem_ms"], old["population_tau_syn_ms"]
    blob = json.dumps({"build": "b", "enc": cfgs.hash(), "settings": old}, sort_keys=True)
    assert train_cli.run_key("b", cfgs, train_cli.TrainSettings()) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    for changed in ({"recorded_audio_repeat": 2}, {"weight_ema": 0.999}, {"replicate": 1}, {"audio_channel_shift": 1},
                    {"selection_score": "goal"}, {"missing_weights": "dvs=2"},
                    {"population_tau_mem_ms": (20.0, 20.0, 200.0)}, {"population_tau_syn_ms": [10.0, 10.0, 20.0]}):
        assert train_cli.run_key("b", cfgs, train_cli.TrainSettings(**changed)) != train_cli.run_key(
            "b", cfgs, train_cli.TrainSettings()), changed


def test_validation_leaves_out_the_distorted_renditions_of_its_images(quick_train):
    import dataclasses

    n = len(quick_train.labels["dvs"])
    image = np.concatenate([np.arange(n), np.arange(n)])  # every image, then one rendition of each
    enc = dataclasses.replace(quick_train, dvs_image_index=image,
                              labels={**quick_train.labels, "dvs": np.tile(quick_train.labels["dvs"], 2)},
                              spikes={**quick_train.spikes, "dvs": np.concatenate([quick_train.spikes["dvs"]] * 2)})
    tr, va = train_cli.split_validation(enc, 0.3, np.random.default_rng(0))
    plain_tr, plain_va = train_cli.split_validation(quick_train, 0.3, np.random.default_rng(0))
    np.testing.assert_array_equal(va["dvs"], plain_va["dvs"], err_msg="validation shows each held-out image once")
    np.testing.assert_array_equal(tr["dvs"], np.concatenate([plain_tr["dvs"], plain_tr["dvs"] + n]))
    assert not set(image[tr["dvs"]].tolist()) & set(image[va["dvs"]].tolist()), "an image is in both parts"


def test_missing_dropout_drops_one_or_two_never_three():
    g = torch.Generator()
    g.manual_seed(0)
    x = {m: torch.ones(400, 2, 3) for m in MODALITIES}
    out = apply_missing_dropout(x, 1.0, g)
    present = torch.stack([out[m].flatten(1).any(1) for m in MODALITIES], 1).sum(1)
    assert set(present.tolist()) == {1, 2}
    assert len(MISSING_SETS) == 6 and all(1 <= len(s) <= 2 for s in MISSING_SETS)
    assert apply_missing_dropout(x, 0.0, g) is x


def test_missing_set_weights_draw_the_sets_in_proportion():
    assert MISSING_SET_NAMES == ("audio", "dvs", "imu", "audio+dvs", "audio+imu", "dvs+imu")
    assert missing_set_weights("") is None
    assert missing_set_weights("dvs=2, imu=0") == (1.0, 2.0, 0.0, 1.0, 1.0, 1.0)
    for bad, match in (("dvs", "NAME=WEIGHT"), ("sonar=2", "NAME=WEIGHT"), ("dvs=2,dvs=3", "twice"),
                       ("dvs=x", "not a number"), ("dvs=-1", ">= 0"), ("dvs=nan", "finite"),
                       (",".join(f"{n}=0" for n in MISSING_SET_NAMES), "at least one")):
        with pytest.raises(ValueError, match=match):
            missing_set_weights(bad)
    with pytest.raises(ValueError, match="missing-set weight"):
        _settings(missing_weights="dvs=-1")
    g = torch.Generator()
    g.manual_seed(0)
    x = {m: torch.ones(6000, 2, 3) for m in MODALITIES}
    out = apply_missing_dropout(x, 1.0, g, missing_set_weights("dvs=3,imu=0"))
    gone = tuple(tuple(m for m in MODALITIES if not bool(out[m][i].any())) for i in range(6000))
    share = {n: float(np.mean([g_ == s for g_ in gone])) for n, s in zip(MISSING_SET_NAMES, MISSING_SETS, strict=True)}
    assert share["imu"] == 0.0
    assert abs(share["dvs"] - 3 / 7) < 0.03 and all(abs(share[n] - 1 / 7) < 0.02 for n in
                                                    ("audio", "audio+dvs", "audio+imu", "dvs+imu")), share
    # uniform weights given explicitly change nothing but the draw; None keeps the draws of earlier runs
    g.manual_seed(1)
    a = apply_missing_dropout(x, 0.7, g)
    g.manual_seed(1)
    b = apply_missing_dropout(x, 0.7, g, None)
    assert all(torch.equal(a[m], b[m]) for m in MODALITIES)
    with pytest.raises(ValueError, match="6 sets"):
        apply_missing_dropout(x, 1.0, g, (1.0, 2.0))


def test_augment_spikes_shifts_streams_and_deletes_spikes():
    g = torch.Generator()
    g.manual_seed(0)
    x = {m: torch.zeros(300, 20, 4) for m in MODALITIES}
    for m in MODALITIES:
        x[m][:, 10, :] = 1.0  # one column of spikes at step 10
    out = augment_spikes(x, 3, 0.0, g)
    for m in MODALITIES:
        where = out[m].sum(2).argmax(1) - 10
        assert out[m].sum() == x[m].sum()  # a shift inside the sequence keeps every spike
        assert set(where.tolist()) == set(range(-3, 4))  # every shift in [-3, 3] is drawn
    assert not torch.equal(out["audio"], out["dvs"])  # each modality is shifted on its own
    edge = augment_spikes({"audio": torch.ones(50, 20, 2)}, 5, 0.0, g)["audio"]
    assert edge.sum() < 50 * 20 * 2  # shifted-in steps are zeros
    dropped = augment_spikes({"dvs": torch.ones(10, 100, 100)}, 0, 0.25, g)["dvs"]
    assert set(torch.unique(dropped).tolist()) == {0.0, 1.0}
    assert abs(float(dropped.mean()) - 0.75) < 0.01
    assert augment_spikes(x, 0, 0.0, g) is x


def test_goal_selection_score_leaves_the_single_paths_out():
    # validation rows of round 20's R20b at epochs 28 and 61 (models/README.md): IMU alone (10 series) read
    # 80 % and then 60 %, audio alone 78 % and then 85 %
    e28 = {"fused": 0.9972, "-audio": 0.9847, "-dvs": 0.9042, "-imu": 0.9889, "-audio-dvs": 0.8,
           "-audio-imu": 0.975, "-dvs-imu": 0.7819}
    e61 = {"fused": 0.9972, "-audio": 0.9847, "-dvs": 0.9097, "-imu": 0.9944, "-audio-dvs": 0.6,
           "-audio-imu": 0.9625, "-dvs-imu": 0.8472}
    assert train_cli.selection_score(e28) > train_cli.selection_score(e61)  # the default picks epoch 28
    assert train_cli.selection_score(e61, "goal") > train_cli.selection_score(e28, "goal")
    assert train_cli.selection_score(e61, "goal") == pytest.approx(0.5 * 0.9972 + 0.5 * (0.9847 + 0.9097 + 0.9944) / 3)
    assert train_cli.selection_score(e61, "all") == train_cli.selection_score(e61)
    with pytest.raises(ValueError, match="selection score"):
        train_cli.selection_score(e61, "best")
    with pytest.raises(ValueError, match="selection_score"):
        _settings(selection_score="best")


def test_audio_channel_shift_moves_every_tap_and_polarity_together():
    from snn_fusion_ros.encoders.audio import AudioEncoderConfig

    layout = AudioEncoderConfig(delay_taps_ms=(0.0, 150.0), spiking="delta", num_channels=8).channel_layout
    assert layout == (2, 2, 8) and AudioEncoderConfig(spiking="lif").channel_layout == (1, 1, 32)
    g = torch.Generator()
    g.manual_seed(1)
    b, t = 400, 3
    x = torch.zeros(b, t, 32)
    x.view(b, t, 4, 8)[:, :, :, 3] = 1.0  # channel 3 of both taps, ON and OFF
    x.view(b, t, 4, 8)[:, 0, 1, 7] = 1.0  # the top channel, OFF, tap 0, step 0 only
    other = {"dvs": torch.ones(b, t, 5)}
    out = augment_spikes({"audio": x, **other}, 0, 0.0, g, audio_channel_shift=2, audio_layout=layout)
    y = out["audio"].view(b, t, 4, 8)
    assert torch.equal(out["dvs"], other["dvs"])  # only audio moves
    moved = y[:, 1].argmax(-1)  # (b, 4): where channel 3 went, per tap and group
    assert (moved == moved[:, :1]).all()  # one shift per sample for every tap and polarity
    assert set((moved[:, 0] - 3).tolist()) == {-2, -1, 0, 1, 2}  # every shift in [-2, 2] is drawn
    assert torch.equal(y[:, 1:].sum((1, 2, 3)), torch.full((b,), 8.0))  # channel 3 stays inside the 8
    # the top channel shifted up leaves the array (nothing wraps round); shifted down or not it stays
    c = moved[:, 0] - 3
    row = y[:, 0, 1]  # step 0, tap 0, OFF: channels 3 and 7 before the shift
    assert torch.equal(row.sum(-1), torch.where(c > 0, 1.0, 2.0))
    assert torch.equal(row[torch.arange(b), (7 + c).clamp(max=7)], torch.where(c > 0, 0.0, 1.0))
    with pytest.raises(ValueError, match="layout"):
        augment_spikes({"audio": torch.zeros(2, 3, 30)}, 0, 0.0, g, audio_channel_shift=1, audio_layout=layout)
    with pytest.raises(ValueError, match="audio_layout"):
        augment_spikes({"audio": x}, 0, 0.0, g, audio_channel_shift=1)


def test_gather_takes_noisy_encodings_at_the_requested_rate(quick_train, tmp_path):
    import dataclasses

    noisy = dataclasses.replace(quick_train, spikes={m: ~a for m, a in quick_train.spikes.items()})
    before = quick_train.spikes["imu"].copy()
    rows = np.stack([np.arange(20) % len(quick_train.labels[m]) for m in MODALITIES], 1)
    clean = train_cli.gather(quick_train, rows)
    rng = np.random.default_rng(0)
    assert all(np.array_equal(train_cli.gather(quick_train, rows, noisy, 0.0, rng)[m], clean[m]) for m in MODALITIES)
    allnoisy = train_cli.gather(quick_train, rows, noisy, 1.0, rng)
    assert all(np.array_equal(allnoisy[m], 1.0 - clean[m]) for m in MODALITIES)
    many = np.stack([np.zeros(2000, np.int64)] * 3, 1)
    half = train_cli.gather(quick_train, many, noisy, 0.5, rng)["imu"]
    share = np.mean([not np.array_equal(h, quick_train.spikes["imu"][0]) for h in half])
    assert 0.45 < share < 0.55, share
    assert np.array_equal(quick_train.spikes["imu"], before)  # the clean encodings are not modified
    with pytest.raises(ValueError, match="noisy_enc"):
        train_cli.fit(quick_train, node_encoder_configs(), _settings(noise_fraction=0.5), tmp_path / "o",
                      tmp_path / "ck", "k", progress=False)


def test_mispair_replaces_a_modalitys_sample_at_its_rate_and_keeps_the_others():
    n = 20000
    rows = np.stack([np.arange(n), np.arange(n) + n, np.arange(n) + 2 * n], 1)
    subset = {"audio": np.arange(5), "dvs": np.arange(5), "imu": np.array([7, 8, 9])}
    out = train_cli.mispair(rows, subset, {"imu": 0.6}, np.random.default_rng(0))
    assert np.array_equal(out[:, :2], rows[:, :2]), "audio and DVS untouched"
    hit = out[:, 2] != rows[:, 2]
    assert abs(hit.mean() - 0.6) < 0.02, hit.mean()
    assert set(out[hit, 2].tolist()) == {7, 8, 9}, "replacements come from the modality's subset, any class"
    assert np.array_equal(rows[:, 2], np.arange(n) + 2 * n), "the input rows are not modified"
    assert np.array_equal(train_cli.mispair(rows, subset, {}, np.random.default_rng(0)), rows)
    a = train_cli.mispair(rows, subset, {"audio": 0.1, "imu": 0.5}, np.random.default_rng(3))
    assert np.array_equal(a, train_cli.mispair(rows, subset, {"audio": 0.1, "imu": 0.5}, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="imu"):
        train_cli.mispair(rows, subset, {"imu": 1.5}, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mispair_dvs"):
        _settings(mispair_dvs=-0.1)


def _settings(**kw) -> train_cli.TrainSettings:
    base = {"epochs": 2, "hidden_neurons": 16, "fusion_neurons": 16, "batch_size": 16, "val_fraction": 0.2}
    base.update(kw)
    return train_cli.TrainSettings(**base)


def test_network_config_takes_the_time_constants_from_the_settings():
    from snn_fusion_ros.snn.config import FusionNetConfig

    cfgs = node_encoder_configs()
    default = train_cli.network_config(cfgs, train_cli.TrainSettings())
    assert (default.tau_mem_ms, default.tau_syn_ms) == (FusionNetConfig().tau_mem_ms, FusionNetConfig().tau_syn_ms)
    cfg = train_cli.network_config(cfgs, _settings(tau_mem_ms=50.0, tau_syn_ms=5.0, fusion_neurons=40))
    assert (cfg.tau_mem_ms, cfg.tau_syn_ms, cfg.fusion_neurons) == (50.0, 5.0, 40)
    assert cfg.beta == pytest.approx(np.exp(-cfg.step_ms / 50.0))
    assert cfg.alpha == pytest.approx(np.exp(-cfg.step_ms / 5.0))
    with pytest.raises(ValueError, match="tau_mem_ms"):
        _settings(tau_mem_ms=0.0)
    # per-population time constants reach the network; the command line takes one value per modality
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--population-tau-mem-ms", "20", "20", "200",
                              "--population-tau-syn-ms", "10", "10", "20"])
    assert parser.parse_args([]).population_tau_mem_ms == []  # default: the shared time constants
    s = _settings(population_tau_mem_ms=args.population_tau_mem_ms, population_tau_syn_ms=args.population_tau_syn_ms)
    assert s.population_tau_mem_ms == (20.0, 20.0, 200.0)  # a tuple whatever the caller passed: stable run keys
    pop = train_cli.network_config(cfgs, s)
    assert pop.population_decays()["imu"] == pytest.approx((np.exp(-pop.step_ms / 20.0), np.exp(-pop.step_ms / 200.0)))
    assert pop.population_decays()["audio"] == pytest.approx((pop.alpha, pop.beta))
    assert not pop.uniform_populations and default.uniform_populations
    with pytest.raises(ValueError, match=r"population_tau_mem_ms.*one value per modality"):
        _settings(population_tau_mem_ms=(20.0, 200.0))


@pytest.mark.parametrize("weight_ema", [0.0, 0.9])
def test_resume_equals_uninterrupted(quick_train, tmp_path, weight_ema):
    cfgs = node_encoder_configs()
    torch.set_num_threads(1)
    full = train_cli.fit(quick_train, cfgs, _settings(epochs=2, weight_ema=weight_ema), tmp_path / "full",
                         tmp_path / "ck_full", "k", progress=False)
    train_cli.fit(quick_train, cfgs, _settings(epochs=1, weight_ema=weight_ema), tmp_path / "part",
                  tmp_path / "ck_part", "k", progress=False)
    resumed = train_cli.fit(quick_train, cfgs, _settings(epochs=2, weight_ema=weight_ema), tmp_path / "part",
                            tmp_path / "ck_part", "k", resume=True, progress=False)
    assert resumed["epoch"] == full["epoch"] == 2
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "ck_full" / train_cli.CHECKPOINT_WEIGHTS))
    b = load_file(str(tmp_path / "ck_part" / train_cli.CHECKPOINT_WEIGHTS))
    assert a.keys() == b.keys() and any(k.startswith("opt.") for k in a)
    assert any(k.startswith("ema.") for k in a) == (weight_ema > 0)
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=f"tensor {k} differs after resume")
    with pytest.raises(ValueError, match="checkpoint"):
        train_cli.fit(quick_train, cfgs, _settings(epochs=3, lr=1e-3), tmp_path / "x", tmp_path / "ck_part", "k",
                      resume=True, progress=False)


def test_weight_average_moves_by_one_minus_decay_per_update():
    from snn_fusion_ros.snn.config import FusionNetConfig
    from snn_fusion_ros.snn.network import FusionNet

    assert train_cli.weight_average(FusionNet(FusionNetConfig()), 0.0) is None
    model = FusionNet(FusionNetConfig(audio_neurons=4, dvs_neurons=4, imu_neurons=4, hidden_neurons=3,
                                      fusion_neurons=5))
    ema = train_cli.weight_average(model, 0.75)
    with torch.no_grad():
        model.w_out.fill_(2.0)
    ema.update_parameters(model)  # the first update copies
    torch.testing.assert_close(ema.module.w_out, torch.full_like(model.w_out, 2.0))
    with torch.no_grad():
        model.w_out.fill_(6.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module.w_out, torch.full_like(model.w_out, 0.75 * 2.0 + 0.25 * 6.0))
    assert int(ema.n_averaged) == 2
    with pytest.raises(ValueError, match="weight_ema"):
        _settings(weight_ema=1.0)


def test_weight_average_leaves_training_alone_and_is_what_validation_scores_and_out_gets(quick_train, tmp_path):
    from safetensors.torch import load_file

    cfgs = node_encoder_configs()
    torch.set_num_threads(1)
    plain = train_cli.fit(quick_train, cfgs, _settings(epochs=1), tmp_path / "plain", tmp_path / "ck_plain", "k",
                          progress=False)
    avg = train_cli.fit(quick_train, cfgs, _settings(epochs=1, weight_ema=0.9), tmp_path / "avg",
                        tmp_path / "ck_avg", "k", progress=False)
    a = load_file(str(tmp_path / "ck_plain" / train_cli.CHECKPOINT_WEIGHTS))
    b = load_file(str(tmp_path / "ck_avg" / train_cli.CHECKPOINT_WEIGHTS))
    for k in a:  # the raw weights and the optimiser follow the same trajectory
        torch.testing.assert_close(a[k], b[k], msg=f"{k} changed by averaging")
    assert not torch.equal(b["ema.w_fuse"], b["model.w_fuse"]), "the average differs from the last weights"
    assert int(b["ema_n_averaged"]) == -(-len(train_cli.paired_index(
        quick_train, train_cli.split_validation(quick_train, 0.2, np.random.default_rng([0, 1]))[0],
        np.random.default_rng([0, 3, 0]))[1]) // 16), "one update per minibatch"
    assert avg["history"][0]["val_raw_fused"] == plain["history"][0]["val"]["fused"], "the raw weights', as without"
    assert avg["history"][0]["val"] != plain["history"][0]["val"], "validation scores the average"
    assert "val_raw_fused" not in plain["history"][0]
    saved = load_artifact(tmp_path / "avg").build_model().artifact_tensors()
    for k, v in saved.items():  # epoch 1 is the best (only) epoch: the artifact holds the average
        torch.testing.assert_close(v, b[f"ema.{k}"], msg=k)


def test_replicates_share_the_validation_pairs_and_merge_into_one_validated_network(quick_key, quick_train,
                                                                                   tmp_path, capsys):
    from safetensors.torch import load_file

    from snn_fusion_ros import cli

    cfgs = node_encoder_configs()
    torch.set_num_threads(1)
    s0, s1 = _settings(epochs=1), _settings(epochs=1, replicate=1)
    assert train_cli.run_seed(s0) == 0 and train_cli.run_seed(s1) not in (0, train_cli.run_seed(
        _settings(replicate=2)))
    a0 = train_cli.validation_set(quick_train, s0)
    a1 = train_cli.validation_set(quick_train, s1)
    for x, y in zip(a0[:2], a1[:2], strict=True):
        assert x.keys() == y.keys() and all(np.array_equal(x[m], y[m]) for m in x), "same train / validation split"
    np.testing.assert_array_equal(a0[3], a1[3])
    for m in MODALITIES:
        np.testing.assert_array_equal(a0[2][m], a1[2][m])
    for name, s in (("r0", s0), ("r1", s1)):
        train_cli.fit(quick_train, cfgs, s, tmp_path / name, tmp_path / f"ck_{name}", quick_key, progress=False)
    w0 = load_file(str(tmp_path / "r0" / "weights.safetensors"))
    w1 = load_file(str(tmp_path / "r1" / "weights.safetensors"))
    assert not torch.equal(w0["w_in.audio"], w1["w_in.audio"]), "another initialisation"
    assert not torch.equal(w0["rec_mask.dvs"], w1["rec_mask.dvs"]), "another recurrent mask"
    m0, m1 = (load_artifact(tmp_path / n) for n in ("r0", "r1"))
    assert m0.metadata["extra"]["validation"] == m1.metadata["extra"]["validation"]
    rc = cli.main(["merge", "--model", str(tmp_path / "r0"), "--model", str(tmp_path / "r1"), "--out",
                   str(tmp_path / "merged"), "--validate", "--json", "--threads", "1", "--no-progress"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    # the members' rows, recomputed on the reconstructed pairs, are those their runs recorded
    assert res["member_validation_accuracy"] == [m0.metadata["extra"]["validation_accuracy"],
                                                 m1.metadata["extra"]["validation_accuracy"]]
    merged = load_artifact(tmp_path / "merged")
    ex = merged.metadata["extra"]
    assert ex["validation_accuracy"] == res["validation_accuracy"] and set(ex["validation_accuracy"]) == set(
        m0.metadata["extra"]["validation_accuracy"])
    assert ex["build"] == quick_key and ex["validation"] == m0.metadata["extra"]["validation"]
    _, _, inputs, labels = a0
    fused = float(np.mean(last_window_scores(merged.build_model(), inputs).argmax(-1) == labels))
    assert ex["validation_accuracy"]["fused"] == fused
    assert 0 < ex["readout_abs_max"] <= m0.metadata["extra"]["readout_abs_max"] + m1.metadata["extra"][
        "readout_abs_max"] + 1e-6


def test_merge_validates_on_another_builds_pairs_when_they_are_held_out_of_every_member(quick_key, quick_train,
                                                                                        tmp_path, capsys):
    """``merge --validate --validation-build``: a member trained on the core-variant quick build and one on the
    all-variant quick build (same accents held out, same DVS / IMU files) are scored on the latter's pairs."""
    from snn_fusion_ros import cli
    from snn_fusion_ros.data.builder import BuildConfig, build, find_build
    from snn_fusion_ros.data.dataset import load_split
    from snn_fusion_ros.snn.voices import model_validation_accents

    spread_key = build(BuildConfig.create(quick=True, train_variants="all")).name
    spread = encode_split(load_split("train", key=spread_key), cache_dir=tmp_path / "enc", progress=False)
    cfgs = node_encoder_configs()
    torch.set_num_threads(1)
    s = _settings(epochs=1, val_audio_holdout="accent")
    train_cli.fit(quick_train, cfgs, s, tmp_path / "core", tmp_path / "ck_core", quick_key, progress=False)
    train_cli.fit(spread, cfgs, _settings(epochs=1, val_audio_holdout="accent", replicate=1), tmp_path / "all",
                  tmp_path / "ck_all", spread_key, progress=False)
    args = ["merge", "--model", str(tmp_path / "core"), "--model", str(tmp_path / "all"), "--out",
            str(tmp_path / "merged"), "--validate", "--json", "--threads", "1", "--no-progress"]
    assert cli.main(args) == 1 and "one data build" in capsys.readouterr().err
    assert cli.main([*args, "--validation-build", spread_key]) == 0
    res = json.loads(capsys.readouterr().out)
    _, _, inputs, labels = train_cli.validation_set(spread, s)
    for path, row in zip(("core", "all"), res["member_validation_accuracy"], strict=True):
        model = load_artifact(tmp_path / path).build_model()
        assert row["fused"] == float(np.mean(last_window_scores(model, inputs).argmax(-1) == labels)), path
    assert res["member_validation_accuracy"][1] == load_artifact(tmp_path / "all").metadata["extra"][
        "validation_accuracy"], "the member trained on the validation build scores what its run recorded"
    merged = load_artifact(tmp_path / "merged")
    assert merged.metadata["created_by"].endswith(f"--validate --validation-build {spread_key}")
    assert merged.metadata["extra"]["validation_accuracy"] == res["validation_accuracy"]
    assert merged.metadata["extra"]["validation_build"] == spread_key and "build" not in merged.metadata["extra"]
    assert [m["build"] for m in merged.metadata["extra"]["merged_from"]] == [quick_key, spread_key]
    held = sorted(train_cli.build_held_out_audio(find_build(None, spread_key), 0, 0.2, "accent"))
    assert model_validation_accents(merged) == held and len(held) == 1, "snn-fusion voices finds its accents"
    # a merge of this merge: its training settings are found through the first member's record
    assert cli.main(["merge", "--model", str(tmp_path / "merged"), "--model", str(tmp_path / "all"), "--out",
                     str(tmp_path / "nested"), "--validate", "--validation-build", spread_key, "--no-progress"]) == 0
    capsys.readouterr()
    # voice hold-out: the held-out voices of one build are not those of the other, so it is refused
    train_cli.fit(quick_train, cfgs, _settings(epochs=1), tmp_path / "voice", tmp_path / "ck_voice", quick_key,
                  progress=False)
    train_cli.fit(spread, cfgs, _settings(epochs=1), tmp_path / "voice_all", tmp_path / "ck_voice_all", spread_key,
                  progress=False)
    rc = cli.main(["merge", "--model", str(tmp_path / "voice"), "--model", str(tmp_path / "voice_all"), "--out",
                   str(tmp_path / "m2"), "--validate", "--validation-build", spread_key])
    assert rc == 1 and "must have held out accents" in capsys.readouterr().err
    rc = cli.main(["merge", "--model", str(tmp_path / "voice"), "--model", str(tmp_path / "core"), "--out",
                   str(tmp_path / "m2"), "--validate", "--validation-build", spread_key])
    assert rc == 1 and "one validation split" in capsys.readouterr().err
    rc = cli.main(["merge", "--model", str(tmp_path / "core"), "--model", str(tmp_path / "all"), "--out",
                   str(tmp_path / "m3"), "--validation-build", spread_key])
    assert rc == 1 and "needs --validate" in capsys.readouterr().err
    # a member's build whose DVS training file (as its manifest records it) is not the validation build's
    cache = tmp_path / "cache"
    for key in (quick_key, spread_key):
        (cache / "builds" / key).mkdir(parents=True)
        for f in find_build(None, key).iterdir():
            (cache / "builds" / key / f.name).symlink_to(f)
    manifest = cache / "builds" / quick_key / "manifest.json"
    recorded = json.loads(manifest.read_text())
    manifest.unlink()
    recorded["files"]["dvs_train.npz"] = "0" * 64
    manifest.write_text(json.dumps(recorded))
    rc = cli.main([*args, "--validation-build", spread_key, "--cache", str(cache)])
    assert rc == 1 and "dvs_train.npz of build" in capsys.readouterr().err


def test_a_checkpoint_folder_in_use_is_refused(quick_train, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    with train_cli.lock_checkpoint_dir(ck):  # another run holds it
        with pytest.raises(ValueError, match="in use by another training run"):
            train_cli.fit(quick_train, node_encoder_configs(), _settings(epochs=1), tmp_path / "m", ck, "k",
                          progress=False)
        assert not (ck / train_cli.CHECKPOINT_STATE).exists(), "the refused run must not write a checkpoint"
    state = train_cli.fit(quick_train, node_encoder_configs(), _settings(epochs=1), tmp_path / "m", ck, "k",
                          progress=False)
    assert state["epoch"] == 1 and (ck / train_cli.CHECKPOINT_STATE).is_file(), "free again once released"


@pytest.mark.slow
def test_short_training_beats_chance_on_held_out_test(quick_key, quick_train, tmp_path):
    """A few epochs of a small net on the quick build classify unseen test samples far above 10 %."""
    from snn_fusion_ros.data.dataset import load_split

    torch.set_num_threads(2)
    cfgs = node_encoder_configs()
    out = tmp_path / "model"
    state = train_cli.fit(quick_train, cfgs, _settings(epochs=10, hidden_neurons=32, fusion_neurons=32), out,
                          tmp_path / "ck", quick_key, progress=False, created_by="snn-fusion train --quick")
    art = load_artifact(out)
    assert art.metadata["created_by"] == "snn-fusion train --quick"
    assert art.metadata["encoder_config"] == cfgs.to_dict()
    assert art.metadata["input_neurons"] == cfgs.num_neurons
    assert art.class_names == tuple(str(d) for d in range(10))
    assert 1 <= art.metadata["extra"]["best_epoch"] <= state["epoch"]
    test = encode_split(load_split("test", key=quick_key), cfgs, cache_dir=tmp_path / "enc", progress=False)
    pred = last_window_scores(art.build_model(), {m: a.astype(np.float32) for m, a in test.fused().items()})
    acc = float(np.mean(pred.argmax(-1) == test.pair_labels))
    # seeded run: 0.57 measured with 10 epochs (0.30 with 6 since the audio delay taps quadrupled its
    # input); the quick build has 110 training pairs; chance is 0.1
    assert acc >= 0.3, f"held-out test accuracy {acc:.3f} (chance 0.1)"


def test_train_cli_refuses_a_bad_dvs_emulator_field_before_building(tmp_path, capsys):
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    args = p.parse_args(["--quick", "--cache", str(tmp_path), "--no-progress", "--dvs-emulator", "threshold=0"])
    assert train_cli.run(args) == 2
    assert "snn-fusion train: --dvs-emulator: DvsEmulatorConfig.threshold=0.0 is below the minimum" in \
        capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_train_cli_writes_artifact(quick_key, quick_train, tmp_path):
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    args = p.parse_args(["--build", quick_key, "--epochs", "1", "--hidden", "8", "--fusion", "8",
                         "--out", str(tmp_path / "m"), "--checkpoint-dir", str(tmp_path / "ck"), "--no-progress",
                         "--threads", "1", "--mispair-imu", "0.5", "--recorded-audio-repeat", "2",
                         "--weight-ema", "0.5"])
    assert train_cli.run(args) == 0
    art = load_artifact(tmp_path / "m")
    assert art.config.num_classes == 10 and art.config.hidden_neurons == 8
    training = art.metadata["extra"]["training"]
    assert training["mispair_imu"] == 0.5 and training["mispair_audio"] == 0.0
    assert training["recorded_audio_repeat"] == 2 and training["weight_ema"] == 0.5
    # the readout range recorded with the best epoch is that of the validation pairs under the saved weights
    _, va = train_cli.split_validation(quick_train, training["val_fraction"], np.random.default_rng([0, 1]))
    rows, _ = train_cli.paired_index(quick_train, va, np.random.default_rng([0, 2]))
    peak = readout_abs_max(art.build_model(), train_cli.gather(quick_train, rows))
    assert peak > 0 and art.metadata["extra"]["readout_abs_max"] == pytest.approx(peak, rel=1e-6)
    assert (tmp_path / "ck" / train_cli.CHECKPOINT_WEIGHTS).is_file()
    assert not list((tmp_path / "ck").glob("*.pt")), "checkpoints are safetensors, never pickle"
