"""The one ``main()`` shape every node process shares (init, spin, clean shutdown)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


def init_rclpy(args: list[str] | None = None) -> None:
    """``rclpy.init`` for a process of this package: SIGINT raises KeyboardInterrupt, always.

    SIGINT arrives as KeyboardInterrupt with the context still valid, so on_shutdown() can still
    publish (the encoders flush their last window) before rclpy shuts down. A process started from a
    non-interactive shell's background job (`cmd &` in a script) inherits SIGINT *ignored*, and Python
    then installs no handler: the process would ignore `ros2 launch`'s stop signal and be killed after
    its timeout, without on_shutdown(). SIGINT is therefore always restored to raise KeyboardInterrupt,
    and rclpy installs no handler of its own. SIGUSR1 dumps every thread's Python stack to stderr
    (``faulthandler``), for a process that hangs: ``kill -USR1 <pid>``.
    """
    import faulthandler

    import rclpy
    from rclpy.signals import SignalHandlerOptions

    signal.signal(signal.SIGINT, signal.default_int_handler)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)


def run_nodes(factory: Callable[[], list], args: list[str] | None = None, threads: int = 1) -> int:
    """Create the nodes with ``factory()``, spin them until Ctrl-C / shutdown, then clean up.

    ``threads`` > 1 spins a multi-threaded executor (several nodes in one process). A node whose
    parameters are invalid raises ValueError (or FileNotFoundError for a missing model) in its
    constructor: the error is logged and the process exits with status 2 (nothing half-started).
    Each node's ``on_shutdown()``, if it has one, runs before it is destroyed.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    init_rclpy(args)
    nodes: list = []
    try:
        nodes = list(factory())
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError) as exc:
        rclpy.logging.get_logger("snn_fusion_ros").fatal(f"refusing to start: {exc}")
        return 2
    finally:
        for node in nodes:
            shutdown = getattr(node, "on_shutdown", None)
            if shutdown is not None:
                shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def run_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    """:func:`run_nodes` for one node on a single-threaded executor."""
    return run_nodes(lambda: [factory()], args)
