"""Deterministic sample messages of every snn_fusion_ros type, shared by the publisher process
(run as ``python test/msg_samples.py``) and the receiving test, which compares field by field."""

from __future__ import annotations

import sys
import time

import numpy as np

BIG_EVENTS = 1_000_000


def samples() -> dict[str, object]:
    """One message of each type (plus a 1M-event EventArray), built from seeded data."""
    from snn_fusion_ros.codecs.layout import XYTP_DTYPE
    from snn_fusion_ros.msg import AudioFrame, Classification, EventArray, SpikeTrain
    from snn_fusion_ros.ros.convert import ns_to_stamp, to_uint8_array

    rng = np.random.default_rng(1234)
    out: dict[str, object] = {}

    ev = np.zeros(BIG_EVENTS, dtype=XYTP_DTYPE)
    ev["t_us"] = np.sort(rng.integers(0, 1_000_000, BIG_EVENTS))
    ev["x"] = rng.integers(0, 1280, BIG_EVENTS)
    ev["y"] = rng.integers(0, 720, BIG_EVENTS)
    ev["p"] = rng.integers(0, 2, BIG_EVENTS)
    m = EventArray(width=1280, height=720, encoding="xytp", time_base_ns=1_700_000_000_123_456_789, seq=7)
    m.header.stamp = ns_to_stamp(1_700_000_001_123_456_789)
    m.header.frame_id = "dvs_optical"
    m.events = to_uint8_array(ev.view(np.uint8))
    out["EventArray"] = m

    a = AudioFrame(sample_rate_hz=16000, channels=2, sample_format="S16LE", seq=3)
    a.header.stamp = ns_to_stamp(12_345_678_901)
    a.header.frame_id = "mic"
    a.data = to_uint8_array(rng.integers(-32768, 32767, (160, 2), dtype=np.int16).view(np.uint8))
    out["AudioFrame"] = a

    s = SpikeTrain(modality="dvs", num_neurons=512, num_steps=10, step_ns=5_000_000, encoding="dense_bits", seq=9)
    s.header.stamp = ns_to_stamp(50_000_000)
    s.data = to_uint8_array(np.packbits(rng.random(5120) < 0.1, bitorder="little"))
    out["SpikeTrain"] = s

    c = Classification(class_id=3, label="three", confidence=0.75, class_names=[str(i) for i in range(10)],
                       scores=[0.025] * 3 + [0.75] + [0.025] * 6, modalities_used=["audio", "imu"],
                       backend="torch", backend_device="torch:cpu", fallback_active=True, latency_ms=4.5,
                       model_version="default@0123456789ab", seq=11)
    c.header.stamp = ns_to_stamp(99_000_000_000)
    out["Classification"] = c
    return out


def fields_equal(a, b) -> list[str]:
    """Names of the fields (recursively) whose values differ between two messages."""
    diffs = []
    for name in a.get_fields_and_field_types():
        va, vb = getattr(a, name), getattr(b, name)
        if hasattr(va, "get_fields_and_field_types"):
            diffs += [f"{name}.{d}" for d in fields_equal(va, vb)]
        elif hasattr(va, "__len__") and not isinstance(va, str):
            if len(va) != len(vb) or not np.array_equal(np.asarray(va), np.asarray(vb)):
                diffs.append(name)
        elif va != vb:
            diffs.append(name)
    return diffs


def main() -> int:
    """Publish every sample on topic ``roundtrip/<Type>`` (reliable, transient local) until killed."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    rclpy.init(args=sys.argv)
    try:
        node = rclpy.create_node("roundtrip_publisher")
        msgs = samples()
        pubs = {k: node.create_publisher(type(m), f"roundtrip/{k}", qos) for k, m in msgs.items()}
        for k, m in msgs.items():
            pubs[k].publish(m)
        node.get_logger().info("published all samples")
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
            time.sleep(0.01)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
