"""dvs_encoder_node: EventArray (or event_camera_msgs/EventPacket) -> SpikeTrain on ``~/spikes``."""

from __future__ import annotations

import numpy as np

from snn_fusion_ros.codecs.evt3 import Evt3Decoder
from snn_fusion_ros.codecs.layout import EVENT_ENCODINGS
from snn_fusion_ros.codecs.xytp import decode_xytp, validate_events
from snn_fusion_ros.encoders.dvs import DvsEncoder, DvsEncoderConfig
from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.ros.convert import payload_view
from snn_fusion_ros.ros.encoder_node import EncoderNode
from snn_fusion_ros.ros.optional_msgs import require_type
from snn_fusion_ros.ros.runner import run_node


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
        """Compile the numba kernels (decoder, filters) now, not on the first sensor packet."""
        from snn_fusion_ros.codecs.evt3 import encode_evt3
        from snn_fusion_ros.codecs.layout import empty_events

        ev = empty_events(4)
        ev["t"] = [0, 1000, 2000, 60_000_000]
        Evt3Decoder().decode(encode_evt3(ev))
        self.make_encoder(self.encoder_config).push(ev, 8, 8)

    def decode(self, msg) -> np.ndarray:
        """The packet's events as an EVENT_DTYPE array (sensor time in ns)."""
        payload = payload_view(msg.events)
        if payload.size == 0:
            raise InputRejected("empty", "event packet with no events")
        if payload.size > self.node_config.max_message_bytes:
            raise InputRejected("oversized", f"{payload.size} bytes > max_message_bytes "
                                             f"{self.node_config.max_message_bytes}")
        time_base = int(getattr(msg, "time_base_ns", getattr(msg, "time_base", 0)))
        if msg.encoding == "xytp":
            return decode_xytp(payload, time_base)
        if msg.encoding == "evt3":
            if self._evt3_time_base != time_base:  # a new stream (camera restarted or new recording)
                self._evt3.reset()
                self._evt3.time_base_ns = time_base
                self._evt3_time_base = time_base
            return self._evt3.decode(payload)
        raise InputRejected("bad_encoding", f"event encoding {msg.encoding!r}; expected one of {EVENT_ENCODINGS}")

    def encode_message(self, msg):
        if msg.width == 0 or msg.height == 0:
            raise InputRejected("bad_shape", f"sensor size {msg.width}x{msg.height}")
        resolution = (int(msg.width), int(msg.height))
        if self._resolution is not None and resolution != self._resolution:
            # Documented rule: a resolution change restarts the encoder (state belongs to the old sensor).
            self.rejections.add("rate_change", f"resolution {self._resolution} -> {resolution}; encoder restarted")
            self.publish_windows(self.encoder.flush())
            self.encoder = self.make_encoder(self.encoder_config)
        self._resolution = resolution
        events = self.decode(msg)
        events, n_out = validate_events(events, *resolution)
        if n_out:
            self.rejections.add("out_of_range", f"{n_out} event(s) outside {resolution[0]}x{resolution[1]}", n_out)
        return self.encoder.push(events, *resolution)


def main(args: list[str] | None = None) -> int:
    return run_node(DvsEncoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
