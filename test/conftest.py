"""Test harness: per-session ROS_DOMAIN_ID on localhost, node fixtures in-process and as processes.

Every process that starts DDS in the suite inherits ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and
a ``ROS_DOMAIN_ID`` that this session holds an exclusive lock on, so parallel runs never cross and
no traffic leaves loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_EVENTS = REPO.parent / "shared" / "data" / "events"

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests over real DDS run up to twice more on failure: their waits are wall-clock bounded and a
    loaded 2-core machine can exceed them (discovery, scheduling). A test failing three times fails."""
    if os.environ.get("SNN_FUSION_NO_RERUNS"):  # to see every first failure while hunting flaky tests
        return
    for item in items:
        if item.get_closest_marker("ros") and not item.get_closest_marker("flaky"):
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=1))


_RERUN_REASONS: list[tuple[str, str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep why a test failed before a rerun passed it, so every log can tell what a flaky test hit."""
    if report.outcome == "rerun":
        _RERUN_REASONS.append((report.nodeid, report.when, report.longreprtext))


def _clean_shm_zombies() -> str:
    """Run Fast DDS's own ``fastdds shm clean``: it removes the shared-memory segments and ports of
    processes that died without closing them (the SIGKILL fault tests make some on every run, about
    20 segments of 0.5 MB that tmpfs keeps in RAM until reboot); segments in use are left alone."""
    import shutil

    tool = shutil.which("fastdds")
    if tool is None:
        return ""
    try:
        done = subprocess.run([tool, "shm", "clean"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"fastdds shm clean failed: {exc}"
    return " / ".join(line.strip() for line in done.stdout.splitlines() if line.strip())


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the controller cleans once
        return
    cleaned = _clean_shm_zombies()
    if any(word.isdigit() and int(word) > 0 for word in cleaned.replace("/", " ").split()) or "failed" in cleaned:
        terminalreporter.write_line(f"Fast DDS shared memory of dead processes: {cleaned}")
    if not _RERUN_REASONS:
        return
    terminalreporter.section("why tests were rerun (the failures that a rerun followed)")
    for nodeid, when, text in _RERUN_REASONS:
        lines = text.strip().splitlines()
        terminalreporter.write_line(f"--- {nodeid} ({when}), last {min(25, len(lines))} lines:")
        for line in lines[-25:]:
            terminalreporter.write_line("    " + line)


def _hypothesis_profiles() -> None:
    """Property tests draw the same examples on every run ("repeatable", the default: a red CI is a
    bug in the code, never a new draw) unless ``SNN_FUSION_FUZZ_EXPLORE=1`` asks for fresh random
    examples ("explore", for fuzzing sessions; hypothesis prints how to reproduce what it finds).
    No example deadline in either: hangs are caught by pytest-timeout, and timing is not asserted."""
    from hypothesis import settings

    settings.register_profile("repeatable", derandomize=True, database=None, deadline=None)
    settings.register_profile("explore", derandomize=False, deadline=None)
    settings.load_profile("explore" if os.environ.get("SNN_FUSION_FUZZ_EXPLORE") else "repeatable")


def pytest_configure(config: pytest.Config) -> None:
    _hypothesis_profiles()
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    if "SNN_FUSION_TEST_DOMAIN_ID" not in os.environ:
        from snn_fusion_ros.ros.domain import claim_domain_id

        os.environ["SNN_FUSION_TEST_DOMAIN_ID"] = str(claim_domain_id())
    os.environ["ROS_DOMAIN_ID"] = os.environ["SNN_FUSION_TEST_DOMAIN_ID"]


@pytest.fixture(scope="session")
def shared_events() -> Path:
    """The team's real recordings (../shared/data/events); skip where this clone has none."""
    if not SHARED_EVENTS.is_dir():
        pytest.skip(f"real recordings not present at {SHARED_EVENTS} (a clone outside the team has no ../shared)")
    return SHARED_EVENTS


def _have_msgs() -> bool:
    try:
        import snn_fusion_ros.msg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def ros_msgs():
    """The generated snn_fusion_ros.msg module (built by `make build`)."""
    if not _have_msgs():
        pytest.fail("snn_fusion_ros.msg is not importable: run the suite through `make test` (builds msg/)")
    import snn_fusion_ros.msg as m

    return m


@pytest.fixture
def rclpy_context():
    """An initialised rclpy Context for in-process nodes; shut down after the test."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        if ctx.ok():
            rclpy.shutdown(context=ctx)


@pytest.fixture
def executor(rclpy_context):
    """A single-threaded executor bound to the test's context; nodes added to it are destroyed after.

    Single-threaded, as the nodes run in production by default (``ros/runner.py``). With rclpy's
    MultiThreadedExecutor(4) driven by ``spin_once`` from the test thread, the in-process fusion
    node's backend steps (0.5 ms alone) took 5-40 ms and at times over 500 ms, and a probe of 40
    windows got 16-34 classified within the wait (40 of 40 single-threaded): contention for the GIL
    between the executor's threads and the backend thread is the likely cause.
    """
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=rclpy_context)
    try:
        yield ex
    finally:
        for node in list(ex.get_nodes()):
            ex.remove_node(node)
            node.destroy_node()
        ex.shutdown()


def spin_until(executor, predicate, timeout_s: float = 10.0, step_s: float = 0.02) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or the timeout passes; returns the predicate."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step_s)
    return bool(predicate())


class NodeProcess:
    """A node (or any Python module) run as a separate process, as `ros2 launch` would run it."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, sigint_ignored: bool = False) -> None:
        self.args = args
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        # sigint_ignored: start as a non-interactive shell's background job would (SIGINT inherited ignored)
        self.proc = subprocess.Popen(
            [sys.executable, *args], env=full_env, cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
        )

    def stop(self, timeout_s: float = 10.0) -> str:
        """SIGINT (clean shutdown), then SIGKILL the whole process group if it lingers; returns output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        out = self.proc.stdout.read() if self.proc.stdout else ""
        try:  # nothing of the group may outlive the test
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            pass
        else:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"processes of {self.args} outlived their leader")
        return out


@pytest.fixture
def node_process():
    """Factory: ``node_process([-m, module, ...])`` starts a process; all are stopped after the test."""
    procs: list[NodeProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None, sigint_ignored: bool = False) -> NodeProcess:
        p = NodeProcess(args, env, sigint_ignored)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture(scope="session")
def quick_key() -> str:
    """Key of the --quick data set build (built once, then read from the cache), for training/eval tests."""
    from snn_fusion_ros.data.builder import BuildConfig, build

    return build(BuildConfig.create(quick=True)).name


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """An untrained but valid 4-class model artifact with small inputs (audio 8, dvs 16, imu 6)."""
    from snn_fusion_ros.snn.artifact import save_artifact
    from snn_fusion_ros.snn.config import FusionNetConfig
    from snn_fusion_ros.snn.network import FusionNet

    cfg = FusionNetConfig(audio_neurons=8, dvs_neurons=16, imu_neurons=6, hidden_neurons=16, fusion_neurons=16,
                          num_classes=4, seed=3)
    return save_artifact(tmp_path_factory.mktemp("model") / "tiny", FusionNet(cfg), ["a", "b", "c", "d"], {},
                         created_by="test/conftest.py tiny_model")


@pytest.fixture(scope="session")
def encoder_sized_model(tmp_path_factory) -> Path:
    """An untrained 10-class model whose inputs match the encoders' defaults (config/snn_fusion.yaml)."""
    from snn_fusion_ros.data.encode import node_encoder_configs
    from snn_fusion_ros.snn.artifact import save_untrained_encoder_sized

    return save_untrained_encoder_sized(tmp_path_factory.mktemp("model") / "sized", num_classes=10, seed=5,
                                        encoders=node_encoder_configs(),
                                        created_by="test/conftest.py encoder_sized_model")
