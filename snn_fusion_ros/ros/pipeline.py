"""Start the encoder and fusion nodes as separate processes (as ``ros2 launch`` does) and stop them cleanly.

Used by the demo, the end-to-end benchmark and end-to-end tests. Every process inherits the given
environment (use :func:`snn_fusion_ros.ros.domain.isolated_ros_env`) and runs in its own process
group; :meth:`Pipeline.stop` sends SIGINT (nodes flush and checkpoint), then SIGKILLs the group of
anything still alive, so nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ENCODER_MODULES = {
    "audio": "snn_fusion_ros.ros.audio_encoder_node",
    "dvs": "snn_fusion_ros.ros.dvs_encoder_node",
    "imu": "snn_fusion_ros.ros.imu_encoder_node",
}
FUSION_MODULE = "snn_fusion_ros.ros.fusion_node"


@dataclass
class Pipeline:
    """The nodes of one pipeline run.

    Parameters
    ----------
    env: environment of every process (ROS_DOMAIN_ID, discovery range).
    modalities: encoders to start (their names as in :data:`ENCODER_MODULES`).
    encoder_params / fusion_params: ``name:=value`` strings passed with ``-p``.
    params_file: a ROS parameters YAML given to every node (``--params-file``).
    log_dir: where each process's output goes (a temporary folder by default).
    """

    env: dict[str, str]
    modalities: tuple[str, ...] = ("audio", "dvs", "imu")
    encoder_params: list[str] = field(default_factory=list)
    fusion_params: list[str] = field(default_factory=list)
    params_file: str | None = None
    log_dir: Path | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def _args(self, module: str, params: list[str]) -> list[str]:
        args = [sys.executable, "-m", module, "--ros-args"]
        if self.params_file:
            args += ["--params-file", self.params_file]
        for p in params:
            args += ["-p", p]
        return args

    def start(self) -> Pipeline:
        """Start the encoders of ``modalities`` and the fusion node."""
        for m in self.modalities:
            self._spawn(f"{m}_encoder", self._args(ENCODER_MODULES[m], self.encoder_params))
        self._spawn("fusion", self._args(FUSION_MODULE, self.fusion_params))
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="snn_fusion_pipeline_"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "w") as log:  # the child keeps its own copy of the fd
            self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def spawn(self, name: str, module: str, *args: str) -> None:
        """Start any other module (a relay, a replay) in this pipeline's environment and log folder."""
        self._spawn(name, [sys.executable, "-m", module, *args])

    def restart(self, name: str) -> None:
        """Start node ``name`` (``<modality>_encoder`` or ``fusion``) again after it died or was killed."""
        old = self.procs[name]
        if old.poll() is None:
            raise RuntimeError(f"{name} is still running (pid {old.pid})")
        module = FUSION_MODULE if name == "fusion" else ENCODER_MODULES[name.removesuffix("_encoder")]
        self._spawn(name, self._args(module, self.fusion_params if name == "fusion" else self.encoder_params))

    def dead(self) -> dict[str, int]:
        """Nodes that exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def log(self, name: str) -> str:
        path = (self.log_dir or Path()) / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout_s: float = 15.0) -> dict[str, int]:
        """SIGINT every node, wait, SIGKILL what lingers; returns exit codes."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        codes = {}
        for name, p in self.procs.items():
            try:
                codes[name] = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[name] = -9
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the group: nothing may outlive the run
            except ProcessLookupError:
                pass
            if p.poll() is None:
                p.wait(timeout=5)
        return codes

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
