"""The second task: BasicMotions, four activities from a smart watch's real 6-axis IMU (``snn-fusion task``).

Data: UEA ``BasicMotions`` from the ``aeon`` wheel (:func:`snn_fusion_ros.data.imu.load_aeon_dataset`):
40 training and 40 test recordings (10 per class: Standing, Running, Walking, Badminton), each 10 s of
a 3-axis accelerometer and a 3-axis gyroscope at 10 Hz, in the units of the file. The archive's own
train/test split is kept; nothing of the test split is seen before the final evaluation.

Each recording streams through the IMU encoder node's class (:class:`ImuEncoder`, its configuration from
``config/snn_fusion.yaml`` unless another is given) from sensor time 0, exactly as the node would
encode a live watch, and the fusion network is trained on those spikes with the audio and DVS inputs
absent (all-zero, the streaming contract for a missing sensor). The network keeps the encoders' input
sizes, so the saved artifact runs in the fusion node with only the IMU encoder running.

Decision: the class at the last window of the 10 s recording (state reset per recording), as in
``snn-fusion eval``. Baseline, measured in the same run on the same split: 1-nearest-neighbour with
Euclidean distance on the z-normalised raw series (the UCR/UEA archives' reference classifier,
:mod:`snn_fusion_ros.snn.baselines`).
Training uses no validation split (40 recordings): the epoch count is fixed in advance and the last
epoch's weights are evaluated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.snn.baselines import nearest_neighbour_accuracy

TASKS = ("basic-motions",)
DATASET = "BasicMotions"
RATE_HZ = 10.0
DECISION_RULE = "class at the last 50 ms window of the 10 s recording, state reset per recording"


@dataclass(frozen=True)
class MotionSettings:
    """Training settings of the BasicMotions task (fixed before any test figure was read)."""

    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-3
    hidden_neurons: int = 64
    fusion_neurons: int = 64
    readout_tau_ms: float = 500.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"MotionSettings needs epochs >= 1, batch_size >= 1 and lr > 0, got {self}")


def encode_recordings(series: list[np.ndarray], cfg: Any, rate_hz: float = RATE_HZ) -> np.ndarray:
    """(N, T, imu neurons) bool spikes of 6-channel recordings (6, n) through a fresh IMU encoder each.

    ``T`` covers the longest recording (``ceil(n / rate / window)`` windows of ``steps_per_window`` steps).
    """
    from snn_fusion_ros.data.encode import encode_imu
    from snn_fusion_ros.data.imu import basic_motions_to_imu

    if not series:
        raise ValueError("no recordings to encode")
    window_s = cfg.window_ms * 1e-3
    n_windows = max(int(np.ceil(s.shape[1] / rate_hz / window_s - 1e-9)) for s in series)
    out = []
    for s in series:
        stamps, accel, gyro = basic_motions_to_imu(s, rate_hz)
        out.append(encode_imu(stamps, accel, gyro, cfg, n_windows))
    return np.stack(out)


def run_task(settings: MotionSettings, enc_cfgs: Any, cache: Path, out: Path | None = None,
             progress: bool = False, created_by: str | None = None) -> dict[str, Any]:
    """Train on the BasicMotions train split, evaluate on its test split; the metrics as a JSON-able dict.

    ``enc_cfgs`` (:class:`~snn_fusion_ros.data.encode.EncoderConfigs`): the IMU encoder codes the
    recordings; all three size the network's inputs, so the artifact fits the nodes."""
    import torch

    from snn_fusion_ros.data.imu import AEON_VERSION, load_aeon_dataset
    from snn_fusion_ros.snn.evaluate import confusion_matrix
    from snn_fusion_ros.snn.network import FusionNet
    from snn_fusion_ros.snn.train_cli import TrainSettings, network_config
    from snn_fusion_ros.snn.training import last_window_scores, train_epoch

    s = settings
    tr = load_aeon_dataset(DATASET, "train", cache)
    te = load_aeon_dataset(DATASET, "test", cache)
    if tuple(tr.classes) != tuple(te.classes):
        raise ValueError(f"{DATASET}: train classes {tr.classes} differ from test classes {te.classes}")
    t0 = time.perf_counter()
    x_tr = encode_recordings(tr.series, enc_cfgs.imu)
    x_te = encode_recordings(te.series, enc_cfgs.imu)
    encode_s = time.perf_counter() - t0
    net = TrainSettings(seed=s.seed, hidden_neurons=s.hidden_neurons, fusion_neurons=s.fusion_neurons,
                        readout_tau_mem_ms=s.readout_tau_ms)
    cfg = network_config(enc_cfgs, net, num_classes=len(tr.classes))
    torch.manual_seed(s.seed)
    model = FusionNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    gen = torch.Generator()
    gen.manual_seed(s.seed)
    rng = np.random.default_rng([s.seed, 11])
    y_tr = np.asarray(tr.labels)
    history = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.epochs, desc="train basic-motions", unit="epoch")
    t0 = time.perf_counter()
    for epoch in range(s.epochs):
        order = rng.permutation(len(y_tr))
        batches = [({"imu": x_tr[order[lo:lo + s.batch_size]]}, y_tr[order[lo:lo + s.batch_size]])
                   for lo in range(0, len(order), s.batch_size)]
        loss, acc = train_epoch(model, opt, batches, gen, missing_dropout=0.0)
        history.append({"epoch": epoch + 1, "loss": loss, "train_accuracy": acc})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=loss, acc=acc)
    if bar is not None:
        bar.close()
    train_s = time.perf_counter() - t0
    y_te = np.asarray(te.labels)
    pred = last_window_scores(model, {"imu": x_te}).argmax(1)
    pred_tr = last_window_scores(model, {"imu": x_tr}).argmax(1)
    res: dict[str, Any] = {
        "task": "basic-motions", "dataset": DATASET, "source": f"aeon=={AEON_VERSION} wheel (UEA archive files)",
        "classes": list(tr.classes), "n_train": len(y_tr), "n_test": len(y_te), "decision_rule": DECISION_RULE,
        "test_accuracy": float(np.mean(pred == y_te)), "train_accuracy": float(np.mean(pred_tr == y_tr)),
        "confusion_matrix": confusion_matrix(y_te, pred, len(tr.classes)).tolist(),
        "baseline": {"name": "1-NN Euclidean on z-normalised raw series (same split, same run)",
                     "test_accuracy": nearest_neighbour_accuracy(tr.series, y_tr, te.series, y_te)},
        "settings": dataclasses.asdict(s), "imu_encoder": enc_cfgs.to_dict()["imu"],
        "input_steps": int(x_tr.shape[1]), "encode_seconds": encode_s, "train_seconds": train_s,
        "history": history,
    }
    if out is not None:
        from snn_fusion_ros.snn.artifact import save_artifact

        save_artifact(out, model, list(tr.classes), enc_cfgs.to_dict(), name=Path(out).name, created_by=created_by,
                      extra={"task": "basic-motions", "test_accuracy": res["test_accuracy"],
                             "modalities": ["imu"]})
        res["model"] = str(out)
    return res


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = MotionSettings()
    parser.add_argument("name", choices=TASKS, help="which task (basic-motions: 4 activities, real 6-axis IMU)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of init and batching (default {d.seed})")
    parser.add_argument("--params", type=Path, default=None,
                        help="ROS parameter YAML with the encoder settings (default config/snn_fusion.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="also save the trained model artifact here")
    parser.add_argument("--cache", type=Path, default=None, help="data set cache (default: as `dataset build`)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from snn_fusion_ros.data.builder import default_cache
    from snn_fusion_ros.data.encode import node_encoder_configs
    from snn_fusion_ros.data.sources import SourceUnavailable

    torch.set_num_threads(max(1, args.threads))
    try:
        settings = MotionSettings(epochs=args.epochs, seed=args.seed)
        enc = node_encoder_configs(args.params)
        res = run_task(settings, enc, args.cache if args.cache is not None else default_cache(),
                       args.out, progress=not args.no_progress,
                       created_by="snn-fusion task " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["task"] else None)
    except (SourceUnavailable, ValueError, OSError) as exc:
        sys.stderr.write(f"snn-fusion task: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(res, indent=1, sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"{res['task']}: test accuracy {res['test_accuracy']:.4f} on {res['n_test']} recordings "
                         f"(1-NN baseline {res['baseline']['test_accuracy']:.4f}), train {res['train_accuracy']:.4f}, "
                         f"{res['train_seconds']:.0f} s training\n")
    return 0
