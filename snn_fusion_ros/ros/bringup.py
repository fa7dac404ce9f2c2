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
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv if args is None else args)
    parser = argparse.ArgumentParser(prog="snn_fusion_bringup", description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", default=",".join(MODALITIES), help="encoders to run, e.g. audio,imu")
    parser.add_argument("--threads", type=int, default=4, help="executor threads")
    opts = parser.parse_args(remove_ros_args(argv)[1:])
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)  # see runner.run_node
    nodes = []
    try:
        nodes = build_nodes(parse_modalities(opts.modalities))
        executor = MultiThreadedExecutor(num_threads=opts.threads)
        for n in nodes:
            executor.add_node(n)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError) as exc:
        rclpy.logging.get_logger("snn_fusion_bringup").fatal(f"refusing to start: {exc}")
        return 2
    finally:
        for n in nodes:
            shutdown = getattr(n, "on_shutdown", None)
            if shutdown is not None:
                shutdown()
            n.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
