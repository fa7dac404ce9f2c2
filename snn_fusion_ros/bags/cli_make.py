"""``snn-fusion make-bag``: write a rosbag2 bag (MCAP by default) from a real recording or the data set.

Examples::

    snn-fusion make-bag -o davis.bag --from-recording ../shared/data/events/davis346.aedat4 --packet-ms 10
    snn-fusion make-bag -o test.bag --from-dataset test --samples 40      # fused test split, labelled
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
    src.add_argument("--from-dataset", metavar="SPLIT", choices=("train", "test"),
                     help="the built fused data set's split (snn-fusion dataset build), with /ground_truth labels")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="storage plugin (default mcap)")
    parser.add_argument("--packet-ms", type=float, default=10.0, help="EventArray packet length, ms (default 10)")
    parser.add_argument("--max-duration-s", type=float, default=None, help="keep only the first N seconds")
    parser.add_argument("--receive-offset-ms", type=float, default=0.0,
                        help="bag receive time = sensor stamp + this offset, ms (default 0)")
    parser.add_argument("--events-topic", default="/events")
    parser.add_argument("--imu-topic", default="/imu")
    parser.add_argument("--evt3-time-base-ns", type=int, default=0,
                        help="sensor time of EVT 3.0 timestamp 0, ns (.raw files have no absolute clock)")
    ds = parser.add_argument_group("--from-dataset")
    ds.add_argument("--cache", default=None, help="data set cache (default $SNN_FUSION_DATA or ~/.cache/...)")
    ds.add_argument("--build", default=None, help="build key (default: the latest build)")
    ds.add_argument("--samples", type=int, default=None, help="first N fused samples of the split (default all)")
    ds.add_argument("--per-class", type=int, default=None,
                    help="instead: the first N samples of each class, interleaved 0..9, 0..9, ...")
    ds.add_argument("--gap-ms", type=float, default=500.0, help="silence between samples, ms (multiple of 50)")


def run(args: argparse.Namespace) -> int:
    if args.from_dataset:
        return _from_dataset(args)
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


def dataset_indices(labels, samples: int | None, per_class: int | None) -> list[int]:
    """Indices of the fused samples to write: the first ``samples``, or ``per_class`` of each class interleaved."""
    import numpy as np

    labels = np.asarray(labels)
    if per_class is None:
        return list(range(len(labels) if samples is None else min(samples, len(labels))))
    by_class = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return [int(ix[r]) for r in range(per_class) for ix in by_class if r < ix.size]


def _from_dataset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from snn_fusion_ros.bags.dataset_bag import fused_streams
    from snn_fusion_ros.data.dataset import load_split
    from snn_fusion_ros.data.sources import SourceUnavailable

    try:
        ds = load_split(args.from_dataset, cache=Path(args.cache) if args.cache else None, key=args.build)
        indices = dataset_indices(ds.labels, args.samples, args.per_class)
        t0 = time.perf_counter()
        counts = write_streams(args.output, fused_streams(ds, indices, gap_ms=args.gap_ms,
                                                          packet_ms=args.packet_ms), storage=args.storage,
                               receive_offset_ns=round(args.receive_offset_ms * 1e6))
    except (BagError, ValueError, OSError, SourceUnavailable) as exc:
        print(f"make-bag: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.storage}, {len(indices)} samples of the {args.from_dataset} split, "
          f"build {ds.build_dir.name}) in {time.perf_counter() - t0:.2f} s: "
          + ", ".join(f"{t} {n}" for t, n in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="snn-fusion make-bag", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
