"""diagnostic_updater-style bookkeeping (no rclpy): frequency, stamp delay, status merging, latency."""

from __future__ import annotations

import math

import pytest

from snn_fusion_ros.ros import diagnostics as diag

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _run(check) -> diag.StatusWrapper:
    st = diag.StatusWrapper("node: input", "hw")
    check.run(st)
    return st


def _feed(freq: diag.FrequencyStatus, clock: FakeClock, hz: float, seconds: float, period_s: float = 1.0
          ) -> list[diag.StatusWrapper]:
    """Events at ``hz`` for ``seconds``, one ``run`` per ``period_s``; returns the statuses."""
    out = []
    steps = round(seconds * hz)
    per_period = round(period_s * hz)
    for i in range(steps):
        freq.tick()
        clock.t += 1.0 / hz
        if (i + 1) % per_period == 0:
            out.append(_run(freq))
    return out


def test_a_stream_at_the_expected_rate_is_ok_from_its_first_period_after_a_late_start():
    clock = FakeClock()
    freq = diag.FrequencyStatus(100.0, 100.0, tolerance=0.1, window_size=5, clock=clock)
    for _ in range(3):  # node up, sensor not yet: no events
        clock.t += 1.0
        assert _run(freq).level == diag.ERROR
    statuses = _feed(freq, clock, 100.0, 8.0)
    assert [s.level for s in statuses] == [diag.OK] * 8, [s.message for s in statuses]
    rate = float(dict(statuses[0].values)["Actual frequency (Hz)"])
    assert rate == pytest.approx(100.0, rel=0.02)


def test_too_low_too_high_and_stopped_streams_are_reported():
    clock = FakeClock()
    slow = diag.FrequencyStatus(100.0, 100.0, tolerance=0.1, window_size=3, clock=clock)
    assert {s.message for s in _feed(slow, clock, 50.0, 4.0)} == {"Frequency too low."}
    clock = FakeClock()
    fast = diag.FrequencyStatus(100.0, 100.0, tolerance=0.1, window_size=3, clock=clock)
    assert {s.message for s in _feed(fast, clock, 200.0, 4.0)} == {"Frequency too high."}
    # the stream stops: the rate decays over the window, then no events at all
    levels = []
    for _ in range(4):
        clock.t += 1.0
        levels.append(_run(fast))
    assert levels[-1].level == diag.ERROR and levels[-1].message == "No events recorded."


def test_the_frequency_check_is_off_at_zero_expected_rate():
    clock = FakeClock()
    off = diag.FrequencyStatus(0.0, 0.0, clock=clock)
    clock.t += 1.0
    assert _run(off).level == diag.OK  # no events, none expected
    _feed(off, clock, 1.0, 1.0)
    st = _feed(off, clock, 1000.0, 2.0)[-1]
    assert st.level == diag.WARN and st.message == "Frequency too high."  # max 0: anything is too high


def test_timestamp_status_flags_stale_and_future_stamps_per_period():
    ts = diag.TimeStampStatus(-1.0, 5.0)
    assert _run(ts).message == "No data since last update."
    ts.tick(0.2)
    ts.tick(0.4)
    st = _run(ts)
    assert st.level == diag.OK and dict(st.values)["Latest timestamp delay (s)"] == "0.4"
    ts.tick(6.0)
    ts.tick(-2.0)
    st = _run(ts)
    assert st.level == diag.ERROR
    assert "future" in st.message and "past" in st.message
    ts.tick(0.1)
    assert _run(ts).level == diag.OK, "a period's errors must not carry into the next"


def test_merge_summary_keeps_the_worst_level_and_joins_its_messages():
    st = diag.StatusWrapper("n: t", "hw")
    st.merge_summary(diag.WARN, "a")
    st.merge_summary(diag.OK, "fine")
    st.merge_summary(diag.WARN, "b")
    assert (st.level, st.message) == (diag.WARN, "a; b")
    st.merge_summary(diag.ERROR, "c")
    assert (st.level, st.message) == (diag.ERROR, "c")


def test_latency_window_percentiles_and_size_limit():
    w = diag.LatencyWindow(size=100)
    assert all(math.isnan(v) for v in w.percentiles())
    for v in range(1000):
        w.add(float(v))
    assert len(w) == 100
    p50, p99 = w.percentiles()
    assert p50 == pytest.approx(949.5) and p99 == pytest.approx(998.01)
