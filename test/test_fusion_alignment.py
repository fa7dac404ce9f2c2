"""Aligner: windows of one instant are fused; late, duplicate, reordered and stale inputs follow the rules."""

from __future__ import annotations

import numpy as np
import pytest

from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.fusion.alignment import Aligner, AlignerConfig
from snn_fusion_ros.spikes import SpikeWindow

pytestmark = pytest.mark.unit

W = 50_000_000  # window length, ns
MS = 1_000_000


def win(modality: str, k: int, fill: bool = False) -> SpikeWindow:
    spikes = np.full((10, 4), fill, dtype=bool)
    return SpikeWindow(modality, spikes, stamp_ns=(k + 1) * W, step_ns=5 * MS, seq=k)


def test_window_released_as_soon_as_every_alive_modality_delivered():
    a = Aligner(AlignerConfig(max_wait_ms=1000))
    t = 0
    assert a.push(win("audio", 0), t) == []
    assert a.push(win("dvs", 0), t) == []
    out = a.push(win("imu", 0), t)
    assert [f.stamp_ns for f in out] == [W]
    assert out[0].modalities == ("audio", "dvs", "imu")


def test_jittered_and_reordered_arrivals_come_out_in_stamp_order():
    rng = np.random.default_rng(0)
    a = Aligner(AlignerConfig(max_wait_ms=1e4, max_pending=1000))
    arrivals = [(m, k) for k in range(40) for m in ("audio", "dvs", "imu")]
    # jitter: each arrival shifted by up to 2 windows
    order = np.argsort(np.array([k for _, k in arrivals]) + rng.uniform(0, 2, len(arrivals)), kind="stable")
    released = []
    for now, i in enumerate(order):
        released += a.push(win(*arrivals[i]), now * MS)
    released += a.poll(10**12)
    stamps = [f.stamp_ns for f in released]
    assert stamps == sorted(stamps), "released out of order"
    assert len(stamps) == len(set(stamps))
    complete = [f for f in released if f.modalities == ("audio", "dvs", "imu")]
    assert len(complete) >= 38, f"only {len(complete)} of 40 windows fused with all modalities"
    assert a.rejections.total + sum(len(f.inputs) for f in released) == 120, "an input was neither fused nor counted"


def test_late_and_duplicate_windows_are_rejected_and_counted():
    a = Aligner(AlignerConfig(modalities=("audio", "imu")))
    a.push(win("audio", 3), 0)
    assert a.push(win("imu", 3), 0)
    with pytest.raises(InputRejected) as late:
        a.push(win("audio", 2), 0)
    assert late.value.reason == "late"
    a.push(win("audio", 4), 0)
    with pytest.raises(InputRejected) as dup:
        a.push(win("audio", 4), 0)
    assert dup.value.reason == "duplicate_seq"


def test_stale_modality_is_not_waited_for_and_is_readmitted():
    a = Aligner(AlignerConfig(max_wait_ms=1e4, stale_timeout_ms=100))
    for m in ("audio", "dvs", "imu"):
        a.push(win(m, 0), 0)
    fused = []
    for k in range(1, 6):  # dvs goes silent; audio and imu go on
        fused += a.push(win("audio", k), k * MS)
        fused += a.push(win("imu", k), k * MS)
    # windows 1 and 2 waited for dvs until it fell 100 ms (sensor time) behind, then went without it
    assert [f.stamp_ns for f in fused] == [(k + 1) * W for k in range(1, 6)]
    assert all(f.modalities == ("audio", "imu") for f in fused)
    assert a.expected() == ("audio", "imu")
    a.push(win("dvs", 6), 10 * MS)  # dvs returns: waited for and fused again without a restart
    assert a.expected() == ("audio", "dvs", "imu")
    a.push(win("audio", 6), 10 * MS)
    out = a.push(win("imu", 6), 10 * MS)
    assert out[-1].modalities == ("audio", "dvs", "imu") and out[-1].stamp_ns == 7 * W


def test_pause_of_every_sensor_makes_nothing_stale():
    a = Aligner(AlignerConfig(max_wait_ms=1e4, stale_timeout_ms=100))
    for m in ("audio", "dvs", "imu"):
        a.push(win(m, 0), 0)
    t = 10_000 * MS  # ten seconds of silence everywhere (a paused bag), then the streams resume
    assert a.push(win("audio", 1), t) == []
    assert a.push(win("dvs", 1), t) == []
    out = a.push(win("imu", 1), t)
    assert out[0].modalities == ("audio", "dvs", "imu")
    assert a.alive(t) == ("audio", "dvs", "imu")
    assert a.alive(t + 200 * MS) == ()


def test_missing_window_released_after_max_wait():
    a = Aligner(AlignerConfig(max_wait_ms=30))
    for m in ("audio", "dvs", "imu"):
        a.push(win(m, 0), 0)
    a.push(win("audio", 1), 0)
    a.push(win("imu", 1), 0)
    assert a.poll(29 * MS) == []
    out = a.poll(30 * MS)
    assert [(f.stamp_ns, f.modalities) for f in out] == [(2 * W, ("audio", "imu"))]


def test_clock_jump_backwards_resets_alignment():
    a = Aligner(AlignerConfig(modalities=("imu",), reset_jump_ms=500))
    for k in range(100, 103):
        assert a.push(win("imu", k), 0)
    out = a.push(win("imu", 0), 0)  # a bag looped: 5 s back
    assert a.resets == 1 and [f.stamp_ns for f in out] == [W]


def test_buffer_is_bounded():
    a = Aligner(AlignerConfig(max_pending=8, max_wait_ms=1e4))
    for k in range(50):
        a.push(win("audio", k), 0)  # dvs and imu never come but stay "alive" via first windows
        a.push(win("dvs", 1000 + k), 0)
    assert a.pending <= 9


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="max_wait_ms"):
        AlignerConfig(max_wait_ms=-1)
    with pytest.raises(ValueError, match="modalities"):
        AlignerConfig(modalities=("audio", "sonar"))
