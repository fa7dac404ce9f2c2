"""``snn-fusion bench encoders``: decoder and encoder throughput on the real recordings, single core.

Figures (median of repeats; ``--quick`` runs fewer repeats and a smaller tonic subset):

* ``dvs_events_per_s``: packed ``xytp`` buffers of evt3.raw and davis346.aedat4 -> spike windows
  with :meth:`DvsEncoder.push_xytp` (decode fused into the encoding pass), default config
  (16x16 grid, BA filter, refractory), filter state allocated before timing;
* ``dvs_two_stage_events_per_s``: same, as ``decode_xytp`` then ``push``;
* ``tonic_events_per_s``: tonic ``Denoise(10 ms)`` + ``ToFrame(5 ms)`` on the SAME events (all of
  davis346, the first ``tonic_subset`` events of evt3), and ``dvs_vs_tonic_ratio`` = our rate on
  exactly those events / tonic's;
* ``audio_realtime_factor``: seconds of synthetic 16 kHz audio (tones + noise, seeded) encoded per
  second in 10 ms chunks (``..._100ms_chunks``: 100 ms); baseline: offline ``resample_poly`` +
  per-channel ``sosfilt`` of the same audio in one call (no streaming, no spikes);
* ``imu_samples_per_s``: the davis346 IMU channel through :class:`ImuEncoder` (delta coding);
  baseline: a per-sample pure-Python delta modulator;
* ``decode_*_events_per_s``: file decoders (bytes in memory -> EVENT_DTYPE), with the independent
  readers (expelliarmus, aedat, faery) as baselines when installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.bench.cli import Row


def _single_core() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):  # pragma: no cover
        pass
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _median_time(fn: Callable[[], Any], repeats: int, setup: Callable[[], Any] | None = None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (``setup()`` untimed before each), s."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _load_recordings(data_dir: Path) -> dict[str, tuple[np.ndarray, int, int]]:
    from snn_fusion_ros.codecs.aedat4 import read_aedat4
    from snn_fusion_ros.codecs.evt3 import read_evt3_file

    events, _imu, w, h = read_aedat4(data_dir / "davis346.aedat4")
    out = {"davis346": (events, w, h)}
    out["evt3"] = read_evt3_file(data_dir / "evt3.raw")
    return out


def _tonic_rate(events: np.ndarray, width: int, height: int, repeats: int) -> tuple[float, int]:
    """tonic Denoise + ToFrame on ``events`` -> (seconds, number of frames)."""
    import tonic.transforms as T

    tev = np.zeros(events.size, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    tev["x"], tev["y"], tev["p"] = events["x"], events["y"], events["p"]
    tev["t"] = (events["t"] - events["t"][0]) // 1000
    pipeline = T.Compose([T.Denoise(filter_time=10000),
                          T.ToFrame(sensor_size=(width, height, 2), time_window=5000)])
    frames: list[np.ndarray] = []
    dt = _median_time(lambda: frames.append(pipeline(tev)), repeats)
    return dt, int(frames[-1].shape[0])


def _bench_dvs(recs: dict[str, tuple[np.ndarray, int, int]], repeats: int, tonic_subset: int,
               tonic_repeats: int) -> dict[str, Any]:
    from snn_fusion_ros.codecs.xytp import decode_xytp, encode_xytp
    from snn_fusion_ros.encoders.dvs import DvsEncoder

    res: dict[str, Any] = {}
    total_n, total_fused, total_two = 0, 0.0, 0.0
    enc_holder: list[DvsEncoder] = []

    def fresh(w: int, h: int) -> None:
        enc = DvsEncoder()
        enc.prepare(w, h)
        enc_holder[:] = [enc]

    for name, (ev, w, h) in recs.items():
        tb = int(ev["t"][0])
        buf = encode_xytp(ev, tb)
        fresh(w, h)  # numba warm-up
        enc_holder[0].push_xytp(buf[:10 * min(ev.size, 1000)], tb, w, h)
        fused = _median_time(lambda b=buf, t=tb, w=w, h=h: (enc_holder[0].push_xytp(b, t, w, h),
                                                            enc_holder[0].flush()),
                             repeats, setup=lambda w=w, h=h: fresh(w, h))
        two = _median_time(lambda b=buf, t=tb, w=w, h=h: (enc_holder[0].push(decode_xytp(b, t), w, h),
                                                          enc_holder[0].flush()),
                           repeats, setup=lambda w=w, h=h: fresh(w, h))
        dec = _median_time(lambda b=buf, t=tb: decode_xytp(b, t), repeats)
        res[f"dvs_{name}_events_per_s"] = ev.size / fused
        res[f"decode_xytp_{name}_events_per_s"] = ev.size / dec
        total_n += ev.size
        total_fused += fused
        total_two += two
    res["dvs_events_per_s"] = total_n / total_fused
    res["dvs_two_stage_events_per_s"] = total_n / total_two
    # tonic baseline on the same events, and ours on exactly those events
    tonic_t, ours_t, n_same = 0.0, 0.0, 0
    for name, (ev, w, h) in recs.items():
        sub = ev[:tonic_subset] if name == "evt3" else ev
        dt, _ = _tonic_rate(sub, w, h, tonic_repeats)
        tb = int(sub["t"][0])
        buf = encode_xytp(sub, tb)
        ours_t += _median_time(lambda b=buf, t=tb, w=w, h=h: (enc_holder[0].push_xytp(b, t, w, h),
                                                              enc_holder[0].flush()),
                               repeats, setup=lambda w=w, h=h: fresh(w, h))
        tonic_t += dt
        n_same += sub.size
    res["tonic_events"] = n_same
    res["tonic_events_per_s"] = n_same / tonic_t
    res["dvs_same_events_per_s"] = n_same / ours_t
    res["dvs_vs_tonic_ratio"] = res["dvs_same_events_per_s"] / res["tonic_events_per_s"]
    return res


def _bench_audio(seconds: float, repeats: int) -> dict[str, Any]:
    import scipy.signal

    from snn_fusion_ros.encoders.audio import AudioEncoder, AudioEncoderConfig

    rate = 16000
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
         + 0.2 * np.sin(2 * np.pi * 2500 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    cfg = AudioEncoderConfig()

    def run(chunk: int = rate // 100) -> None:
        enc = AudioEncoder(cfg)
        for i in range(0, x.size, chunk):
            enc.push(x[i:i + chunk], rate, (i * 1_000_000_000) // rate)
        enc.flush()

    run()  # numba warm-up
    dt = _median_time(run, repeats)
    dt100 = _median_time(lambda: run(rate // 10), repeats)
    sos = AudioEncoder(cfg).sos

    def baseline() -> None:
        y = scipy.signal.resample_poly(x.astype(np.float64), 1, 1)
        for c in range(sos.shape[0]):
            scipy.signal.sosfilt(sos[c], y)

    bdt = _median_time(baseline, repeats)
    return {"audio_seconds": seconds, "audio_realtime_factor": seconds / dt,
            "audio_realtime_factor_100ms_chunks": seconds / dt100,
            "audio_offline_scipy_realtime_factor": seconds / bdt}


def _python_delta(t: np.ndarray, v: np.ndarray, thr: np.ndarray) -> int:
    """Naive per-sample delta modulator (the baseline): spike count."""
    ref = v[0].copy()
    count = 0
    for i in range(1, t.size):
        for c in range(v.shape[1]):
            for lv in range(thr.shape[1]):
                d = v[i, c] - ref[c]
                if abs(d) >= thr[c, lv]:
                    count += 1
        moved = np.abs(v[i] - ref) >= thr[:, 0]
        ref[moved] = v[i][moved]
    return count


def _bench_imu(data_dir: Path, repeats: int) -> dict[str, Any]:
    from snn_fusion_ros.codecs.aedat4 import read_aedat4
    from snn_fusion_ros.encoders.imu import ImuEncoder

    _ev, imu, _w, _h = read_aedat4(data_dir / "davis346.aedat4")
    t, a, g = imu["t_ns"], imu["accel"], imu["gyro"]
    chunk = 10

    def run() -> None:
        enc = ImuEncoder()
        for i in range(0, t.size, chunk):
            enc.push(t[i:i + chunk], a[i:i + chunk], g[i:i + chunk])
        enc.flush()

    run()
    dt = _median_time(run, repeats)
    enc = ImuEncoder()
    v = np.concatenate([a, g], axis=1)
    bdt = _median_time(lambda: _python_delta(t, v, enc._thr), max(1, repeats // 2))
    return {"imu_samples": int(t.size), "imu_samples_per_s": t.size / dt,
            "imu_python_baseline_samples_per_s": t.size / bdt}


def _bench_decoders(data_dir: Path, repeats: int) -> dict[str, Any]:
    from snn_fusion_ros.codecs.aedat4 import read_aedat4
    from snn_fusion_ros.codecs.es import read_es
    from snn_fusion_ros.codecs.evt3 import read_evt3_file

    res: dict[str, Any] = {}
    jobs = {
        "evt3": (lambda: read_evt3_file(data_dir / "evt3.raw")[0], data_dir / "evt3.raw"),
        "aedat4": (lambda: read_aedat4(data_dir / "davis346.aedat4")[0], data_dir / "davis346.aedat4"),
        "es": (lambda: read_es(data_dir / "dvs.es")[0], data_dir / "dvs.es"),
    }
    for name, (fn, path) in jobs.items():
        n = fn().size
        res[f"decode_{name}_events_per_s"] = n / _median_time(fn, repeats)
        base = _reference_reader(name, path)
        if base is not None:
            res[f"decode_{name}_reference"] = base[0]
            res[f"decode_{name}_reference_events_per_s"] = n / _median_time(base[1], repeats)
    return res


def _reference_reader(name: str, path: Path) -> tuple[str, Callable[[], Any]] | None:
    """An independent reader of the same file, when its package is installed."""
    try:
        if name == "evt3":
            import expelliarmus

            def read_evt3() -> Any:
                wiz = expelliarmus.Wizard(encoding="evt3")
                wiz.set_file(str(path))
                return wiz.read()

            return "expelliarmus", read_evt3
        if name == "aedat4":
            import aedat

            return "aedat", lambda: [p for p in aedat.Decoder(str(path))]
        import faery

        return "faery", lambda: list(faery.events_stream_from_file(str(path)))
    except ImportError:
        return None


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run every encoder/decoder figure; see the module docstring."""
    _single_core()
    quick = bool(getattr(args, "quick", False))
    data_dir = Path(getattr(args, "data_dir", "../shared/data/events"))
    if not data_dir.is_dir():
        raise FileNotFoundError(f"recordings folder {data_dir} not found (pass --data-dir)")
    repeats = 3 if quick else 7
    recs = _load_recordings(data_dir)
    result: dict[str, Any] = {"repeats": repeats, "quick": quick, "threads": 1}
    result.update(_bench_dvs(recs, repeats, tonic_subset=50_000 if quick else 300_000,
                             tonic_repeats=1 if quick else 3))
    result.update(_bench_audio(2.0 if quick else 10.0, repeats))
    result.update(_bench_imu(data_dir, repeats))
    result.update(_bench_decoders(data_dir, repeats))
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    """BENCHMARKS.md rows for :func:`measure`'s result."""
    def ratio(a: float, b: float | None) -> float | None:
        return None if not b else a / b

    out = [
        Row("encoders", "DVS xytp decode+encode", result["dvs_events_per_s"] / 1e6, "M events/s",
            "tonic Denoise+ToFrame", result["tonic_events_per_s"] / 1e6,
            result["dvs_same_events_per_s"] / result["tonic_events_per_s"],
            f"ratio on the same {result['tonic_events']} events; 1 thread"),
        Row("encoders", "audio encoder (10 ms chunks)", result["audio_realtime_factor"], "x realtime",
            "offline resample_poly + sosfilt", result["audio_offline_scipy_realtime_factor"],
            ratio(result["audio_realtime_factor"], result["audio_offline_scipy_realtime_factor"]),
            "16 kHz synthetic audio"),
        Row("encoders", "IMU encoder (delta)", result["imu_samples_per_s"] / 1e6, "M samples/s",
            "pure-Python delta loop", result["imu_python_baseline_samples_per_s"] / 1e6,
            ratio(result["imu_samples_per_s"], result["imu_python_baseline_samples_per_s"]),
            "davis346 IMU, 10-sample chunks"),
    ]
    for name in ("evt3", "aedat4", "es"):
        key = f"decode_{name}_events_per_s"
        ref = result.get(f"decode_{name}_reference_events_per_s")
        out.append(Row("encoders", f"{name} file decode", result[key] / 1e6, "M events/s",
                       result.get(f"decode_{name}_reference", "none installed"),
                       None if ref is None else ref / 1e6, ratio(result[key], ref)))
    return out
