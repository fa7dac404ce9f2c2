"""The pipeline's decisions for a bag, computed offline in one process, without DDS timing.

The encoder nodes' own message handling (``encode_message``: decoding, checks, encoding) runs on
the bag's messages in log-time order, with the parameters of the same YAML file, so the windows are
exactly the ones the node processes produce (the encoders are chunk- and timing-invariant). Windows
are aligned by the fusion core's :class:`~snn_fusion_ros.fusion.alignment.Aligner` with no wall-clock
expiry (a window is fused once every expected modality delivered it) and stepped on a backend. What
the live pipeline publishes differently from this is what transport or timing changed: the
end-to-end tests compare the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn_fusion_ros.spikes import MODALITIES

INPUT_TOPICS = {"/audio": "audio", "/events": "dvs", "/imu": "imu"}


@dataclass(frozen=True)
class OfflineDecision:
    stamp_ns: int
    probs: np.ndarray
    modalities: tuple[str, ...]

    @property
    def class_id(self) -> int:
        return int(np.argmax(self.probs))


def offline_decisions(bag: str | Path, model: str | Path, *, params_file: str | Path | None = None,
                      modalities: tuple[str, ...] = MODALITIES, backend: str = "torch") -> list[OfflineDecision]:
    """Decisions per fused window for ``bag`` (stamp order); needs ROS messages (make build)."""
    import rclpy

    from snn_fusion_ros.bags.reader import BagReader
    from snn_fusion_ros.bags.types import from_cdr
    from snn_fusion_ros.errors import InputRejected
    from snn_fusion_ros.fusion.alignment import Aligner, AlignerConfig
    from snn_fusion_ros.fusion.fallback import BackendChain
    from snn_fusion_ros.ros.audio_encoder_node import AudioEncoderNode
    from snn_fusion_ros.ros.domain import isolate_this_process
    from snn_fusion_ros.ros.dvs_encoder_node import DvsEncoderNode
    from snn_fusion_ros.ros.imu_encoder_node import ImuEncoderNode
    from snn_fusion_ros.snn.artifact import load_artifact

    isolate_this_process()  # the nodes below are created but never spun: nothing is sent anyway
    args = ["--ros-args"] + (["--params-file", str(params_file)] if params_file else [])
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=args)
    classes = {"audio": AudioEncoderNode, "dvs": DvsEncoderNode, "imu": ImuEncoderNode}
    nodes = {m: classes[m](context=ctx) for m in modalities}
    artifact = load_artifact(model)
    chain = BackendChain([backend], artifact)
    aligner = Aligner(AlignerConfig(modalities=modalities, max_wait_ms=10000.0, max_pending=100000))
    out: list[OfflineDecision] = []

    def step(fused) -> None:
        for f in fused:
            out.append(OfflineDecision(f.stamp_ns, chain.step(f.inputs).probs, f.modalities))

    try:
        with BagReader(bag) as reader:
            for topic, type_name, _t, raw in reader.messages(set(INPUT_TOPICS)):
                m = INPUT_TOPICS[topic]
                if m not in nodes:
                    continue
                try:
                    windows = nodes[m].encode_message(from_cdr(raw, type_name))
                except InputRejected:
                    continue  # counted by the node's encoder, as live
                for w in windows:
                    step(aligner.push(w, 0))
        for node in nodes.values():
            for w in node.encoder.flush():
                step(aligner.push(w, 0))
        step(aligner.poll(1 << 62))
    finally:
        chain.close()
        for node in nodes.values():
            node.destroy_node()
        rclpy.shutdown(context=ctx)
    return out
