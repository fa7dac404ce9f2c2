"""``snn-fusion make-bag``: write a rosbag2 bag (MCAP by default) from a real recording.

Example::

    snn-fusion make-bag -o davis.bag --from-recording ../shared/data/events/davis346.aedat4 --packet-ms 10
"""

from __future__ import annotations

import argparse
import sys
import time

from snn_fusion_ros.bags.types import BagError
from snn_fusion_ros.bags.writer import STORAGES, RecordingOptions, recording_streams, write_streams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="bag directory to create (must not exist)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-recording", metavar="FILE",
                     help="real recording: .aedat4 (events + IMU), .raw (EVT 3.0) or .es (Event Stream)")
    src.add_argument("--from-dataset", metavar="DIR", help="fused dataset (not wired yet)")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="storage plugin (default mcap)")
    parser.add_argument("--packet-ms", type=float, default=10.0, help="EventArray packet length, ms (default 10)")
    parser.add_argument("--max-duration-s", type=float, default=None, help="keep only the first N seconds")
    parser.add_argument("--receive-offset-ms", type=float, default=0.0,
                        help="bag receive time = sensor stamp + this offset, ms (default 0)")
    parser.add_argument("--events-topic", default="/events")
    parser.add_argument("--imu-topic", default="/imu")
    parser.add_argument("--evt3-time-base-ns", type=int, default=0,
                        help="sensor time of EVT 3.0 timestamp 0, ns (.raw files have no absolute clock)")


def run(args: argparse.Namespace) -> int:
    if args.from_dataset:
        print("make-bag --from-dataset is not wired yet (snn_fusion_ros.data); use write_streams() "
              "from snn_fusion_ros.bags.writer", file=sys.stderr)
        return 2
    try:
        opts = RecordingOptions(packet_ms=args.packet_ms, max_duration_s=args.max_duration_s,
                                events_topic=args.events_topic, imu_topic=args.imu_topic,
                                evt3_time_base_ns=args.evt3_time_base_ns)
        t0 = time.perf_counter()
        counts = write_streams(args.output, recording_streams(args.from_recording, opts), storage=args.storage,
                               receive_offset_ns=round(args.receive_offset_ms * 1e6))
    except (BagError, ValueError, OSError) as exc:
        print(f"make-bag: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.storage}) in {time.perf_counter() - t0:.2f} s: "
          + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="snn-fusion make-bag", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
