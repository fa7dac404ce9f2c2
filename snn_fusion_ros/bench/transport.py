"""Transport: round trip of 100k DVS events between two processes over Fast DDS (loopback).

Figure: the package's ``EventArray`` (packed ``uint8[]``, viewed with numpy on both ends).
Baseline, same run: the same events as typed arrays (``std_msgs/UInt32MultiArray`` holding t, x, y, p
as four uint32 columns) - the element-by-element representation the packed layout replaces.
An echo process (``python -m snn_fusion_ros.bench.transport --echo``) sends every message back.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from snn_fusion_ros.bench.cli import Row

N_EVENTS = 100_000


def _events() -> np.ndarray:
    from snn_fusion_ros.codecs.layout import EVENT_DTYPE

    rng = np.random.default_rng(0)
    ev = np.zeros(N_EVENTS, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 10_000_000, N_EVENTS))
    ev["x"], ev["y"] = rng.integers(0, 1280, N_EVENTS), rng.integers(0, 720, N_EVENTS)
    ev["p"] = rng.integers(0, 2, N_EVENTS)
    return ev


def _packed_msg(ev: np.ndarray):
    from snn_fusion_ros.codecs.xytp import encode_xytp
    from snn_fusion_ros.msg import EventArray
    from snn_fusion_ros.ros.convert import to_uint8_array

    msg = EventArray(width=1280, height=720, encoding="xytp")
    msg.events = to_uint8_array(np.frombuffer(encode_xytp(ev, 0), np.uint8))
    return msg


def _typed_msg(ev: np.ndarray):
    from std_msgs.msg import UInt32MultiArray

    cols = np.stack([(ev["t"] // 1000).astype(np.uint32), ev["x"], ev["y"], ev["p"]], axis=1).astype(np.uint32)
    return UInt32MultiArray(data=cols.ravel().tolist())


def _decode_packed(msg) -> int:
    from snn_fusion_ros.codecs.xytp import decode_xytp

    return decode_xytp(np.frombuffer(msg.events, np.uint8), 0).size


def _decode_typed(msg) -> int:
    return np.asarray(msg.data, dtype=np.uint32).reshape(-1, 4).shape[0]


def echo_main() -> int:
    import rclpy
    from std_msgs.msg import UInt32MultiArray

    from snn_fusion_ros.msg import EventArray
    from snn_fusion_ros.ros.qos import spikes_qos
    from snn_fusion_ros.ros.runner import run_node

    def build():
        node = rclpy.create_node("transport_echo")
        for name, typ in (("packed", EventArray), ("typed", UInt32MultiArray)):
            pub = node.create_publisher(typ, f"transport/{name}/back", spikes_qos(4))
            node.create_subscription(typ, f"transport/{name}/out", lambda m, p=pub: p.publish(m), spikes_qos(4))
        return node

    return run_node(build, [])


def measure(args) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import UInt32MultiArray

    from snn_fusion_ros.msg import EventArray
    from snn_fusion_ros.ros.domain import isolated_ros_env
    from snn_fusion_ros.ros.qos import spikes_qos

    reps = 10 if getattr(args, "quick", False) else 40
    env = isolated_ros_env()
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    echo = subprocess.Popen([sys.executable, "-m", "snn_fusion_ros.bench.transport", "--echo"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("transport_bench", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        threading.Thread(target=ex.spin, daemon=True).start()
        ev = _events()
        out: dict[str, dict] = {}
        for name, typ, build, decode in (("packed", EventArray, _packed_msg, _decode_packed),
                                         ("typed", UInt32MultiArray, _typed_msg, _decode_typed)):
            got = threading.Event()
            box: dict[str, float] = {}

            def on_back(msg, box=box, got=got, decode=decode):
                box["n"] = decode(msg)
                box["t"] = time.perf_counter()
                got.set()

            pub = node.create_publisher(typ, f"transport/{name}/out", spikes_qos(4))
            node.create_subscription(typ, f"transport/{name}/back", on_back, spikes_qos(4))
            deadline = time.monotonic() + 30
            while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            rtts = []
            for i in range(reps + 2):
                got.clear()
                t0 = time.perf_counter()
                pub.publish(build(ev))  # message construction from numpy is part of the cost
                if not got.wait(30):
                    raise RuntimeError(f"{name}: no echo within 30 s")
                if box["n"] != N_EVENTS:
                    raise RuntimeError(f"{name}: echo decoded {box['n']} events, sent {N_EVENTS}")
                if i >= 2:
                    rtts.append((box["t"] - t0) * 1e3)
            out[name] = {"p50": float(np.median(rtts)), "p99": float(np.percentile(rtts, 99))}
    finally:
        rclpy.shutdown(context=ctx)
        echo.send_signal(signal.SIGINT)
        try:
            echo.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(echo.pid, signal.SIGKILL)
    return {
        "events": N_EVENTS,
        "packed_roundtrip_ms_p50": out["packed"]["p50"],
        "packed_roundtrip_ms_p99": out["packed"]["p99"],
        "typed_roundtrip_ms_p50": out["typed"]["p50"],
        "typed_roundtrip_ms_p99": out["typed"]["p99"],
        "speedup_p50": out["typed"]["p50"] / out["packed"]["p50"],
    }


def rows(result: dict) -> list[Row]:
    return [Row("transport", f"{result['events']} events round trip p50 (EventArray, packed uint8[])",
                result["packed_roundtrip_ms_p50"], "ms", "UInt32MultiArray typed arrays p50",
                result["typed_roundtrip_ms_p50"], result["speedup_p50"], "incl. numpy -> message -> numpy")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--echo", action="store_true", help="run the echo process")
    if parser.parse_args().echo:
        sys.exit(echo_main())
    parser.error("use `snn-fusion bench transport`")
