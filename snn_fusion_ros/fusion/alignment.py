"""Time alignment of per-modality spike windows by their sensor-time stamps.

Encoders cut windows on one global grid (window k ends at ``(k+1) * window_ns``), so windows of
the same instant carry the same stamp. The :class:`Aligner` collects them per stamp and releases a
:class:`FusedWindow` as soon as every *alive* modality has delivered that stamp, or when the
oldest pending stamp has waited ``max_wait_ms`` (wall time), or when the buffer holds more than
``max_pending`` stamps. Rules for bad timing (each counted by reason):

* a window whose stamp is not newer than the last released one is ``late`` (dropped: its instant
  was already classified);
* the same modality twice for one pending stamp is ``duplicate_seq`` (the second is dropped);
* a stamp more than ``reset_jump_ms`` older than the last released one means the clock jumped back
  (a looping bag, a restarted sensor), and one more than ``reset_jump_ms`` newer than the newest
  window means it jumped forward: the aligner resets (waiting for every modality again) and accepts
  it (``resets`` grows);
* a late window still counts as progress of its modality (it is not stale, only late);
* a modality is *expected* (waited for) while its newest window lags the newest window of any
  modality by at most ``stale_timeout_ms`` of sensor time (before its first window: while the
  stream is younger than that). A modality that fell further behind is stale: it is not waited
  for, and its next window re-admits it. Sensor time, not wall time, decides this, so a pause of
  every sensor (or a paused bag) makes nothing stale, and replay at any rate behaves the same;
* :meth:`Aligner.alive` reports, by wall time, which modalities delivered within
  ``stale_timeout_ms`` (for diagnostics: nothing alive means nothing to classify).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from snn_fusion_ros.errors import InputRejected, RejectionCounter
from snn_fusion_ros.params import param, validate_config
from snn_fusion_ros.spikes import MODALITIES, SpikeWindow


@dataclass(frozen=True)
class AlignerConfig:
    """Alignment parameters (wall-clock durations are measured with the caller's ``now_ns``)."""

    modalities: tuple[str, ...] = field(default=MODALITIES,
                                        metadata=param("modalities fused, subset of audio, dvs, imu"))
    max_wait_ms: float = field(default=30.0, metadata=param(
        "longest wait for the other alive modalities once one delivered a window", "ms", 0.0, 10000.0, runtime=True))
    stale_timeout_ms: float = field(default=500.0, metadata=param(
        "a modality this far behind the others (sensor time), or silent this long (wall time), is dropped from "
        "fusion until it returns", "ms", 1.0, 600000.0, runtime=True))
    max_pending: int = field(default=64, metadata=param("pending stamps kept before the oldest is forced out", "",
                                                        1, 100000))
    reset_jump_ms: float = field(default=1000.0, metadata=param(
        "a stamp this much older than the last classified one, or newer than the newest one, resets alignment "
        "(sensor time jumped: a looping bag, a restarted sensor)", "ms", 1.0, 1e9))

    def __post_init__(self) -> None:
        validate_config(self)
        unknown = set(self.modalities) - set(MODALITIES)
        if not self.modalities or unknown:
            raise ValueError(f"AlignerConfig.modalities={self.modalities!r}; each must be one of {MODALITIES}")


@dataclass(frozen=True)
class FusedWindow:
    """Windows of one instant: ``inputs[modality]`` is a (steps, neurons) bool array."""

    stamp_ns: int
    inputs: dict[str, np.ndarray]
    step_ns: int
    first_arrival_ns: int

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.inputs)


@dataclass
class _Pending:
    windows: dict[str, SpikeWindow]
    first_arrival_ns: int


class Aligner:
    """Bounded, stamp-ordered alignment buffer. Not thread-safe: call from one thread."""

    def __init__(self, config: AlignerConfig) -> None:
        self.config = config
        self.rejections = RejectionCounter()
        self.resets = 0
        self.released = 0
        self.forced = 0
        self._pending: dict[int, _Pending] = {}
        self._last_seen_ns: dict[str, int] = {}
        self._last_released_stamp: int | None = None
        self._newest_stamp: dict[str, int] = {}
        self._first_stamp: int | None = None

    def reset(self) -> None:
        """Forget pending windows, the release watermark and sensor-time progress."""
        self._pending.clear()
        self._last_released_stamp = None
        self._newest_stamp.clear()
        self._first_stamp = None

    def alive(self, now_ns: int) -> tuple[str, ...]:
        """Modalities whose last window arrived within ``stale_timeout_ms`` (wall time) of ``now_ns``."""
        limit = self.config.stale_timeout_ms * 1e6
        return tuple(m for m in self.config.modalities
                     if m in self._last_seen_ns and now_ns - self._last_seen_ns[m] <= limit)

    def expected(self) -> tuple[str, ...]:
        """Modalities waited for: not further behind the newest window than ``stale_timeout_ms`` (sensor time)."""
        if self._first_stamp is None:
            return self.config.modalities
        head = max(self._newest_stamp.values())
        limit = self.config.stale_timeout_ms * 1e6
        return tuple(m for m in self.config.modalities
                     if head - self._newest_stamp.get(m, self._first_stamp) <= limit)

    def seen(self) -> tuple[str, ...]:
        """Modalities that delivered at least one window."""
        return tuple(m for m in self.config.modalities if m in self._last_seen_ns)

    def push(self, window: SpikeWindow, now_ns: int) -> list[FusedWindow]:
        """Add one window; return the fused windows it completes (possibly none)."""
        if window.modality not in self.config.modalities:
            raise InputRejected("unknown_modality",
                                f"{window.modality!r} is not fused here (modalities: {self.config.modalities})")
        jump_ns = self.config.reset_jump_ms * 1e6
        last = self._last_released_stamp
        head = max(self._newest_stamp.values()) if self._newest_stamp else None
        if (last is not None and last - window.stamp_ns > jump_ns) or (head is not None
                                                                       and window.stamp_ns - head > jump_ns):
            self.resets += 1
            self.reset()
            last = None
        if last is not None and window.stamp_ns <= last:
            # Late, but the modality is alive and this far along: record its progress so it is waited
            # for again from the next instant on (otherwise it would look stale for good).
            self._last_seen_ns[window.modality] = now_ns
            self._newest_stamp[window.modality] = max(window.stamp_ns, self._newest_stamp.get(window.modality, 0))
            raise InputRejected("late", f"{window.modality} window {window.stamp_ns} ns is not newer than "
                                        f"the last classified {last} ns")
        pending = self._pending.get(window.stamp_ns)
        if pending is None:
            pending = self._pending[window.stamp_ns] = _Pending({}, now_ns)
        elif window.modality in pending.windows:
            raise InputRejected("duplicate_seq", f"second {window.modality} window for stamp {window.stamp_ns} ns")
        pending.windows[window.modality] = window
        self._last_seen_ns[window.modality] = now_ns
        if self._first_stamp is None:
            self._first_stamp = window.stamp_ns
        self._newest_stamp[window.modality] = max(window.stamp_ns, self._newest_stamp.get(window.modality, 0))
        return self.poll(now_ns)

    def poll(self, now_ns: int) -> list[FusedWindow]:
        """Release what is complete or has waited long enough; call periodically (timer)."""
        out: list[FusedWindow] = []
        expected = set(self.expected())
        wait_ns = self.config.max_wait_ms * 1e6
        while self._pending:
            stamp = min(self._pending)
            p = self._pending[stamp]
            complete = expected <= set(p.windows)
            # A later stamp complete for every expected modality means earlier stamps will not fill up.
            overtaken = any(expected <= set(q.windows) for s, q in self._pending.items() if s > stamp)
            expired = now_ns - p.first_arrival_ns >= wait_ns
            overflow = len(self._pending) > self.config.max_pending
            if not (complete or overtaken or expired or overflow):
                break
            if overflow and not (complete or overtaken or expired):
                self.forced += 1
            del self._pending[stamp]
            self._last_released_stamp = stamp
            step_ns = next(iter(p.windows.values())).step_ns
            out.append(FusedWindow(stamp, {m: w.spikes for m, w in p.windows.items()}, step_ns, p.first_arrival_ns))
        self.released += len(out)
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)
