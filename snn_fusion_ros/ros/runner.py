"""The one ``main()`` shape every node shares (init, spin, clean shutdown)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    """Create the node with ``factory()``, spin it until Ctrl-C / shutdown, then clean up.

    A node whose parameters are invalid raises ValueError in its constructor: the error is logged
    and the process exits with status 2 (nothing half-started).
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # SIGINT arrives as KeyboardInterrupt with the context still valid, so on_shutdown() can still
    # publish (the encoders flush their last window) before rclpy shuts down.
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError) as exc:
        rclpy.logging.get_logger("snn_fusion_ros").fatal(f"refusing to start: {exc}")
        return 2
    finally:
        if node is not None:
            shutdown = getattr(node, "on_shutdown", None)
            if shutdown is not None:
                shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
