"""imu_encoder_node: sensor_msgs/Imu -> SpikeTrain on ``~/spikes``."""

from __future__ import annotations

import numpy as np

from snn_fusion_ros.encoders.imu import ImuEncoder, ImuEncoderConfig
from snn_fusion_ros.ros.convert import msg_to_imu
from snn_fusion_ros.ros.encoder_node import EncoderNode
from snn_fusion_ros.ros.runner import run_node


class ImuEncoderNode(EncoderNode):
    """Encodes accelerometer (m/s^2) and gyroscope (rad/s) readings into delta-modulation spikes.

    Input ``imu``: ``sensor_msgs/Imu``; a field whose covariance[0] is -1 is absent (REP-145) and
    is passed to the encoder as NaN; an all-zero covariance means "unknown" and the field is used.
    """

    modality = "imu"
    input_topic = "imu"
    config_cls = ImuEncoderConfig

    def __init__(self, **kwargs) -> None:
        super().__init__("imu_encoder", **kwargs)

    def resolve_input_type(self):
        from sensor_msgs.msg import Imu

        return Imu

    def make_encoder(self, config: ImuEncoderConfig) -> ImuEncoder:
        return ImuEncoder(config)

    def warm_up(self) -> None:
        """Run the encoder once at start-up (JIT compilation) so the first reading is not late."""
        t = np.arange(0, 120_000_000, 10_000_000, dtype=np.int64)
        self.make_encoder(self.encoder_config).push(t, np.zeros((t.size, 3)), np.zeros((t.size, 3)))

    def encode_message(self, msg):
        sample = msg_to_imu(msg)
        return self.encoder.push(np.array([sample.stamp_ns], dtype=np.int64), sample.accel[None, :],
                                 sample.gyro[None, :])


def main(args: list[str] | None = None) -> int:
    return run_node(ImuEncoderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
