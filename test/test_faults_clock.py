"""Clock faults: sensor (sim) time jumping backwards - a looping bag - and forwards.

Fusion: a jump back by more than ``alignment.reset_jump_ms`` resets the aligner, classification
continues on the new time line and diagnostics say so (WARN, "alignment resets" grows); a jump forward
resets alignment once, without loss or stall. Encoders: a stamp more than ``reset_jump_s`` before the
newest restarts the stream, so the stream after a loop is encoded again.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import spin_until

pytestmark = pytest.mark.ros

W = 50_000_000
SIZES = {"audio": 8, "dvs": 16, "imu": 6}


def _window_msg(modality: str, k: int):
    from snn_fusion_ros.ros.convert import spike_window_to_msg
    from snn_fusion_ros.spikes import SpikeWindow

    rng = np.random.default_rng(k)
    return spike_window_to_msg(SpikeWindow(modality, rng.random((10, SIZES[modality])) < 0.2, (k + 1) * W,
                                           5_000_000, k))


class Diag:
    def __init__(self, ctx, executor, fusion):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        from snn_fusion_ros.msg import Classification
        from snn_fusion_ros.ros.qos import results_qos

        self.node = rclpy.create_node("clock_fault_rig", context=ctx)
        self.executor, self.fusion = executor, fusion
        executor.add_node(self.node)
        executor.add_node(fusion)
        self.statuses, self.results = [], []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.statuses.extend(
            s for s in m.status if s.name == "fusion: fusion"), 10)
        self.node.create_subscription(Classification, "fusion/classification", self.results.append, results_qos(100))
        spin_until(executor, lambda: fusion.publisher.get_subscription_count() > 0, 10)

    def latest(self):
        n = len(self.statuses)
        self.fusion.updater.update()
        assert spin_until(self.executor, lambda: len(self.statuses) > n, 5), "no diagnostics"
        return self.statuses[-1]

    def stamps(self):
        return [r.header.stamp.sec * 10**9 + r.header.stamp.nanosec for r in self.results]


def _level(s) -> int:
    return s.level[0] if isinstance(s.level, bytes) else int(s.level)


def test_bag_loop_resets_alignment_and_reports_it(rclpy_context, executor, ros_msgs, tiny_model):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.fusion_node import FusionNode

    fusion = FusionNode(context=rclpy_context, parameter_overrides=[
        Parameter("model_path", value=str(tiny_model)), Parameter("alignment.reset_jump_ms", value=1000.0)])
    rig = Diag(rclpy_context, executor, fusion)
    first = list(range(1000, 1040))          # 2 s of windows ...
    looped = list(range(1000, 1010))         # ... then the bag starts over: sensor time back by 2 s
    for k in first + looped:
        for m in SIZES:
            fusion._on_spikes(_window_msg(m, k))
    assert fusion.aligner.resets == 1
    assert fusion.fused == len(first) + len(looped), "windows after the loop were not classified"
    assert fusion.rejections.snapshot() == {} and fusion.aligner.rejections.snapshot() == {}
    assert spin_until(executor, lambda: len(rig.results) >= len(first) + len(looped), 10)
    assert rig.stamps() == [(k + 1) * W for k in first + looped]
    d = rig.latest()
    values = {kv.key: kv.value for kv in d.values}
    assert _level(d) == 1 and "alignment reset" in d.message, (d.level, d.message)
    assert values["alignment resets"] == "1"
    # reported once: the next update (no new reset) is OK again
    for m in SIZES:
        fusion._on_spikes(_window_msg(m, 1010))
    assert _level(rig.latest()) == 0


def test_small_backwards_step_is_late_not_a_reset(rclpy_context, executor, ros_msgs, tiny_model):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.fusion_node import FusionNode

    fusion = FusionNode(context=rclpy_context, parameter_overrides=[Parameter("model_path", value=str(tiny_model))])
    for k in range(1000, 1010):
        for m in SIZES:
            fusion._on_spikes(_window_msg(m, k))
    for m in SIZES:  # 150 ms back: below reset_jump_ms (1 s): stale windows, not a new time line
        fusion._on_spikes(_window_msg(m, 1006))
    assert fusion.aligner.resets == 0 and fusion.fused == 10
    assert fusion.rejections.snapshot() == {"late": 3}
    fusion.chain.close()
    fusion.destroy_node()


def test_forward_jump_resets_alignment_once_without_loss_or_stall(rclpy_context, executor, ros_msgs, tiny_model):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.fusion_node import FusionNode

    fusion = FusionNode(context=rclpy_context, parameter_overrides=[Parameter("model_path", value=str(tiny_model))])
    rig = Diag(rclpy_context, executor, fusion)
    ks = list(range(1000, 1010)) + list(range(73_000, 73_010))  # one hour later
    for k in ks:
        for m in SIZES:
            fusion._on_spikes(_window_msg(m, k))
    assert fusion.aligner.resets == 1 and fusion.fused == len(ks)
    assert spin_until(executor, lambda: len(rig.results) >= len(ks), 10)
    assert rig.stamps() == [(k + 1) * W for k in ks], "a window was lost or the stream stalled"
    assert all(set(r.modalities_used) == set(SIZES) for r in rig.results)


def test_forward_jump_later_windows_are_fused_from_all_modalities(rclpy_context, ros_msgs, tiny_model):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.fusion_node import FusionNode

    fusion = FusionNode(context=rclpy_context, parameter_overrides=[Parameter("model_path", value=str(tiny_model))])
    try:
        for k in (1000, 1001, 73_000, 73_001, 73_002, 73_003):
            for m in SIZES:
                fusion._on_spikes(_window_msg(m, k))
        assert fusion.last_modalities == ("audio", "dvs", "imu"), fusion.last_modalities
        assert fusion.rejections.total <= 2, fusion.rejections.snapshot()
    finally:
        fusion.chain.close()
        fusion.destroy_node()


def test_encoders_encode_again_after_a_bag_loop(rclpy_context, ros_msgs):
    from snn_fusion_ros.bench import soak
    from snn_fusion_ros.ros.audio_encoder_node import AudioEncoderNode
    from snn_fusion_ros.ros.dvs_encoder_node import DvsEncoderNode
    from snn_fusion_ros.ros.imu_encoder_node import ImuEncoderNode

    nodes = {"audio": AudioEncoderNode(context=rclpy_context), "events": DvsEncoderNode(context=rclpy_context),
             "imu": ImuEncoderNode(context=rclpy_context)}
    out = {t: [] for t in nodes}
    for t, n in nodes.items():
        n.publish_windows = lambda ws, frame_id="", t=t: out[t].extend(w.stamp_ns for w in ws)

    class Feed:
        def __init__(self, node):
            self.publish = node._on_input

    player = soak.Player.__new__(soak.Player)
    player.pub_audio, player.pub_events, player.pub_imu = (Feed(nodes[t]) for t in ("audio", "events", "imu"))
    player.dvs_events, player.sent, player.published_wall = 200, {"audio": 0, "events": 0, "imu": 0}, {}
    try:
        for k in list(range(40)) + list(range(10)):  # 2 s, then the bag loops to its start
            player.play_window(k)
        looped = soak.T0 + 5 * W
        for t, stamps in out.items():
            assert any(s <= looped for s in stamps[30:]), f"{t}: no window after the loop: {stamps[-5:]}"
    finally:
        for n in nodes.values():
            n.destroy_node()
