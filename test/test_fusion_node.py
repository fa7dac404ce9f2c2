"""The fusion node over real DDS: alignment, degradation, fallback, parameters, diagnostics, checkpoints."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import spin_until

from snn_fusion_ros.ros.convert import stamp_to_ns

pytestmark = pytest.mark.ros

W = 50_000_000
SIZES = {"audio": 8, "dvs": 16, "imu": 6}


def make_node(ctx, model, **params):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.fusion_node import FusionNode

    overrides = [Parameter("model_path", value=str(model))]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    return FusionNode(context=ctx, parameter_overrides=overrides)


class Rig:
    """Publishers of the three encoders' topics and a recorder of classifications and diagnostics."""

    def __init__(self, ctx, executor, fusion, depth: int = 50):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        from snn_fusion_ros.msg import Classification, SpikeTrain
        from snn_fusion_ros.ros.qos import results_qos, spikes_qos

        self.node = rclpy.create_node("fusion_test_rig", context=ctx)
        self.executor = executor
        self.fusion = fusion
        executor.add_node(self.node)
        executor.add_node(fusion)
        self.pubs = {m: self.node.create_publisher(SpikeTrain, f"{m}_encoder/spikes", spikes_qos(depth))
                     for m in SIZES}
        self.results = []
        self.diags = []
        self.node.create_subscription(Classification, "fusion/classification", self.results.append, results_qos(500))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        assert spin_until(executor, lambda: all(p.get_subscription_count() for p in self.pubs.values()), 10)
        # Matching is not symmetric in time: give the readers a moment to match these writers too, or
        # the first windows arrive late (resent) and fusion rightly goes on without them.
        spin_until(executor, lambda: False, 0.5)

    def _on_diag(self, msg):
        self.diags += [s for s in msg.status if s.name.startswith("fusion:")]

    def send(self, modality, k, seed=0):
        from snn_fusion_ros.ros.convert import spike_window_to_msg
        from snn_fusion_ros.spikes import SpikeWindow

        rng = np.random.default_rng(seed * 1000 + k)
        w = SpikeWindow(modality, rng.random((10, SIZES[modality])) < 0.2, (k + 1) * W, 5_000_000, k)
        self.pubs[modality].publish(spike_window_to_msg(w))

    def wait_results(self, n, timeout=10.0):
        return spin_until(self.executor, lambda: len(self.results) >= n, timeout)

    def latest_diag(self):
        """Force a diagnostics update and return the status it published (not an older one)."""
        n = len(self.diags)
        self.fusion.updater.update()
        assert spin_until(self.executor, lambda: len(self.diags) > n, 10), "no /diagnostics received"
        return self.diags[-1]


def level(status) -> int:
    return status.level[0] if isinstance(status.level, bytes) else int(status.level)


def test_aligned_windows_are_classified_in_order_with_sensor_stamps(rclpy_context, executor, ros_msgs, tiny_model):
    rig = Rig(rclpy_context, executor, make_node(rclpy_context, tiny_model))
    for k in range(5):
        for m in ("imu", "audio", "dvs"):  # arrival order differs from modality order
            rig.send(m, k)
    assert rig.wait_results(5), f"got {len(rig.results)} classifications"
    stamps = [stamp_to_ns(r.header.stamp) for r in rig.results]
    assert stamps == [(k + 1) * W for k in range(5)]
    r = rig.results[0]
    assert list(r.modalities_used) == ["audio", "dvs", "imu"]
    assert r.backend == "torch" and r.backend_device == "torch:cpu" and not r.fallback_active
    assert len(r.scores) == 4 and abs(sum(r.scores) - 1) < 1e-4 and r.label == r.class_names[r.class_id]
    assert r.model_version.startswith("tiny@")
    assert [r.seq for r in rig.results] == list(range(5))


@pytest.mark.parametrize("depth", [50, 200])
def test_a_burst_longer_than_spikes_queue_depth_evicts_windows_unless_the_depth_holds_it(
        rclpy_context, executor, ros_msgs, tiny_model, depth):
    """120 windows per modality published while the executor does not turn (a stalled callback, a
    bag played unpaced): the subscriptions keep the last ``spikes_queue_depth`` of each topic."""
    n = 120
    fusion = make_node(rclpy_context, tiny_model, spikes_queue_depth=depth,
                       **{"alignment.max_pending": 1000, "alignment.stale_timeout_ms": 600000.0})
    rig = Rig(rclpy_context, executor, fusion, depth=max(depth, n))
    for k in range(n):
        for m in SIZES:
            rig.send(m, k)
    time.sleep(0.5)  # every sample reaches the readers' histories before the first take
    if depth >= n:
        assert rig.wait_results(n), f"got {len(rig.results)} of {n}"
        stamps = [stamp_to_ns(r.header.stamp) for r in rig.results]
        assert stamps == [(k + 1) * W for k in range(n)]
        assert all(len(r.modalities_used) == 3 for r in rig.results)
    else:
        rig.wait_results(n, timeout=3.0)
        full = [r for r in rig.results if len(r.modalities_used) == 3]
        assert len(full) <= depth < n, (len(full), len(rig.results))  # the oldest windows were evicted
        stamps = [stamp_to_ns(r.header.stamp) for r in full]
        assert stamps[-1] == n * W  # ... and the newest kept


def test_stale_modality_dropped_then_readmitted(rclpy_context, executor, ros_msgs, tiny_model):
    fusion = make_node(rclpy_context, tiny_model, **{"alignment.stale_timeout_ms": 400.0})
    rig = Rig(rclpy_context, executor, fusion)
    k = 0
    for _ in range(3):
        for m in SIZES:
            rig.send(m, k)
        k += 1
    assert rig.wait_results(3)
    time.sleep(0.5)  # dvs goes quiet for longer than the stale timeout (audio and imu too, for now)
    for _ in range(10):  # audio and imu go on: dvs falls behind by more than 400 ms of sensor time
        rig.send("audio", k)
        rig.send("imu", k)
        k += 1
        spin_until(executor, lambda: False, 0.03)
    assert rig.wait_results(13)
    assert list(rig.results[-1].modalities_used) == ["audio", "imu"]
    rig.send("audio", k)  # audio and imu alive right now (wall time), dvs silent for over a second
    rig.send("imu", k)
    k += 1
    assert rig.wait_results(14)
    d = rig.latest_diag()
    assert level(d) == 1 and "dvs" in d.message, d.message  # WARN naming the dropped modality
    for m in SIZES:  # dvs is back
        rig.send(m, k)
    assert rig.wait_results(15)
    assert list(rig.results[-1].modalities_used) == ["audio", "dvs", "imu"]


def test_no_modality_alive_reports_stale_and_publishes_nothing(rclpy_context, executor, ros_msgs, tiny_model):
    rig = Rig(rclpy_context, executor, make_node(rclpy_context, tiny_model))
    spin_until(executor, lambda: False, 0.3)
    assert rig.results == []
    assert level(rig.latest_diag()) == 3


def test_backend_raising_midstream_falls_back_within_one_window(rclpy_context, executor, ros_msgs, tiny_model):
    from snn_fusion_ros.backends.registry import create_backend
    from snn_fusion_ros.backends.torch_backend import TorchBackend
    from snn_fusion_ros.fusion.fallback import BackendChain

    class FaultInjectedBackend(TorchBackend):
        def _step(self, inputs):
            if self.steps >= 2:
                raise RuntimeError("injected accelerator fault")
            return super()._step(inputs)

    fusion = make_node(rclpy_context, tiny_model, **{"alignment.stale_timeout_ms": 60000.0})
    fusion.chain = BackendChain(["faulty", "torch"], fusion.artifact, factory=lambda name, **o: (
        FaultInjectedBackend() if name == "faulty" else create_backend(name, **o)))
    rig = Rig(rclpy_context, executor, fusion)
    for k in range(5):
        for m in SIZES:
            rig.send(m, k)
    assert rig.wait_results(5), "a window was lost while falling back"
    assert [r.backend for r in rig.results] == ["faulty"] * 2 + ["torch"] * 3
    assert [r.fallback_active for r in rig.results] == [False] * 2 + [True] * 3
    d = rig.latest_diag()
    assert level(d) == 2 and "injected accelerator fault" in d.message
    fusion.cfg = type(fusion.cfg)(**{**fusion.cfg.__dict__, "error_hold_s": 0.0})
    for _ in range(3):  # a periodic update computed before the change may still arrive after it
        d = rig.latest_diag()
        if level(d) == 1:
            break
    assert level(d) == 1 and "fallback" in d.message


def test_bad_windows_are_rejected_and_counted(rclpy_context, executor, ros_msgs, tiny_model):
    from snn_fusion_ros.msg import SpikeTrain

    rig = Rig(rclpy_context, executor, make_node(rclpy_context, tiny_model))
    bad = SpikeTrain(modality="audio", num_neurons=8, num_steps=10, step_ns=5_000_000, encoding="dense_bits")
    bad.data = [0, 1, 2]  # 3 bytes, 10 expected
    rig.pubs["audio"].publish(bad)
    wrong_size = SpikeTrain(modality="imu", num_neurons=99, num_steps=10, step_ns=5_000_000, encoding="sparse_u32")
    rig.pubs["imu"].publish(wrong_size)
    spin_until(executor, lambda: rig.fusion.rejections.total + rig.fusion.aligner.rejections.total >= 1, 5)
    for k in range(2):
        for m in SIZES:
            rig.send(m, k)
    rig.wait_results(2)
    spin_until(executor, lambda: False, 0.1)
    counts = rig.fusion.rejections.snapshot()
    assert counts.get("bad_length") == 1, counts
    assert counts.get("bad_shape") == 1, counts  # 99 imu neurons vs the model's 6
    d = rig.latest_diag()
    values = {kv.key: kv.value for kv in d.values}
    assert values["rejected: bad_length"] == "1"


def test_a_wrong_size_modality_is_rejected_alone_and_the_others_are_classified(rclpy_context, executor, ros_msgs,
                                                                              tiny_model):
    """An encoder configured unlike the model (e.g. audio taps missing) loses only its own windows."""
    from snn_fusion_ros.ros.convert import spike_window_to_msg
    from snn_fusion_ros.spikes import SpikeWindow

    rig = Rig(rclpy_context, executor, make_node(rclpy_context, tiny_model))
    for k in range(3):
        rig.send("audio", k)
        rig.send("dvs", k)
        w = SpikeWindow("imu", np.ones((10, SIZES["imu"] + 2), bool), (k + 1) * W, 5_000_000, k)
        rig.pubs["imu"].publish(spike_window_to_msg(w))
    assert rig.wait_results(3), rig.results
    assert all(set(r.modalities_used) == {"audio", "dvs"} for r in rig.results[:3])
    assert rig.fusion.rejections.snapshot().get("bad_shape") == 3, rig.fusion.rejections.snapshot()


def test_invalid_parameters_are_refused(rclpy_context, executor, ros_msgs, tiny_model):
    from rclpy.parameter import Parameter

    with pytest.raises(ValueError, match="backend"):
        make_node(rclpy_context, tiny_model, backend="tpu")
    with pytest.raises(ValueError, match="fallback_backends"):
        make_node(rclpy_context, tiny_model, fallback_backends=["torch", "gpu9"])
    with pytest.raises(FileNotFoundError):
        make_node(rclpy_context, "/nonexistent/model")
    node = make_node(rclpy_context, tiny_model)
    ok = node.set_parameters([Parameter("min_confidence", value=0.5)])[0]
    assert ok.successful and node.cfg.min_confidence == 0.5
    too_big = node.set_parameters([Parameter("min_confidence", value=1.5)])[0]
    assert not too_big.successful and node.cfg.min_confidence == 0.5
    read_only = node.set_parameters([Parameter("backend", value="nir")])[0]
    assert not read_only.successful
    wait = node.set_parameters([Parameter("alignment.max_wait_ms", value=12.0)])[0]
    assert wait.successful and node.aligner.config.max_wait_ms == 12.0
    node.destroy_node()


def test_stdp_checkpoint_saved_at_shutdown_and_restored(rclpy_context, executor, ros_msgs, tiny_model, tmp_path):
    params = {"stdp.enabled": True, "stdp.learning_rate": 0.05, "checkpoint_dir": str(tmp_path)}
    fusion = make_node(rclpy_context, tiny_model, **params)
    assert "no valid checkpoint" in fusion.checkpoint_status
    rig = Rig(rclpy_context, executor, fusion)
    for k in range(20):
        for m in SIZES:
            rig.send(m, k, seed=1)
    assert rig.wait_results(20)
    learned = fusion.stdp.state_dict()["w_fuse"]
    executor.remove_node(fusion)
    fusion.on_shutdown()
    fusion.destroy_node()
    files = sorted(tmp_path.glob("stdp-*.safetensors"))
    assert len(files) == 1
    again = make_node(rclpy_context, tiny_model, **params)
    assert again.checkpoint_status.startswith("restored stdp-00000001")
    np.testing.assert_array_equal(again.stdp.state_dict()["w_fuse"], learned)
    again.save_checkpoint()
    newest = sorted(tmp_path.glob("stdp-*.safetensors"))[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # corrupt the newest: the previous one is used
    third = make_node(rclpy_context, tiny_model, **params)
    assert third.checkpoint_status.startswith("restored stdp-00000001")
    assert "1 file(s) refused" in third.checkpoint_status
    for n in (again, third):
        n.destroy_node()


def test_debug_raster_and_metrics_endpoint(rclpy_context, executor, ros_msgs, tiny_model):
    import socket
    import urllib.request

    from sensor_msgs.msg import Image

    with socket.socket() as s:  # a free port on localhost
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fusion = make_node(rclpy_context, tiny_model, debug_raster=True, debug_raster_period_s=0.05, metrics_port=port)
    rig = Rig(rclpy_context, executor, fusion)
    images = []
    rig.node.create_subscription(Image, "fusion/debug/raster", images.append, 1)
    for k in range(4):
        for m in SIZES:
            rig.send(m, k)
    assert rig.wait_results(4)
    assert spin_until(executor, lambda: len(images) >= 1, 5)
    img = images[-1]
    assert img.encoding == "bgr8" and img.step == img.width * 3 and len(img.data) == img.height * img.step
    assert np.frombuffer(img.data, np.uint8).any(), "blank raster"
    rig.latest_diag()  # updates the liveness gauges
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "snn_fusion_windows_total 4.0" in body
    assert 'snn_fusion_modality_alive{modality="dvs"} 1.0' in body
    fusion.on_shutdown()
