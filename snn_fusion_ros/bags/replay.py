"""Replay a rosbag2 bag onto ROS topics with its original timing (``snn-fusion replay BAG``).

Messages are published as the CDR bytes stored in the bag (``Publisher.publish(bytes)``: no
deserialisation), scheduled on the bag's log timestamps against ``time.monotonic()``:
message ``i`` is due at ``wall_start + (t_i - t_first) / rate``. A late message is published at once
(no catching-up sleeps are skipped, nothing is dropped). ``/clock`` (rosgraph_msgs/Clock) carries
bag time at ``clock_hz`` and before every message when asked, for nodes with ``use_sim_time``;
with ``loop`` it jumps back at each restart, as ``ros2 bag play --loop`` does.

QoS per topic: the profiles recorded in the bag (offered_qos_profiles: reliable only if every
recorded publisher was, transient-local likewise) or, where the bag has none, the profiles the
subscribers of this package expect (:func:`~snn_fusion_ros.ros.qos.sensor_qos` for EventArray,
AudioFrame, Imu, Image; reliable depth 10 otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snn_fusion_ros.bags.reader import BagReader, TopicMeta
from snn_fusion_ros.bags.types import BagError, rclpy_class
from snn_fusion_ros.bags.writer import SENSOR_TYPES

QOS_SOURCES: tuple[str, ...] = ("bag", "default")


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and how.

    Attributes
    ----------
    rate: playback speed factor (> 0; 2.0 = twice as fast).
    start_offset_s: skip the first this many seconds of the bag (bag time), s.
    loop: start again at the end until stopped.
    topics: bag topics to replay (None = all).
    remap: bag topic -> output topic, applied before ``namespace``.
    namespace: prefix for every output topic (e.g. ``/replay``).
    clock: publish ``/clock`` with bag time.
    clock_hz: ``/clock`` rate between messages, Hz.
    skip_unknown: drop topics whose type has no Python class here (warning) instead of failing.
    qos_from: ``"bag"`` (offered_qos_profiles where recorded) or ``"default"`` (package profiles).
    wait_for_subscribers_s: before starting, wait up to this long until every output topic has a
        subscriber, s (0 = do not wait).
    delay_s: sleep this long before the first message (after the wait), s.
    """

    rate: float = 1.0
    start_offset_s: float = 0.0
    loop: bool = False
    topics: tuple[str, ...] | None = None
    remap: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    clock: bool = False
    clock_hz: float = 40.0
    skip_unknown: bool = False
    qos_from: str = "bag"
    wait_for_subscribers_s: float = 0.0
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate {self.rate}; expected > 0")
        if self.start_offset_s < 0:
            raise ValueError(f"start_offset_s {self.start_offset_s}; expected >= 0")
        if not self.clock_hz > 0:
            raise ValueError(f"clock_hz {self.clock_hz}; expected > 0")
        if self.qos_from not in QOS_SOURCES:
            raise ValueError(f"qos_from {self.qos_from!r}; expected one of {QOS_SOURCES}")
        if self.namespace and not self.namespace.startswith("/"):
            raise ValueError(f"namespace {self.namespace!r}; expected an absolute name like '/replay'")


@dataclass
class ReplayStats:
    """Outcome of a replay: counts, bytes, bag span and wall time (s), achieved vs requested rate."""

    messages: int = 0
    bytes: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    bag_span_s: float = 0.0
    wall_s: float = 0.0
    requested_rate: float = 1.0
    max_lag_s: float = 0.0  # worst lateness of a message against its schedule
    loops: int = 0
    clock_messages: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        """Bag time played per wall second (== requested rate when the player keeps up)."""
        return self.bag_span_s / self.wall_s if self.wall_s > 0 else float("nan")

    def summary(self) -> str:
        return (f"{self.messages} messages ({self.bytes / 1e6:.2f} MB) in {self.wall_s:.3f} s wall for "
                f"{self.bag_span_s:.3f} s of bag: rate {self.achieved_rate:.3f}x achieved vs "
                f"{self.requested_rate:g}x requested, worst lag {self.max_lag_s * 1e3:.1f} ms")


def output_topic(topic: str, opts: ReplayOptions) -> str:
    """The topic a bag topic is published on: remap first, then the namespace prefix."""
    out = opts.remap.get(topic, topic)
    if opts.namespace:
        out = opts.namespace.rstrip("/") + (out if out.startswith("/") else f"/{out}")
    return out


def replay_qos(meta: TopicMeta, qos_from: str = "bag"):
    """The rclpy QoSProfile to publish a bag topic with (see the module docstring)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability, QosReliability

    from snn_fusion_ros.ros.qos import sensor_qos

    if qos_from == "bag" and meta.qos:
        reliable = all(q.reliability == QosReliability.RELIABLE for q in meta.qos)
        latched = all(q.durability == QosDurability.TRANSIENT_LOCAL for q in meta.qos)
        depth = max((q.depth for q in meta.qos), default=10) or 10
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(depth, 10),
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
    if meta.type_name in SENSOR_TYPES:
        return sensor_qos()
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


class BagPlayer:
    """Publishes one bag through ``node`` (publishers are created in the constructor).

    Raises :class:`BagError` ``unknown_type`` naming the type and topic for a type without a Python
    class here (unless ``skip_unknown``), ``bad_request`` for topics not in the bag.
    """

    def __init__(self, node: Any, path: str | Path, opts: ReplayOptions | None = None) -> None:
        self.node = node
        self.opts = opts or ReplayOptions()
        self.path = Path(path)
        self.reader = BagReader(self.path)
        self.warnings: list[str] = list(self.reader.warnings)
        wanted = set(self.opts.topics) if self.opts.topics else set(self.reader.topics)
        missing = wanted - set(self.reader.topics)
        if missing:
            raise BagError(self.path, "bad_request", f"topics {sorted(missing)} are not in the bag; it has "
                                                     f"{sorted(self.reader.topics)}")
        self.publishers: dict[str, Any] = {}
        for topic in sorted(wanted):
            meta = self.reader.topics[topic]
            try:
                cls = rclpy_class(meta.type_name)
            except LookupError as exc:
                if not self.opts.skip_unknown:
                    raise BagError(self.path, "unknown_type", f"topic {topic} has message type {meta.type_name!r}, "
                                                              f"which is not available here ({exc})") from exc
                self.warnings.append(f"skipping topic {topic}: unknown message type {meta.type_name!r}")
                continue
            self.publishers[topic] = node.create_publisher(cls, output_topic(topic, self.opts),
                                                           replay_qos(meta, self.opts.qos_from))
        self.stats = ReplayStats(requested_rate=self.opts.rate, warnings=self.warnings)
        self.clock_pub = None
        if self.opts.clock:
            from rclpy.qos import QoSProfile
            from rosgraph_msgs.msg import Clock

            # imported here, not on the first tick: importing inside the timed loop once cost ~0.7 s and
            # the messages due meanwhile went out in one burst
            from snn_fusion_ros.ros.convert import ns_to_stamp

            self._clock_msg, self._ns_to_stamp = Clock, ns_to_stamp
            self.clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10))

    def close(self) -> None:
        self.reader.close()

    def wait_for_acked(self, timeout_s: float = 2.0) -> bool:
        """Wait until reliable subscribers acknowledged every published message (before exiting), s."""
        from rclpy.duration import Duration

        ok = True
        for pub in [*self.publishers.values(), *([self.clock_pub] if self.clock_pub is not None else [])]:
            ok = pub.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9))) and ok
        return ok

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """Sleep until every output topic has a subscriber (or the timeout passes); True when all do."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self.publishers.values()):
                return True
            time.sleep(0.02)
        return all(p.get_subscription_count() > 0 for p in self.publishers.values())

    def _publish_clock(self, bag_ns: int, stats: ReplayStats) -> None:
        self.clock_pub.publish(self._clock_msg(clock=self._ns_to_stamp(bag_ns)))
        stats.clock_messages += 1

    def run(self, progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> ReplayStats:
        """Replay (once, or until stopped with ``loop``); ``progress(bag_ns_done, bag_ns_total)`` per message.

        Raises :class:`BagError` from a damaged bag after publishing every message before the damage.
        """
        opts = self.opts
        stats = ReplayStats(requested_rate=opts.rate, warnings=self.warnings)
        self.stats = stats  # partial figures stay readable when a damaged bag raises mid-replay
        if opts.wait_for_subscribers_s > 0 and not self.wait_for_subscribers(opts.wait_for_subscribers_s):
            self.warnings.append(f"not every topic had a subscriber after {opts.wait_for_subscribers_s} s")
        if opts.delay_s > 0:
            time.sleep(opts.delay_s)
        if not self.publishers or self.reader.start_ns is None:
            return stats
        first = self.reader.start_ns + int(opts.start_offset_s * 1e9)
        total = max(self.reader.end_ns - first, 0)
        wall_start = time.monotonic()
        try:
            self._loop(first, total, stats, progress, should_stop)
        finally:
            stats.wall_s = time.monotonic() - wall_start
        return stats

    def _loop(self, first: int, total: int, stats: ReplayStats, progress: Callable[[int, int], None] | None,
              should_stop: Callable[[], bool]) -> None:
        opts = self.opts
        clock_period = 1.0 / opts.clock_hz
        done_s = 0.0
        while True:
            loop_wall0 = time.monotonic()
            for topic, _tname, t_ns, raw in self.reader.messages(set(self.publishers)):
                if t_ns < first:
                    continue
                due = loop_wall0 + (t_ns - first) / 1e9 / opts.rate
                now = time.monotonic()
                while now < due:  # sleep, ticking /clock with interpolated bag time
                    if should_stop():
                        return
                    if self.clock_pub is not None:
                        self._publish_clock(first + int((now - loop_wall0) * opts.rate * 1e9), stats)
                    time.sleep(min(due - now, clock_period))
                    now = time.monotonic()
                if should_stop():
                    return
                stats.max_lag_s = max(stats.max_lag_s, now - due)
                if self.clock_pub is not None:
                    self._publish_clock(t_ns, stats)
                self.publishers[topic].publish(raw)
                stats.messages += 1
                stats.bytes += len(raw)
                stats.per_topic[topic] = stats.per_topic.get(topic, 0) + 1
                stats.bag_span_s = done_s + (t_ns - first) / 1e9
                if progress is not None:
                    progress(t_ns - first, total)
            done_s = stats.bag_span_s
            stats.loops += 1
            if not opts.loop or should_stop():
                return
