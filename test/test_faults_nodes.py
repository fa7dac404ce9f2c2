"""Process faults: SIGKILL each node of the running pipeline mid-stream, then restart it.

The stream is played in real time (one 50 ms window per 50 ms) through the four node processes.
Proves, for each killed encoder: fusion keeps classifying every window without the dead modality
(it is dropped within one window - the ``max_wait_ms`` wait - and diagnostics name it), and the
modality is fused again within 1 s of fusion receiving the restarted encoder's windows. For the fusion
node: classifications from all three modalities within 1 s of the restarted node receiving all three
encoders' windows. "Receiving" is read from fusion's diagnostics (every 0.1 s: the modalities alive),
because DDS matches a restarted participant with each peer separately: the test may see the new
encoder's windows a second or more before fusion does. DDS contact and matching are each bounded at
10 s (Fast DDS's default announcement periods, not the nodes' doing). No process outlives the test.
"""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from snn_fusion_ros.bench import soak

pytestmark = [pytest.mark.ros, pytest.mark.slow]

MODALITY = {"audio_encoder": "audio", "dvs_encoder": "dvs", "imu_encoder": "imu"}
READY = {"audio_encoder": "audio encoder:", "dvs_encoder": "dvs encoder:", "imu_encoder": "imu encoder:",
         "fusion": "classes) on"}


def _ready_time(procs: soak.Processes, name: str, timeout_s: float = 60.0) -> float:
    """Monotonic time at which the (re)started node logged the end of its constructor."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if READY[name] in procs.log(name):
            return time.monotonic()
        if procs.procs[name].poll() is not None:
            raise AssertionError(f"{name} exited on restart:\n{procs.log(name)[-2000:]}")
        time.sleep(0.01)
    raise AssertionError(f"{name} not ready after {timeout_s} s:\n{procs.log(name)[-2000:]}")


@pytest.mark.parametrize("victim", ["audio_encoder", "dvs_encoder", "imu_encoder", "fusion"])
def test_sigkill_and_restart(victim, tmp_path, ros_msgs):
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    model = soak.bench_model(tmp_path)
    # stale_timeout_ms 300: "alive" (wall time) drops a silent modality quickly for the diagnostics check
    cmds = soak.node_commands(model, diagnostics_period_s=0.1, max_wait_ms=30.0)
    cmds["fusion"] += ["-p", "alignment.stale_timeout_ms:=300.0"]
    procs = soak.Processes(cmds)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    executor = MultiThreadedExecutor(num_threads=2, context=ctx)
    stop = threading.Event()
    th = None
    try:
        procs.start_all()
        node = rclpy.create_node("fault_player", context=ctx)
        executor.add_node(node)
        windows_seen: list[tuple[float, int]] = []
        if victim != "fusion":
            from snn_fusion_ros.msg import SpikeTrain
            from snn_fusion_ros.ros.qos import spikes_qos

            node.create_subscription(SpikeTrain, f"{victim}/spikes", lambda m: windows_seen.append(
                (time.monotonic(), m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)), spikes_qos())
        player = soak.Player(node)
        soak.spin_in_thread(executor)
        soak.wait_pipeline_up(player, procs)
        rec = player.rec
        th = threading.Thread(target=soak.play, args=(player, 100_000), kwargs={"pacing": "realtime", "stop": stop},
                              daemon=True)
        th.start()
        assert soak.wait_for(lambda: rec.count() >= 40, 20), "pipeline not classifying"
        old_pid = procs.pid(victim)
        t_kill = time.monotonic()
        procs.kill(victim)
        with pytest.raises(ProcessLookupError):  # the whole group is gone
            os.killpg(old_pid, 0)

        def after_kill() -> list:
            with rec.lock:
                return [r for r in rec.results if r.recv_wall > t_kill + 0.2]

        if victim != "fusion":
            m = MODALITY[victim]
            # keeps classifying: 20 windows (1 s of stream) after the kill, however busy the machine is
            assert soak.wait_for(lambda: len(after_kill()) >= 20, 10), \
                f"fusion stopped classifying: {len(after_kill())} results in 10 s"
            during = after_kill()
            stamps = [r.stamp_ns for r in during]
            assert stamps == list(range(stamps[0], stamps[0] + soak.W_NS * len(stamps), soak.W_NS)), \
                "a window was lost while the modality was gone"
            assert all(m not in r.modalities for r in during), [r.modalities for r in during]
            msgs = [msg for _, lvl, msg in rec.levels.get("fusion: fusion", []) if lvl == 1]
            assert any(re.search(rf"stale.*{m}", x) for x in msgs[-5:]), msgs[-5:]
        else:
            time.sleep(1.5)
            assert after_kill() == [], "classifications from a dead fusion node"
        # restart
        windows_seen.clear()
        procs.start(victim)
        t_ready = _ready_time(procs, victim)
        full = ("audio", "dvs", "imu")
        if victim != "fusion":
            m = MODALITY[victim]
            assert soak.wait_for(lambda: windows_seen, 10), "restarted encoder publishes nothing"
            t_contact = windows_seen[0][0]  # DDS contact: the new process's first window reaches the test
            assert soak.wait_for(lambda: any(m in r.modalities for r in rec.results[-3:]), 15), \
                f"{m} never fused again"
            with rec.lock:
                back = next(r for r in rec.results if r.recv_wall > t_contact and m in r.modalities)
        else:
            n = rec.count()
            # (the first instant may lack the windows published before DDS matched the new subscriber)
            assert soak.wait_for(lambda: any(r.modalities == full for r in rec.results[n:]), 10), \
                "restarted fusion classifies nothing from all modalities"
            with rec.lock:
                back = next(r for r in rec.results[n:] if r.modalities == full)
        with rec.lock:
            new_diags = [(t, msg) for t, _, msg in rec.levels.get("fusion: fusion", []) if t > t_ready]
        if victim == "fusion":  # DDS contact: the first message of any kind from the new process
            t_contact = min([t for t, _ in new_diags] + [back.recv_wall])
        # DDS matched: fusion's first diagnostics (every 0.1 s) after the restart saying it receives all three
        # encoders' windows - the restarted participant and fusion have matched each other (the test's own
        # subscriptions match it independently, sooner or later); fusion cannot use the windows before that
        all_alive = f"classifying with {', '.join(full)} on"
        t_matched = min([t for t, msg in new_diags if all_alive in msg] + [back.recv_wall])
        assert t_matched - t_ready < 10.0, f"{victim}: DDS took {t_matched - t_ready:.1f} s to match fusion's inputs"
        recovery = back.recv_wall - t_matched
        print(f"{victim}: restarted process ready {t_ready - t_kill:.2f} s after the kill, DDS contact "
              f"{t_contact - t_ready:.2f} s after ready, fusion receiving all three {t_matched - t_ready:.2f} s "
              f"after ready, full result {recovery * 1e3:.0f} ms after that "
              f"({(back.recv_wall - t_contact) * 1e3:.0f} ms after contact)")
        # The node's own recovery: < 1 s once DDS has matched the new process. DDS rediscovery of a
        # restarted participant is Fast DDS's (default announcement periods) and is only bounded here.
        assert t_contact - t_ready < 10.0, f"{victim}: DDS took {t_contact - t_ready:.1f} s to rediscover it"
        assert all(procs.alive().values()), procs.alive()
        assert recovery < 1.0, f"{victim}: {recovery:.2f} s from fusion receiving all three to a full result"
    finally:
        stop.set()
        if th is not None:  # the player must not publish into a context being shut down
            th.join(timeout=5)
        executor.shutdown(timeout_sec=2)
        rclpy.try_shutdown(context=ctx)
        leftover = procs.stop()
    assert not leftover, f"{leftover} had to be SIGKILLed at the end; where they hung:\n{procs.stuck_logs}"
