"""The node processes' runner: a middleware teardown that hangs does not keep a stopped node alive."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from snn_fusion_ros.ros.runner import bounded_teardown


@pytest.mark.unit
def test_bounded_teardown_returns_when_the_teardown_finishes():
    calls, logs, exits = [], [], []
    assert bounded_teardown(lambda: calls.append(1), 5.0, logs.append, exits.append) is True
    time.sleep(0.05)
    assert calls == [1] and logs == [] and exits == []


@pytest.mark.unit
def test_bounded_teardown_exits_with_a_warning_when_the_teardown_hangs(capfd):
    release = threading.Event()
    logs, exits = [], []

    def exit_fn(status: int) -> None:  # os._exit in a node; here: record it and let the "hang" end
        exits.append(status)
        release.set()

    assert bounded_teardown(lambda: release.wait(30), 0.1, logs.append, exit_fn) is False
    assert exits == [0]
    assert len(logs) == 1 and "teardown still running after 0.1 s" in logs[0]
    assert "most recent call first" in capfd.readouterr().err  # where it hung


STUCK_NODE = """
import pathlib, sys, threading
from rclpy.node import Node
from snn_fusion_ros.ros.runner import run_node

class StuckTeardown(Node):
    def __init__(self):
        super().__init__("stuck_teardown")
        self.create_timer(0.05, lambda: pathlib.Path(sys.argv[1]).touch())

    def on_shutdown(self):
        print("on_shutdown ran", flush=True)

    def destroy_node(self):  # the DDS deadlock seen in destroy_node, simulated: it never returns
        threading.Event().wait()

raise SystemExit(run_node(StuckTeardown, []))
"""


@pytest.mark.ros
def test_node_whose_teardown_hangs_still_exits_after_sigint(node_process, tmp_path):
    marker = tmp_path / "spinning"
    proc = node_process(["-c", STUCK_NODE, str(marker)])
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline and proc.proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the node never spun"
    out = proc.stop(timeout_s=10.0)  # SIGKILLs after 10 s; the runner's deadline is 3 s
    assert proc.proc.returncode == 0, f"rc {proc.proc.returncode} (-9: had to be SIGKILLed)\n{out[-3000:]}"
    assert "on_shutdown ran" in out
    assert "teardown still running after 3 s" in out
    assert "destroy_node" in out, out[-3000:]  # the stack dump names where it hung


LOST_INTERRUPT_NODE = """
import pathlib, signal, sys
from rclpy.node import Node
from snn_fusion_ros.ros.runner import run_node

class Finalizer:
    def __del__(self):  # SIGINT while a finalizer runs: its KeyboardInterrupt is raised here and dropped
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):
            pass

class LostInterrupt(Node):
    def __init__(self):
        super().__init__("lost_interrupt")
        self.fired = False
        self.create_timer(0.05, self.tick)

    def tick(self):
        pathlib.Path(sys.argv[1]).touch()
        if pathlib.Path(sys.argv[2]).exists() and not self.fired:
            self.fired = True
            Finalizer()  # unreferenced at once: __del__ runs here

    def on_shutdown(self):
        print("on_shutdown ran", flush=True)

raise SystemExit(run_node(LostInterrupt, []))
"""


@pytest.mark.ros
def test_sigint_lost_in_a_finalizer_still_stops_the_node(node_process, tmp_path):
    """Python runs the SIGINT handler wherever the main thread is, also inside a ``__del__`` (rclpy's
    Future.__del__ was one), where its KeyboardInterrupt is printed as "Exception ignored" and dropped.
    The runner's handler sets a flag first, and the spin loop stops on it."""
    marker, trigger = tmp_path / "spinning", tmp_path / "trigger"
    proc = node_process(["-c", LOST_INTERRUPT_NODE, str(marker), str(trigger)])
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline and proc.proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the node never spun"
    trigger.touch()
    try:
        proc.proc.wait(timeout=10)  # nobody else sends a signal: the lost one must do
    except subprocess.TimeoutExpired:
        pass
    stopped_by_itself = proc.proc.poll() is not None
    out = proc.stop(timeout_s=5.0)
    assert "Exception ignored" in out and "KeyboardInterrupt" in out, out[-3000:]  # the interrupt was lost
    assert stopped_by_itself, f"the node kept spinning after the lost SIGINT\n{out[-3000:]}"
    assert proc.proc.returncode == 0 and "on_shutdown ran" in out, out[-3000:]
