"""Evaluation of a fusion model artifact on the test split (``snn-fusion eval``).

**Decision rule.** Each fused test sample (1 s = 20 windows of 50 ms) is streamed from a zero
network state (state reset at the start of every sample); its predicted class is the argmax of the
scores at the **last window** of the sample (readout membrane at the last step of window 20).

Metrics (accuracy = fraction of test samples whose decision equals the label):

* ``fused_accuracy``: all three modalities present;
* ``modality_accuracy[m]``: only modality ``m`` present (the two others all-zero input, the
  streaming contract for a missing sensor);
* ``missing_modality_accuracy[k]``: the modalities named in ``k`` (``"audio"``, ``"audio+dvs"``, ...)
  missing, for every combination of one or two missing modalities;
* ``noise_accuracy``: all modalities present, one (or all) of them encoded from a noisy raw stream
  (:class:`snn_fusion_ros.data.encode.SensorNoise`; levels in ``noise_settings``);
* ``audio_speaker_accuracy[s]``: per audio speaker ``s`` of the test split (when the inputs name them),
  ``n`` fused samples whose audio ``s`` spoke, and the ``audio_alone`` and ``fused`` accuracy on them:
  which unseen voices and accents the audio path fails on;
* ``backend_accuracy[b]``: the artifact loaded into backend ``b`` (:func:`create_backend`),
  streamed window by window with ``Backend.step``; a backend may run on a subset of the test samples
  (the first ``n`` of the stored test order, recorded in ``backend_details[b]``), where
  ``torch_accuracy_same_samples`` and ``agreement_with_torch`` compare it with the reference;
* ``latency_ms_per_step``: wall time of one ``Backend.step`` (one 10-step window, batch 1),
  median and 95th percentile over the windows stepped;
* ``accuracy_ci95``: for every accuracy above (``fused``, ``modality``, ``missing_modality``, ``noise``,
  ``backend``), the exact (Clopper-Pearson) 95 % confidence interval ``[low, high]`` of the accuracy on
  samples like the test split's, from the number of correct decisions and the samples scored. With
  397 test samples a row near 95 % is known to about +-2.3 pp. All rows score the same samples, so
  the intervals of two rows (or of two models on this split) are not independent: a difference
  between them needs a paired test on the decisions, not a comparison of intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.data.encode import SensorNoise
from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.snn.training import MISSING_SETS, last_window_scores
from snn_fusion_ros.spikes import MODALITIES

DECISION_RULE = ("argmax of the scores at the last window of each 1 s sample (20 windows of 50 ms); "
                 "network state reset to zero at the start of every sample")
#: Default backend sample counts: lava runs ~130 ms per window (20 windows per sample) on this CPU.
DEFAULT_BACKEND_SAMPLES: dict[str, int | None] = {"torch": None, "nir": None, "akida": None, "lava": 40}


@dataclass(frozen=True)
class EvalInputs:
    """Fused test set: ``inputs[m]`` (N, T, N_m) bool spikes, ``labels`` (N,), and where they came from."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    sources: dict[str, str] = field(default_factory=dict)
    #: (N,) speaker of each fused sample's audio (e.g. ``"june"``, ``"espeak:nl+f3"``), or None
    audio_speakers: np.ndarray | None = None


def missing_key(missing: Sequence[str]) -> str:
    """``("audio", "dvs")`` -> ``"audio+dvs"``."""
    return "+".join(missing)


def _acc(model: FusionNet, inputs: dict[str, np.ndarray], labels: np.ndarray) -> tuple[float, np.ndarray]:
    pred = last_window_scores(model, {m: a.astype(np.float32) for m, a in inputs.items()}).argmax(-1)
    return float(np.mean(pred == labels)) if len(labels) else float("nan"), pred


def _without(inputs: dict[str, np.ndarray], missing: Sequence[str]) -> dict[str, np.ndarray]:
    return {m: (np.zeros_like(a) if m in missing else a) for m, a in inputs.items()}


def speaker_accuracy(speakers: np.ndarray, labels: np.ndarray, audio_pred: np.ndarray, fused_pred: np.ndarray
                     ) -> dict[str, dict[str, float | int]]:
    """``{speaker: {"n", "audio_alone", "fused"}}`` over the samples of each speaker, sorted by name."""
    out: dict[str, dict[str, float | int]] = {}
    for spk in sorted(set(speakers.tolist())):
        sel = speakers == spk
        out[str(spk)] = {"n": int(sel.sum()), "audio_alone": float(np.mean(audio_pred[sel] == labels[sel])),
                         "fused": float(np.mean(fused_pred[sel] == labels[sel]))}
    return out


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels.astype(np.int64), pred.astype(np.int64)), 1)
    return cm


def run_backend(name: str, artifact: Any, inputs: dict[str, np.ndarray], n: int, steps: int,
                progress: bool = False, options: dict[str, Any] | None = None
                ) -> tuple[np.ndarray, list[float], str]:
    """Decisions (n,) of backend ``name`` (made with ``options``, e.g. ``{"device": "cuda"}``) streaming
    the first ``n`` samples, per-step times in ms, and the device it ran on (``Capabilities.device``)."""
    from snn_fusion_ros.backends import create_backend

    be = create_backend(name, **(options or {}))
    times: list[float] = []
    pred = np.zeros(n, dtype=np.int64)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"backend {name}", unit="sample", leave=False)
    try:
        be.load(artifact)
        device = be.capabilities().device
        t_len = next(iter(inputs.values())).shape[1]
        for i in range(n):
            be.reset()
            probs = None
            for lo in range(0, t_len - steps + 1, steps):
                probs = be.step({m: a[i, lo: lo + steps] for m, a in inputs.items()})
                times.append(float(be.last_step_ms))
            pred[i] = int(np.argmax(probs))
            if bar is not None:
                bar.update(1)
    finally:
        be.close()
        if bar is not None:
            bar.close()
    return pred, times, device


def _latency(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    t = np.asarray(times)
    return {"median": float(np.median(t)), "p95": float(np.percentile(t, 95)), "windows": len(t)}


def evaluate(artifact: Any, test: EvalInputs, noisy: EvalInputs | None = None,
             noise: SensorNoise | None = None, backends: Sequence[str] = ("torch",),
             backend_samples: dict[str, int | None] | None = None, report_dir: Path | None = None,
             progress: bool = False, log: Callable[[str], None] | None = None,
             backend_options: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """All metrics of the module docstring as a JSON-serialisable dict.

    ``noisy`` holds the same fused samples encoded from noisy streams (``noise`` describes it);
    ``backend_samples`` maps a backend to the number of test samples it runs (None = all; default
    :data:`DEFAULT_BACKEND_SAMPLES`); ``report_dir`` receives ``confusion_matrix.png`` and
    ``raster_<modality>.png``; ``backend_options`` maps a backend to keyword options of
    :func:`create_backend` (``{"torch": {"device": "cuda"}}``). The batched rows (fused, modalities,
    missing sets, noise) always run on the CPU reference; ``backend_details[b]["device"]`` says where
    backend ``b`` ran.
    """
    model = artifact.build_model()
    labels = test.labels
    n = len(labels)
    fused, pred = _acc(model, test.inputs, labels)
    out: dict[str, Any] = {
        "model": str(artifact.path), "model_version": artifact.version, "n_test": int(n),
        "decision_rule": DECISION_RULE, "sources": dict(test.sources),
        "class_names": list(artifact.class_names), "fused_accuracy": fused,
    }
    # one pass per missing set; a modality alone is the set of the two others missing
    missing = {s: _acc(model, _without(test.inputs, s), labels) for s in MISSING_SETS}
    alone = {m: missing[tuple(o for o in MODALITIES if o != m)] for m in MODALITIES}
    out["modality_accuracy"] = {m: a for m, (a, _) in alone.items()}
    if test.audio_speakers is not None:
        out["audio_speaker_accuracy"] = speaker_accuracy(np.asarray(test.audio_speakers), labels, alone["audio"][1],
                                                         pred)
    out["missing_modality_accuracy"] = {missing_key(s): a for s, (a, _) in missing.items()}
    cm = confusion_matrix(labels, pred, artifact.config.num_classes)
    out["confusion_matrix"] = cm.tolist()
    if noisy is not None:
        noise_acc = {m: _acc(model, {o: (noisy.inputs[o] if o == m else test.inputs[o]) for o in MODALITIES},
                             labels)[0] for m in MODALITIES}
        noise_acc["all"] = _acc(model, noisy.inputs, labels)[0]
        out["noise_accuracy"] = noise_acc
        out["noise_settings"] = asdict(noise) if noise is not None else {}
    limits = dict(DEFAULT_BACKEND_SAMPLES)
    limits.update(backend_samples or {})
    steps = artifact.config.steps_per_window
    acc_b: dict[str, float | None] = {}
    details: dict[str, Any] = {}
    latency: dict[str, Any] = {}
    for b in backends:
        k = n if limits.get(b) is None else min(n, int(limits[b]))
        t0 = time.perf_counter()
        try:
            bp, times, device = run_backend(b, artifact, test.inputs, k, steps, progress,
                                            (backend_options or {}).get(b))
        except Exception as exc:  # report an unavailable / failing backend instead of aborting the evaluation
            acc_b[b] = None
            details[b] = {"error": f"{type(exc).__name__}: {exc}"}
            if log is not None:
                log(f"backend {b} failed: {exc}")
            continue
        acc_b[b] = float(np.mean(bp == labels[:k])) if k else float("nan")
        details[b] = {"n_samples": int(k), "subset": bool(k < n), "device": device,
                      "subset_rule": f"first {k} of the {n} test samples in stored order" if k < n else "all",
                      "torch_accuracy_same_samples": float(np.mean(pred[:k] == labels[:k])) if k else None,
                      "agreement_with_torch": float(np.mean(bp == pred[:k])) if k else None,
                      "seconds": time.perf_counter() - t0}
        latency[b] = _latency(times)
    out["backend_accuracy"] = acc_b
    out["backend_details"] = details
    out["latency_ms_per_step"] = latency
    out["accuracy_ci95"] = accuracy_intervals(out)
    if report_dir is not None:
        out["report_files"] = write_report(Path(report_dir), cm, list(artifact.class_names), test.inputs, labels,
                                           artifact.config.step_ms)
    return out


def proportion_ci95(correct: int, n: int) -> list[float] | None:
    """Exact (Clopper-Pearson) 95 % interval ``[low, high]`` of a proportion with ``correct`` of ``n``;
    None when ``n`` is 0."""
    from scipy.stats import binomtest

    if n <= 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} outside [0, {n}]")
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def accuracy_intervals(res: dict[str, Any]) -> dict[str, Any]:
    """``accuracy_ci95`` of an :func:`evaluate` result (see the module docstring)."""
    n = int(res["n_test"])

    def ci(acc: float | None, k: int = n) -> list[float] | None:
        if acc is None or not np.isfinite(acc):
            return None
        return proportion_ci95(round(acc * k), k)

    out: dict[str, Any] = {"fused": ci(res["fused_accuracy"]),
                           "modality": {m: ci(a) for m, a in res["modality_accuracy"].items()},
                           "missing_modality": {k: ci(a) for k, a in res["missing_modality_accuracy"].items()}}
    if "noise_accuracy" in res:
        out["noise"] = {k: ci(a) for k, a in res["noise_accuracy"].items()}
    out["backend"] = {b: ci(a, int(res["backend_details"].get(b, {}).get("n_samples", 0)))
                      for b, a in res["backend_accuracy"].items()}
    return out


def write_report(folder: Path, cm: np.ndarray, class_names: list[str], inputs: dict[str, np.ndarray],
                 labels: np.ndarray, step_ms: float) -> list[str]:
    """``confusion_matrix.png`` and ``raster_<m>.png`` (input spikes of the first test sample)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"fused, last-window decision (n = {int(cm.sum())})")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    p = folder / "confusion_matrix.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    files.append(str(p))
    for m in MODALITIES:
        if not len(inputs[m]):
            continue
        t, nrn = np.nonzero(inputs[m][0])
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.scatter(t * step_ms, nrn, s=1.5, marker="|", color="k")
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("input neuron")
        ax.set_xlim(0, inputs[m].shape[1] * step_ms)
        ax.set_ylim(-0.5, inputs[m].shape[2] - 0.5)
        ax.set_title(f"{m} input spikes, test sample 0 (class {int(labels[0])}, {len(t)} spikes)")
        fig.tight_layout()
        p = folder / f"raster_{m}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        files.append(str(p))
    return files
