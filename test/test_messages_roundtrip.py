"""Every snn_fusion_ros message type crosses a process boundary over Fast DDS, field by field."""

from __future__ import annotations

import os

import pytest
from conftest import spin_until
from msg_samples import BIG_EVENTS, fields_equal, samples

pytestmark = pytest.mark.ros


def test_dds_is_confined_to_localhost_and_a_private_domain():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(os.environ["ROS_DOMAIN_ID"]) <= 100


def test_every_message_type_round_trips_between_processes(ros_msgs, rclpy_context, executor, node_process):
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    expected = samples()
    proc = node_process(["test/msg_samples.py"])
    node = rclpy.create_node("roundtrip_receiver", context=rclpy_context)
    executor.add_node(node)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    got: dict[str, object] = {}
    for name, msg in expected.items():
        node.create_subscription(type(msg), f"roundtrip/{name}", lambda m, n=name: got.__setitem__(n, m), qos)

    ok = spin_until(executor, lambda: len(got) == len(expected) or proc.proc.poll() is not None, timeout_s=60)
    output = proc.stop()
    assert ok and len(got) == len(expected), f"received {sorted(got)} of {sorted(expected)}; publisher said:\n{output}"
    for name, msg in expected.items():
        assert fields_equal(msg, got[name]) == [], f"{name} differs in {fields_equal(msg, got[name])}"
    assert len(got["EventArray"].events) == BIG_EVENTS * 10
