"""The shared shape of the three encoder nodes: input -> core encoder -> ``~/spikes`` + diagnostics.

A concrete node (audio, dvs, imu) names its message type, its core encoder and config class, and
implements :meth:`EncoderNode.encode_message` (decode one message, push it into the encoder, return
the finished windows). Everything else - parameters, QoS, sequence checks, counted rejections,
publishing, diagnostics - lives here, once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rclpy.node import Node

from snn_fusion_ros.errors import InputRejected, RejectionCounter
from snn_fusion_ros.params import param, validate_config
from snn_fusion_ros.ros import diagnostics as diag
from snn_fusion_ros.ros.convert import spike_window_to_msg, stamp_to_ns
from snn_fusion_ros.ros.parameters import ConfigBinding, declare_config
from snn_fusion_ros.ros.qos import sensor_qos, spikes_qos
from snn_fusion_ros.sequence import SequenceTracker
from snn_fusion_ros.spikes import ENCODINGS, SpikeWindow

#: Latest sensor time a window can be stamped with (builtin_interfaces/Time.sec is int32), ns, less one
#: hour of margin so the windows that follow an input stamp still fit.
MAX_STAMP_NS = (2**31 - 3600) * 1_000_000_000


@dataclass(frozen=True)
class EncoderNodeConfig:
    """Parameters every encoder node has (besides its ``encoder.*`` core parameters)."""

    frame_id: str = field(default="", metadata=param("frame_id of published windows; empty = the input's"))
    spike_encoding: str = field(default="dense_bits",
                                metadata=param("SpikeTrain payload layout", choices=ENCODINGS))
    max_message_bytes: int = field(default=64 * 1024 * 1024, metadata=param(
        "largest accepted input payload; larger messages are rejected as 'oversized'", "bytes", 1024, 1 << 30))
    input_queue_depth: int = field(default=50, metadata=param("subscription queue depth (sensor QoS)", "", 1, 10000))
    spikes_queue_depth: int = field(default=50, metadata=param(
        "windows the ~/spikes publisher keeps for subscribers that have not acknowledged them yet "
        "(reliable, keep last)", "windows", 1, 10000))
    expected_rate_hz: float = field(default=0.0, metadata=param(
        "expected input message rate for the frequency check; 0 disables it", "Hz", 0.0, 100000.0, runtime=True))
    rate_tolerance: float = field(default=0.5, metadata=param(
        "relative tolerance of the frequency check", "", 0.0, 10.0, runtime=True))
    stale_timeout_s: float = field(default=2.0, metadata=param(
        "no input for this long reports STALE", "s", 0.01, 3600.0, runtime=True))
    max_stamp_delay_s: float = field(default=5.0, metadata=param(
        "input stamps older than this (vs the node clock) report ERROR", "s", 0.0, 1e9, runtime=True))
    diagnostics_period_s: float = field(default=1.0, metadata=param("diagnostics period", "s", 0.05, 60.0))
    reset_jump_s: float = field(default=1.0, metadata=param(
        "an input stamp this much older than the newest one restarts the stream (a looping bag, a restarted "
        "sensor): the open window is flushed and the encoder starts afresh", "s", 0.001, 1e6, runtime=True))

    def __post_init__(self) -> None:
        validate_config(self)


class EncoderNode(Node):
    """Base class: subscribe ``input_topic`` (sensor QoS), publish ``~/spikes`` (reliable)."""

    modality: str = ""
    input_topic: str = ""
    config_cls: Any = None
    default_node_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.node_config: EncoderNodeConfig = declare_config(self, "", EncoderNodeConfig, self.default_node_overrides)
        self.encoder_config = declare_config(self, "encoder", self.config_cls)
        self.input_type = self.resolve_input_type()
        self.encoder = self.make_encoder(self.encoder_config)
        self.warm_up()
        self._node_binding = ConfigBinding(self, "", self.node_config, self._on_node_config)
        self._encoder_binding = ConfigBinding(self, "encoder", self.encoder_config, self._on_encoder_config)

        self.rejections = RejectionCounter()
        self.sequence = SequenceTracker()
        self._newest_stamp_ns: int | None = None
        self.stream_restarts = 0
        self._restarts_at_last_update = 0
        self.received = 0
        self.published = 0
        self._last_input_monotonic: float | None = None
        self._rejected_at_last_update = 0
        self.encode_ms = diag.LatencyWindow()
        self.input_rate = diag.FrequencyStatus(self.node_config.expected_rate_hz, self.node_config.expected_rate_hz,
                                               self.node_config.rate_tolerance)
        self.stamp_delay = diag.TimeStampStatus(-1.0, self.node_config.max_stamp_delay_s)

        self.publisher = self.create_publisher(self._spike_msg_type(), "~/spikes",
                                                spikes_qos(self.node_config.spikes_queue_depth))
        self.subscription = self.create_subscription(self.input_type, self.input_topic, self._on_input,
                                                     sensor_qos(self.node_config.input_queue_depth))
        self.updater = diag.Updater(self, hardware_id=f"{self.modality}_encoder",
                                    period_s=self.node_config.diagnostics_period_s)
        self.updater.add("input", self._diagnose_input)
        self.updater.add("encoder", self._diagnose_encoder)
        topic_in, topic_out = self.resolve_topic_name(self.input_topic), self.resolve_topic_name("~/spikes")
        self.get_logger().info(
            f"{self.modality} encoder: {self.encoder.num_neurons} neurons, '{topic_in}' -> '{topic_out}'")

    # --- for subclasses -------------------------------------------------------------------------

    def resolve_input_type(self):
        """The input message class (may declare and read parameters that choose it)."""
        raise NotImplementedError

    def make_encoder(self, config):
        raise NotImplementedError

    def encode_message(self, msg) -> list[SpikeWindow]:
        """Decode ``msg`` and push it into ``self.encoder``; raise InputRejected to refuse it."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Run the hot path once at start-up (JIT compilation) so the first message is not late."""

    def message_seq(self, msg) -> int | None:
        """The message's sequence number, or None where the type has none (sensor_msgs/Imu)."""
        return getattr(msg, "seq", None)

    # --- plumbing -------------------------------------------------------------------------------

    @staticmethod
    def _spike_msg_type():
        from snn_fusion_ros.msg import SpikeTrain

        return SpikeTrain

    def _on_node_config(self, cfg: EncoderNodeConfig) -> None:
        self.node_config = cfg
        self.input_rate.min_hz = self.input_rate.max_hz = cfg.expected_rate_hz
        self.input_rate.tolerance = cfg.rate_tolerance
        self.stamp_delay.max_acceptable_s = cfg.max_stamp_delay_s

    def _on_encoder_config(self, cfg) -> None:
        # A new encoder starts at the next window of the global grid; the window in progress is
        # flushed first so nothing already received is lost.
        self.publish_windows(self.encoder.flush())
        self.encoder_config = cfg
        self._replace_encoder()
        self.get_logger().info(f"encoder parameters changed; encoder restarted: {cfg}")

    def _on_input(self, msg) -> None:
        self.received += 1
        self._last_input_monotonic = time.monotonic()
        self.input_rate.tick()
        stamp_ns = stamp_to_ns(msg.header.stamp)
        self.stamp_delay.tick(self.get_clock().now().nanoseconds * 1e-9 - stamp_ns * 1e-9)
        t0 = time.perf_counter()
        try:
            if not 0 <= stamp_ns <= MAX_STAMP_NS:  # builtin_interfaces/Time allows negative seconds
                raise InputRejected("out_of_range", f"header stamp {stamp_ns} ns; expected 0 .. {MAX_STAMP_NS} ns "
                                                    f"(windows are stamped as ROS time)")
            self._restart_if_time_jumped_back(stamp_ns)
            seq = self.message_seq(msg)
            if seq is not None:
                self.sequence.check(int(seq), stamp_ns)
            windows = self.encode_message(msg)
            self._newest_stamp_ns = max(self._newest_stamp_ns or 0, stamp_ns)
        except InputRejected as exc:
            if not getattr(exc, "counted", False):  # the core encoders count their own rejections
                self.rejections.record(exc)
            self.get_logger().warn(f"rejected input: {exc}", throttle_duration_sec=5.0)
            return
        self.encode_ms.add((time.perf_counter() - t0) * 1e3)
        self.publish_windows(windows, msg.header.frame_id)

    def _restart_if_time_jumped_back(self, stamp_ns: int) -> None:
        """Documented rule: sensor time more than ``reset_jump_s`` before the newest stamp is a new stream."""
        newest = self._newest_stamp_ns
        if newest is None or newest - stamp_ns <= self.node_config.reset_jump_s * 1e9:
            return
        self.publish_windows(self.encoder.flush())
        self._replace_encoder()
        self.sequence.reset()
        self.on_stream_restart()
        self._newest_stamp_ns = None
        self.stream_restarts += 1
        self.get_logger().warn(f"sensor time jumped back {(newest - stamp_ns) / 1e9:.3f} s: stream restarted "
                               f"(restart {self.stream_restarts})")

    def _replace_encoder(self) -> None:
        """A fresh encoder of ``encoder_config`` that keeps counting rejections where the old one left off
        (the totals in diagnostics never go down)."""
        counter = getattr(self.encoder, "rejections", None)
        self.encoder = self.make_encoder(self.encoder_config)
        if counter is not None and hasattr(self.encoder, "rejections"):
            self.encoder.rejections = counter

    def on_stream_restart(self) -> None:
        """Subclasses forget per-stream decoding state here (the encoder is already new)."""

    def publish_windows(self, windows: list[SpikeWindow], input_frame_id: str = "") -> None:
        frame_id = self.node_config.frame_id or input_frame_id
        for w in windows:
            self.publisher.publish(spike_window_to_msg(w, self.node_config.spike_encoding, frame_id))
            self.published += 1

    def on_shutdown(self) -> None:
        """Flush the last partial window so nothing the sensor sent is lost at shutdown."""
        try:
            self.publish_windows(self.encoder.flush())
        except Exception as exc:  # shutting down: log, never raise
            self.get_logger().warn(f"flush at shutdown failed: {exc}")

    def rejection_counts(self) -> dict[str, int]:
        """Node-level rejections plus the encoder's own (e.g. events outside the sensor)."""
        counts = self.rejections.snapshot()
        inner = getattr(self.encoder, "rejections", None)
        if inner is not None:
            for k, v in inner.snapshot().items():
                counts[k] = counts.get(k, 0) + v
        return counts

    def _diagnose_input(self, status: diag.StatusWrapper) -> None:
        cfg = self.node_config
        if self._last_input_monotonic is None:
            status.summary(diag.STALE, f"no input received on '{self.resolve_topic_name(self.input_topic)}'")
        elif time.monotonic() - self._last_input_monotonic > cfg.stale_timeout_s:
            status.summary(diag.STALE, f"no input for more than {cfg.stale_timeout_s:g} s")
        else:
            status.summary(diag.OK, "receiving")
            if cfg.expected_rate_hz > 0:
                self.input_rate.run(status)
            self.stamp_delay.run(status)
        status.add("topic", self.resolve_topic_name(self.input_topic))
        status.add("received", self.received)
        if self.stream_restarts > self._restarts_at_last_update:
            status.merge_summary(diag.WARN, "sensor time jumped back: stream restarted")
            self._restarts_at_last_update = self.stream_restarts
        status.add("stream restarts (time jumped back)", self.stream_restarts)
        status.add("missing (sequence gaps)", self.sequence.missing)
        status.add("publisher restarts", self.sequence.restarts)

    def _diagnose_encoder(self, status: diag.StatusWrapper) -> None:
        counts = self.rejection_counts()
        total = sum(counts.values())
        new = total - self._rejected_at_last_update
        self._rejected_at_last_update = total
        if new:
            status.summary(diag.WARN, f"{new} input(s) rejected since last update: {self.rejections.last_detail}")
        else:
            status.summary(diag.OK, "encoding")
        p50, p99 = self.encode_ms.percentiles()
        status.add("modality", self.modality)
        status.add("neurons", self.encoder.num_neurons)
        status.add("published windows", self.published)
        status.add("rejected total", total)
        for reason, n in sorted(counts.items()):
            status.add(f"rejected: {reason}", n)
        status.add("encode time p50 (ms)", p50)
        status.add("encode time p99 (ms)", p99)
