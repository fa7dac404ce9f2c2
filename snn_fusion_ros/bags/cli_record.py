"""``snn-fusion record -o OUT --topics /a /b``: record topics into an MCAP bag until Ctrl-C or --duration.

Also runnable as ``python -m snn_fusion_ros.bags.cli_record ...``. The bag is closed with a valid
summary and metadata.yaml on Ctrl-C (SIGINT), SIGTERM and at the end of ``--duration``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from snn_fusion_ros.bags.record import BagRecorder
from snn_fusion_ros.bags.types import BagError
from snn_fusion_ros.bags.writer import STORAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="bag directory to create (must not exist)")
    parser.add_argument("--topics", nargs="+", required=True, help="fully qualified topics to record")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--storage", choices=STORAGES, default="mcap", help="storage plugin (default mcap)")
    parser.add_argument("--quiet", action="store_true", help="no periodic counts")


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = [False]

    def on_signal(signum, frame) -> None:  # signal handler signature
        stop[0] = True

    ctx = Context()
    # our own handlers: the bag must be closed by us, not by a context torn down under the executor
    rclpy.init(args=[], context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    node = rclpy.create_node("snn_fusion_record", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    recorder = None
    try:
        recorder = BagRecorder(node, args.output, args.topics, storage=args.storage)
        t_end = None if args.duration is None else time.monotonic() + args.duration
        next_report = time.monotonic() + 1.0
        while not stop[0] and (t_end is None or time.monotonic() < t_end):
            executor.spin_once(timeout_sec=0.05)
            if not args.quiet and time.monotonic() >= next_report:
                next_report += 1.0
                print(f"record: {recorder.counts} pending {recorder.pending}", flush=True)
    except BagError as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 1
    except ExternalShutdownException:
        pass
    finally:
        if recorder is not None:
            recorder.close()
            for w in recorder.warnings:
                print(f"record: warning: {w}", file=sys.stderr)
            print(f"record: wrote {args.output}: {recorder.counts}", flush=True)
        executor.shutdown()
        node.destroy_node()
        if ctx.ok():
            rclpy.shutdown(context=ctx)
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="snn-fusion record", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
