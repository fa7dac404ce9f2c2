"""``snn-fusion bench backends``: window step latency and decision agreement of every backend vs torch.

Model: the artifact at ``$SNN_FUSION_MODEL`` when set, else a default-sized :class:`FusionNet`
(audio 64, dvs 512, imu 48 inputs; 3 x 64 recurrent, 64 fusion, 4 classes) trained on synthetic
spikes with a fixed seed inside the bench. Test windows: synthetic sequences (state reset per
sequence), identical for every backend; torch (1 thread) is the baseline measured in the same run.

Where CUDA is present, the torch backend also runs on the GPU (``torch_cuda``: same windows, batch 1,
after one warm-up sequence) against the CPU torch baseline; elsewhere ``torch_cuda`` says why not
and no row is written.

``step_ms`` is the wall time of one ``Backend.step`` = one window of ``steps_per_window`` time steps.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.bench.cli import Row
from snn_fusion_ros.snn.config import FusionNetConfig

ORDER = ("torch", "nir", "akida", "lava")
#: harder than make_synthetic's defaults (reference accuracy ~90 %, not 100 %) so that agreement is tested
#: on windows with small decision margins too
SYNTHETIC = {"frac_active": 0.1, "p_active": 0.12, "p_background": 0.04}


def _artifact(tmp: Path, quick: bool):
    from snn_fusion_ros.snn.artifact import load_artifact
    from snn_fusion_ros.snn.synthetic import train_synthetic_artifact

    env = os.environ.get("SNN_FUSION_MODEL")
    if env:
        return load_artifact(env)
    cfg = FusionNetConfig()
    path = train_synthetic_artifact(tmp / "bench_model", cfg, seed=0, epochs=3 if quick else 12,
                                    sequences=48 if quick else 96, **SYNTHETIC)
    return load_artifact(path)


def _windows(art, sequences: int, windows: int):
    from snn_fusion_ros.snn.synthetic import make_synthetic

    data = make_synthetic(art.config, sequences, windows, np.random.default_rng(12345), **SYNTHETIC)
    s = art.config.steps_per_window
    seqs = [[{m: a[i, w * s:(w + 1) * s] for m, a in data.inputs.items()} for w in range(windows)]
            for i in range(sequences)]
    return seqs, np.repeat(data.labels, windows)


def run_backend(backend, seqs) -> tuple[np.ndarray, np.ndarray]:
    """Step every sequence (reset before each); returns (probabilities (n, C), step times ms (n,))."""
    probs, times = [], []
    for seq in seqs:
        backend.reset()
        for win in seq:
            t0 = time.perf_counter()
            probs.append(backend.step(win))
            times.append((time.perf_counter() - t0) * 1e3)
    return np.asarray(probs), np.asarray(times)


def _stats(times: np.ndarray) -> dict[str, float]:
    t = times[1:] if times.size > 1 else times  # first window pays lazy set-up
    return {"step_ms_p50": float(np.percentile(t, 50)), "step_ms_p99": float(np.percentile(t, 99))}


def measure(args) -> dict[str, Any]:
    import torch

    from snn_fusion_ros.backends.registry import backend_availability, create_backend

    quick = bool(getattr(args, "quick", False))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        art = _artifact(Path(tmp), quick)
        n_seq, n_win = (4, 5) if quick else (16, 10)
        seqs, labels = _windows(art, n_seq, n_win)
        slow_seqs = seqs[: max(2, n_seq // 2)]  # lava: fewer windows (tens of ms each)
        out["model"] = art.version
        out["windows"] = n_seq * n_win
        threads = {}
        for n in (2, 1):  # 1 last: the setting the torch backend uses
            be = create_backend("torch", num_threads=n)
            be.load(art)
            _, t = run_backend(be, seqs)
            threads[str(n)] = _stats(t)["step_ms_p50"]
        out["torch_threads_step_ms_p50"] = threads
        out["torch_dense_products"] = _dense_products(art, seqs)
        ref_probs: np.ndarray | None = None
        ref_dec = None
        for name in ORDER:
            ok, reason = backend_availability(name)
            if not ok:
                out[name] = {"available": False, "reason": reason}
                continue
            be = None
            try:
                be = create_backend(name)
                be.load(art)
                use = slow_seqs if name == "lava" else seqs
                probs, t = run_backend(be, use)
                entry: dict[str, Any] = {"available": True, **_stats(t), "windows": len(t),
                                         "device": be.capabilities().device,
                                         "hardware_present": be.capabilities().hardware_present}
                if name == "torch":
                    ref_probs, ref_dec = probs, probs.argmax(1)
                    entry["decision_agreement_vs_torch"] = 1.0
                    if not os.environ.get("SNN_FUSION_MODEL"):
                        entry["synthetic_accuracy"] = float((ref_dec == labels).mean())
                elif ref_dec is not None:
                    entry["decision_agreement_vs_torch"] = float((probs.argmax(1) == ref_dec[: len(probs)]).mean())
                    entry["max_abs_prob_diff_vs_torch"] = float(np.abs(probs - ref_probs[: len(probs)]).max())
                out[name] = entry
            except Exception as exc:  # a backend failing here is a result to report, not a crash
                out[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
            finally:
                if be is not None:
                    be.close()
        out["torch_cuda"] = _torch_cuda(art, seqs, ref_probs)
        out["torch_num_threads"] = torch.get_num_threads()
    return out


def _dense_products(art, seqs) -> dict[str, Any]:
    """The torch step with every product dense (``FusionNet.structured_step = False``): the baseline of
    the structured step (independent blocks of a merged network's ``w_fuse``, CSR recurrence)."""
    from snn_fusion_ros.backends.registry import create_backend

    out: dict[str, Any] = {}
    for structured in (False, True):
        be = create_backend("torch", num_threads=1)
        try:
            be.load(art)
            be.model.structured_step = structured
            probs, t = run_backend(be, seqs)
            out["structured" if structured else "dense"] = {**_stats(t), "probs": probs}
            if structured:
                out["fusion_blocks"] = be.model._inference_weights()["fuse"].n_blocks
        finally:
            be.close()
    dense, structured = out["dense"].pop("probs"), out["structured"].pop("probs")
    out["decision_agreement"] = float((dense.argmax(1) == structured.argmax(1)).mean())
    out["max_abs_prob_diff"] = float(np.abs(dense - structured).max())
    return out


def _torch_cuda(art, seqs, ref_probs: np.ndarray | None) -> dict[str, Any]:
    """The torch backend on CUDA (when present): step latency and agreement with torch on the CPU."""
    import torch

    from snn_fusion_ros.backends.registry import create_backend

    if not torch.cuda.is_available():
        return {"available": False, "reason": "torch.cuda.is_available() is False"}
    be = create_backend("torch", device="cuda")
    try:
        be.load(art)
        run_backend(be, seqs[:1])  # CUDA context and kernel loading are paid here, not in the figures
        probs, t = run_backend(be, seqs)
        entry: dict[str, Any] = {"available": True, **_stats(t), "windows": len(t),
                                 "device": be.capabilities().device, "gpu": torch.cuda.get_device_name(0),
                                 "hardware_present": True}
        if ref_probs is not None:
            entry["decision_agreement_vs_torch"] = float((probs.argmax(1) == ref_probs.argmax(1)).mean())
            entry["max_abs_prob_diff_vs_torch"] = float(np.abs(probs - ref_probs).max())
        return entry
    finally:
        be.close()


def rows(result: dict[str, Any]) -> list[Row]:
    base = result.get("torch", {})
    b50 = base.get("step_ms_p50")
    out: list[Row] = []
    for name in ORDER:
        e = result.get(name, {})
        if not e.get("available"):
            if e:
                out.append(Row("backends", f"{name}: not available", float("nan"), "", "", None, None,
                               e.get("reason", "")[:200].replace("|", "/")))
            continue
        v = e["step_ms_p50"]
        out.append(Row("backends", f"{name} window step p50 ({e['device']})", v, "ms", "torch window step p50",
                       b50, v / b50 if b50 else None, f"p99 {e['step_ms_p99']:.3g} ms, {e['windows']} windows"))
        if name != "torch":
            a = e["decision_agreement_vs_torch"]
            out.append(Row("backends", f"{name} decision agreement", a, "fraction", "torch", 1.0, a,
                           "same synthetic test windows"))
    cu = result.get("torch_cuda", {})
    if cu.get("available"):  # no row where CUDA is absent (CI, the 2-core VM): the JSON says why
        v = cu["step_ms_p50"]
        out.append(Row("backends", f"torch window step p50 ({cu['device']}, {cu['gpu']})", v, "ms",
                       "torch window step p50 (CPU, 1 thread)", b50, v / b50 if b50 else None,
                       f"p99 {cu['step_ms_p99']:.3g} ms, {cu['windows']} windows, batch 1"))
        if "decision_agreement_vs_torch" in cu:
            a = cu["decision_agreement_vs_torch"]
            out.append(Row("backends", "torch cuda decision agreement", a, "fraction", "torch on the CPU", 1.0, a,
                           f"max |p - p_cpu| {cu['max_abs_prob_diff_vs_torch']:.2g}"))
    dp = result.get("torch_dense_products", {})
    if "dense" in dp:
        v, b = dp["structured"]["step_ms_p50"], dp["dense"]["step_ms_p50"]
        out.append(Row("backends", "torch window step p50, structured products", v, "ms",
                       "same step, dense products", b, v / b if b else None,
                       f"{dp['fusion_blocks']} fusion block(s); decisions agree on {dp['decision_agreement']:.3f}, "
                       f"max |p diff| {dp['max_abs_prob_diff']:.2g}"))
    th = result.get("torch_threads_step_ms_p50", {})
    if "1" in th and "2" in th:
        out.append(Row("backends", "torch window step p50, 2 threads", th["2"], "ms", "1 thread", th["1"],
                       th["2"] / th["1"] if th["1"] else None, "batch 1"))
    return out
