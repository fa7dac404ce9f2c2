"""Checkpoints: atomic writes, fallback to the previous file, refusal of corrupt or foreign files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from snn_fusion_ros.fusion.checkpoint import CheckpointStore

pytestmark = pytest.mark.unit


def state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w_fusion": rng.standard_normal((64, 32)).astype(np.float32), "step": np.array([seed], np.int64)}


def test_save_and_load_latest_round_trip(tmp_path):
    store = CheckpointStore(tmp_path, "model@abc")
    store.save(state(1))
    p2 = store.save(state(2))
    got = store.load_latest()
    assert got.path == p2 and got.refused == []
    np.testing.assert_array_equal(got.state["w_fusion"], state(2)["w_fusion"])


def test_only_keep_newest_files_remain(tmp_path):
    store = CheckpointStore(tmp_path, "m", keep=2)
    for i in range(5):
        store.save(state(i))
    assert [p.name for p in store.files()] == ["stdp-00000005.safetensors", "stdp-00000004.safetensors"]


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_corrupt_newest_falls_back_to_previous(tmp_path, damage):
    store = CheckpointStore(tmp_path, "m")
    store.save(state(1))
    newest = store.save(state(2))
    raw = bytearray(newest.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip_byte":
        raw[-5] ^= 0xFF
    else:
        raw = bytearray(b"not a checkpoint at all")
    newest.write_bytes(bytes(raw))
    got = store.load_latest()
    assert got.path is not None and got.path.name == "stdp-00000001.safetensors"
    np.testing.assert_array_equal(got.state["w_fusion"], state(1)["w_fusion"])
    assert len(got.refused) == 1 and got.refused[0][0] == newest


def test_checkpoint_of_another_model_is_refused(tmp_path):
    CheckpointStore(tmp_path, "old@111").save(state(1))
    got = CheckpointStore(tmp_path, "new@222").load_latest()
    assert got.state is None and "belongs to model 'old@111'" in got.refused[0][1]


def test_kill_mid_write_leaves_previous_checkpoint_loadable(tmp_path):
    store = CheckpointStore(tmp_path, "m")
    store.save(state(1))
    # A child process writes huge checkpoints in a loop; SIGKILL it while it writes.
    code = textwrap.dedent(f"""
        import numpy as np
        from snn_fusion_ros.fusion.checkpoint import CheckpointStore
        store = CheckpointStore({str(tmp_path)!r}, "m")
        big = {{"w_fusion": np.ones((4096, 4096), np.float32), "step": np.array([9], np.int64)}}
        print("ready", flush=True)
        while True:
            store.save(big)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 20
    while not list(tmp_path.glob("*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    got = store.load_latest()
    assert got.state is not None, f"no loadable checkpoint after the kill: {got.refused}"
    assert got.refused == [], "a partially written file was visible under a checkpoint name"
