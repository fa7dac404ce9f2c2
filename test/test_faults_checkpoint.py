"""Checkpoint faults: the process killed while writing, and a full disk.

Proves: the previous checkpoint stays intact and is the one loaded; a failed save is reported, never
raised out of the node; the next save after the fault works.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from snn_fusion_ros.fusion.checkpoint import CheckpointStore

VERSION = "m@0123456789ab"


def _state(n: int, value: float) -> dict[str, np.ndarray]:
    return {"w_fuse": np.full((n,), value, np.float32)}


@pytest.mark.unit
def test_kill_during_write_keeps_previous_checkpoint(tmp_path):
    store = CheckpointStore(tmp_path, VERSION)
    first = store.save(_state(1000, 1.0))
    # a real crash: a second process is SIGKILLed after writing the temporary file, before the rename
    code = textwrap.dedent(f"""
        import os, sys, time
        import numpy as np
        from snn_fusion_ros.fusion.checkpoint import CheckpointStore
        real_fsync = os.fsync
        def stall(fd):
            real_fsync(fd)
            print("written", flush=True)
            time.sleep(60)
        os.fsync = stall
        CheckpointStore({str(tmp_path)!r}, {VERSION!r}).save({{"w_fuse": np.full((1000,), 2.0, np.float32)}})
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stdout.readline().strip() == "written"
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    leftovers = sorted(x.name for x in tmp_path.iterdir())
    assert leftovers == [first.name, "stdp-00000002.safetensors.tmp"], leftovers
    found = CheckpointStore(tmp_path, VERSION).load_latest()
    assert found.path == first and found.refused == []
    np.testing.assert_array_equal(found.state["w_fuse"], 1.0)
    again = CheckpointStore(tmp_path, VERSION).save(_state(1000, 3.0))  # the stale .tmp is overwritten
    assert again.name == "stdp-00000002.safetensors"
    np.testing.assert_array_equal(CheckpointStore(tmp_path, VERSION).load_latest().state["w_fuse"], 3.0)


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (root only); skipped where mounting is not permitted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.unit
def test_disk_full_keeps_previous_checkpoint(small_fs: Path):
    store = CheckpointStore(small_fs, VERSION)
    first = store.save(_state(2000, 1.0))  # 8 KB: fits
    with pytest.raises(OSError) as err:
        store.save(_state(40_000, 2.0))    # 160 KB: does not
    assert err.value.errno == errno.ENOSPC
    found = CheckpointStore(small_fs, VERSION).load_latest()
    assert found.path == first and found.refused == [], (found.path, found.refused)
    np.testing.assert_array_equal(found.state["w_fuse"], 1.0)
    # the partial temporary file is what a full disk leaves; the next save that fits still works
    for tmp in small_fs.glob("*.tmp"):
        tmp.unlink()
    second = store.save(_state(2000, 5.0))
    np.testing.assert_array_equal(CheckpointStore(small_fs, VERSION).load_latest().state["w_fuse"], 5.0)
    assert second.name == "stdp-00000002.safetensors"


@pytest.mark.ros
def test_fusion_node_reports_disk_full_and_restores_previous(rclpy_context, ros_msgs, tiny_model, small_fs):
    from rclpy.parameter import Parameter

    from snn_fusion_ros.ros.fusion_node import FusionNode

    params = [Parameter("model_path", value=str(tiny_model)), Parameter("stdp.enabled", value=True),
              Parameter("checkpoint_dir", value=str(small_fs))]
    node = FusionNode(context=rclpy_context, parameter_overrides=params)
    node.save_checkpoint()
    assert node.checkpoint_status.startswith("saved stdp-00000001"), node.checkpoint_status
    saved = node.stdp.state_dict()
    filler = small_fs / "filler"  # the disk fills up
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    node.save_checkpoint()  # must not raise
    assert node.checkpoint_status.startswith("save failed") and "No space left" in node.checkpoint_status, \
        node.checkpoint_status
    node.on_shutdown()
    node.destroy_node()
    filler.unlink()
    again = FusionNode(context=rclpy_context, parameter_overrides=params)
    try:
        assert again.checkpoint_status.startswith("restored stdp-00000001"), again.checkpoint_status
        for k, v in saved.items():
            np.testing.assert_array_equal(again.stdp.state_dict()[k], v)
    finally:
        again.chain.close()
        again.destroy_node()
