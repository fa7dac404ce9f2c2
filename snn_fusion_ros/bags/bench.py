"""``snn-fusion bench bags``: bag writing, CDR conversion and replay throughput on the real recordings.

Figures (each next to a baseline measured in the same run):

* conversion of a stored EventArray to an rclpy message: ``deserialize_message(raw)`` (one C call)
  vs rosbags ``deserialize_cdr`` + a field-by-field copy into an rclpy message;
* make-bag from davis346.aedat4 (messages/s, MB/s of CDR written);
* replay as fast as possible (``rate`` 1e9) of the evt3.raw bag (EventArray only) through DDS to one
  best-effort subscriber in the same process: messages/s and MB/s published, vs reading the bag
  alone. Starts DDS: run it in the environment of ``make`` (localhost only).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _field_copy(store, raw: bytes, cls) -> Any:
    from snn_fusion_ros.ros.convert import ns_to_stamp, to_uint8_array

    m = store.deserialize_cdr(raw, "snn_fusion_ros/msg/EventArray")
    out = cls(width=m.width, height=m.height, encoding=m.encoding, time_base_ns=m.time_base_ns, seq=m.seq)
    out.header.stamp = ns_to_stamp(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)
    out.header.frame_id = m.header.frame_id
    out.events = to_uint8_array(m.events)
    return out


def measure(args: argparse.Namespace) -> dict:
    from snn_fusion_ros.bags.reader import BagReader
    from snn_fusion_ros.bags.types import from_cdr, rclpy_class, typestore
    from snn_fusion_ros.bags.writer import RecordingOptions, recording_streams, write_streams

    data = Path(args.data_dir)
    repeat = 1 if getattr(args, "quick", False) else 3
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # --- make-bag
        t = time.perf_counter()
        counts = write_streams(Path(tmp) / "davis", recording_streams(data / "davis346.aedat4",
                                                                      RecordingOptions(packet_ms=10)))
        out["make_bag_s"] = time.perf_counter() - t
        out["make_bag_messages"] = sum(counts.values())
        out["make_bag_mb"] = sum(f.stat().st_size for f in (Path(tmp) / "davis").glob("*.mcap")) / 1e6
        # --- conversion
        write_streams(Path(tmp) / "evt3", recording_streams(data / "evt3.raw", RecordingOptions(packet_ms=10)))
        with BagReader(Path(tmp) / "evt3") as bag:
            raws = [raw for *_, raw in bag.messages()]
        cls = rclpy_class("snn_fusion_ros/msg/EventArray")
        store = typestore()
        out["convert_messages"] = len(raws)
        out["convert_mb"] = sum(map(len, raws)) / 1e6
        out["convert_rclpy_s"] = _best_of(lambda: [from_cdr(r, cls) for r in raws], repeat)
        out["convert_fields_s"] = _best_of(lambda: [_field_copy(store, r, cls) for r in raws], repeat)
        # --- replay
        out.update(_replay(Path(tmp) / "evt3", repeat))
    return out


def _replay(path: Path, repeat: int) -> dict:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from snn_fusion_ros.bags.reader import BagReader
    from snn_fusion_ros.bags.replay import BagPlayer, ReplayOptions
    from snn_fusion_ros.bags.types import rclpy_class
    from snn_fusion_ros.ros.qos import sensor_qos

    def read_only() -> None:
        with BagReader(path) as bag:
            for _ in bag.messages():
                pass

    read_s = _best_of(read_only, repeat)
    ctx = Context()
    rclpy.init(args=[], context=ctx)
    try:
        sub_node = rclpy.create_node("bench_bag_sink", context=ctx)
        got = [0, 0]

        def on_msg(raw: bytes) -> None:
            got[0] += 1
            got[1] += len(raw)

        sub_node.create_subscription(rclpy_class("snn_fusion_ros/msg/EventArray"), "/events", on_msg,
                                     sensor_qos(1000), raw=True)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(sub_node)
        stop = threading.Event()
        spinner = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                                   daemon=True)
        spinner.start()
        node = rclpy.create_node("bench_bag_player", context=ctx)
        best = None
        for _ in range(repeat):
            player = BagPlayer(node, path, ReplayOptions(rate=1e9, wait_for_subscribers_s=10, delay_s=0.3))
            got[0] = got[1] = 0
            stats = player.run()
            time.sleep(0.5)
            player.close()
            for pub in player.publishers.values():
                node.destroy_publisher(pub)
            if best is None or stats.wall_s < best[0].wall_s:
                best = (stats, got[0], got[1])
        stop.set()
        spinner.join(5)
    finally:
        rclpy.shutdown(context=ctx)
    stats, received, received_bytes = best
    return {"replay_messages": stats.messages, "replay_mb": stats.bytes / 1e6, "replay_s": stats.wall_s,
            "replay_received": received, "replay_received_mb": received_bytes / 1e6, "read_only_s": read_s}


def rows(result: dict) -> list:
    from snn_fusion_ros.bench.cli import Row

    r = result
    conv_rclpy = r["convert_messages"] / r["convert_rclpy_s"]
    conv_fields = r["convert_messages"] / r["convert_fields_s"]
    rep = r["replay_messages"] / r["replay_s"]
    read = r["replay_messages"] / r["read_only_s"]
    return [
        Row("bags", "EventArray CDR -> rclpy (deserialize_message)", conv_rclpy, "msg/s",
            "rosbags deserialize + field copy", conv_fields, conv_rclpy / conv_fields,
            f"{r['convert_mb'] / r['convert_messages'] * 1e3:.1f} kB/msg (evt3.raw, 10 ms)"),
        Row("bags", "make-bag davis346.aedat4 (events + IMU)", r["make_bag_messages"] / r["make_bag_s"], "msg/s",
            "", None, None, f"{r['make_bag_mb'] / r['make_bag_s']:.1f} MB/s written"),
        Row("bags", "replay EventArray as fast as possible (publish)", rep, "msg/s",
            "reading the bag only", read, rep / read,
            f"{r['replay_mb'] / r['replay_s']:.1f} MB/s; {r['replay_received']}/{r['replay_messages']} received "
            f"by a best-effort subscriber in-process"),
    ]


def main() -> None:  # pragma: no cover - manual run: python -m snn_fusion_ros.bags.bench
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default="../shared/data/events")
    parser.add_argument("--quick", action="store_true")
    res = measure(parser.parse_args())
    print(json.dumps(res, indent=1))
    for row in rows(res):
        print(row)


if __name__ == "__main__":
    main()
