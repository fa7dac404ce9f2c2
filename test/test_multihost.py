"""Two hosts made of network namespaces: encoders on host A, fusion on host B, DDS across a veth link.

Host A (namespace ``snnA<pid>``) runs the three encoder nodes and the synthetic sensor player; host B
(``snnB<pid>``) runs the fusion node and a listener. They are joined by one veth pair with addresses
from a private /30 (10.211.7.1 and 10.211.7.2) and loopback; nothing else exists inside the
namespaces, so no other address can carry traffic. Discovery: ``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET``
plus ``ROS_STATIC_PEERS=<the other host>``, UDPv4 only (no shared memory across namespaces), and the
session's own ``ROS_DOMAIN_ID``.

Proves: classifications from all three modalities arrive on host B from encoders on host A; when the
link goes down fusion degrades (nothing classified, diagnostics STALE: no modality alive) and when
it comes back the same processes recover (classifications from all modalities again).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from snn_fusion_ros.bench import soak

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NET = {"A": "10.211.7.1", "B": "10.211.7.2"}
PREFIX_LEN = 30


def _can_netns() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = f"snnprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode:
        return f"'ip netns add' refused: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def hosts():
    """Namespaces A and B joined by a veth pair; removed (with every process in them) even on failure."""
    why = _can_netns()
    if why:
        pytest.skip(why)
    tag = os.getpid() % 100000
    ns = {h: f"snn{h}{tag}" for h in NET}
    veth = {h: f"sv{h}{tag}" for h in NET}
    try:
        for h in NET:
            _ip("netns", "add", ns[h])
        _ip("link", "add", veth["A"], "type", "veth", "peer", "name", veth["B"])
        for h in NET:
            _ip("link", "set", veth[h], "netns", ns[h])
            _ip("-n", ns[h], "addr", "add", f"{NET[h]}/{PREFIX_LEN}", "dev", veth[h])
            _ip("-n", ns[h], "link", "set", "lo", "up")
            _ip("-n", ns[h], "link", "set", veth[h], "up")
            # multicast discovery goes out of the veth only (the namespace has no other route)
            _ip("-n", ns[h], "route", "add", "224.0.0.0/4", "dev", veth[h])
        r = subprocess.run(["ip", "netns", "exec", ns["A"], "ping", "-c", "1", "-W", "2", NET["B"]],
                           capture_output=True, text=True)
        if r.returncode and shutil.which("ping"):
            pytest.fail(f"veth link does not carry traffic: {r.stdout}{r.stderr}")
        yield ns, veth
    finally:
        for h in NET:
            pids = subprocess.run(["ip", "netns", "pids", ns[h]], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns[h]], check=False, capture_output=True)


def _env(peer: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_STATIC_PEERS": peer,
                "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"})
    return env


class Lines:
    """JSON lines printed so far by the listener process."""

    def __init__(self, procs: soak.Processes, name: str) -> None:
        self.procs, self.name = procs, name

    def all(self) -> list[dict]:
        out = []
        for line in self.procs.log(self.name).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line being written
        return out

    def results(self, since: float = 0.0) -> list[dict]:
        return [x for x in self.all() if x["type"] == "classification" and x["wall"] > since]

    def diags(self, since: float = 0.0) -> list[dict]:
        return [x for x in self.all() if x["type"] == "diag" and x["wall"] > since]


def test_encoders_on_host_a_fusion_on_host_b_survive_a_link_cut(hosts, tmp_path, ros_msgs):
    ns, veth = hosts
    model = soak.bench_model(tmp_path)
    cmds = soak.node_commands(model, diagnostics_period_s=0.25, max_wait_ms=200.0)
    cmds["fusion"] += ["-p", "alignment.stale_timeout_ms:=500.0"]
    seconds = 60
    host_a = soak.Processes({**{n: cmds[n] for n in ("audio_encoder", "dvs_encoder", "imu_encoder")},
                             "player": ["-m", "snn_fusion_ros.bench.soak", "play", "--seconds", str(seconds)]},
                            _env(NET["B"]), prefix=["ip", "netns", "exec", ns["A"]])
    host_b = soak.Processes({"fusion": cmds["fusion"],
                             "listener": ["-m", "snn_fusion_ros.bench.soak", "listen", "--seconds", str(seconds + 10)]},
                            _env(NET["A"]), prefix=["ip", "netns", "exec", ns["B"]])
    lines = Lines(host_b, "listener")
    full = ["audio", "dvs", "imu"]
    try:
        host_b.start_all()
        host_a.start_all()
        ok = soak.wait_for(lambda: sum(r["modalities"] == full for r in lines.results()) >= 20, 60, 0.1)
        logs = {n: p.log(n)[-1500:] for p in (host_a, host_b) for n in p.procs}
        assert ok, f"no classifications across hosts: {len(lines.results())} results\n{logs}"
        # cut the link (from host A's side)
        t_cut = time.time()
        _ip("-n", ns["A"], "link", "set", veth["A"], "down")
        time.sleep(3.0)
        during = lines.results(since=t_cut + 0.5)
        assert during == [], f"{len(during)} classifications while host A was unreachable"
        stale = [d for d in lines.diags(since=t_cut) if d["level"] == 3]
        assert stale and "no modality alive" in stale[-1]["message"], [d["message"] for d in lines.diags(t_cut)]
        # restore it: the same processes recover
        t_up = time.time()
        _ip("-n", ns["A"], "link", "set", veth["A"], "up")
        ok = soak.wait_for(lambda: any(r["modalities"] == full for r in lines.results(since=t_up)), 30, 0.1)
        assert ok, f"no classification after the link came back: {lines.results(since=t_up)[:3]}"
        back = next(r for r in lines.results(since=t_up) if r["modalities"] == full)
        recovery_s = back["wall"] - t_up
        ok_diag = soak.wait_for(lambda: any(d["level"] == 0 for d in lines.diags(since=back["wall"])), 10, 0.1)
        print(f"multihost: {len(lines.results(0, ))} results; link down {t_up - t_cut:.1f} s; full classification "
              f"{recovery_s:.2f} s after the link came back")
        assert ok_diag, [d["message"] for d in lines.diags(since=back["wall"])][-3:]
        assert recovery_s < 10.0, recovery_s
        assert all(host_a.alive()[n] for n in ("audio_encoder", "dvs_encoder", "imu_encoder"))
        assert host_b.alive()["fusion"]
    finally:
        left = host_a.stop() + host_b.stop()
    assert not left, f"{left} ignored SIGINT; where they hung:\n{host_a.stuck_logs} {host_b.stuck_logs}"
