"""audio_encoder_node: AudioFrame (or audio_common_msgs) -> SpikeTrain on ``~/spikes``."""

from __future__ import annotations

from snn_fusion_ros.encoders.audio import AudioEncoder, AudioEncoderConfig
from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.ros.convert import AUDIO_FORMATS, AudioChunk, msg_to_audio, stamp_to_ns
from snn_fusion_ros.ros.encoder_node import EncoderNode
from snn_fusion_ros.ros.optional_msgs import require_type
from snn_fusion_ros.ros.runner import run_node


class AudioEncoderNode(EncoderNode):
    """Encodes PCM audio chunks into cochlea-like spike windows.

    Input ``audio``: ``snn_fusion_ros/AudioFrame`` by default. With parameter
    ``input_type: audio_common_msgs`` it reads ``audio_common_msgs/AudioDataStamped`` on ``audio``
    and the stream format from ``audio_common_msgs/AudioInfo`` on ``audio_info`` (that package is
    detected, not required; chunks that arrive before any AudioInfo are rejected as ``bad_shape``).
    """

    modality = "audio"
    input_topic = "audio"
    config_cls = AudioEncoderConfig

    def __init__(self, **kwargs) -> None:
        self._audio_info = None
        super().__init__("audio_encoder", **kwargs)

    def resolve_input_type(self):
        from rcl_interfaces.msg import ParameterDescriptor

        from snn_fusion_ros.msg import AudioFrame

        choice = self.declare_parameter("input_type", "snn_fusion_ros", ParameterDescriptor(
            description="input message type: snn_fusion_ros (AudioFrame) or audio_common_msgs (AudioDataStamped)",
            read_only=True)).value
        if choice == "snn_fusion_ros":
            return AudioFrame
        if choice == "audio_common_msgs":
            info_type = require_type("audio_common_msgs.msg", "AudioInfo", "input_type")
            self.create_subscription(info_type, "audio_info", self._on_audio_info, 1)
            return require_type("audio_common_msgs.msg", "AudioDataStamped", "input_type")
        raise ValueError(f"input_type={choice!r}; expected 'snn_fusion_ros' or 'audio_common_msgs'")

    def make_encoder(self, config: AudioEncoderConfig) -> AudioEncoder:
        return AudioEncoder(config)

    def warm_up(self) -> None:
        """Compile the filterbank and spiking kernels (numba) now, not on the first audio chunk."""
        import numpy as np

        self.make_encoder(self.encoder_config).push(np.zeros(1600, np.float32), 16000, 0)

    def _on_audio_info(self, msg) -> None:
        self._audio_info = msg

    def to_chunk(self, msg) -> AudioChunk:
        if hasattr(msg, "sample_format") and hasattr(msg, "sample_rate_hz"):
            return msg_to_audio(msg, self.node_config.max_message_bytes)
        # audio_common_msgs/AudioDataStamped: the format comes from the last AudioInfo.
        info = self._audio_info
        if info is None:
            raise InputRejected("bad_shape", "AudioDataStamped before any AudioInfo on 'audio_info'")
        if info.sample_format not in AUDIO_FORMATS:
            raise InputRejected("bad_encoding", f"AudioInfo.sample_format {info.sample_format!r}; "
                                                f"expected one of {sorted(AUDIO_FORMATS)}")
        from snn_fusion_ros.msg import AudioFrame

        frame = AudioFrame(header=msg.header, sample_rate_hz=int(info.sample_rate), channels=int(info.channels),
                           sample_format=info.sample_format)
        frame.data = msg.audio.data
        return msg_to_audio(frame, self.node_config.max_message_bytes)

    def message_seq(self, msg) -> int | None:
        return getattr(msg, "seq", None)

    def encode_message(self, msg):
        chunk = self.to_chunk(msg)
        return self.encoder.push(chunk.samples, chunk.sample_rate_hz, stamp_to_ns(msg.header.stamp))


def main(args: list[str] | None = None) -> int:
    return run_node(AudioEncoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
