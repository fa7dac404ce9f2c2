"""End-to-end latency: sensor stamp -> published classification, encoders and fusion in separate processes.

Set-up: the three encoder nodes and the fusion node (torch backend, batch 1) each run in their own
process, as ``ros2 launch`` starts them. This process plays the sensors in real time on a 10 ms
grid - 16 kHz audio in 10 ms chunks, DVS packets of ``--events-per-packet`` events per 10 ms, IMU
at 200 Hz - with sensor stamps from the system clock, and with encoder windows of 10 ms (1 ms
steps) the pipeline classifies 100 windows/s. Latency is the receive time of each Classification
here minus its stamp (the end of the window in sensor time), so it includes every hop and the
encoders' wait for the window's last sample.

Baseline, same run: three transport-only relays in separate processes (``bench/relay.py``) carry
messages of the pipeline's sizes over the same three hops (sensor -> encoder -> fusion -> consumer);
``ratio`` is pipeline p99 over relay p99.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from snn_fusion_ros.bench.cli import Row
from snn_fusion_ros.ros.pipeline import Pipeline

TICK_NS = 10_000_000
AUDIO_RATE = 16000
IMU_PERIOD_NS = 5_000_000


def _bench_model(folder: Path) -> Path:
    """An untrained network with the encoders' neuron counts and 10 ms windows (latency does not depend
    on the weights' values)."""
    from snn_fusion_ros.snn.artifact import save_untrained_encoder_sized

    return save_untrained_encoder_sized(folder / "bench_e2e", num_classes=10, step_ms=1.0, steps_per_window=10,
                                        created_by="snn-fusion bench e2e")


class _Player:
    """Publishes the three sensor streams on a 10 ms grid of wall-clock time and records results."""

    def __init__(self, node, events_per_packet: int, pipeline: bool) -> None:
        from sensor_msgs.msg import Imu

        from snn_fusion_ros.msg import AudioFrame, Classification, EventArray, SpikeTrain
        from snn_fusion_ros.ros.qos import results_qos, sensor_qos, spikes_qos

        self.node = node
        self.pipeline = pipeline
        self.rng = np.random.default_rng(0)
        self.events_per_packet = events_per_packet
        self.results: list[tuple[int, float]] = []  # (window stamp ns, latency ms)
        self._lock = threading.Lock()
        self.seq = 0
        if pipeline:
            self.pub_audio = node.create_publisher(AudioFrame, "audio", sensor_qos())
            self.pub_events = node.create_publisher(EventArray, "events", sensor_qos())
            self.pub_imu = node.create_publisher(Imu, "imu", sensor_qos())
            node.create_subscription(Classification, "fusion/classification", self._on_result, results_qos())
            self.publishers = [self.pub_audio, self.pub_events, self.pub_imu]
        else:
            self.pub_relay = node.create_publisher(SpikeTrain, "relay_in", spikes_qos())
            node.create_subscription(SpikeTrain, "relay_out", self._on_result, spikes_qos())
            self.publishers = [self.pub_relay]
        self.t_audio = np.arange(160) / AUDIO_RATE

    def _on_result(self, msg) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self.results.append((stamp, (now - stamp) / 1e6))

    def connected(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.publishers)

    def tick(self, t_ns: int) -> None:
        """Publish what the sensors completed at wall time ``t_ns`` (a multiple of 10 ms)."""
        from snn_fusion_ros.codecs.layout import EVENT_DTYPE
        from snn_fusion_ros.codecs.xytp import encode_xytp
        from snn_fusion_ros.msg import EventArray, SpikeTrain
        from snn_fusion_ros.ros.convert import audio_to_msg, imu_to_msg, ns_to_stamp, to_uint8_array

        start = t_ns - TICK_NS
        n = self.events_per_packet
        ev = np.zeros(n, EVENT_DTYPE)
        ev["t"] = start + np.sort(self.rng.integers(0, TICK_NS, n))
        ev["x"] = self.rng.integers(0, 346, n)
        ev["y"] = self.rng.integers(0, 260, n)
        ev["p"] = self.rng.integers(0, 2, n)
        payload = encode_xytp(ev, start)
        if not self.pipeline:
            msg = SpikeTrain(modality="dvs", seq=self.seq)
            msg.header.stamp = ns_to_stamp(t_ns)
            msg.data = to_uint8_array(np.frombuffer(payload, np.uint8))
            self.pub_relay.publish(msg)
            self.seq += 1
            return
        tone = 0.3 * np.sin(2 * np.pi * 440 * (start / 1e9 + self.t_audio))
        self.pub_audio.publish(audio_to_msg(tone.astype(np.float32), AUDIO_RATE, start, self.seq))
        msg = EventArray(width=346, height=260, encoding="xytp", time_base_ns=start, seq=self.seq)
        msg.header.stamp = ns_to_stamp(t_ns)
        msg.events = to_uint8_array(np.frombuffer(payload, np.uint8))
        self.pub_events.publish(msg)
        for t in (t_ns - IMU_PERIOD_NS, t_ns):
            accel = self.rng.normal(0, 0.5, 3) + np.array([0, 0, 9.81])
            self.pub_imu.publish(imu_to_msg(t, accel, self.rng.normal(0, 0.1, 3)))
        self.seq += 1


def _run_phase(procs: Pipeline, pipeline: bool, seconds: float, events_per_packet: int) -> np.ndarray:
    """Play the sensors for ``seconds`` into the running ``procs``; returns latencies in ms."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node(f"bench_e2e_{'pipeline' if pipeline else 'relay'}", context=ctx)
        player = _Player(node, events_per_packet, pipeline)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        deadline = time.monotonic() + 60
        while not player.connected():
            if time.monotonic() > deadline or procs.dead():
                logs = "\n".join(f"--- {n}\n{procs.log(n)[-2000:]}" for n in procs.procs)
                raise RuntimeError(f"pipeline did not come up within 60 s (exited: {procs.dead()}):\n{logs}")
            time.sleep(0.05)
        time.sleep(1.0)  # discovery of the inner hops
        warmup_ticks, ticks = 200, int(seconds * 1e9 / TICK_NS)
        t_next = (time.time_ns() // TICK_NS + 1) * TICK_NS
        measured_from = t_next + warmup_ticks * TICK_NS  # windows ending after the 2 s warm-up count
        for _ in range(warmup_ticks + ticks):
            delay = (t_next - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            player.tick(t_next)
            t_next += TICK_NS
        time.sleep(0.5)
        executor.shutdown(timeout_sec=1)
        with player._lock:
            return np.array([lat for stamp, lat in player.results if stamp > measured_from])
    finally:
        rclpy.shutdown(context=ctx)
        procs.stop()


def measure(args) -> dict:
    from snn_fusion_ros.ros.domain import isolated_ros_env

    seconds = 3.0 if getattr(args, "quick", False) else 20.0
    events = 2000
    env = isolated_ros_env()
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    with tempfile.TemporaryDirectory() as tmp:
        model = _bench_model(Path(tmp))
        relays = Pipeline(env)
        relays.spawn("relay_enc", "snn_fusion_ros.bench.relay", "--name", "relay_enc", "--in-topic", "relay_in",
                     "--out-topic", "relay_mid", "--out-bytes", "640")
        relays.spawn("relay_fus", "snn_fusion_ros.bench.relay", "--name", "relay_fus", "--in-topic", "relay_mid",
                     "--out-topic", "relay_out", "--out-bytes", "200")
        baseline = _run_phase(relays, False, seconds, events)
        nodes = Pipeline(env, encoder_params=["encoder.window_ms:=10.0", "encoder.step_ms:=1.0"],
                         fusion_params=[f"model_path:={model}"]).start()
        latencies = _run_phase(nodes, True, seconds, events)
    expected = int(seconds * 1e9 / TICK_NS)
    if latencies.size == 0:
        raise RuntimeError("the pipeline published no classification")

    def pct(a: np.ndarray, q: float) -> float:
        return float(np.percentile(a, q)) if a.size else float("nan")

    result = {
        "latency_ms_p50": pct(latencies, 50),
        "latency_ms_p99": pct(latencies, 99),
        "latency_ms_max": float(latencies.max()),
        "windows_per_s": 1e9 / TICK_NS,
        "classifications": int(latencies.size),
        "classifications_expected": expected,
        "loopback_ms_p50": pct(baseline, 50),
        "loopback_ms_p99": pct(baseline, 99),
        "loopback_messages": int(baseline.size),
        "events_per_packet": events,
        "seconds": seconds,
    }
    result["ratio"] = result["latency_ms_p99"] / result["loopback_ms_p99"]
    return result


def rows(result: dict) -> list[Row]:
    note = (f"{result['classifications']}/{result['classifications_expected']} windows at "
            f"{result['windows_per_s']:g}/s, encoders + fusion in 4 processes")
    return [
        Row("e2e", "sensor stamp -> classification p50", result["latency_ms_p50"], "ms", "3-hop relay p50",
            result["loopback_ms_p50"], result["latency_ms_p50"] / result["loopback_ms_p50"], note),
        Row("e2e", "sensor stamp -> classification p99", result["latency_ms_p99"], "ms", "3-hop relay p99",
            result["loopback_ms_p99"], result["ratio"], note),
    ]
