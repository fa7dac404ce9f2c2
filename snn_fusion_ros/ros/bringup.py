"""snn_fusion_bringup: the encoders and the fusion node in ONE process (multi-threaded executor).

For low-latency use on one machine and for tests. Reads the same parameters as the separate
nodes (``--ros-args --params-file config/snn_fusion.yaml``, keyed by node name).
``--modalities audio,imu`` chooses which encoders run (the fusion node fuses the same set unless
its ``alignment.modalities`` parameter says otherwise).
"""

from __future__ import annotations

import argparse
import sys

from snn_fusion_ros.spikes import MODALITIES


def build_nodes(modalities: list[str], context=None) -> list:
    from snn_fusion_ros.ros.audio_encoder_node import AudioEncoderNode
    from snn_fusion_ros.ros.dvs_encoder_node import DvsEncoderNode
    from snn_fusion_ros.ros.fusion_node import FusionNode
    from snn_fusion_ros.ros.imu_encoder_node import ImuEncoderNode

    classes = {"audio": AudioEncoderNode, "dvs": DvsEncoderNode, "imu": ImuEncoderNode}
    nodes = [classes[m](context=context) for m in modalities]
    nodes.append(FusionNode(context=context))
    return nodes


def parse_modalities(text: str) -> list[str]:
    mods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in mods if m not in MODALITIES]
    if not mods or bad:
        raise ValueError(f"--modalities {text!r}: choose a comma-separated subset of {list(MODALITIES)}")
    return mods


def main(args: list[str] | None = None) -> int:
    from rclpy.utilities import remove_ros_args

    from snn_fusion_ros.ros.runner import run_nodes

    argv = list(sys.argv if args is None else args)
    parser = argparse.ArgumentParser(prog="snn_fusion_bringup", description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", default=",".join(MODALITIES), help="encoders to run, e.g. audio,imu")
    parser.add_argument("--threads", type=int, default=4, help="executor threads")
    opts = parser.parse_args(remove_ros_args(argv)[1:])
    modalities = parse_modalities(opts.modalities)
    return run_nodes(lambda: build_nodes(modalities), argv, threads=opts.threads)


if __name__ == "__main__":
    raise SystemExit(main())
