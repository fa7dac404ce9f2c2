"""Soak and load harness: a synthetic sensor stream through the encoder and fusion processes.

The three encoder nodes and the fusion node run as separate processes (as ``ros2 launch`` starts
them); this process plays a deterministic synthetic stream of audio (16 kHz S16LE, one 50 ms chunk
per window), DVS (``xytp`` packets of a moving bar, one per window, stamped "complete up to" the end
of the window) and IMU (200 Hz) in sensor time starting at ``T0``, and records the classifications and
every node's ``/diagnostics``.

Pacing:

* ``realtime``: one window of sensor data every ``window_ms`` of wall time (latency is meaningful:
  receive time of a classification minus the wall time its window's data was published);
* ``lockstep``: the next window is played once the classification of the previous one arrived (or
  a timeout passed), as fast as the pipeline goes; used by the load test, where malformed messages
  are interleaved (``junk_per_window``) and must not change any valid result.

Malformed messages are built so that every one is refused by a documented rule *before* it touches
encoder state (bad encodings, zero sizes, odd lengths, NaN, absurd rates, negative stamps, unknown
modalities): a correct pipeline classifies the valid stream exactly as without them.

Command line::

    python -m snn_fusion_ros.bench.soak --minutes 30            # soak, prints a JSON summary
    python -m snn_fusion_ros.bench.soak play --seconds 20       # only the player (multi-host tests)
    python -m snn_fusion_ros.bench.soak listen --seconds 20     # only a listener, JSON lines on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

W_NS = 50_000_000  # window length, ns (the encoders' default window_ms)
T0 = 1_000 * W_NS  # sensor time of the first sample, on the window grid
AUDIO_RATE = 16_000
AUDIO_CHUNK = AUDIO_RATE * W_NS // 1_000_000_000  # samples per window
IMU_PERIOD_NS = 5_000_000
DVS_SIZE = (128, 96)
NODES = ("audio_encoder", "dvs_encoder", "imu_encoder", "fusion")
JUNK_SEQ0 = 1 << 40  # malformed messages carry seq numbers far above the valid stream's


def bench_model(folder: Path) -> Path:
    """An untrained network whose input sizes match the encoders' default num_neurons (50 ms windows)."""
    from snn_fusion_ros.snn.artifact import save_untrained_encoder_sized

    return save_untrained_encoder_sized(folder / "soak_model", num_classes=4, seed=11,
                                        created_by="snn_fusion_ros.bench.soak")


def node_commands(model: Path, diagnostics_period_s: float = 0.25, max_wait_ms: float = 2000.0,
                  queue_depth: int = 1000) -> dict[str, list[str]]:
    """``python`` arguments of the four node processes."""
    enc = ["-p", f"diagnostics_period_s:={diagnostics_period_s}", "-p", f"input_queue_depth:={queue_depth}"]
    return {
        "audio_encoder": ["-m", "snn_fusion_ros.ros.audio_encoder_node", "--ros-args", *enc],
        "dvs_encoder": ["-m", "snn_fusion_ros.ros.dvs_encoder_node", "--ros-args", *enc,
                        "-p", "encoder.ba_filter:=false"],
        "imu_encoder": ["-m", "snn_fusion_ros.ros.imu_encoder_node", "--ros-args", *enc],
        "fusion": ["-m", "snn_fusion_ros.ros.fusion_node", "--ros-args", "-p", f"model_path:={model}",
                   "-p", f"diagnostics_period_s:={diagnostics_period_s}",
                   "-p", f"alignment.max_wait_ms:={max_wait_ms}"],
    }


def rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (VmRSS of /proc/PID/status); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


class Processes:
    """The node processes, each in its own session; ``prefix`` runs them elsewhere (``ip netns exec A``)."""

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str] | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.commands = commands
        self.env = dict(os.environ if env is None else env)
        self.env["PYTHONUNBUFFERED"] = "1"
        self.prefix = list(prefix)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, tempfile.SpooledTemporaryFile] = {}
        self.stuck_logs: dict[str, str] = {}  # set by stop(): the log ends of processes that ignored SIGINT

    def start(self, name: str) -> subprocess.Popen:
        log = tempfile.TemporaryFile(mode="w+")
        self._logs[name] = log
        p = subprocess.Popen([*self.prefix, sys.executable, *self.commands[name]], env=self.env, stdout=log,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.procs[name] = p
        return p

    def start_all(self) -> None:
        for name in self.commands:
            self.start(name)

    def pid(self, name: str) -> int:
        """The node's own pid (with a prefix such as ``ip netns exec`` the command execs into python)."""
        return self.procs[name].pid

    def kill(self, name: str) -> None:
        """SIGKILL the node's whole process group (a crash: no shutdown handler runs)."""
        p = self.procs[name]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    def log(self, name: str) -> str:
        fh = self._logs.get(name)
        if fh is None:
            return ""
        fh.seek(0)
        return fh.read()

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self, timeout_s: float = 10.0) -> list[str]:
        """SIGINT every node, SIGKILL what lingers; returns the names of groups that had to be killed.

        A process still running at the deadline is first sent SIGUSR1, on which the nodes dump every
        thread's Python stack to their log (:func:`snn_fusion_ros.ros.runner.init_rclpy`); the end of
        its log is kept in ``stuck_logs`` so a test can show where it hung."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        killed = []
        self.stuck_logs = {}
        for name, p in self.procs.items():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                killed.append(name)
                p.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                self.stuck_logs[name] = self.log(name)[-6000:]
            try:  # nothing of the group may outlive it
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)
        return killed


@dataclass
class Result:
    stamp_ns: int
    class_id: int
    scores: tuple[float, ...]
    modalities: tuple[str, ...]
    recv_wall: float


@dataclass
class Recorder:
    """Classifications and the latest diagnostics of every node (thread-safe)."""

    results: list[Result] = field(default_factory=list)
    diag: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    levels: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_result(self, msg) -> None:
        r = Result(msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, int(msg.class_id),
                   tuple(round(float(s), 5) for s in msg.scores), tuple(msg.modalities_used), time.monotonic())
        with self.lock:
            self.results.append(r)

    def on_diag(self, msg) -> None:
        now = time.monotonic()
        with self.lock:
            for s in msg.status:
                node, _, task = s.name.partition(": ")
                self.diag.setdefault(node, {})[task] = {kv.key: kv.value for kv in s.values}
                lvl = s.level[0] if isinstance(s.level, bytes) else int(s.level)
                self.levels.setdefault(s.name, []).append((now, lvl, s.message))

    def value(self, node: str, task: str, key: str, default: str = "") -> str:
        with self.lock:
            return self.diag.get(node, {}).get(task, {}).get(key, default)

    def count(self) -> int:
        with self.lock:
            return len(self.results)


class Player:
    """Publishes the synthetic sensor stream (and malformed messages) and records what comes back."""

    def __init__(self, node, recorder: Recorder | None = None, dvs_events: int = 400) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Imu

        from snn_fusion_ros.msg import AudioFrame, Classification, EventArray, SpikeTrain
        from snn_fusion_ros.ros.qos import results_qos, sensor_qos, spikes_qos

        self.node = node
        self.rec = recorder or Recorder()
        self.dvs_events = dvs_events
        self.pub_audio = node.create_publisher(AudioFrame, "audio", sensor_qos(1000))
        self.pub_events = node.create_publisher(EventArray, "events", sensor_qos(1000))
        self.pub_imu = node.create_publisher(Imu, "imu", sensor_qos(1000))
        self.pub_spikes = {m: node.create_publisher(SpikeTrain, f"{m}_encoder/spikes", spikes_qos(1000))
                           for m in ("audio", "dvs", "imu")}
        node.create_subscription(Classification, "fusion/classification", self.rec.on_result, results_qos(1000))
        node.create_subscription(DiagnosticArray, "/diagnostics", self.rec.on_diag, 100)
        self.sent = {"audio": 0, "events": 0, "imu": 0}
        self.junk_sent = {"audio": 0, "events": 0, "imu": 0, "spikes": 0}
        self.published_wall: dict[int, float] = {}
        self._junk_i = 0

    def connected(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in (self.pub_audio, self.pub_events, self.pub_imu))

    # --- valid stream ----------------------------------------------------------------------------

    def play_window(self, k: int) -> None:
        """Publish sensor data of window ``k`` (sensor time [T0 + k W, T0 + (k+1) W))."""
        from snn_fusion_ros.codecs.layout import EVENT_DTYPE
        from snn_fusion_ros.codecs.xytp import encode_xytp
        from snn_fusion_ros.msg import EventArray
        from snn_fusion_ros.ros.convert import audio_to_msg, imu_to_msg, ns_to_stamp, to_uint8_array

        start = T0 + k * W_NS
        rng = np.random.default_rng(k)
        phase = (k // 20) % 4  # the "scene" changes every second: four patterns
        t = (np.arange(AUDIO_CHUNK) + k * AUDIO_CHUNK) / AUDIO_RATE
        tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * phase) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
        self.pub_audio.publish(audio_to_msg(tone.astype(np.float32), AUDIO_RATE, start, seq=k))
        n = self.dvs_events
        ev = np.zeros(n, EVENT_DTYPE)
        ev["t"] = start + np.sort(rng.integers(0, W_NS, n))
        bar = (k * 6 + phase * 17) % DVS_SIZE[0]
        ev["x"] = (bar + rng.integers(0, 8, n)) % DVS_SIZE[0]
        ev["y"] = rng.integers(0, DVS_SIZE[1], n)
        ev["p"] = rng.integers(0, 2, n)
        msg = EventArray(width=DVS_SIZE[0], height=DVS_SIZE[1], encoding="xytp", time_base_ns=start, seq=k)
        msg.header.stamp = ns_to_stamp(start + W_NS)  # complete up to the end of the window
        msg.events = to_uint8_array(np.frombuffer(encode_xytp(ev, start), np.uint8))
        self.pub_events.publish(msg)
        # IMU samples of (start, end]: the one at the window's end closes it at once, as a 200 Hz IMU
        # publishing every 5 ms would (a batch of [start, end) would hold window k back one whole window)
        for i in range(1, W_NS // IMU_PERIOD_NS + 1):
            ts = start + i * IMU_PERIOD_NS
            accel = np.array([np.sin(ts / 1e8 + phase), 0.3 * phase, 9.81]) + rng.normal(0, 0.05, 3)
            self.pub_imu.publish(imu_to_msg(ts, accel, np.array([0.0, 0.1 * phase, 0.0]) + rng.normal(0, 0.01, 3)))
        self.sent["audio"] += 1
        self.sent["events"] += 1
        self.sent["imu"] += W_NS // IMU_PERIOD_NS
        self.published_wall[T0 + (k + 1) * W_NS] = time.monotonic()

    # --- malformed -------------------------------------------------------------------------------

    def play_junk(self, k: int, n: int) -> None:
        """Publish ``n`` malformed messages spread over the four input topics, stamped inside window ``k``.

        Every one is refused by a documented rule before touching encoder state; its seq is far above
        the valid stream's and its stamp not newer than the last valid message, so the valid message
        that follows is accepted (counted as a publisher restart, the junk's seq jump as missing).
        """
        from sensor_msgs.msg import Imu

        from snn_fusion_ros.msg import AudioFrame, EventArray, SpikeTrain
        from snn_fusion_ros.ros.convert import ns_to_stamp

        # not newer than the last valid message of any topic (audio stamps the first sample of window k-1)
        stamp = ns_to_stamp(T0 + max(k - 1, 0) * W_NS)
        for _ in range(n):
            i = self._junk_i
            self._junk_i += 1
            seq = JUNK_SEQ0 + i
            # one in eight goes straight onto a spike topic: fusion's spike subscriptions keep the last
            # 50 windows, and a burst of more malformed windows than that evicts valid ones (QoS)
            topic = 3 if i % 8 == 7 else (i % 8) % 3
            kind = (i // 8) % 6
            if topic == 0:
                m = AudioFrame(sample_rate_hz=AUDIO_RATE, channels=1, sample_format="S16LE", seq=seq)
                m.header.stamp = stamp
                m.data = bytes(320)
                if kind == 0:
                    m.sample_format = "S24LE"              # bad_encoding
                elif kind == 1:
                    m.channels = 0                         # bad_shape
                elif kind == 2:
                    m.data = bytes(321)                    # bad_length
                elif kind == 3:
                    m.sample_format = "F32LE"              # non_finite
                    m.data = np.full(80, np.nan, "<f4").tobytes()
                elif kind == 4:
                    m.data = b""                           # empty
                else:
                    m.sample_rate_hz = 2**32 - 1           # bad_shape (absurd rate)
                self.pub_audio.publish(m)
                self.junk_sent["audio"] += 1
            elif topic == 1:
                m = EventArray(width=DVS_SIZE[0], height=DVS_SIZE[1], encoding="xytp", time_base_ns=T0, seq=seq)
                m.header.stamp = stamp
                m.events = bytes(100)
                if kind == 0:
                    m.encoding = "evt2"                    # bad_encoding
                elif kind == 1:
                    m.events = b""                         # empty
                elif kind == 2:
                    m.events = bytes(103)                  # bad_length
                elif kind == 3:
                    m.width = (1 << 20) if i % 8 < 4 else 0  # bad_shape (absurd or zero size)
                elif kind == 4:
                    m.time_base_ns = 2**64 - 1             # out_of_range
                else:
                    m.header.stamp.sec = -5                # out_of_range (before the epoch)
                self.pub_events.publish(m)
                self.junk_sent["events"] += 1
            elif topic == 2:
                m = Imu()
                m.header.stamp = stamp
                m.orientation_covariance[0] = -1.0
                if kind in (0, 1, 2):
                    m.linear_acceleration.x = float(("nan", "inf", "-inf")[kind])   # non_finite
                elif kind in (3, 4):
                    m.linear_acceleration_covariance[0] = -1.0                      # empty (both absent)
                    m.angular_velocity_covariance[0] = -1.0
                else:
                    m.header.stamp.sec = -1                                          # out_of_range
                self.pub_imu.publish(m)
                self.junk_sent["imu"] += 1
            else:
                modality = ("audio", "dvs", "imu")[i % 3]
                m = SpikeTrain(modality=modality, num_neurons=8, num_steps=10, step_ns=5_000_000,
                               encoding="dense_bits", seq=seq)
                m.header.stamp = stamp
                m.data = bytes(10)
                if kind == 0:
                    m.modality = "lidar"                   # unknown_modality
                elif kind == 1:
                    m.data = bytes(9)                      # bad_length
                elif kind == 2:
                    m.encoding = "rle"                     # bad_encoding
                elif kind == 3:
                    m.step_ns = 0                          # bad_shape
                elif kind == 4:
                    m.header.stamp.sec = -3                # out_of_range
                else:
                    m.num_steps = 1 << 20                  # oversized
                    m.num_neurons = 1 << 20
                self.pub_spikes[modality].publish(m)
                self.junk_sent["spikes"] += 1


def spin_in_thread(executor) -> threading.Thread:
    th = threading.Thread(target=executor.spin, daemon=True)
    th.start()
    return th


def wait_for(predicate, timeout_s: float, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def wait_pipeline_up(player: Player, procs: Processes | None, timeout_s: float = 60.0) -> None:
    """Every encoder subscribes its input, the fusion node subscribes the encoders, results flow."""
    def up() -> bool:
        if procs is not None and not all(procs.alive().values()):
            dead = [n for n, a in procs.alive().items() if not a]
            raise RuntimeError(f"node(s) {dead} exited during start-up:\n" + "\n".join(procs.log(n)[-2000:]
                                                                                     for n in dead))
        return player.connected() and all(p.get_subscription_count() > 0 for p in player.pub_spikes.values())
    if not wait_for(up, timeout_s):
        raise RuntimeError("pipeline did not come up (no subscribers on the sensor / spike topics)")
    time.sleep(1.0)  # best-effort readers drop samples until they matched the writer


def play(player: Player, windows: int, *, pacing: str = "lockstep", k0: int = 0, junk_per_window: int = 0,
         window_timeout_s: float = 5.0, stop: threading.Event | None = None) -> int:
    """Play windows ``k0 .. k0+windows-1``; returns the number played."""
    period = W_NS / 1e9
    t_next = time.monotonic()
    for i in range(windows):
        if stop is not None and stop.is_set():
            return i
        k = k0 + i
        if junk_per_window and k > 0:  # after the first valid message of every stream
            player.play_junk(k, junk_per_window)
        if pacing == "realtime":
            delay = t_next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t_next += period
            player.play_window(k)
        else:
            player.play_window(k)
            # window k-1 is classified once window k's data is in: wait for it to keep the pipeline in step
            if k > k0:
                stamp = T0 + k * W_NS
                wait_for(lambda s=stamp: any(r.stamp_ns >= s for r in player.rec.results[-5:]), window_timeout_s,
                         0.002)
    return windows


def percentile(a: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(a, float), q)) if len(a) else float("nan")


def latencies_ms(player: Player, results: list[Result]) -> list[tuple[float, float]]:
    """(receive time, latency ms) of each classification: receive wall time minus its window's publish time."""
    out = []
    for r in results:
        t_pub = player.published_wall.get(r.stamp_ns)
        if t_pub is not None:
            out.append((r.recv_wall, (r.recv_wall - t_pub) * 1e3))
    return out


def reconcile(rec: Recorder, player: Player) -> dict[str, dict[str, int]]:
    """Per node: in, out and rejected from its diagnostics (and what this process sent)."""
    def v(node: str, task: str, key: str) -> int:
        return int(float(rec.value(node, task, key, "0") or 0))

    out: dict[str, dict[str, int]] = {}
    for node, topic in (("audio_encoder", "audio"), ("dvs_encoder", "events"), ("imu_encoder", "imu")):
        out[node] = {"sent": player.sent[topic] + player.junk_sent[topic], "sent_valid": player.sent[topic],
                     "received": v(node, "input", "received"), "rejected": v(node, "encoder", "rejected total"),
                     "windows_out": v(node, "encoder", "published windows")}
    out["fusion"] = {"received": v("fusion", "fusion", "windows received"),
                     "rejected": v("fusion", "fusion", "rejected total"),
                     "fused": v("fusion", "fusion", "windows fused"),
                     "classifications": v("fusion", "fusion", "classifications published"),
                     "junk_sent": player.junk_sent["spikes"],
                     "windows_in": sum(out[n]["windows_out"] for n in NODES[:3]) + player.junk_sent["spikes"]}
    return out


# --- soak ---------------------------------------------------------------------------------------

def run_soak(minutes: float, junk_per_window: int = 4, sample_s: float = 10.0, log=None) -> dict:
    """Play the stream in real time for ``minutes`` through four node processes; return the summary.

    RSS of every node is sampled every ``sample_s``; growth is measured from the first sample after a
    warm-up minute (or a sixth of the run, if shorter) to the last. Latency p99 of the first and the
    last minute of results are compared.
    """
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from snn_fusion_ros.ros.domain import isolated_ros_env

    env = dict(os.environ) if "ROS_DOMAIN_ID" in os.environ else isolated_ros_env()
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    log = log or (lambda s: None)
    total_windows = int(minutes * 60e9 / W_NS)
    warmup_s = min(60.0, minutes * 60 / 6)
    with tempfile.TemporaryDirectory() as tmp:
        model = bench_model(Path(tmp))
        procs = Processes(node_commands(model, diagnostics_period_s=1.0, max_wait_ms=200.0), env)
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        executor = MultiThreadedExecutor(num_threads=2, context=ctx)
        try:
            procs.start_all()
            node = rclpy.create_node("soak_player", context=ctx)
            executor.add_node(node)
            player = Player(node)
            spin_in_thread(executor)
            wait_pipeline_up(player, procs)
            stop = threading.Event()
            t_start = time.monotonic()
            th = threading.Thread(target=play, args=(player, total_windows),
                                  kwargs={"pacing": "realtime", "junk_per_window": junk_per_window, "stop": stop},
                                  daemon=True)
            th.start()
            samples: list[tuple[float, dict[str, int]]] = []
            while th.is_alive():
                th.join(timeout=sample_s)
                now = time.monotonic() - t_start
                samples.append((now, {n: rss_kb(procs.pid(n)) for n in NODES}))
                log(f"t={now:6.1f}s results={player.rec.count()} rss_kb={samples[-1][1]}")
                if not all(procs.alive().values()):
                    stop.set()
            wait_for(lambda: player.rec.count() >= total_windows - 1, 10.0)
            time.sleep(2.5)  # a last diagnostics period
            alive = procs.alive()
            with player.rec.lock:
                results = list(player.rec.results)
            counts = reconcile(player.rec, player)
        finally:
            executor.shutdown(timeout_sec=2)
            rclpy.try_shutdown(context=ctx)
            killed = procs.stop()
    base = next((s for s in samples if s[0] >= warmup_s), samples[0])
    last = samples[-1]
    lat = latencies_ms(player, results)
    t0 = lat[0][0] if lat else 0.0
    t1 = lat[-1][0] if lat else 0.0
    first = [x for t, x in lat if t - t0 <= 60.0]
    final = [x for t, x in lat if t1 - t <= 60.0]
    return {
        "minutes": minutes,
        "windows_played": total_windows,
        "classifications": len(results),
        "junk_per_window": junk_per_window,
        "nodes_alive_at_end": alive,
        "nodes_killed_at_stop": killed,
        "rss_kb_after_warmup": base[1],
        "rss_kb_end": last[1],
        "rss_growth_pct": {n: 100.0 * (last[1][n] - base[1][n]) / base[1][n] if base[1][n] else float("nan")
                           for n in NODES},
        "rss_warmup_s": base[0],
        "latency_ms_p50": percentile([x for _, x in lat], 50),
        "latency_ms_p99_first_minute": percentile(first, 99),
        "latency_ms_p99_last_minute": percentile(final, 99),
        "counts": counts,
    }


# --- command line -------------------------------------------------------------------------------

def _rclpy_node(name: str):
    """A node spun in a thread, for the ``play`` / ``listen`` processes; SIGINT raises KeyboardInterrupt
    even when the process inherited it ignored (:func:`snn_fusion_ros.ros.runner.init_rclpy`)."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from snn_fusion_ros.ros.runner import init_rclpy

    init_rclpy([])
    node = rclpy.create_node(name)
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(node)
    return node, ex, spin_in_thread(ex)


def _cmd_play(args) -> int:
    """Play the stream in real time from window ``--k0`` for ``--seconds`` (no node processes)."""
    from snn_fusion_ros.ros.runner import SHUTDOWN_REQUESTED

    node, ex, spin = _rclpy_node("soak_player")
    try:
        player = Player(node)
        wait_for(player.connected, args.connect_timeout)
        time.sleep(1.0)
        windows = int(args.seconds * 1e9 / W_NS)
        play(player, windows, pacing="realtime", k0=args.k0, stop=SHUTDOWN_REQUESTED)
        print(json.dumps({"sent": player.sent, "windows": windows}), flush=True)
    except KeyboardInterrupt:  # stopped early (SIGINT): a clean shutdown all the same
        pass
    finally:
        _shutdown(node, ex, spin)
    return 0


def _shutdown(node, ex, spin: threading.Thread) -> None:
    """Stop the spin thread before the node and the context go (a DDS thread left running at exit
    aborts the process); the middleware part has the nodes' teardown deadline (``runner.bounded_teardown``)."""
    import rclpy

    from snn_fusion_ros.ros.runner import TEARDOWN_DEADLINE_S, bounded_teardown

    def teardown() -> None:
        ex.shutdown(timeout_sec=1)
        spin.join(timeout=2)
        node.destroy_node()
        rclpy.try_shutdown()

    bounded_teardown(teardown, TEARDOWN_DEADLINE_S + 3.0, lambda m: print(m, file=sys.stderr, flush=True))


def _cmd_listen(args) -> int:
    """Print one JSON line per classification and per fusion diagnostics status, for ``--seconds``."""
    from diagnostic_msgs.msg import DiagnosticArray

    from snn_fusion_ros.msg import Classification
    from snn_fusion_ros.ros.qos import results_qos
    from snn_fusion_ros.ros.runner import SHUTDOWN_REQUESTED

    lock = threading.Lock()

    def emit(obj) -> None:
        with lock:
            print(json.dumps(obj), flush=True)

    def on_result(msg) -> None:
        emit({"type": "classification", "wall": time.time(), "stamp_ns": msg.header.stamp.sec * 10**9
              + msg.header.stamp.nanosec, "class_id": msg.class_id, "modalities": list(msg.modalities_used)})

    def on_diag(msg) -> None:
        for s in msg.status:
            if s.name.startswith("fusion:"):
                lvl = s.level[0] if isinstance(s.level, bytes) else int(s.level)
                emit({"type": "diag", "wall": time.time(), "level": lvl, "message": s.message,
                      "values": {kv.key: kv.value for kv in s.values}})

    node, ex, spin = _rclpy_node("soak_listener")
    node.create_subscription(Classification, "fusion/classification", on_result, results_qos(1000))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 100)
    emit({"type": "ready", "wall": time.time()})
    try:
        SHUTDOWN_REQUESTED.wait(args.seconds)  # set by SIGINT even when its KeyboardInterrupt is lost
    except KeyboardInterrupt:  # stopped early (SIGINT), as the tests stop it
        pass
    finally:
        _shutdown(node, ex, spin)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m snn_fusion_ros.bench.soak", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("play", help="only the player")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--k0", type=int, default=0, help="first window index")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p = sub.add_parser("listen", help="only a listener (JSON lines)")
    p.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--minutes", type=float, default=30.0, help="soak duration")
    ap.add_argument("--junk-per-window", type=int, default=4, help="malformed messages mixed in per window")
    ap.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period, s")
    ap.add_argument("--json", action="store_true", help="only the JSON summary on stdout")
    args = ap.parse_args(argv)
    if args.cmd == "play":
        return _cmd_play(args)
    if args.cmd == "listen":
        return _cmd_listen(args)
    summary = run_soak(args.minutes, args.junk_per_window, args.sample_s,
                       log=None if args.json else (lambda s: print(s, file=sys.stderr, flush=True)))
    print(json.dumps(summary, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
