"""Encoders: known answers, chunk invariance, window grid, rejection rules, configs."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.codecs.xytp import encode_xytp
from snn_fusion_ros.encoders.audio import MAX_RESAMPLE_FACTOR, AudioEncoder, AudioEncoderConfig, StreamingResampler
from snn_fusion_ros.encoders.dvs import DvsEncoder, DvsEncoderConfig
from snn_fusion_ros.encoders.imu import ImuEncoder, ImuEncoderConfig
from snn_fusion_ros.errors import REASONS, InputRejected
from snn_fusion_ros.params import config_from_mapping
from snn_fusion_ros.spikes import SpikeWindow

pytestmark = pytest.mark.unit
MS = 1_000_000


def assert_same_windows(a: list[SpikeWindow], b: list[SpikeWindow]) -> None:
    assert len(a) == len(b), f"{len(a)} windows vs {len(b)}"
    for wa, wb in zip(a, b, strict=True):
        assert wa.stamp_ns == wb.stamp_ns and wa.seq == wb.seq
        np.testing.assert_array_equal(wa.spikes, wb.spikes, err_msg=f"window stamp {wa.stamp_ns}")


def assert_grid(windows: list[SpikeWindow], window_ns: int = 50 * MS, steps: int = 10, neurons: int | None = None):
    assert windows, "no windows"
    stamps = np.array([w.stamp_ns for w in windows])
    assert np.all(stamps % window_ns == 0), "stamps off the global grid"
    assert np.all(np.diff(stamps) == window_ns), "holes or repeats in the window stream"
    assert [w.seq for w in windows] == list(range(windows[0].seq, windows[0].seq + len(windows)))
    for w in windows:
        assert w.spikes.shape[0] == steps
        if neurons is not None:
            assert w.spikes.shape[1] == neurons


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("cls", [DvsEncoderConfig, AudioEncoderConfig, ImuEncoderConfig])
def test_every_config_field_has_param_metadata(cls):
    for f in dataclasses.fields(cls):
        assert f.metadata.get("description"), f"{cls.__name__}.{f.name} lacks param() metadata"
    cfg = config_from_mapping(cls, {"window_ms": 100.0, "step_ms": 10.0})
    assert cfg.window_ms == 100.0
    with pytest.raises(ValueError, match="step_ms"):
        cls(window_ms=50.0, step_ms=7.0)
    with pytest.raises(ValueError, match="unknown"):
        config_from_mapping(cls, {"no_such_field": 1})


def test_config_ranges_enforced():
    with pytest.raises(ValueError, match="num_channels"):
        AudioEncoderConfig(num_channels=4)
    with pytest.raises(ValueError, match="filterbank"):
        AudioEncoderConfig(filterbank="bark")
    with pytest.raises(ValueError, match="f_max_hz"):
        AudioEncoderConfig(sample_rate_hz=8000, f_max_hz=5000.0)
    with pytest.raises(ValueError, match="coding"):
        ImuEncoderConfig(coding="spiky")
    with pytest.raises(ValueError, match="gyro_thresholds"):
        ImuEncoderConfig(accel_thresholds=(1.0,), gyro_thresholds=(0.1, 0.2))
    with pytest.raises(ValueError, match="polarity_channels"):
        DvsEncoderConfig(polarity_channels=3)


# ---------------------------------------------------------------- DVS
def edge_events(width: int = 64, height: int = 64, t0: int = 1_000 * MS, speed_px_per_ms: float = 0.5) -> np.ndarray:
    """A vertical ON edge sweeping left to right, one event per pixel of the edge column."""
    cols = np.arange(width)
    t_col = t0 + (cols / speed_px_per_ms * MS).astype(np.int64)
    ev = np.zeros(width * height, EVENT_DTYPE)
    ev["t"] = np.repeat(t_col, height)
    ev["x"] = np.repeat(cols, height)
    ev["y"] = np.tile(np.arange(height), width)
    ev["p"] = 1
    return ev


def test_dvs_moving_edge_spikes_in_the_right_cells():
    cfg = DvsEncoderConfig(grid_width=4, grid_height=4, ba_filter=False, refractory_us=0)
    enc = DvsEncoder(cfg)
    ev = edge_events()
    windows = enc.push(ev, 64, 64) + enc.flush()
    assert_grid(windows, neurons=32)
    spikes = np.concatenate([w.spikes for w in windows])  # (steps, 32)
    first_step = windows[0].start_ns // enc.step_ns
    assert not spikes[:, :16].any(), "OFF plane must stay silent for an ON edge"
    on = spikes[:, 16:].reshape(-1, 4, 4)  # (steps, rows, cols)
    for col in range(4):
        # column `col` covers x in [16 col, 16 col + 16): the edge is there from 32 col ms to 32 col + 30 ms
        active = np.flatnonzero(on[:, :, col].any(axis=1)) + first_step
        t_active = active * enc.step_ns
        lo, hi = 1_000 * MS + 32 * col * MS, 1_000 * MS + (32 * col + 30) * MS
        assert t_active.min() >= lo - enc.step_ns and t_active.max() <= hi, (col, t_active)
        assert on[:, :, col].any(axis=0).all(), "every row of an active column must fire"


def test_dvs_push_xytp_equals_push_of_decoded():
    ev = edge_events()
    a, b = DvsEncoder(), DvsEncoder()
    wa = a.push(ev, 64, 64) + a.flush()
    wb = b.push_xytp(encode_xytp(ev, int(ev["t"][0])), int(ev["t"][0]), 64, 64) + b.flush()
    assert_same_windows(wa, wb)
    with pytest.raises(InputRejected) as info:
        b.push_xytp(b"\0" * 15, 0, 64, 64)
    assert b.rejections.snapshot()["bad_length"] == 1
    assert info.value.counted, "encoder-counted rejections carry counted=True so a node does not count them twice"


def test_dvs_chunk_invariance_on_real_recording(shared_events):
    from snn_fusion_ros.codecs.evt3 import read_evt3_file

    ev, w, h = read_evt3_file(shared_events / "evt3.raw")
    ev = ev[:300_000]
    whole = DvsEncoder()
    ref = whole.push(ev, w, h) + whole.flush()
    assert_grid(ref, neurons=512)
    assert sum(int(x.spikes.sum()) for x in ref) > 100
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.integers(1, ev.size, 150))
    enc = DvsEncoder()
    out: list[SpikeWindow] = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, ev.size], strict=True):
        if b > a:
            out += enc.push(ev[a:b], w, h)
    out += enc.flush()
    assert_same_windows(ref, out)


def test_dvs_ba_filter_drops_isolated_events_and_refractory_limits_rate():
    ev = np.zeros(4, EVENT_DTYPE)
    ev["t"] = [0, 1 * MS, 2 * MS, 2 * MS + 100_000]
    ev["x"] = [10, 30, 31, 31]  # isolated, then a pair of neighbours, then a repeat at the same pixel
    ev["y"] = [10, 30, 30, 30]
    cfg = DvsEncoderConfig(grid_width=64, grid_height=64, polarity_channels=1, ba_window_us=5000.0,
                           refractory_us=1000.0)
    enc = DvsEncoder(cfg)
    spikes = np.concatenate([w.spikes for w in enc.push(ev, 64, 64) + enc.flush()])
    fired = set(np.flatnonzero(spikes.any(axis=0)).tolist())
    # (10,10) isolated: dropped; (30,30) had no earlier neighbour: dropped; (31,30) passes;
    # its repeat 0.1 ms later is inside the 1 ms refractory period
    assert fired == {30 * 64 + 31}
    assert int(spikes.sum()) == 1


def test_dvs_rejections_counted_by_reason():
    enc = DvsEncoder(DvsEncoderConfig(max_events=100, ba_filter=False, refractory_us=0))
    with pytest.raises(InputRejected):
        enc.push(np.zeros(0, EVENT_DTYPE), 64, 64)
    with pytest.raises(InputRejected):
        enc.push(np.zeros(101, EVENT_DTYPE), 64, 64)
    with pytest.raises(InputRejected):
        enc.push(np.zeros(3, EVENT_DTYPE), 0, 64)
    ev = np.zeros(6, EVENT_DTYPE)
    ev["t"] = [100 * MS, 101 * MS, 99 * MS, 102 * MS, 103 * MS, 104 * MS]
    ev["x"] = [1, 70, 2, 3, 4, 5]
    enc.push(ev, 64, 64)
    ev2 = ev[:1].copy()
    ev2["t"] = 50 * MS
    enc.push(ev2, 64, 64)
    ev3 = ev[3:].copy()
    ev3["t"] += 10 * MS
    enc.push(ev3, 32, 32)  # resolution change
    counts = enc.rejections.snapshot()
    assert counts == {"empty": 1, "oversized": 1, "bad_shape": 1, "out_of_range": 1, "time_backwards": 2,
                      "rate_change": 1}
    assert set(counts) <= set(REASONS)
    assert enc.stats.accepted == 4 + 3


def test_dvs_long_gap_is_bounded_and_grid_continues():
    cfg = DvsEncoderConfig(ba_filter=False, refractory_us=0, max_gap_windows=5)
    enc = DvsEncoder(cfg)
    ev = np.zeros(2, EVENT_DTYPE)
    ev["t"] = [1_000 * MS, 3_600_000 * MS]  # one hour later
    out = enc.push(ev, 16, 16) + enc.flush()
    assert len(out) == 1 + 5 + 1
    assert out[-1].stamp_ns == 3_600_000 * MS + 50 * MS
    assert [w.seq for w in out] == list(range(7))
    assert enc._asm.gaps == 1


# ---------------------------------------------------------------- audio
def tone(freq: float, rate: int, seconds: float, onset_s: float = 0.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t) * (t >= onset_s)).astype(np.float32)


@pytest.mark.parametrize("filterbank", ["gammatone", "mel"])
@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0])
def test_audio_tone_excites_its_channel(filterbank, freq):
    enc = AudioEncoder(AudioEncoderConfig(filterbank=filterbank))
    energy = enc.filterbank_energy_db(tone(freq, 16000, 0.5), 16000)
    best = int(np.argmax(energy))
    nearest = int(np.argmin(np.abs(np.log(enc.center_hz / freq))))
    assert abs(best - nearest) <= 1, (best, nearest, enc.center_hz[best])
    # ... and a channel far away is much quieter
    far = 0 if nearest > enc.center_hz.size // 2 else enc.center_hz.size - 1
    assert energy[best] - energy[far] > 20.0


def test_audio_tone_onset_fires_on_spikes_in_its_channel():
    enc = AudioEncoder()
    x = tone(1000.0, 16000, 1.0, onset_s=0.5) + 1e-4 * np.random.default_rng(0).standard_normal(16000).astype(
        np.float32)
    out = enc.push(x, 16000, 0) + enc.flush()
    assert_grid(out, neurons=64)
    spikes = np.concatenate([w.spikes for w in out])
    ch = int(np.argmin(np.abs(enc.center_hz - 1000.0)))
    on_steps = np.flatnonzero(spikes[:, ch])
    assert on_steps.size, "no ON spike in the tone's channel"
    onset_step = 500 * MS // enc.step_ns
    assert np.any(np.abs(on_steps - onset_step) <= 2), on_steps


def test_audio_lif_fires_for_tone_not_silence():
    enc = AudioEncoder(AudioEncoderConfig(spiking="lif"))
    assert enc.num_neurons == 32
    out = enc.push(tone(1000.0, 16000, 0.5), 16000, 0) + enc.flush()
    spikes = np.concatenate([w.spikes for w in out]).sum(axis=0)
    ch = int(np.argmin(np.abs(enc.center_hz - 1000.0)))
    assert spikes[ch] > spikes[0] and spikes[ch] > 10
    enc2 = AudioEncoder(AudioEncoderConfig(spiking="lif"))
    quiet = enc2.push(np.zeros(8000, np.float32), 16000, 0) + enc2.flush()
    assert not any(w.spikes.any() for w in quiet)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_audio_chunk_invariance(rate):
    rng = np.random.default_rng(rate)
    x = (tone(440.0, rate, 1.0, 0.2) + tone(2500.0, rate, 1.0, 0.6, 0.2)
         + 0.01 * rng.standard_normal(rate).astype(np.float32))
    results = []
    for chunk_ms in (10, 100):
        enc = AudioEncoder()
        n = rate * chunk_ms // 1000
        out: list[SpikeWindow] = []
        for i in range(0, rate, n):
            out += enc.push(x[i:i + n], rate, 2_000 * MS + (i * 1_000_000_000) // rate)
        results.append(out + enc.flush())
    assert_grid(results[0], neurons=64)
    assert sum(int(w.spikes.sum()) for w in results[0]) > 20
    assert_same_windows(results[0], results[1])


def test_audio_stereo_is_mixed_to_mono():
    x = tone(1000.0, 16000, 0.3)
    a, b = AudioEncoder(), AudioEncoder()
    wa = a.push(x, 16000, 0) + a.flush()
    wb = b.push(np.stack([x, x], axis=1), 16000, 0) + b.flush()
    assert_same_windows(wa, wb)


def test_audio_rejections_and_timing_rules():
    enc = AudioEncoder()
    x = tone(500.0, 16000, 0.1)
    enc.push(x, 16000, 0)
    for bad, reason in [(np.zeros(0, np.float32), "empty"), (np.array([0.0, np.nan], np.float32), "non_finite"),
                        (np.zeros((4, 2, 2), np.float32), "bad_shape"), (np.zeros(4, np.int16), "bad_encoding")]:
        with pytest.raises(InputRejected) as info:
            enc.push(bad, 16000, 100 * MS)
        assert info.value.reason == reason and info.value.counted
    with pytest.raises(InputRejected) as info:
        enc.push(x, 16000, 50 * MS)  # expected 100 ms: 50 ms early
    assert info.value.reason == "time_backwards"
    enc.push(x, 16000, 100 * MS + 2 * MS)  # jitter within one step: contiguous
    assert enc.stats.resets == 0
    enc.push(x, 16000, 500 * MS)  # gap: reset and continue
    assert enc.stats.resets == 1
    out = enc.push(tone(500.0, 8000, 0.1), 8000, 600 * MS)  # rate change: counted, kept
    counts = enc.rejections.snapshot()
    assert counts == {"empty": 1, "non_finite": 1, "bad_shape": 1, "bad_encoding": 1, "time_backwards": 1,
                      "rate_change": 1}
    out += enc.flush()
    assert out[-1].stamp_ns == 700 * MS


def test_audio_rate_whose_ratio_needs_a_huge_filter_is_refused_before_any_state():
    """767 999 Hz -> 16 kHz reduces to 16000/767999: a 15.4M-tap filter (once 2.2 s and 761 MB for one
    message). Refused as out_of_range with the reason, the stream untouched; an odd but real rate
    (NTSC-locked 44.056 kHz, 2000/5507) is still resampled."""
    enc = AudioEncoder()
    x = tone(500.0, 16000, 0.1)
    enc.push(x, 16000, 0)
    with pytest.raises(InputRejected) as info:
        enc.push(np.zeros(7680, np.float32), 767_999, 100 * MS)
    assert info.value.reason == "out_of_range" and info.value.counted
    assert "16000/767999" in str(info.value) and str(MAX_RESAMPLE_FACTOR) in str(info.value)
    enc.push(x, 16000, 100 * MS)  # the stream goes on as if the refused message never came
    assert enc.rejections.snapshot() == {"out_of_range": 1} and enc.stats.resets == 0
    with pytest.raises(ValueError, match="16000/767999"):
        StreamingResampler(767_999, 16000)
    odd = AudioEncoder()
    rate = 44_056
    x = tone(1000.0, rate, 1.0, onset_s=0.5) + 1e-4 * np.random.default_rng(0).standard_normal(rate).astype(np.float32)
    out = odd.push(x, rate, 0) + odd.flush()
    assert_grid(out, neurons=64)
    spikes = np.concatenate([w.spikes for w in out])
    on_steps = np.flatnonzero(spikes[:, int(np.argmin(np.abs(odd.center_hz - 1000.0)))])
    assert np.any(np.abs(on_steps - 500 * MS // odd.step_ns) <= 2), on_steps  # ON at the tone's onset


def assert_taps_are_delayed_copies(tapped: np.ndarray, ref: np.ndarray, delays: tuple[int, ...]) -> None:
    """Tap ``i`` of ``tapped`` (steps, taps x N) is ``ref`` (steps, N) delayed by ``delays[i]`` steps, nothing else."""
    n = ref.shape[1]
    for i, d in enumerate(delays):
        block = tapped[:, n * i: n * (i + 1)]
        np.testing.assert_array_equal(block[d: d + ref.shape[0]], ref, err_msg=f"tap {i}")
        assert not block[:d].any() and not block[d + ref.shape[0]:].any()


def test_audio_delay_taps_repeat_the_spikes_delayed():
    x = (tone(1000.0, 16000, 1.0, onset_s=0.2) + tone(3000.0, 16000, 1.0, onset_s=0.5)
         + 1e-4 * np.random.default_rng(1).standard_normal(16000).astype(np.float32))
    plain = AudioEncoder()
    ref = np.concatenate([w.spikes for w in plain.push(x, 16000, 0) + plain.flush()])
    cfg = AudioEncoderConfig(delay_taps_ms=(0.0, 150.0, 300.0))
    assert cfg.delay_steps == (0, 30, 60) and cfg.num_neurons == 3 * 64
    enc = AudioEncoder(cfg)
    out = enc.push(x, 16000, 0) + enc.flush()
    assert_grid(out, neurons=192)
    tapped = np.concatenate([w.spikes for w in out])
    # the delay line drains at flush: 300 ms = 6 more windows than without taps
    assert tapped.shape[0] == ref.shape[0] + 60
    assert ref.sum() > 20
    assert_taps_are_delayed_copies(tapped, ref, (0, 30, 60))


def test_audio_delay_taps_validated():
    for bad in [(), (0.0, 7.0), (150.0, 0.0), (0.0, 0.0), (-5.0,), (0.0, 20_000.0), tuple(5.0 * i for i in range(17))]:
        with pytest.raises(ValueError, match="delay_taps_ms"):
            AudioEncoderConfig(delay_taps_ms=bad)
    assert AudioEncoderConfig(delay_taps_ms=(50.0,), spiking="lif").num_neurons == 32  # one tap, delayed


@given(st.lists(st.integers(1, 4000), min_size=1, max_size=6), st.sampled_from([8000, 44100]))
@settings(max_examples=8, deadline=None)
def test_audio_delay_taps_any_chunking_property(sizes, rate):
    x = tone(700.0, rate, 0.4, 0.1) + tone(3000.0, rate, 0.4, 0.25, 0.1)
    cfg = AudioEncoderConfig(num_channels=16, delay_taps_ms=(0.0, 45.0, 100.0))
    ref_enc = AudioEncoder(cfg)
    ref = ref_enc.push(x, rate, 0) + ref_enc.flush()
    enc = AudioEncoder(cfg)
    out: list[SpikeWindow] = []
    i = 0
    for k in itertools.count():
        if i >= x.size:
            break
        n = sizes[k % len(sizes)]
        out += enc.push(x[i:i + n], rate, (i * 1_000_000_000) // rate)
        i += n
    assert_same_windows(ref, out + enc.flush())


# ---------------------------------------------------------------- IMU
def test_imu_step_gives_expected_delta_spikes():
    cfg = ImuEncoderConfig(accel_thresholds=(0.25, 0.5, 1.0, 2.0), gyro_thresholds=(0.1, 0.2, 0.4, 0.8))
    enc = ImuEncoder(cfg)
    n = 200
    t = 1_000 * MS + np.arange(n) * MS
    accel = np.zeros((n, 3))
    accel[100:, 0] = 1.5  # step of +1.5 m/s^2 on ax at 1100 ms
    accel[150:, 2] = -0.3  # step of -0.3 m/s^2 on az at 1150 ms
    gyro = np.zeros((n, 3))
    gyro[120:, 1] = 0.5  # +0.5 rad/s on gy
    out = enc.push(t, accel, gyro) + enc.flush()
    assert_grid(out, neurons=48)
    spikes = np.concatenate([w.spikes for w in out])
    L = 4
    fired = {int(k) for k in np.flatnonzero(spikes.any(axis=0))}
    expected = {0 * L + 0, 0 * L + 1, 0 * L + 2,       # ax ON: 0.25, 0.5, 1.0 <= 1.5
                6 * L + 2 * L + 0,                    # az OFF: 0.25 <= 0.3
                4 * L + 0, 4 * L + 1, 4 * L + 2}      # gy ON: 0.1, 0.2, 0.4 <= 0.5
    assert fired == expected
    assert int(spikes.sum()) == len(expected)
    step_of = (np.nonzero(spikes)[0] + out[0].start_ns // enc.step_ns) * enc.step_ns
    assert set(step_of.tolist()) == {1100 * MS, 1120 * MS, 1150 * MS}


def test_imu_absent_rows_and_bad_values():
    enc = ImuEncoder()
    t = 1_000 * MS + np.arange(6) * MS
    a = np.zeros((6, 3))
    a[1] = np.nan            # absent accel sample: fine
    a[2, 0] = np.nan         # partial NaN: rejected
    g = np.zeros((6, 3))
    g[3, 2] = np.inf         # inf: rejected
    enc.push(t, a, g)
    enc.push(t[:2], None, g[:2])  # earlier than accepted: backwards
    with pytest.raises(InputRejected):
        enc.push(t[:0], None, None)
    with pytest.raises(InputRejected):
        enc.push(t[:3] + 10 * MS, np.zeros((3, 2)), None)
    assert enc.rejections.snapshot() == {"non_finite": 2, "time_backwards": 2, "empty": 1, "bad_shape": 1}
    assert enc.stats.accepted == 4


def test_imu_gap_resets_references():
    enc = ImuEncoder(ImuEncoderConfig(gap_ms=50.0))
    a = np.zeros((2, 3))
    a[1, 0] = 5.0
    out = enc.push(np.array([0, 200 * MS]), a, None) + enc.flush()
    assert not any(w.spikes.any() for w in out), "the first sample after a gap only sets references"
    assert enc.stats.resets == 1


def test_imu_delay_taps_repeat_the_spikes_delayed():
    rng = np.random.default_rng(4)
    n = 300
    t = 1_000 * MS + np.arange(n) * 10 * MS  # 100 Hz for 3 s
    a = 9.8 + np.cumsum(rng.normal(0, 1.0, (n, 3)), axis=0)
    base = ImuEncoderConfig(coding="population", population_size=16, accel_full_scale=30.0)
    plain = ImuEncoder(base)
    ref = np.concatenate([w.spikes for w in plain.push(t, a, None) + plain.flush()])
    cfg = dataclasses.replace(base, delay_taps_ms=(0.0, 250.0, 500.0))
    assert cfg.delay_steps == (0, 50, 100) and cfg.coded_neurons == 96 and cfg.num_neurons == 3 * 96
    enc = ImuEncoder(cfg)
    out = enc.push(t, a, None) + enc.flush()
    assert_grid(out, neurons=288)
    assert out[0].start_ns == 1_000 * MS
    tapped = np.concatenate([w.spikes for w in out])
    assert tapped.shape[0] == ref.shape[0] + 100  # the delay line drains at flush: 500 ms = 10 windows more
    assert ref.sum() > 200
    assert_taps_are_delayed_copies(tapped, ref, (0, 50, 100))


def test_imu_delay_taps_validated():
    for bad in [(), (0.0, 7.0), (150.0, 0.0), (0.0, 0.0), (-5.0,), (0.0, 20_000.0), tuple(5.0 * i for i in range(17))]:
        with pytest.raises(ValueError, match=r"ImuEncoderConfig\.delay_taps_ms"):
            ImuEncoderConfig(delay_taps_ms=bad)
    assert ImuEncoderConfig(delay_taps_ms=(50.0,), coding="rate").num_neurons == 12  # one tap, delayed


@pytest.mark.parametrize("coding", ["delta", "rate", "population"])
def test_imu_chunk_invariance_davis346(shared_events, coding):
    from snn_fusion_ros.codecs.aedat4 import read_aedat4

    _, imu, _, _ = read_aedat4(shared_events / "davis346.aedat4")
    _check_imu_chunks(imu["t_ns"], imu["accel"], imu["gyro"], ImuEncoderConfig(coding=coding))


def _check_imu_chunks(t, a, g, cfg):
    ref_enc = ImuEncoder(cfg)
    ref = ref_enc.push(t, a, g) + ref_enc.flush()
    assert_grid(ref, neurons=cfg.num_neurons)
    assert sum(int(w.spikes.sum()) for w in ref) > 0
    for chunk in (1, 7, 64):
        enc = ImuEncoder(cfg)
        out: list[SpikeWindow] = []
        for i in range(0, t.size, chunk):
            out += enc.push(t[i:i + chunk], a[i:i + chunk], g[i:i + chunk])
        assert_same_windows(ref, out + enc.flush())


def _skinematics_data() -> Path:
    spec = importlib.util.find_spec("skinematics")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-kinematics not installed (its IMU recordings are optional test data)")
    data = Path(spec.origin).parent.parent / "tests" / "data"
    if not data.is_dir():
        pytest.skip(f"scikit-kinematics test data not found at {data}")
    return data


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("sensor", ["data_xsens.txt", "data_xsens2.txt", "xio"])
def test_imu_real_recordings_skinematics(sensor):
    data = _skinematics_data()
    if sensor.startswith("data_xsens"):
        from skinematics.sensors.xsens import XSens

        rec = XSens(in_file=str(data / sensor), q_type=None)  # 50 Hz and 120 Hz (walking)
    else:
        from skinematics.sensors.xio import XIO

        rec = XIO(in_file=str(data / "data_xio" / "00033_CalInertialAndMag.csv"), q_type=None)
    n = rec.acc.shape[0]
    t = 5_000 * MS + (np.arange(n) * 1e9 / rec.rate).astype(np.int64)
    # gravity is there: accel in m/s^2, gyro in rad/s as the encoder expects
    assert 8.0 < np.linalg.norm(rec.acc, axis=1).mean() < 11.5
    _check_imu_chunks(t, rec.acc, rec.omega, ImuEncoderConfig())


# ---------------------------------------------------------------- runtime reconfiguration
def test_reconfigure_only_runtime_fields():
    dvs = DvsEncoder()
    dvs.reconfigure(refractory_us=10.0, ba_filter=False)
    assert dvs.config.refractory_us == 10.0 and not dvs.config.ba_filter
    with pytest.raises(ValueError, match="grid_width"):
        dvs.reconfigure(grid_width=8)
    with pytest.raises(ValueError, match="refractory_us"):
        dvs.reconfigure(refractory_us=-1.0)
    audio = AudioEncoder()
    audio.reconfigure(delta_threshold_db=6.0)
    assert audio.config.delta_threshold_db == 6.0
    imu = ImuEncoder()
    imu.reconfigure(accel_thresholds=(1.0, 2.0, 3.0, 4.0))
    assert imu._thr[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="levels"):
        imu.reconfigure(accel_thresholds=(1.0,), gyro_thresholds=(0.1,))


def test_refractory_change_takes_effect_mid_stream():
    ev = np.zeros(3, EVENT_DTYPE)
    ev["t"] = [0, 100_000, 200_000]  # same pixel every 0.1 ms
    cfg = DvsEncoderConfig(grid_width=1, grid_height=1, polarity_channels=1, ba_filter=False, step_ms=0.05,
                           window_ms=1.0, refractory_us=1000.0)
    enc = DvsEncoder(cfg)
    first = enc.push(ev, 4, 4)
    enc.reconfigure(refractory_us=0.0)
    ev2 = ev.copy()
    ev2["t"] += 1_000_000
    out = first + enc.push(ev2, 4, 4) + enc.flush()
    spikes = np.concatenate([w.spikes for w in out])[:, 0]
    assert int(spikes.sum()) == 1 + 3


@pytest.mark.parametrize("rate_in", [8000, 22050, 44100, 48000])
def test_streaming_resampler_equals_resample_poly(rate_in):
    import scipy.signal

    from snn_fusion_ros.encoders.audio import StreamingResampler

    x = np.random.default_rng(rate_in).standard_normal(rate_in // 2)
    rs = StreamingResampler(rate_in, 16000)
    y = np.concatenate([rs.process(x[i:i + 137]) for i in range(0, x.size, 137)] + [rs.finish()])
    ref = scipy.signal.resample_poly(x, rs.up, rs.down)
    assert y.size == ref.size
    np.testing.assert_allclose(y, ref, atol=1e-12)


def test_imu_rate_and_population_known_answers():
    n = 1000
    t = np.arange(n) * MS  # 1 kHz for 1 s
    accel = np.zeros((n, 3))
    accel[:, 1] = 10.0  # half of the 20 m/s^2 full scale on ay
    gyro = np.zeros((n, 3))
    gyro[:, 2] = -5.0   # minus full scale on gz
    enc = ImuEncoder(ImuEncoderConfig(coding="rate", max_rate_hz=200.0))
    spikes = np.concatenate([w.spikes for w in enc.push(t, accel, gyro) + enc.flush()]).sum(axis=0)
    # ay: 0.5 * 200 Hz = 100 spikes/s, positive neuron 1; gz: 200 spikes/s capped to one per 5 ms step
    assert 98 <= spikes[1] <= 100, spikes
    assert 198 <= spikes[6 + 5] <= 200, spikes  # the first sample only starts the integration
    assert spikes.sum() == spikes[1] + spikes[11]
    pop = ImuEncoder(ImuEncoderConfig(coding="population", population_size=5))
    fired = np.concatenate([w.spikes for w in pop.push(t[:10], accel[:10], gyro[:10]) + pop.flush()]).any(axis=0)
    # centres -fs, -fs/2, 0, fs/2, fs: ax = 0 -> 2, ay = fs/2 -> 3, az = 0 -> 2, gx = gy = 0 -> 2, gz = -fs -> 0
    assert set(np.flatnonzero(fired).tolist()) == {0 * 5 + 2, 1 * 5 + 3, 2 * 5 + 2, 3 * 5 + 2, 4 * 5 + 2, 5 * 5 + 0}


# ---------------------------------------------------------------- property: any chunking, same windows

_CUTS = st.lists(st.integers(1, 10_000), max_size=8)


def _pieces(n: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = sorted({0, n, *(c % n for c in cuts)})
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


@given(_CUTS, st.integers(0, 2**32))
@settings(max_examples=40, deadline=None)
def test_dvs_any_chunking_property(cuts, seed):
    rng = np.random.default_rng(seed)
    n = 3000
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = 10_000 * MS + np.sort(rng.integers(0, 400 * MS, n)) // 1000 * 1000  # xytp carries us
    ev["x"] = rng.integers(0, 40, n)
    ev["y"] = rng.integers(0, 30, n)
    ev["p"] = rng.integers(0, 2, n)
    cfg = DvsEncoderConfig(grid_width=4, grid_height=3, ba_window_us=3000.0, refractory_us=500.0)
    ref_enc = DvsEncoder(cfg)
    ref = ref_enc.push(ev, 40, 30) + ref_enc.flush()
    enc = DvsEncoder(cfg)
    out: list[SpikeWindow] = []
    for a, b in _pieces(n, cuts):
        out += enc.push_xytp(encode_xytp(ev[a:b], int(ev["t"][a])), int(ev["t"][a]), 40, 30)
    assert_same_windows(ref, out + enc.flush())


@given(st.lists(st.integers(1, 4000), min_size=1, max_size=6), st.sampled_from([8000, 16000, 44100]))
@settings(max_examples=12, deadline=None)
def test_audio_any_chunking_property(sizes, rate):
    x = tone(700.0, rate, 0.4, 0.1) + tone(3000.0, rate, 0.4, 0.25, 0.1)
    ref_enc = AudioEncoder(AudioEncoderConfig(num_channels=16))
    ref = ref_enc.push(x, rate, 0) + ref_enc.flush()
    enc = AudioEncoder(AudioEncoderConfig(num_channels=16))
    out: list[SpikeWindow] = []
    i, k = 0, 0
    while i < x.size:
        n = sizes[k % len(sizes)]
        out += enc.push(x[i:i + n], rate, (i * 1_000_000_000) // rate)
        i += n
        k += 1
    assert_same_windows(ref, out + enc.flush())


@given(_CUTS, st.sampled_from(["delta", "rate", "population"]), st.integers(0, 2**32),
       st.sampled_from([(0.0,), (0.0, 25.0, 300.0)]))
@settings(max_examples=30, deadline=None)
def test_imu_any_chunking_property(cuts, coding, seed, taps):
    rng = np.random.default_rng(seed)
    n = 600
    t = 1_000 * MS + np.cumsum(rng.integers(1 * MS, 12 * MS, n))  # irregular intervals
    a = np.cumsum(rng.normal(0, 0.3, (n, 3)), axis=0)
    g = np.cumsum(rng.normal(0, 0.03, (n, 3)), axis=0)
    g[rng.random(n) < 0.1] = np.nan  # some samples without gyro
    cfg = ImuEncoderConfig(coding=coding, gap_ms=10.0, delay_taps_ms=taps)
    ref_enc = ImuEncoder(cfg)
    ref = ref_enc.push(t, a, g) + ref_enc.flush()
    enc = ImuEncoder(cfg)
    out: list[SpikeWindow] = []
    for lo, hi in _pieces(n, cuts):
        out += enc.push(t[lo:hi], a[lo:hi], g[lo:hi])
    assert_same_windows(ref, out + enc.flush())
