"""The three encoder nodes over real DDS: windows on the global grid, counted rejections, diagnostics."""

from __future__ import annotations

import itertools
import signal

import numpy as np
import pytest
from conftest import spin_until

pytestmark = pytest.mark.ros

W = 50_000_000
T0 = 1_000 * W  # sensor time of the first sample (on the grid)


class Listener:
    """Collects SpikeTrain windows from one encoder and its diagnostics."""

    def __init__(self, ctx, executor, node_name: str):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        from snn_fusion_ros.msg import SpikeTrain
        from snn_fusion_ros.ros.qos import spikes_qos

        self.node = rclpy.create_node(f"listener_{node_name}", context=ctx)
        self.executor = executor
        self.node_name = node_name
        executor.add_node(self.node)
        self.windows = []
        self.diag = {}
        self.node.create_subscription(SpikeTrain, f"{node_name}/spikes", self.windows.append, spikes_qos())
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name.startswith(f"{self.node_name}:"):
                self.diag[s.name.split(": ", 1)[1]] = s

    def publisher(self, msg_type, topic):
        from snn_fusion_ros.ros.qos import sensor_qos

        pub = self.node.create_publisher(msg_type, topic, sensor_qos())
        assert spin_until(self.executor, lambda: pub.get_subscription_count() > 0, 20), f"nobody subscribes {topic}"
        # best effort: the reader drops samples until it has matched this writer too (discovery is
        # not symmetric in time), so give discovery a moment before the first sample.
        spin_until(self.executor, lambda: False, 0.5)
        return pub

    def values(self, task: str) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.diag[task].values}


def stamps(windows) -> list[int]:
    return [w.header.stamp.sec * 10**9 + w.header.stamp.nanosec for w in windows]


def test_dvs_encoder_process_encodes_packets_and_counts_bad_ones(rclpy_context, executor, node_process, ros_msgs):
    from snn_fusion_ros.codecs.layout import EVENT_DTYPE
    from snn_fusion_ros.codecs.xytp import encode_xytp
    from snn_fusion_ros.msg import EventArray
    from snn_fusion_ros.ros.convert import ns_to_stamp, to_uint8_array

    proc = node_process(["-m", "snn_fusion_ros.ros.dvs_encoder_node", "--ros-args", "-p", "diagnostics_period_s:=0.2",
                         "-p", "encoder.ba_filter:=false"])
    lis = Listener(rclpy_context, executor, "dvs_encoder")
    pub = lis.publisher(EventArray, "events")
    # a vertical edge sweeping right across a 64x64 sensor over 500 ms, in 10 packets of 50 ms
    seq = 0
    for pkt in range(10):
        t = T0 + pkt * W + np.arange(64 * 8) * (W // 512)
        ev = np.zeros(t.size, EVENT_DTYPE)
        ev["t"], ev["x"], ev["y"], ev["p"] = t, pkt * 6 + np.arange(t.size) % 6, np.arange(t.size) % 64, 1
        msg = EventArray(width=64, height=64, encoding="xytp", time_base_ns=T0 + pkt * W, seq=seq)
        msg.header.stamp = ns_to_stamp(int(t[-1]))
        msg.events = to_uint8_array(np.frombuffer(encode_xytp(ev, T0 + pkt * W), np.uint8))
        pub.publish(msg)
        seq += 1
        spin_until(executor, lambda: False, 0.03)
    bad = [EventArray(width=64, height=64, encoding="aedat9", seq=seq),       # bad_encoding
           EventArray(width=64, height=64, encoding="xytp", seq=seq + 1),     # empty
           EventArray(width=64, height=64, encoding="xytp", seq=seq + 2)]     # bad_length (7 bytes)
    bad[0].events = to_uint8_array(np.zeros(10, np.uint8))
    bad[2].events = to_uint8_array(np.zeros(7, np.uint8))
    for i, m in enumerate(bad):
        # the empty packet is stamped before the stream's watermark: no events and no news -> "empty"
        m.header.stamp = ns_to_stamp(T0 + (5 if i == 1 else 11) * W + i)
        pub.publish(m)
        spin_until(executor, lambda: False, 0.01)
    ok = spin_until(executor, lambda: len(lis.windows) >= 9 and "encoder" in lis.diag
                    and int(lis.values("encoder").get("rejected total", 0)) >= 3, 20)
    out = proc.stop()
    assert ok, f"windows={len(lis.windows)} diag={ {k: lis.values(k) for k in lis.diag} }\n{out}"
    assert stamps(lis.windows)[:9] == [T0 + (k + 1) * W for k in range(9)]
    w = lis.windows[0]
    assert (w.modality, w.num_neurons, w.num_steps, w.step_ns) == ("dvs", 512, 10, 5_000_000)
    from snn_fusion_ros.ros.convert import msg_to_spike_window

    # the edge moves right: the mean active grid column grows window by window
    cols = []
    for m in lis.windows[:9]:
        s = msg_to_spike_window(m).spikes.any(axis=0).reshape(2, 16, 16)[1]
        cols.append(np.nonzero(s.any(axis=0))[0].mean())
    assert all(b > a for a, b in itertools.pairwise(cols)), cols
    v = lis.values("encoder")
    assert (v["rejected: bad_encoding"], v["rejected: empty"], v["rejected: bad_length"]) == ("1", "1", "1"), v
    assert lis.values("input")["received"] == "13" and lis.values("input")["missing (sequence gaps)"] == "0"


def test_audio_encoder_node_windows_follow_sensor_time(rclpy_context, executor, ros_msgs):
    from snn_fusion_ros.msg import AudioFrame
    from snn_fusion_ros.ros.audio_encoder_node import AudioEncoderNode
    from snn_fusion_ros.ros.convert import audio_to_msg

    node = AudioEncoderNode(context=rclpy_context)
    executor.add_node(node)
    lis = Listener(rclpy_context, executor, "audio_encoder")
    pub = lis.publisher(AudioFrame, "audio")
    rate = 16000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    for i in range(100):  # 1 s in 10 ms chunks
        chunk = tone[i * 160:(i + 1) * 160]
        pub.publish(audio_to_msg(chunk, rate, T0 + i * 10_000_000, seq=i))
        assert spin_until(executor, lambda n=i + 1: node.received >= n, 5), f"{node.received} of {i + 1}"
    nan_chunk = audio_to_msg(np.zeros(160, np.float32), rate, T0 + 100 * 10_000_000, seq=100, sample_format="F32LE")
    raw = np.frombuffer(nan_chunk.data, np.float32).copy()
    raw[3] = np.nan
    nan_chunk.data = raw.view(np.uint8).tolist()
    pub.publish(nan_chunk)
    assert spin_until(executor, lambda: len(lis.windows) >= 19 and node.rejections.total >= 1, 20)
    assert stamps(lis.windows)[:19] == [T0 + (k + 1) * W for k in range(19)]
    assert node.rejections.snapshot() == {"non_finite": 1}
    assert lis.windows[0].num_neurons == node.encoder.num_neurons == 64


def test_encoder_node_queue_depths_reach_its_qos(rclpy_context, ros_msgs):
    from rclpy.parameter import Parameter
    from rclpy.qos import ReliabilityPolicy

    from snn_fusion_ros.ros.audio_encoder_node import AudioEncoderNode

    node = AudioEncoderNode(context=rclpy_context, parameter_overrides=[
        Parameter("spikes_queue_depth", value=7), Parameter("input_queue_depth", value=9)])
    try:
        assert node.publisher.qos_profile.depth == 7
        assert node.publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert node.subscription.qos_profile.depth == 9
        assert node.subscription.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    finally:
        node.destroy_node()


def test_imu_encoder_node_honours_rep145_and_rejects_nan(rclpy_context, executor, ros_msgs):
    from sensor_msgs.msg import Imu

    from snn_fusion_ros.ros.convert import imu_to_msg
    from snn_fusion_ros.ros.imu_encoder_node import ImuEncoderNode

    node = ImuEncoderNode(context=rclpy_context)
    executor.add_node(node)
    lis = Listener(rclpy_context, executor, "imu_encoder")
    pub = lis.publisher(Imu, "imu")
    for i in range(300):  # 300 ms at 1 kHz: a step of 2 m/s^2 on x at 100 ms; gyro absent
        accel = np.array([2.0 if i >= 100 else 0.0, 0.0, 9.81])
        pub.publish(imu_to_msg(T0 + i * 1_000_000, accel, None))
        if i % 10 == 9:  # let the in-process node keep up: best-effort queues drop on overflow
            assert spin_until(executor, lambda n=i + 1: node.received >= n, 5), f"{node.received} of {i + 1}"
    nan = imu_to_msg(T0 + 300 * 1_000_000, np.array([np.nan, 0, 0]), None)
    nan.linear_acceleration_covariance[0] = 0.0
    nan.linear_acceleration.x = float("nan")
    pub.publish(nan)
    both_absent = imu_to_msg(T0 + 301 * 1_000_000, None, None)
    pub.publish(both_absent)
    assert spin_until(executor, lambda: len(lis.windows) >= 5 and node.rejections.total >= 2, 20)
    assert node.rejections.snapshot() == {"non_finite": 1, "empty": 1}
    from snn_fusion_ros.ros.convert import msg_to_spike_window

    active = [msg_to_spike_window(w).spikes.sum() for w in lis.windows[:5]]
    # delta modulation: the step at 100 ms (window 2) spikes; constant input before and after does not
    assert active[2] > 0 and active[1] == 0 and active[3] == 0 and active[4] == 0, active


def test_node_started_with_sigint_ignored_still_stops_cleanly_on_sigint(rclpy_context, executor, node_process,
                                                                         ros_msgs):
    """A node launched from a script's background job inherits SIGINT ignored; `ros2 launch` stops nodes
    with SIGINT, so the runner restores it (before the fix the process had to be SIGKILLed). SIGUSR1 dumps
    the node's thread stacks (how the fault tests show where a node hung) and does not stop it."""
    proc = node_process(["-m", "snn_fusion_ros.ros.imu_encoder_node", "--ros-args", "-p",
                         "diagnostics_period_s:=0.2"], sigint_ignored=True)
    lis = Listener(rclpy_context, executor, "imu_encoder")
    assert spin_until(executor, lambda: "encoder" in lis.diag, 20), "the node never published diagnostics"
    # SIGUSR1 (what the fault tests send a node that hangs) dumps its threads' stacks and changes nothing
    proc.proc.send_signal(signal.SIGUSR1)
    spin_until(executor, lambda: False, 1.0)
    assert proc.proc.poll() is None, "SIGUSR1 stopped the node"
    out = proc.stop(timeout_s=10.0)
    assert proc.proc.returncode == 0, out
    assert "most recent call first" in out and "spin" in out, out[-2000:]
