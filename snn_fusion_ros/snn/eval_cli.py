"""``snn-fusion eval``: accuracy of a model artifact on the test split (see :mod:`snn_fusion_ros.snn.evaluate`).

The test streams are encoded with the encoder configuration stored in the artifact (what it was
trained with). ``--user-audio DIR`` / ``--user-imu DIR`` replace that modality's test source by a
user folder (:mod:`snn_fusion_ros.snn.user_data`); the fused test set is then re-paired by class
(``pair_samples`` with ``default_rng(--seed)``, classes present in every source only). Beside the
network's metrics (:func:`~snn_fusion_ros.snn.evaluate.evaluate`) it reports ``baseline.imu``, a
1-nearest-neighbour reference on the raw IMU windows of the same samples (:mod:`snn_fusion_ros.snn.baselines`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.spikes import MODALITIES

BACKENDS_DEFAULT = "torch"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="artifact directory or model name (default: the shipped default)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--backends", default=BACKENDS_DEFAULT,
                        help="comma-separated backends to stream the test set through (torch,lava,akida,nir)")
    parser.add_argument("--torch-device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="device of the torch backend in --backends (default cpu; cuda fails without CUDA)")
    parser.add_argument("--backend-samples", action="append", default=[], metavar="NAME=N",
                        help="run backend NAME on the first N test samples only (default lava=40, others all)")
    parser.add_argument("--cache", type=Path, default=None, help="data set cache (default: as `dataset build`)")
    parser.add_argument("--build", default=None,
                        help="build key (default: the build the model was trained on, else the full build of seed 0)")
    parser.add_argument("--quick", action="store_true", help="evaluate on the --quick build (made if needed)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="write confusion_matrix.png and raster_<modality>.png here")
    parser.add_argument("--audio-snr-db", type=float, default=10.0, help="audio white-noise SNR (default 10 dB)")
    parser.add_argument("--dvs-noise-hz", type=float, default=5.0,
                        help="extra DVS noise events per pixel per second (default 5 Hz)")
    parser.add_argument("--imu-noise-std", type=float, default=0.5,
                        help="IMU accelerometer Gaussian noise std (default 0.5 m/s^2)")
    parser.add_argument("--no-noise", action="store_true", help="skip the noise evaluation")
    parser.add_argument("--user-audio", type=Path, default=None, help="folder <label>/*.wav replacing test audio")
    parser.add_argument("--user-imu", type=Path, default=None, help="folder <label>/*.csv replacing test IMU")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise draws and user re-pairing")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parse_samples(items: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for it in items:
        name, sep, val = it.partition("=")
        if not sep:
            raise ValueError(f"--backend-samples {it!r}: expected NAME=N (N an integer or 'all')")
        out[name] = None if val == "all" else int(val)
    return out


def build_eval_inputs(test_enc: Any, user: dict[str, Any], seed: int) -> Any:
    """Fused :class:`EvalInputs` from the encoded test split, with user samples replacing modalities."""
    from snn_fusion_ros.data.pairing import pair_samples
    from snn_fusion_ros.snn.evaluate import EvalInputs

    if not user:
        return EvalInputs(test_enc.fused(), test_enc.pair_labels, {m: "test split" for m in MODALITIES},
                          audio_speakers=test_enc.speakers[test_enc.pairs[:, 0]])
    spikes = {m: (user[m].spikes if m in user else test_enc.spikes[m]) for m in MODALITIES}
    labels = {m: (user[m].labels if m in user else test_enc.labels[m]) for m in MODALITIES}
    common = sorted(set.intersection(*(set(v.tolist()) for v in labels.values())))
    if not common:
        found = {m: sorted(set(v.tolist())) for m, v in labels.items()}
        raise ValueError(f"no class is present in every source: {found}")
    keep = {m: np.nonzero(np.isin(labels[m], common))[0] for m in MODALITIES}
    p = pair_samples({m: labels[m][keep[m]] for m in MODALITIES}, np.random.default_rng(seed))
    rows = np.stack([keep[m][p.index[:, i]] for i, m in enumerate(MODALITIES)], axis=1)
    sources = {m: (f"user:{user[m].files[0].rsplit('/', 2)[0]}" if m in user else "test split") for m in MODALITIES}
    speakers = None if "audio" in user else test_enc.speakers[rows[:, 0]]
    return EvalInputs({m: spikes[m][rows[:, i]] for i, m in enumerate(MODALITIES)}, p.labels, sources,
                      audio_speakers=speakers), rows


def _imu_baseline(ds: Any, test_enc: Any, test: Any, rows: np.ndarray | None) -> dict[str, Any]:
    """1-NN on the raw IMU windows (:func:`~snn_fusion_ros.snn.baselines.imu_nearest_neighbour`): every
    series of the build's train split (the network's validation series included) against the test split's."""
    from snn_fusion_ros.data.store import load_npz
    from snn_fusion_ros.snn.baselines import imu_nearest_neighbour

    col = MODALITIES.index("imu")
    train = load_npz(Path(ds.build_dir) / "imu_train.npz")
    fused_index = (rows if rows is not None else test_enc.pairs)[:, col]
    return imu_nearest_neighbour(train["accel"], train["labels"], ds.imu_accel, ds.imu_labels, fused_index,
                                 test.labels)


def run(args: argparse.Namespace) -> int:
    import torch

    from snn_fusion_ros.data.builder import BuildConfig, build, default_cache
    from snn_fusion_ros.data.dataset import load_split
    from snn_fusion_ros.data.encode import EncoderConfigs, SensorNoise, encode_split
    from snn_fusion_ros.models import resolve_model
    from snn_fusion_ros.snn.artifact import ArtifactError, load_artifact
    from snn_fusion_ros.snn.evaluate import EvalInputs, evaluate
    from snn_fusion_ros.snn.merge import model_build
    from snn_fusion_ros.snn.user_data import load_user_modality

    torch.set_num_threads(max(1, args.threads))
    progress = not args.no_progress
    try:
        art = load_artifact(resolve_model(args.model))
        samples = _parse_samples(args.backend_samples)
    except (OSError, ArtifactError, ValueError) as exc:  # OSError: also FileNotFoundError, ament lookups
        sys.stderr.write(f"snn-fusion eval: {exc}\n")
        return 1
    cache = args.cache if args.cache is not None else default_cache()
    key = args.build
    if key is None and not args.quick:
        key = model_build(art)
        if key is not None and not (Path(cache) / "builds" / key / "manifest.json").is_file():
            sys.stderr.write(f"snn-fusion eval: the model's data build {key} is not in {cache}; evaluating on the "
                             "default build instead (its DVS test events differ if the model's build set "
                             "--dvs-emulator; pass --build or build it with `snn-fusion dataset build`)\n")
            key = None
    if key is None:
        key = build(BuildConfig.create(seed=0, quick=args.quick), cache=cache, progress=progress).name
    cfgs = EncoderConfigs.from_dict(art.encoder_config)
    ds = load_split("test", cache=cache, key=key)
    test_enc = encode_split(ds, cfgs, progress=progress)
    user = {}
    try:
        if args.user_audio is not None:
            user["audio"] = load_user_modality("audio", args.user_audio, cfgs, ds.duration_ns, art.class_names)
        if args.user_imu is not None:
            user["imu"] = load_user_modality("imu", args.user_imu, cfgs, ds.duration_ns, art.class_names)
    except (FileNotFoundError, ValueError) as exc:
        sys.stderr.write(f"snn-fusion eval: {exc}\n")
        return 1
    built = build_eval_inputs(test_enc, user, args.seed)
    test, rows = built if isinstance(built, tuple) else (built, None)
    noise = noisy = None
    if not args.no_noise:
        noise = SensorNoise(audio_snr_db=args.audio_snr_db, dvs_noise_hz=args.dvs_noise_hz,
                            imu_noise_std=args.imu_noise_std, seed=args.seed)
        nenc = encode_split(ds, cfgs, noise=noise, progress=progress)
        if rows is None:
            noisy = EvalInputs(nenc.fused(), nenc.pair_labels)
        else:  # user modalities stay clean; test modalities take their noisy encoding
            noisy = EvalInputs({m: (test.inputs[m] if m in user else nenc.spikes[m][rows[:, i]])
                                for i, m in enumerate(MODALITIES)}, test.labels)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    def log(line: str) -> None:
        sys.stderr.write(line + "\n")

    res = evaluate(art, test, noisy, noise, backends, samples, args.report_dir, progress, log,
                   backend_options={"torch": {"device": args.torch_device}})
    res["build"] = key
    res["baseline"] = {"imu": _imu_baseline(ds, test_enc, test, rows) if "imu" not in user else
                       {"skipped": "the IMU test source is a user folder (the baseline needs the raw test split)"}}
    if args.json:
        sys.stdout.write(json.dumps(res, indent=1, sort_keys=True) + "\n")
    else:
        ci = res["accuracy_ci95"]

        def interval(c: list[float] | None) -> str:
            return f" (95 % CI {c[0]:.4f}-{c[1]:.4f})" if c else ""

        sys.stdout.write(f"model {res['model_version']} on {res['n_test']} test samples (build {key})\n")
        sys.stdout.write(f"fused accuracy {res['fused_accuracy']:.4f}{interval(ci['fused'])}\n")
        for k, v in res["modality_accuracy"].items():
            sys.stdout.write(f"  {k} alone {v:.4f}{interval(ci['modality'][k])}\n")
        for k, v in res["missing_modality_accuracy"].items():
            sys.stdout.write(f"  missing {k} {v:.4f}{interval(ci['missing_modality'][k])}\n")
        for k, v in res.get("noise_accuracy", {}).items():
            sys.stdout.write(f"  noisy {k} {v:.4f}{interval(ci['noise'][k])}\n")
        for k, v in res["backend_accuracy"].items():
            d = res["backend_details"].get(k, {})
            lat = res["latency_ms_per_step"].get(k, {})
            sys.stdout.write(f"  backend {k}: {v} on {d.get('n_samples', '-')} samples "
                             f"(torch {d.get('torch_accuracy_same_samples')}), "
                             f"{lat.get('median', float('nan')):.3f} ms/window median\n")
        b = res["baseline"]["imu"]
        if "raw" in b:
            sys.stdout.write(f"  IMU 1-NN baseline on fused samples: raw {b['raw']['fused_sample_accuracy']:.4f}, "
                             f"z-normalised {b['z_normalised']['fused_sample_accuracy']:.4f} "
                             f"(network's IMU alone {res['modality_accuracy']['imu']:.4f})\n")
    return 0
