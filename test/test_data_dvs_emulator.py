"""Known-answer tests of the v2e-style DVS emulator (snn_fusion_ros.data.dvs_emulator)."""

from __future__ import annotations

import numpy as np
import pytest

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.data.dvs_emulator import (
    DvsEmulatorConfig,
    emulate_dvs_numpy,
    emulate_image,
    parse_overrides,
    saccade_frames,
    triangle_path,
)

pytestmark = pytest.mark.unit

IDEAL = dict(threshold_sigma=0.0, refractory_us=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0)


def _cfg(**kw) -> DvsEmulatorConfig:
    base = dict(width_px=8, height_px=8, digit_px=8, duration_ms=100.0, saccade_px=0.0)
    base.update(IDEAL)
    base.update(kw)
    return DvsEmulatorConfig(**base)


def test_brightening_pixel_emits_on_events_at_delta_log_over_threshold():
    # log intensity rises linearly by r = 2 ln-units per second for 1.05 s: ON events every theta / r
    # seconds, floor(2.1 / 0.2) = 10 of them.
    cfg = _cfg(threshold=0.2, duration_ms=1050.0)
    t_ns = np.arange(1051, dtype=np.int64) * 1_000_000
    log_i = np.log(0.01) + 2.0 * t_ns * 1e-9
    frames = np.full((len(t_ns), 8, 8), 0.01)
    frames[:, 3, 5] = np.exp(log_i) - 1e-3  # the emulator adds eps = 1e-3 before the log
    ev = emulate_dvs_numpy(frames, t_ns, cfg, np.random.default_rng(0))
    assert ev.dtype == EVENT_DTYPE
    assert np.all(ev["x"] == 5) and np.all(ev["y"] == 3), "only the brightening pixel may fire"
    assert np.all(ev["p"] == 1), "brightening must give ON events only"
    assert len(ev) == int(np.floor(2.1 / 0.2)), f"expected 10 events, got {len(ev)}"
    expected_t = np.arange(1, 11) * 0.1e9  # k-th crossing at k * theta / r seconds
    np.testing.assert_allclose(ev["t"], expected_t, atol=2e3, err_msg="event times off the crossings")


def test_dimming_pixel_emits_off_events():
    cfg = _cfg(threshold=0.25, duration_ms=100.0)
    t_ns = np.arange(101, dtype=np.int64) * 1_000_000
    frames = np.full((101, 8, 8), 0.5)
    frames[:, 0, 0] = np.exp(np.log(0.8 + 1e-3) - 10.0 * t_ns * 1e-9) - 1e-3  # -1 ln unit over 0.1 s
    ev = emulate_dvs_numpy(frames, t_ns, cfg, np.random.default_rng(0))
    assert len(ev) == 4 and np.all(ev["p"] == 0), f"expected 4 OFF events, got {ev}"


def test_static_image_without_noise_emits_nothing():
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 1, (8, 8))
    cfg = _cfg(threshold_sigma=0.05)
    ev = emulate_image(img, cfg, rng)
    assert len(ev) == 0, f"a static scene with noise off gave {len(ev)} events"


def test_static_image_noise_rate_matches_config():
    cfg = _cfg(width_px=32, height_px=32, digit_px=32, duration_ms=2000.0, leak_rate_hz=0.0,
               shot_noise_rate_hz=5.0, frame_step_us=10000)
    ev = emulate_image(np.zeros((8, 8)), cfg, np.random.default_rng(2))
    expected = 5.0 * 2.0 * 32 * 32  # rate * duration * pixels
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected), f"{len(ev)} shot-noise events, expected ~{expected}"
    assert 0.4 < ev["p"].mean() < 0.6, "shot noise polarity should be balanced"


def test_leak_noise_gives_on_events_at_leak_rate():
    cfg = _cfg(width_px=32, height_px=32, digit_px=32, duration_ms=2000.0, leak_rate_hz=2.0,
               frame_step_us=10000)
    ev = emulate_image(np.zeros((8, 8)), cfg, np.random.default_rng(3))
    expected = 2.0 * 2.0 * 32 * 32
    assert np.all(ev["p"] == 1), "leak events are ON events"
    assert abs(len(ev) - expected) < 0.1 * expected, f"{len(ev)} leak events, expected ~{expected}"


def test_saccade_produces_events_at_edges_only():
    # A bright square moving by <= 2 px: events where an edge passes, none deep inside or far outside.
    img = np.zeros((16, 16))
    img[3:13, 3:13] = 1.0
    cfg = _cfg(width_px=34, height_px=34, digit_px=28, duration_ms=300.0, saccade_px=2.0)
    ev = emulate_image(img, cfg, np.random.default_rng(4))
    assert len(ev) > 100, f"a moving square should produce events, got {len(ev)}"
    frames, _ = saccade_frames(img, cfg)
    edge = (frames.max(axis=0) - frames.min(axis=0)) > 1e-6  # pixels whose intensity ever changes
    assert np.all(edge[ev["y"], ev["x"]]), "events at pixels the moving edges never cross"
    assert not edge[17, 17], "the square's interior must be static"
    assert set(np.unique(ev["p"])) == {0, 1}, "leading edges give ON, trailing edges OFF"
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0 and ev["t"].max() <= 300_000_000


def test_emulator_is_deterministic_given_generator():
    img = np.random.default_rng(5).uniform(0, 1, (8, 8))
    cfg = DvsEmulatorConfig(duration_ms=200.0)
    a = emulate_image(img, cfg, np.random.default_rng(9))
    b = emulate_image(img, cfg, np.random.default_rng(9))
    c = emulate_image(img, cfg, np.random.default_rng(10))
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes(), "a different generator must change mismatch / noise"


def test_refractory_period_limits_rate():
    cfg = _cfg(threshold=0.01, refractory_us=5000.0, duration_ms=100.0)
    t_ns = np.arange(101, dtype=np.int64) * 1_000_000
    frames = np.full((101, 8, 8), 0.01)
    frames[:, 2, 2] = np.exp(np.log(0.01) + 20.0 * t_ns * 1e-9)  # 2 ln units / 0.1 s: 200 crossings
    ev = emulate_dvs_numpy(frames, t_ns, cfg, np.random.default_rng(0))
    assert len(ev) <= 100 / 5 + 1, f"{len(ev)} events despite a 5 ms refractory period over 100 ms"
    assert np.all(np.diff(ev["t"]) >= 5_000_000)


def test_triangle_path_returns_to_start_each_cycle():
    t = np.array([0, 100, 200, 300, 600], dtype=np.int64) * 1_000_000
    p = triangle_path(t, 100.0, 2.0)
    np.testing.assert_allclose(p[[0, 3, 4]], 0.0, atol=1e-12)
    np.testing.assert_allclose(p[1], [2.0, 0.0])
    np.testing.assert_allclose(p[2], [1.0, np.sqrt(3)])


@pytest.mark.parametrize("bad", [dict(threshold=0.0), dict(digit_px=40), dict(refractory_us=-1.0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        DvsEmulatorConfig(**bad)


def test_overrides_take_the_field_type_so_equal_values_name_the_same_build():
    assert parse_overrides(["saccade_px=4", " threshold=0.1", "threshold_sigma=0.015"]) == {
        "saccade_px": 4.0, "threshold": 0.1, "threshold_sigma": 0.015}
    got = parse_overrides(["saccade_px=4", "digit_px=20.0"])
    assert type(got["saccade_px"]) is float and type(got["digit_px"]) is int and got["digit_px"] == 20
    assert parse_overrides([]) == {}


@pytest.mark.parametrize("items, why", [
    (["saccade_px"], "not FIELD=VALUE"),
    (["saccade_pixels=4"], "unknown DVS emulator field 'saccade_pixels'; fields: .*'saccade_px'"),
    (["duration_ms=500"], "follows the fused sample's span"),
    (["saccade_px=4", "saccade_px=6"], "given twice"),
    (["digit_px=20.5"], "whole number"),
    (["threshold=low"], "not a number"),
    (["threshold=nan"], "NaN"),
    (["saccade_px=50"], "above the maximum"),
    (["digit_px=40"], "does not fit the 34x34 sensor"),
])
def test_overrides_refuse_with_the_reason(items, why):
    with pytest.raises(ValueError, match=why):
        parse_overrides(items)


def test_rejects_bad_frames():
    cfg = _cfg()
    with pytest.raises(ValueError, match="strictly increasing"):
        emulate_dvs_numpy(np.zeros((2, 8, 8)), np.array([5, 5]), cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="finite"):
        emulate_dvs_numpy(np.full((2, 8, 8), np.nan), np.array([0, 5]), cfg, np.random.default_rng(0))
