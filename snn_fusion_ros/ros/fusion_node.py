"""fusion_node: aligned SpikeTrain windows -> spiking network on a chosen backend -> Classification.

Thin wrapper: alignment (:mod:`snn_fusion_ros.fusion.alignment`), backend fallback
(:mod:`snn_fusion_ros.fusion.fallback`), checkpoints (:mod:`snn_fusion_ros.fusion.checkpoint`) and
the network (:mod:`snn_fusion_ros.snn`) live in the core; this node reads parameters, wires topics,
publishes results and diagnostics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.node import Node

from snn_fusion_ros.backends.base import check_inputs
from snn_fusion_ros.backends.registry import BACKENDS
from snn_fusion_ros.errors import InputRejected, RejectionCounter
from snn_fusion_ros.fusion.alignment import Aligner, AlignerConfig, FusedWindow
from snn_fusion_ros.fusion.checkpoint import CheckpointStore
from snn_fusion_ros.fusion.fallback import BackendChain, BackendsExhausted
from snn_fusion_ros.models import resolve_model
from snn_fusion_ros.params import param, validate_config
from snn_fusion_ros.ros import diagnostics as diag
from snn_fusion_ros.ros.convert import classification_to_msg, image_to_msg, msg_to_spike_window
from snn_fusion_ros.ros.parameters import ConfigBinding, declare_config
from snn_fusion_ros.ros.qos import results_qos, spikes_qos
from snn_fusion_ros.ros.runner import run_node
from snn_fusion_ros.snn.artifact import load_artifact
from snn_fusion_ros.snn.stdp import OnlineSTDP, STDPConfig

BACKEND_NAMES = tuple(BACKENDS)


@dataclass(frozen=True)
class FusionNodeConfig:
    """Top-level parameters of the fusion node (alignment.*, stdp.* are separate groups)."""

    model_path: str = field(default="", metadata=param(
        "model artifact directory, or a model name under share/snn_fusion_ros/models; empty = the shipped default"))
    backend: str = field(default="torch", metadata=param("primary backend", choices=BACKEND_NAMES))
    fallback_backends: tuple[str, ...] = field(default=("torch",), metadata=param(
        "backends tried in order when the primary fails to load or fails during a step"))
    torch_device: str = field(default="cpu", metadata=param("torch backend device", choices=("cpu", "cuda", "auto")))
    step_timeout_ms: float = field(default=500.0, metadata=param(
        "a backend step longer than this is a failure (fallback engaged); 0 disables the deadline", "ms",
        0.0, 60000.0))
    publish_every_n_windows: int = field(default=1, metadata=param(
        "publish a classification every n-th fused window", "", 1, 10000, runtime=True))
    min_confidence: float = field(default=0.0, metadata=param(
        "below this probability the result carries class_id -1 (no decision)", "", 0.0, 1.0, runtime=True))
    spikes_queue_depth: int = field(default=50, metadata=param(
        "windows kept per spike subscription (reliable, keep last) between two executor turns; a longer "
        "burst on one topic evicts the oldest", "windows", 1, 10000))
    poll_period_ms: float = field(default=5.0, metadata=param(
        "how often waiting windows are checked against max_wait_ms", "ms", 1.0, 1000.0))
    error_hold_s: float = field(default=5.0, metadata=param(
        "diagnostics stay ERROR this long after a backend failure, then WARN while on a fallback", "s",
        0.0, 3600.0, runtime=True))
    checkpoint_dir: str = field(default="", metadata=param(
        "folder for online-learning checkpoints; empty disables checkpoints"))
    checkpoint_period_s: float = field(default=60.0, metadata=param(
        "checkpoint period while STDP is enabled", "s", 1.0, 86400.0, runtime=True))
    debug_raster: bool = field(default=False, metadata=param("publish ~/debug/raster (sensor_msgs/Image)"))
    debug_raster_period_s: float = field(default=0.2, metadata=param("raster image period", "s", 0.02, 60.0))
    metrics_port: int = field(default=0, metadata=param("Prometheus metrics port; 0 = off", "", 0, 65535))
    metrics_host: str = field(default="127.0.0.1", metadata=param(
        "address the metrics endpoint binds to (localhost unless you mean to expose it)"))
    diagnostics_period_s: float = field(default=1.0, metadata=param("diagnostics period", "s", 0.05, 60.0))

    def __post_init__(self) -> None:
        validate_config(self)
        bad = [b for b in self.fallback_backends if b not in BACKEND_NAMES]
        if bad:
            raise ValueError(f"fallback_backends {bad} unknown; valid backends: {list(BACKEND_NAMES)}")


class FusionNode(Node):
    """Subscribes ``<modality>_encoder/spikes`` for each configured modality, publishes ``~/classification``."""

    def __init__(self, **kwargs) -> None:
        super().__init__("fusion", **kwargs)
        self.cfg: FusionNodeConfig = declare_config(self, "", FusionNodeConfig)
        self.align_cfg: AlignerConfig = declare_config(self, "alignment", AlignerConfig)
        self.stdp_cfg: STDPConfig = declare_config(self, "stdp", STDPConfig)
        self._bindings = [
            ConfigBinding(self, "", self.cfg, lambda c: setattr(self, "cfg", c)),
            ConfigBinding(self, "alignment", self.align_cfg, self._on_align_config),
            ConfigBinding(self, "stdp", self.stdp_cfg, self._on_stdp_config),
        ]

        model_dir = resolve_model(self.cfg.model_path)
        self.artifact = load_artifact(model_dir)
        sizes = self.artifact.config.input_sizes
        missing = [m for m in self.align_cfg.modalities if m not in sizes]
        if missing:
            raise ValueError(f"alignment.modalities {list(self.align_cfg.modalities)}: the model at {model_dir} has "
                             f"no input for {missing} (it has {list(sizes)})")
        names = [self.cfg.backend] + [b for b in self.cfg.fallback_backends if b != self.cfg.backend]
        options = {"torch": {"device": self.cfg.torch_device}}
        self.chain = BackendChain(names, self.artifact, step_timeout_ms=self.cfg.step_timeout_ms, options=options)
        self._warm_up()
        self._last_failure_time: float | None = time.monotonic() if self.chain.failures() else None
        for name, why in self.chain.failures().items():
            self.get_logger().error(f"backend {name} unavailable: {why}")

        self.aligner = Aligner(self.align_cfg)
        self.rejections = RejectionCounter()
        self.received = 0
        self.fused = 0
        self.published = 0
        self.latency_ms = diag.LatencyWindow()
        self.step_ms = diag.LatencyWindow()
        self.last_modalities: tuple[str, ...] = ()
        self._rejected_at_last_update = 0
        self._seen_reset_count = 0

        self.stdp: OnlineSTDP | None = None
        self.checkpoints: CheckpointStore | None = None
        self.checkpoint_status = "disabled"
        self._setup_stdp()

        from snn_fusion_ros.msg import Classification, SpikeTrain

        self.publisher = self.create_publisher(Classification, "~/classification", results_qos())
        self.subs = [self.create_subscription(SpikeTrain, f"{m}_encoder/spikes", self._on_spikes,
                                          spikes_qos(self.cfg.spikes_queue_depth))
                     for m in self.align_cfg.modalities]
        self.create_timer(self.cfg.poll_period_ms / 1e3, self._poll)

        self.raster = None
        if self.cfg.debug_raster:
            from sensor_msgs.msg import Image

            from snn_fusion_ros.fusion.raster import RasterHistory

            self.raster = RasterHistory()
            self._last_scores = np.zeros(len(self.artifact.class_names), np.float32)
            self.raster_pub = self.create_publisher(Image, "~/debug/raster", 1)
            self.create_timer(self.cfg.debug_raster_period_s, self._publish_raster)

        self.metrics = None
        if self.cfg.metrics_port:
            from snn_fusion_ros.ros.metrics import Metrics

            self.metrics = Metrics(self.cfg.metrics_port, self.cfg.metrics_host)

        self.updater = diag.Updater(self, hardware_id=self.chain.active.capabilities().device,
                                    period_s=self.cfg.diagnostics_period_s)
        self.updater.add("fusion", self._diagnose)
        self.get_logger().info(
            f"model {self.artifact.version} ({len(self.artifact.class_names)} classes) on "
            f"{self.chain.active_name} [{self.chain.active.capabilities().device}], modalities "
            f"{list(self.align_cfg.modalities)}")

    def _warm_up(self) -> None:
        """One silent window through the backend (lazy initialisation), then a reset: the first real
        window is not late."""
        cfg = self.artifact.config
        zeros = {m: np.zeros((cfg.steps_per_window, n), dtype=bool) for m, n in cfg.input_sizes.items()}
        self.chain.step(zeros)
        self.chain.reset()

    # --- configuration --------------------------------------------------------------------------

    def _on_align_config(self, cfg: AlignerConfig) -> None:
        self.align_cfg = cfg
        self.aligner.config = cfg

    def _on_stdp_config(self, cfg: STDPConfig) -> None:
        self.stdp_cfg = cfg
        if self.stdp is not None:
            self.stdp.configure(cfg)
        elif cfg.enabled:
            self._setup_stdp()

    def _setup_stdp(self) -> None:
        if not self.stdp_cfg.enabled:
            return
        backend = self.chain.active
        if not backend.capabilities().online_learning or getattr(backend, "model", None) is None:
            self.checkpoint_status = f"STDP unavailable on backend {self.chain.active_name}"
            self.get_logger().warn(self.checkpoint_status)
            return
        self.stdp = OnlineSTDP(backend.model, self.stdp_cfg)
        if not self.cfg.checkpoint_dir:
            self.checkpoint_status = "STDP on, checkpoints disabled (checkpoint_dir empty)"
            return
        self.checkpoints = CheckpointStore(Path(self.cfg.checkpoint_dir).expanduser(), self.artifact.version)
        found = self.checkpoints.load_latest()
        for path, why in found.refused:
            self.get_logger().error(f"checkpoint {path} refused: {why}")
        if found.state is not None:
            try:
                self.stdp.load_state_dict(found.state)
                self.checkpoint_status = f"restored {found.path.name}"
            except (ValueError, KeyError) as exc:
                self.checkpoint_status = f"{found.path.name} does not fit the model ({exc}); using shipped weights"
        else:
            self.checkpoint_status = "no valid checkpoint; using the shipped weights"
        if found.refused:
            self.checkpoint_status += f" ({len(found.refused)} file(s) refused)"
        self.get_logger().info(f"checkpoints: {self.checkpoint_status}")
        self.create_timer(self.cfg.checkpoint_period_s, self.save_checkpoint)

    def save_checkpoint(self) -> None:
        if self.stdp is None or self.checkpoints is None:
            return
        try:
            path = self.checkpoints.save(self.stdp.state_dict())
            self.checkpoint_status = f"saved {path.name}"
        except OSError as exc:  # disk full, permissions: keep running on the previous checkpoint
            self.checkpoint_status = f"save failed: {exc}"
            self.get_logger().error(self.checkpoint_status)

    # --- data path ------------------------------------------------------------------------------

    def _on_spikes(self, msg) -> None:
        self.received += 1
        now = time.monotonic_ns()
        try:
            window = msg_to_spike_window(msg)
            self._check_size(window)
            fused = self.aligner.push(window, now)
        except InputRejected as exc:
            self.rejections.record(exc)
            self.get_logger().warn(f"rejected window: {exc}", throttle_duration_sec=5.0)
            return
        for f in fused:
            self._classify(f)

    def _check_size(self, window) -> None:
        """Refuse a window whose size differs from the model's input for its modality, at arrival (the
        backends' own :func:`check_inputs`): only that modality is lost (fusion goes on without it), not
        every instant it would have joined."""
        cfg = self.artifact.config
        try:
            check_inputs({window.modality: window.spikes}, cfg.input_sizes, cfg.steps_per_window)
        except InputRejected as exc:
            raise InputRejected(exc.reason, f"{exc.detail}: the encoder's parameters must match the model's "
                                            "encoder_config (config/snn_fusion.yaml for the shipped model)") from None

    def _poll(self) -> None:
        for f in self.aligner.poll(time.monotonic_ns()):
            self._classify(f)

    def _classify(self, fused: FusedWindow) -> None:
        try:
            result = self.chain.step(fused.inputs)
        except InputRejected as exc:
            self.rejections.record(exc)
            return
        except BackendsExhausted as exc:
            self._last_failure_time = time.monotonic()
            self.get_logger().error(str(exc), throttle_duration_sec=5.0)
            return
        if result.fallback_active and self.chain.switches and self._last_failure_time is None:
            self._last_failure_time = time.monotonic()
        if self.chain.events and self.chain.events[-1].wall_time > time.time() - 1.0:
            self._note_backend_events()
        if self.stdp is not None:
            if result.backend == self.chain.primary or getattr(self.chain.active, "model", None) is self.stdp.model:
                self.stdp.update()
        self.fused += 1
        self.last_modalities = fused.modalities
        self.step_ms.add(result.step_ms)
        if self.raster is not None:
            self.raster.add(fused.inputs)
            self._last_scores = result.probs
        if self.fused % self.cfg.publish_every_n_windows:
            return
        now_ns = self.get_clock().now().nanoseconds
        # with use_sim_time and no /clock received yet the clock reads 0: no latency can be measured
        latency_ms = (now_ns - fused.stamp_ns) / 1e6 if now_ns > 0 else float("nan")
        msg = classification_to_msg(
            stamp_ns=fused.stamp_ns, scores=result.probs, class_names=list(self.artifact.class_names),
            modalities_used=list(fused.modalities), backend=result.backend, backend_device=result.device,
            fallback_active=result.fallback_active, latency_ms=latency_ms, model_version=self.artifact.version,
            seq=self.published, min_confidence=self.cfg.min_confidence)
        self.publisher.publish(msg)
        self.published += 1
        if now_ns > 0:
            self.latency_ms.add(latency_ms)
        if self.metrics is not None:
            self.metrics.windows.inc()
            self.metrics.latency_p50.set(self.latency_ms.percentiles()[0])
            self.metrics.latency_p99.set(self.latency_ms.percentiles()[1])
            self.metrics.fallback.set(float(result.fallback_active))

    def _note_backend_events(self) -> None:
        last = self.chain.events[-1]
        self._last_failure_time = time.monotonic()
        self.updater.hardware_id = self.chain.active.capabilities().device
        self.get_logger().error(f"backend {last.backend}: {last.message}; now on {self.chain.active_name}",
                                throttle_duration_sec=1.0)

    def _publish_raster(self) -> None:
        if self.raster is None or not self.fused:
            return
        img = self.raster.render(self._last_scores, list(self.artifact.class_names))
        self.raster_pub.publish(image_to_msg(img, self.get_clock().now().nanoseconds, "snn_fusion"))

    # --- diagnostics ----------------------------------------------------------------------------

    def _diagnose(self, status: diag.StatusWrapper) -> None:
        now_ns = time.monotonic_ns()
        alive = self.aligner.alive(now_ns)
        seen = self.aligner.seen()
        counts = self.rejections.snapshot()
        for k, v in self.aligner.rejections.snapshot().items():
            counts[k] = counts.get(k, 0) + v
        total = sum(counts.values())
        new_rejections = total - self._rejected_at_last_update
        self._rejected_at_last_update = total
        if not seen or not alive:
            status.summary(diag.STALE, "no modality alive: not classifying")
        elif (self._last_failure_time is not None
              and time.monotonic() - self._last_failure_time < self.cfg.error_hold_s):
            status.summary(diag.ERROR, f"backend failure: {self.chain.failures()}; running on {self.chain.active_name}")
        else:
            status.summary(diag.OK, f"classifying with {', '.join(alive)} on {self.chain.active_name}")
            if self.chain.fallback_active:
                status.merge_summary(diag.WARN, f"fallback backend {self.chain.active_name} active "
                                                f"(primary {self.chain.primary} failed)")
            dropped = [m for m in self.align_cfg.modalities if m not in alive]
            if dropped:
                status.merge_summary(diag.WARN, f"modalities stale, dropped from fusion: {', '.join(dropped)}")
            if new_rejections:
                status.merge_summary(diag.WARN, f"{new_rejections} window(s) rejected since last update")
        if self.aligner.resets > self._seen_reset_count:
            status.merge_summary(diag.WARN, "sensor time jumped back: alignment reset")
            self._seen_reset_count = self.aligner.resets
        caps = self.chain.active.capabilities()
        lat50, lat99 = self.latency_ms.percentiles()
        st50, st99 = self.step_ms.percentiles()
        status.add("active backend", self.chain.active_name)
        status.add("backend device", caps.device)
        status.add("hardware present", caps.hardware_present)
        status.add("fallback active", self.chain.fallback_active)
        status.add("backend failures", "; ".join(f"{k}: {v}" for k, v in self.chain.failures().items()) or "none")
        status.add("backend deadline overruns", self.chain.overruns)
        status.add("model version", self.artifact.version)
        status.add("modalities configured", ", ".join(self.align_cfg.modalities))
        status.add("modalities alive", ", ".join(alive))
        status.add("modalities used (last window)", ", ".join(self.last_modalities))
        status.add("windows received", self.received)
        status.add("windows fused", self.fused)
        status.add("classifications published", self.published)
        status.add("alignment pending", self.aligner.pending)
        status.add("alignment forced releases", self.aligner.forced)
        status.add("alignment resets", self.aligner.resets)
        status.add("rejected total", total)
        for reason, n in sorted(counts.items()):
            status.add(f"rejected: {reason}", n)
        status.add("latency p50 (ms)", lat50)
        status.add("latency p99 (ms)", lat99)
        status.add("backend step p50 (ms)", st50)
        status.add("backend step p99 (ms)", st99)
        status.add("online learning", self.checkpoint_status)
        if self.metrics is not None:
            for m in self.align_cfg.modalities:
                self.metrics.alive.labels(m).set(float(m in alive))
            for reason, n in counts.items():
                self.metrics.rejected.labels(reason).set(n)

    def on_shutdown(self) -> None:
        """Checkpoint learned state at shutdown; stop worker threads and the metrics server."""
        self.save_checkpoint()
        self.chain.close()
        if self.metrics is not None:
            self.metrics.close()


def main(args: list[str] | None = None) -> int:
    return run_node(FusionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
