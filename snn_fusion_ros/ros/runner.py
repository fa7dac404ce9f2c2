"""The one ``main()`` shape every node process shares (init, spin, clean shutdown)."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable

#: seconds the middleware teardown (destroying the nodes, shutting rclpy down) may take after every
#: node's ``on_shutdown()`` has run; past it the process logs where it hung and exits (see run_nodes)
TEARDOWN_DEADLINE_S = 3.0
#: longest the executor waits between two checks of :data:`SHUTDOWN_REQUESTED` (see run_nodes)
SPIN_CHECK_S = 0.2
#: set by the SIGINT handler of :func:`init_rclpy`, before it raises KeyboardInterrupt
SHUTDOWN_REQUESTED = threading.Event()


def _on_sigint(signum: int, frame: object) -> None:
    """Record the stop request, then raise KeyboardInterrupt (which a finalizer may swallow)."""
    SHUTDOWN_REQUESTED.set()
    raise KeyboardInterrupt


def bounded_teardown(teardown: Callable[[], None], deadline_s: float, log: Callable[[str], None],
                     exit_fn: Callable[[int], object] = os._exit) -> bool:
    """Run ``teardown()`` in this thread; if it has not returned after ``deadline_s``, a watchdog
    thread logs a warning, dumps every thread's stack to stderr and calls ``exit_fn(0)``.

    Returns True when ``teardown`` finished in time (the watchdog never fired). ``exit_fn`` is
    ``os._exit`` in a node process: the hung thread is inside the middleware's C code, where no Python
    exception can reach it.
    """
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        log(f"middleware teardown still running after {deadline_s:g} s (destroying the nodes / rclpy shutdown); "
            "every node has already run on_shutdown(), so the process exits without waiting for it; "
            "thread stacks follow on stderr")
        faulthandler.dump_traceback(all_threads=True)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        exit_fn(0)

    timer = threading.Timer(deadline_s, expire)
    timer.daemon = True
    timer.start()
    try:
        teardown()
    finally:
        timer.cancel()
    return not fired.is_set()


def init_rclpy(args: list[str] | None = None) -> None:
    """``rclpy.init`` for a process of this package: SIGINT raises KeyboardInterrupt, always.

    SIGINT arrives as KeyboardInterrupt with the context still valid, so on_shutdown() can still
    publish (the encoders flush their last window) before rclpy shuts down. A process started from a
    non-interactive shell's background job (`cmd &` in a script) inherits SIGINT *ignored*, and Python
    then installs no handler: the process would ignore `ros2 launch`'s stop signal and be killed after
    its timeout, without on_shutdown(). SIGINT is therefore always restored to raise KeyboardInterrupt,
    and rclpy installs no handler of its own. SIGUSR1 dumps every thread's Python stack to stderr
    (``faulthandler``), for a process that hangs: ``kill -USR1 <pid>``.

    The handler also sets :data:`SHUTDOWN_REQUESTED` before it raises: Python runs a signal handler
    between any two bytecodes, including inside an object's ``__del__`` (rclpy's ``Future.__del__``,
    run by the garbage collector), where an exception is printed as "Exception ignored" and dropped. A
    node caught there kept spinning after SIGINT until it was SIGKILLed (seen once in the fault tests);
    the spin loops check the flag.
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    SHUTDOWN_REQUESTED.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)


def run_nodes(factory: Callable[[], list], args: list[str] | None = None, threads: int = 1) -> int:
    """Create the nodes with ``factory()``, spin them until Ctrl-C / shutdown, then clean up.

    ``threads`` > 1 spins a multi-threaded executor (several nodes in one process). A node whose
    parameters are invalid raises ValueError (or FileNotFoundError for a missing model) in its
    constructor: the error is logged and the process exits with status 2 (nothing half-started).
    Each node's ``on_shutdown()``, if it has one, runs before it is destroyed. The executor spins in
    turns of at most :data:`SPIN_CHECK_S` and stops once :data:`SHUTDOWN_REQUESTED` is set, also when
    the SIGINT's KeyboardInterrupt was lost in a finalizer (:func:`init_rclpy`).

    The teardown after that (``destroy_node``, ``rclpy.try_shutdown``) has :data:`TEARDOWN_DEADLINE_S`
    seconds (:func:`bounded_teardown`): DDS middleware can deadlock while destroying an entity (seen once
    in 12 back-to-back runs of test_faults_nodes.py, whose peers are SIGKILLed and restarted: an encoder
    stuck in the type-description service's destruction inside ``destroy_node``), and a node that never
    exits after SIGINT holds up ``ros2 launch`` until it is SIGKILLed. Past the deadline the process
    logs a warning with every thread's stack and exits with status 0 (its own work, on_shutdown, is done).
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
        while not SHUTDOWN_REQUESTED.is_set() and executor.context.ok():
            executor.spin_once(timeout_sec=SPIN_CHECK_S)
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

        def teardown() -> None:
            for node in nodes:
                node.destroy_node()
            rclpy.try_shutdown()

        bounded_teardown(teardown, TEARDOWN_DEADLINE_S, rclpy.logging.get_logger("snn_fusion_ros").warning)
    return 0


def run_node(factory: Callable[[], object], args: list[str] | None = None) -> int:
    """:func:`run_nodes` for one node on a single-threaded executor."""
    return run_nodes(lambda: [factory()], args)
