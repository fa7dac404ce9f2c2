"""diagnostic_updater semantics for rclpy, in one place (the package is not installable here).

Follows diagnostic_updater conventions: a :class:`Updater` publishes a
``diagnostic_msgs/DiagnosticArray`` on ``/diagnostics`` every ``period_s``; each task fills a
:class:`StatusWrapper` whose name is ``"<node name>: <task>"`` and whose hardware_id is the
node's; levels OK/WARN/ERROR/STALE; :class:`FrequencyStatus` and :class:`TimeStampStatus` are the
usual frequency and stamp-delay checks. The pure bookkeeping (:class:`FrequencyStatus`,
:class:`TimeStampStatus`, :class:`LatencyWindow`) does not import rclpy.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


class StatusWrapper:
    """One DiagnosticStatus being filled by a task (summary, merged summaries, key/values)."""

    def __init__(self, name: str, hardware_id: str) -> None:
        self.name = name
        self.hardware_id = hardware_id
        self.level = OK
        self.message = "OK"
        self.values: list[tuple[str, str]] = []

    def summary(self, level: int, message: str) -> None:
        self.level, self.message = level, message

    def merge_summary(self, level: int, message: str) -> None:
        """Keep the worst level; join messages of the worst level with '; ' (as diagnostic_updater)."""
        if level > self.level:
            self.level, self.message = level, message
        elif level == self.level and level != OK and message not in self.message:
            self.message = f"{self.message}; {message}"

    def add(self, key: str, value) -> None:
        if isinstance(value, float):
            value = f"{value:.6g}"
        self.values.append((key, str(value)))

    def to_msg(self):
        from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

        return DiagnosticStatus(level=bytes([self.level]), name=self.name, message=self.message,
                                hardware_id=self.hardware_id,
                                values=[KeyValue(key=k, value=v) for k, v in self.values])


class FrequencyStatus:
    """Event-rate check over a sliding window of update periods (diagnostic_updater FrequencyStatus).

    ``tick()`` per event; ``run(status)`` once per diagnostics period. WARN when the rate is
    outside [min_hz * (1 - tolerance), max_hz * (1 + tolerance)], ERROR when no event came at all
    in the window while events are expected.

    Until the window holds a period that started after the first event, the rate is counted from the
    first event, not from construction: a node started before its sensor would otherwise report
    "Frequency too low." for ``window_size`` periods of a stream at the right rate (diagnostic_updater
    does, and so did this class).
    """

    def __init__(self, min_hz: float, max_hz: float, tolerance: float = 0.1, window_size: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_hz, self.max_hz, self.tolerance = min_hz, max_hz, tolerance
        self._clock = clock
        self._count = 0
        self._first_tick: float | None = None
        self._lock = threading.Lock()
        now = clock()
        self._history: deque[tuple[float, int]] = deque([(now, 0)] * window_size, maxlen=window_size)

    def tick(self, n: int = 1) -> None:
        with self._lock:
            if self._first_tick is None and n > 0:
                self._first_tick = self._clock()
            self._count += n

    def rate_hz(self) -> float:
        with self._lock:
            now, count = self._clock(), self._count
            t0, c0 = self._history[0]
            if c0 == 0 and self._first_tick is not None:
                t0 = max(t0, self._first_tick)  # the window began before the stream did
            self._history.append((now, count))
        dt = now - t0
        return (count - c0) / dt if dt > 0 else 0.0

    def run(self, status: StatusWrapper) -> None:
        rate = self.rate_hz()
        if rate == 0.0 and self.min_hz > 0:
            status.merge_summary(ERROR, "No events recorded.")
        elif rate < self.min_hz * (1 - self.tolerance):
            status.merge_summary(WARN, "Frequency too low.")
        elif rate > self.max_hz * (1 + self.tolerance):
            status.merge_summary(WARN, "Frequency too high.")
        status.add("Events in window", self._count - self._history[0][1])
        status.add("Events since startup", self._count)
        status.add("Actual frequency (Hz)", float(rate))
        status.add("Minimum acceptable frequency (Hz)", float(self.min_hz * (1 - self.tolerance)))
        status.add("Maximum acceptable frequency (Hz)", float(self.max_hz * (1 + self.tolerance)))


class TimeStampStatus:
    """Stamp delay check (diagnostic_updater TimeStampStatus): delay = now - stamp, in seconds.

    ERROR when any delay in the period fell outside [min_acceptable_s, max_acceptable_s].
    """

    def __init__(self, min_acceptable_s: float = -1.0, max_acceptable_s: float = 5.0) -> None:
        self.min_acceptable_s, self.max_acceptable_s = min_acceptable_s, max_acceptable_s
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._too_early = self._too_late = False
        self._min = float("inf")
        self._max = float("-inf")
        self._n = 0

    def tick(self, delay_s: float) -> None:
        with self._lock:
            self._n += 1
            self._min = min(self._min, delay_s)
            self._max = max(self._max, delay_s)
            self._too_early |= delay_s < self.min_acceptable_s
            self._too_late |= delay_s > self.max_acceptable_s

    def run(self, status: StatusWrapper) -> None:
        with self._lock:
            n, lo, hi, early, late = self._n, self._min, self._max, self._too_early, self._too_late
            self._reset()
        if n == 0:
            status.merge_summary(WARN, "No data since last update.")
            return
        if early:
            status.merge_summary(ERROR, "Timestamps too far in future seen.")
        if late:
            status.merge_summary(ERROR, "Timestamps too far in past seen.")
        status.add("Earliest timestamp delay (s)", float(lo))
        status.add("Latest timestamp delay (s)", float(hi))


class LatencyWindow:
    """Last ``size`` durations (ms) for p50/p99 figures."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(float(ms))

    def percentiles(self) -> tuple[float, float]:
        with self._lock:
            if not self._values:
                return float("nan"), float("nan")
            arr = np.fromiter(self._values, dtype=np.float64)
        p50, p99 = np.percentile(arr, [50, 99])
        return float(p50), float(p99)

    def __len__(self) -> int:
        return len(self._values)


class Updater:
    """Publishes the node's tasks on /diagnostics every ``period_s`` (rclpy timer)."""

    def __init__(self, node, hardware_id: str, period_s: float = 1.0) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self._node = node
        self.hardware_id = hardware_id
        self._tasks: list[tuple[str, Callable[[StatusWrapper], None]]] = []
        self._array_type = DiagnosticArray
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period_s, self.update)
        self.last: list[StatusWrapper] = []

    def add(self, task_name: str, fn: Callable[[StatusWrapper], None]) -> None:
        self._tasks.append((task_name, fn))

    def collect(self) -> list[StatusWrapper]:
        out = []
        for task_name, fn in self._tasks:
            status = StatusWrapper(f"{self._node.get_name()}: {task_name}", self.hardware_id)
            try:
                fn(status)
            except Exception as exc:  # a broken task must not stop diagnostics
                status.summary(ERROR, f"diagnostic task raised {type(exc).__name__}: {exc}")
            out.append(status)
        return out

    def update(self) -> None:
        self.last = self.collect()
        msg = self._array_type()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [s.to_msg() for s in self.last]
        self._pub.publish(msg)

    def force_update(self) -> None:
        self.update()
