"""dvs_encoder_node: EventArray (or event_camera_msgs/EventPacket) -> SpikeTrain on ``~/spikes``."""

from __future__ import annotations

from snn_fusion_ros.codecs.evt3 import Evt3Decoder
from snn_fusion_ros.codecs.layout import EVENT_ENCODINGS
from snn_fusion_ros.encoders.dvs import MAX_SENSOR_SIDE, DvsEncoder, DvsEncoderConfig
from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.ros.convert import payload_view, stamp_to_ns
from snn_fusion_ros.ros.encoder_node import MAX_STAMP_NS, EncoderNode
from snn_fusion_ros.ros.optional_msgs import require_type
from snn_fusion_ros.ros.runner import run_node

#: Largest sensor side accepted, pixels. The encoder keeps per-pixel filter maps (~8 bytes a pixel), so a
#: message claiming a 2**32-pixel-wide sensor must be refused before anything is allocated; real event
#: cameras are at most 1280 x 720 (EVT 3.0 carries 11-bit coordinates).


class DvsEncoderNode(EncoderNode):
    """Decodes packed (``xytp``) or Prophesee EVT 3.0 (``evt3``) event packets and encodes them.

    Input ``events``: ``snn_fusion_ros/EventArray`` by default, or ``event_camera_msgs/EventPacket``
    (encoding ``evt3``) when parameter ``input_type`` is ``event_camera_msgs`` and that package is
    installed. Events outside ``width x height`` are dropped and counted as ``out_of_range``.
    """

    modality = "dvs"
    input_topic = "events"
    config_cls = DvsEncoderConfig

    def __init__(self, **kwargs) -> None:
        self._evt3 = Evt3Decoder()
        self._evt3_time_base: int | None = None
        self._resolution: tuple[int, int] | None = None
        self.heartbeats = 0
        super().__init__("dvs_encoder", **kwargs)

    def resolve_input_type(self):
        from rcl_interfaces.msg import ParameterDescriptor

        from snn_fusion_ros.msg import EventArray

        choice = self.declare_parameter("input_type", "snn_fusion_ros", ParameterDescriptor(
            description="input message type: snn_fusion_ros (EventArray) or event_camera_msgs (EventPacket)",
            read_only=True)).value
        if choice == "event_camera_msgs":
            return require_type("event_camera_msgs.msg", "EventPacket", "input_type")
        if choice == "snn_fusion_ros":
            return EventArray
        raise ValueError(f"input_type={choice!r}; expected 'snn_fusion_ros' or 'event_camera_msgs'")

    def make_encoder(self, config: DvsEncoderConfig) -> DvsEncoder:
        return DvsEncoder(config)

    def warm_up(self) -> None:
        """Compile the numba kernels now, not on the first sensor packets: the EVT3 decoder, and the
        encoding pass for both input paths (xytp records carry uint32 times, decoded events int64)
        with both spike collection strategies (sparse and dense packets)."""
        import numpy as np

        from snn_fusion_ros.codecs.evt3 import encode_evt3
        from snn_fusion_ros.codecs.layout import empty_events
        from snn_fusion_ros.codecs.xytp import encode_xytp

        rng = np.random.default_rng(0)
        for n in (4, min(20_000, self.encoder_config.max_events)):
            ev = empty_events(n)
            ev["t"] = np.sort(rng.integers(0, 60_000_000, n))
            ev["x"], ev["y"], ev["p"] = rng.integers(0, 64, n), rng.integers(0, 64, n), rng.integers(0, 2, n)
            Evt3Decoder().decode(encode_evt3(ev))
            self.make_encoder(self.encoder_config).push(ev, 64, 64)
            self.make_encoder(self.encoder_config).push_xytp(encode_xytp(ev, 0), 0, 64, 64)

    def encode_message(self, msg):
        # Checked before the resolution-change flush below: a malformed packet must not end the stream.
        if not (0 < msg.width <= MAX_SENSOR_SIDE and 0 < msg.height <= MAX_SENSOR_SIDE):
            raise InputRejected("bad_shape", f"sensor size {msg.width}x{msg.height}; each side must be in "
                                             f"1 .. {MAX_SENSOR_SIDE} px")
        resolution = (int(msg.width), int(msg.height))
        if self._resolution is not None and resolution != self._resolution:
            # A new sensor geometry: the encoder resets its maps (counted as rate_change); the old
            # stream's open window is flushed first so nothing received is lost.
            self.publish_windows(self.encoder.flush())
        self._resolution = resolution
        windows = self.push_packet(msg, resolution)
        # header.stamp = "complete up to": close the windows that end by it without waiting.
        return windows + self.encoder.advance(stamp_to_ns(msg.header.stamp))

    def push_packet(self, msg, resolution: tuple[int, int]):
        """Decode and encode one packet (the encoder checks sizes, ranges and time order and counts)."""
        payload = payload_view(msg.events)
        if payload.size > self.node_config.max_message_bytes:
            raise InputRejected("oversized", f"{payload.size} bytes > max_message_bytes "
                                             f"{self.node_config.max_message_bytes}")
        time_base = int(getattr(msg, "time_base_ns", getattr(msg, "time_base", 0)))
        if time_base > MAX_STAMP_NS:  # event times would overflow int64 / could not be stamped
            raise InputRejected("out_of_range", f"time_base_ns {time_base}; expected <= {MAX_STAMP_NS}")
        if msg.encoding == "xytp":
            if payload.size == 0:
                return self._heartbeat(msg)
            return self.encoder.push_xytp(payload, time_base, *resolution)
        if msg.encoding == "evt3":
            if self._evt3_time_base != time_base:  # a new stream (camera restarted or new recording)
                self._evt3.reset()
                self._evt3.time_base_ns = time_base
                self._evt3_time_base = time_base
            events = self._evt3.decode(payload)
            if events.size == 0:  # e.g. only EVT_TIME_HIGH words: time passed without events
                return self._heartbeat(msg)
            return self.encoder.push(events, *resolution)
        raise InputRejected("bad_encoding", f"event encoding {msg.encoding!r}; expected one of {EVENT_ENCODINGS}")


    def on_stream_restart(self) -> None:
        self._evt3.reset()
        self._evt3_time_base = None
        self._resolution = None

    def _heartbeat(self, msg) -> list:
        """A packet without events whose stamp is newer than the stream: "no events until stamp".

        Accepted (the windows up to the stamp close in :meth:`encode_message`); a packet without
        events and without a newer stamp carries nothing and is rejected as ``empty``.
        """
        stamp = stamp_to_ns(msg.header.stamp)
        mark = self.encoder.watermark_ns
        if mark is not None and stamp <= mark:
            raise InputRejected("empty", f"packet without events and no newer stamp ({stamp} <= {mark} ns)")
        self.heartbeats += 1
        return []


def main(args: list[str] | None = None) -> int:
    return run_node(DvsEncoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
