"""``snn-fusion replay BAG``: publish a bag's messages with their original timing.

Example::

    snn-fusion replay davis.bag --rate 2 --clock --remap /events:=/dvs/events --namespace /replay

Also runnable as ``python -m snn_fusion_ros.bags.cli_replay BAG ...``. Exit status 0 on success, 1
for a bad bag (after replaying every message before the damage), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from snn_fusion_ros.bags.replay import QOS_SOURCES, BagPlayer, ReplayOptions
from snn_fusion_ros.bags.types import BagError


def _remap(text: str) -> tuple[str, str]:
    old, sep, new = text.partition(":=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"remap {text!r}; expected OLD:=NEW")
    return old, new


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="bag directory, or a .mcap / .db3 file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="skip the first S seconds of the bag")
    parser.add_argument("--loop", action="store_true", help="replay again at the end until Ctrl-C")
    parser.add_argument("--remap", type=_remap, action="append", default=[], metavar="OLD:=NEW",
                        help="publish bag topic OLD on NEW (repeatable)")
    parser.add_argument("--topics", nargs="+", default=None, help="replay only these bag topics")
    parser.add_argument("--namespace", default="", help="prefix every output topic, e.g. /replay")
    parser.add_argument("--clock", action="store_true", help="publish /clock (rosgraph_msgs/Clock) with bag time")
    parser.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate between messages, Hz")
    parser.add_argument("--skip-unknown", action="store_true",
                        help="skip topics whose message type is unknown here (warning) instead of failing")
    parser.add_argument("--qos-from", choices=QOS_SOURCES, default="bag",
                        help="QoS: recorded in the bag (default) or the package's defaults")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for a subscriber on every topic before starting")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S", help="sleep S seconds before starting")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, summary only")


def _progress(quiet: bool):
    """(callback, finish) showing a rich progress bar over bag time, refreshed at most 10 times a second."""
    if quiet:
        return None, lambda: None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.1f} s bag"),
                   TimeElapsedColumn(), transient=True)
    task = bar.add_task("replay", total=1.0)
    bar.start()
    last = [0.0]

    def update(done_ns: int, total_ns: int) -> None:
        now = time.monotonic()
        if now - last[0] > 0.1:
            last[0] = now
            bar.update(task, completed=done_ns / 1e9, total=max(total_ns / 1e9, 1e-9))

    return update, bar.stop


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.context import Context

    try:
        opts = ReplayOptions(rate=args.rate, start_offset_s=args.start_offset, loop=args.loop,
                             topics=tuple(args.topics) if args.topics else None, remap=dict(args.remap),
                             namespace=args.namespace, clock=args.clock, clock_hz=args.clock_hz,
                             skip_unknown=args.skip_unknown, qos_from=args.qos_from,
                             wait_for_subscribers_s=args.wait_for_subscribers, delay_s=args.delay)
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    ctx = Context()
    rclpy.init(args=[], context=ctx)  # argv is ours: OLD:=NEW must not become a global rcl remap
    node = rclpy.create_node("snn_fusion_replay", context=ctx)
    player = None
    status = 0
    update, finish = _progress(args.quiet)
    try:
        player = BagPlayer(node, args.bag, opts)
        for w in player.warnings:
            print(f"replay: warning: {w}", file=sys.stderr)
        stats = player.run(progress=update, should_stop=lambda: not ctx.ok())
        player.wait_for_acked(2.0)  # reliable subscribers get the tail before this process exits
        finish()
        print(f"replay: {stats.summary()}")
    except BagError as exc:
        finish()
        print(f"replay: {exc}", file=sys.stderr)
        if player is not None:
            print(f"replay: published before the error: {player.stats.summary()}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        finish()
        if player is not None:
            print(f"replay: interrupted: {player.stats.summary()}")
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        if ctx.ok():
            rclpy.shutdown(context=ctx)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="snn-fusion replay", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
