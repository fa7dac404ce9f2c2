"""``snn-fusion demo``: replay a labelled bag through the real nodes and report what they classified.

The encoders and the fusion node run as separate processes (as ``ros2 launch`` starts them, with
``use_sim_time``), ``snn-fusion replay BAG --clock`` plays the bag, and this process watches
``/fusion/classification``, ``/diagnostics``, ``/ground_truth`` and ``/clock``: a live table of
per-window results, then a summary (accuracy against the bag's labels, latency, rejections,
diagnostics levels) and a report PNG (confusion matrix + spike rasters). DDS stays on localhost in
a private ROS_DOMAIN_ID. Exit status 1 when the pipeline failed (a node died, the replay failed, or
samples got no classification).

Latency: each classification's stamp (end of its window, sensor time) is mapped to wall time
through the ``/clock`` messages the replay published, and subtracted from the wall time it arrived
here: sensor stamp -> classification received, in real time.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snn_fusion_ros.spikes import MODALITIES

REPO = Path(__file__).resolve().parents[1]
DEMO_BAG = "demo_fused"
LEVEL_NAMES = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


def default_bag() -> Path:
    """The bundled demo bag (share/snn_fusion_ros/demo or the source checkout's demo/)."""
    from snn_fusion_ros.models import model_search_path

    tried = []
    for models in model_search_path():
        cand = models.parent / "demo" / DEMO_BAG
        tried.append(str(cand))
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"demo bag {DEMO_BAG!r} not found; looked in {tried}")


@dataclass
class Result:
    """One classification as received."""

    stamp_ns: int
    class_id: int
    label: str
    confidence: float
    modalities: tuple[str, ...]
    backend: str
    fallback: bool
    recv_wall_ns: int
    node_latency_ms: float


@dataclass
class Session:
    """Everything the monitor saw during one replay."""

    results: list[Result] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    clock: list[tuple[int, int]] = field(default_factory=list)  # (sim ns, wall ns)
    diag_levels: dict[str, list[int]] = field(default_factory=dict)
    diag_values: dict[str, dict[str, str]] = field(default_factory=dict)
    diag_worst_message: dict[str, str] = field(default_factory=dict)  # message of the first worst status
    spikes: dict[str, list[tuple[int, np.ndarray]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def decisions(self) -> list[tuple[dict, Result | None]]:
        """Per labelled sample: the classification of its last window (stamp == end_ns), or None."""
        by_stamp = {r.stamp_ns: r for r in self.results}
        return [(lab, by_stamp.get(int(lab["end_ns"]))) for lab in self.labels]

    def wall_of(self, sim_ns: int) -> float | None:
        """Wall time (ns) at which /clock reached ``sim_ns`` (linear between clock messages)."""
        if len(self.clock) < 2:
            return None
        sims = [c[0] for c in self.clock]
        i = bisect_left(sims, sim_ns)
        if i == 0 or i >= len(sims):
            return None
        (s0, w0), (s1, w1) = self.clock[i - 1], self.clock[i]
        return w0 + (sim_ns - s0) * (w1 - w0) / max(s1 - s0, 1)

    def latencies_ms(self) -> np.ndarray:
        out = []
        for r in self.results:
            w = self.wall_of(r.stamp_ns)
            if w is not None:
                out.append((r.recv_wall_ns - w) / 1e6)
        return np.array(out)


class Monitor:
    """In-process rclpy node recording what the pipeline publishes."""

    def __init__(self, session: Session, namespace: str = "", raster_samples: int = 1) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import String

        from snn_fusion_ros.bags.writer import parse_label
        from snn_fusion_ros.msg import Classification, SpikeTrain
        from snn_fusion_ros.ros.convert import msg_to_spike_window, stamp_to_ns
        from snn_fusion_ros.ros.qos import results_qos, spikes_qos

        self.session = session
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("snn_fusion_demo_monitor", context=self.ctx)
        ns = namespace.rstrip("/")
        s = session

        def on_result(msg) -> None:
            r = Result(stamp_to_ns(msg.header.stamp), int(msg.class_id), msg.label, float(msg.confidence),
                       tuple(msg.modalities_used), msg.backend, bool(msg.fallback_active), time.time_ns(),
                       float(msg.latency_ms))
            with s.lock:
                s.results.append(r)

        def on_label(msg) -> None:
            with s.lock:
                s.labels.append(parse_label(msg))

        def on_clock(msg) -> None:
            with s.lock:
                s.clock.append((stamp_to_ns(msg.clock), time.time_ns()))

        def on_diag(msg) -> None:
            with s.lock:
                if not s.results:  # before data flows every input is STALE by definition
                    return
                for st in msg.status:
                    lvl = st.level[0] if isinstance(st.level, bytes) else int(st.level)
                    levels = s.diag_levels.setdefault(st.name, [])
                    if not levels or lvl > max(levels):
                        s.diag_worst_message[st.name] = str(st.message)
                    levels.append(lvl)
                    s.diag_values[st.name] = {kv.key: kv.value for kv in st.values}

        def on_spikes(msg) -> None:
            w = msg_to_spike_window(msg)
            with s.lock:
                rows = s.spikes.setdefault(w.modality, [])
                if len(rows) < 20 * raster_samples:
                    rows.append((w.stamp_ns, w.spikes))

        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Classification, f"{ns}/fusion/classification", on_result, results_qos(100))
        self.node.create_subscription(String, "/ground_truth", on_label, reliable)
        self.node.create_subscription(Clock, "/clock", on_clock, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 100)
        for m in MODALITIES:
            self.node.create_subscription(SpikeTrain, f"{ns}/{m}_encoder/spikes", on_spikes, spikes_qos())
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def fusion_ready(self) -> bool:
        return bool(self.node.count_publishers("/fusion/classification"))

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def run_session(bag: Path, *, model: str = "", backend: str = "torch", rate: float = 1.0,
                modalities: tuple[str, ...] = MODALITIES, log_dir: Path | None = None,
                on_progress=None, extra_fusion_params: list[str] | None = None,
                startup_timeout_s: float = 60.0) -> tuple[Session, dict]:
    """Start the pipeline, replay ``bag`` with /clock, and return what was observed plus run facts."""
    from snn_fusion_ros.ros.domain import isolated_ros_env
    from snn_fusion_ros.ros.pipeline import Pipeline

    env = isolated_ros_env()
    import os

    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    session = Session()
    config = next((p / "config" / "snn_fusion.yaml" for p in (REPO, REPO / "share" / "snn_fusion_ros")
                   if (p / "config" / "snn_fusion.yaml").is_file()), None)
    fusion_params = ["use_sim_time:=true", f"backend:={backend}", "fallback_backends:=[torch]",
                     f"alignment.modalities:=[{','.join(modalities)}]", *(extra_fusion_params or [])]
    if model:
        fusion_params.append(f"model_path:={model}")
    pipe = Pipeline(env, modalities=modalities, encoder_params=["use_sim_time:=true"], fusion_params=fusion_params,
                    params_file=str(config) if config else None, log_dir=log_dir)
    monitor = Monitor(session)
    facts: dict = {"bag": str(bag), "backend": backend, "rate": rate, "domain_id": env["ROS_DOMAIN_ID"]}
    try:
        pipe.start()
        deadline = time.monotonic() + startup_timeout_s
        while not monitor.fusion_ready():
            if pipe.dead() or time.monotonic() > deadline:
                raise RuntimeError(f"pipeline did not start (exited: {pipe.dead()}):\n"
                                   + "\n".join(f"--- {n}\n{pipe.log(n)[-3000:]}" for n in pipe.procs))
            time.sleep(0.1)
        t0 = time.monotonic()
        pipe.spawn("replay", "snn_fusion_ros.cli", "replay", str(bag), "--clock", "--clock-hz", "200", "--rate",
                   str(rate), "--wait-for-subscribers", "20", "--quiet")
        replay = pipe.procs["replay"]
        while replay.poll() is None:
            if on_progress is not None:
                on_progress(session)
            dead = {k: v for k, v in pipe.dead().items() if k != "replay"}
            if dead:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # the last windows still travel
        if on_progress is not None:
            on_progress(session)
        facts["replay_s"] = time.monotonic() - t0
        facts["replay_exit"] = replay.returncode
        facts["died"] = {k: v for k, v in pipe.dead().items() if k != "replay"}
    finally:
        codes = pipe.stop()
        monitor.close()
    facts["exit_codes"] = codes
    facts["log_dir"] = str(pipe.log_dir)
    return session, facts


def summarize(session: Session, facts: dict) -> dict:
    """Accuracy, latency, rejections and diagnostics levels of a session (JSON-serialisable)."""
    decisions = session.decisions()
    got = [(lab, r) for lab, r in decisions if r is not None]
    correct = sum(1 for lab, r in got if r.class_id == int(lab.get("class_id", -2)))
    lat = session.latencies_ms()
    rejected = {name.split(":")[0]: int(v.get("rejected total", 0)) for name, v in session.diag_values.items()
                if "rejected total" in v}
    worst = {name: LEVEL_NAMES[max(levels)] for name, levels in session.diag_levels.items()}
    last = {name: LEVEL_NAMES[levels[-1]] for name, levels in session.diag_levels.items()}
    return {
        "samples": len(decisions),
        "classified_samples": len(got),
        "accuracy": correct / len(decisions) if decisions else float("nan"),
        "windows_classified": len(session.results),
        "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "backends_used": sorted({r.backend for r in session.results}),
        "fallback_windows": sum(r.fallback for r in session.results),
        "rejected": rejected,
        "diagnostics_worst": worst,
        "diagnostics_worst_message": dict(session.diag_worst_message),
        "diagnostics_last": last,
        **{k: v for k, v in facts.items() if k in ("replay_s", "replay_exit", "died", "backend", "rate", "bag")},
    }


def pipeline_failed(summary: dict) -> str:
    """Why the run counts as failed, or "" when it did not."""
    if summary.get("died"):
        return f"node(s) died: {summary['died']}"
    if summary.get("replay_exit") not in (0, None):
        return f"replay exited with {summary['replay_exit']}"
    if summary["samples"] == 0:
        return "no ground-truth label arrived (is this a labelled bag?)"
    if summary["classified_samples"] < summary["samples"]:
        return f"{summary['samples'] - summary['classified_samples']} sample(s) got no classification"
    return ""


def write_report(session: Session, summary: dict, class_names: list[str], path: Path) -> Path:
    """Confusion matrix + spike rasters of the first sample per modality, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    cm = np.zeros((n, n), int)
    for lab, r in session.decisions():
        if r is not None and 0 <= r.class_id < n and 0 <= int(lab.get("class_id", -1)) < n:
            cm[int(lab["class_id"]), r.class_id] += 1
    mods = [m for m in MODALITIES if session.spikes.get(m)]
    fig, axes = plt.subplots(1, 1 + len(mods), figsize=(5 + 4 * len(mods), 4.5))
    axes = np.atleast_1d(axes)
    ax = axes[0]
    ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(n), class_names)
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("classified")
    ax.set_ylabel("label")
    ax.set_title(f"accuracy {summary['accuracy']:.1%} ({summary['samples']} samples)")
    for ax, m in zip(axes[1:], mods, strict=True):
        rows = sorted(session.spikes[m], key=lambda r: r[0])
        spikes = np.concatenate([s for _, s in rows], axis=0)
        step_ms = 5.0
        t, nrn = np.nonzero(spikes)
        ax.scatter(t * step_ms, nrn, s=1, c="k")
        ax.set_title(f"{m} spikes (first {len(rows)} windows)")
        ax.set_xlabel("ms")
        ax.set_ylabel("neuron")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- CLI ---------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", default="", help="labelled bag to replay (default: the bundled demo bag)")
    parser.add_argument("--backend", default="torch", help="torch | lava | akida | nir (fallback: torch)")
    parser.add_argument("--model", default="", help="model artifact (default: the shipped model)")
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    parser.add_argument("--report-dir", default="artifacts/demo", help="where the report PNG and JSON go")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no live table")


def _print_summary(summary: dict, console) -> None:
    from rich.table import Table

    t = Table(title="snn_fusion_ros demo")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("samples classified", f"{summary['classified_samples']}/{summary['samples']}")
    t.add_row("accuracy vs labels", f"{summary['accuracy']:.1%}")
    t.add_row("windows classified", str(summary["windows_classified"]))
    t.add_row("latency p50 / p99 (sensor stamp -> received)",
              f"{summary['latency_ms_p50']:.1f} / {summary['latency_ms_p99']:.1f} ms")
    t.add_row("backend(s)", ", ".join(summary["backends_used"]) + (
        f" (fallback in {summary['fallback_windows']} windows)" if summary["fallback_windows"] else ""))
    t.add_row("rejected inputs", ", ".join(f"{k}: {v}" for k, v in sorted(summary["rejected"].items())) or "none")
    worst = summary["diagnostics_worst"]
    t.add_row("diagnostics (worst while classifying)", ", ".join(f"{k}: {v}" for k, v in sorted(worst.items())))
    t.add_row("replay", f"{summary.get('replay_s', float('nan')):.1f} s at {summary['rate']}x")
    console.print(t)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from snn_fusion_ros.models import resolve_model
    from snn_fusion_ros.snn.artifact import load_artifact

    console = Console(stderr=args.json)
    bag = Path(args.bag) if args.bag else default_bag()
    model_dir = resolve_model(args.model)
    class_names = list(load_artifact(model_dir).class_names)
    console.print(f"[bold]snn_fusion_ros demo[/]: bag {bag}, model {model_dir}, backend {args.backend}, "
                  f"rate {args.rate}x (encoders + fusion in separate processes, sim time)")
    live = None if args.no_progress else Live(console=console, refresh_per_second=4, transient=False)

    def progress(session: Session) -> None:
        if live is None:
            return
        with session.lock:
            rows = session.results[-12:]
            labels = list(session.labels)
            n_res = len(session.results)
        table = Table(title=f"{n_res} windows classified, {len(labels)} labelled samples started")
        for col in ("window end (s)", "class", "confidence", "modalities", "backend"):
            table.add_column(col)
        for r in rows:
            table.add_row(f"{r.stamp_ns / 1e9:.2f}", r.label, f"{r.confidence:.2f}", ",".join(r.modalities),
                          r.backend + (" (fallback)" if r.fallback else ""))
        live.update(table)

    if live is not None:
        live.start()
    try:
        session, facts = run_session(bag, model=str(model_dir), backend=args.backend, rate=args.rate,
                                     on_progress=progress, log_dir=Path(args.report_dir) / "logs")
    finally:
        if live is not None:
            live.stop()
    summary = summarize(session, facts)
    report = write_report(session, summary, class_names, Path(args.report_dir) / "report.png")
    summary["report_png"] = str(report)
    (Path(args.report_dir) / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _print_summary(summary, console)
    console.print(f"report: {report}; node logs: {facts['log_dir']}")
    if args.json:
        print(json.dumps(summary, default=str))
    why = pipeline_failed(summary)
    if why:
        console.print(f"[bold red]pipeline failed[/]: {why}")
        return 1
    return 0
