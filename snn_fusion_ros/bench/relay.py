"""A transport-only relay (the e2e benchmark's baseline): SpikeTrain in, same header out with a payload
of ``--out-bytes`` bytes. Three relays in separate processes cost what the pipeline's three hops
cost in transport, without any encoding or network compute."""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args

    from snn_fusion_ros.msg import SpikeTrain
    from snn_fusion_ros.ros.convert import to_uint8_array
    from snn_fusion_ros.ros.qos import spikes_qos
    from snn_fusion_ros.ros.runner import run_node

    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--in-topic", required=True)
    parser.add_argument("--out-topic", required=True)
    parser.add_argument("--out-bytes", type=int, required=True)
    opts = parser.parse_args(remove_ros_args(argv)[1:])

    def build():
        node = rclpy.create_node(opts.name)
        payload = to_uint8_array(np.zeros(opts.out_bytes, np.uint8))
        pub = node.create_publisher(SpikeTrain, opts.out_topic, spikes_qos())

        def relay(msg):
            out = SpikeTrain(header=msg.header, modality="dvs", seq=msg.seq)
            out.data = payload
            pub.publish(out)

        node.create_subscription(SpikeTrain, opts.in_topic, relay, spikes_qos())
        return node

    return run_node(build, argv)


if __name__ == "__main__":
    sys.exit(main())
