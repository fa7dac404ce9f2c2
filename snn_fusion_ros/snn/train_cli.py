"""``snn-fusion train``: train the fusion SNN on the built data set and write a model artifact.

Pipeline: :func:`snn_fusion_ros.data.dataset.load_split` ("train") -> hold out a validation part
(:func:`split_validation`: whole audio speakers, a contiguous block of DVS images, whole IMU series)
-> :func:`snn_fusion_ros.data.encode.encode_split` (the node encoders and configuration, cached) ->
per epoch a new random pairing ``pair_samples(..., default_rng([seed, epoch]))`` of the remaining
samples, minibatches, surrogate-gradient Adam with missing-modality dropout
(:func:`snn_fusion_ros.snn.training.apply_missing_dropout`: one or two modalities zeroed) ->
validation accuracy (last-window decision, all modalities and every missing set) -> a checkpoint
every epoch (safetensors + JSON, never pickle) and the artifact of the best validation epoch in
``--out``. The test split is never read.

``--resume`` continues from the checkpoint of the same run (same data, seed and settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snn_fusion_ros.data.audio import espeak_base
from snn_fusion_ros.data.builder import ENGLISH_LESS_BASES, TRAIN_ACCENTS, TRAIN_LANGUAGES, TRAIN_VARIANTS, TRAIN_VOICES
from snn_fusion_ros.data.cli import add_dvs_emulator_argument, dvs_emulator_overrides
from snn_fusion_ros.data.encode import (
    EncodedSplit,
    EncoderConfigs,
    SensorNoise,
    encode_split,
    node_encoder_configs,
)
from snn_fusion_ros.data.pairing import pair_samples
from snn_fusion_ros.params import param, validate_config, without_later_fields
from snn_fusion_ros.snn.config import FusionNetConfig, population_values
from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.snn.training import (
    MISSING_SET_NAMES,
    MISSING_SETS,
    last_window_scores,
    load_optimizer_tensors,
    missing_set_weights,
    optimizer_tensors,
    scores_and_peak,
    train_epoch,
)
from snn_fusion_ros.spikes import MODALITIES

CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))
#: ``TrainSettings.val_audio_holdout`` choices (see :func:`split_validation`).
VAL_AUDIO_HOLDOUTS: tuple[str, ...] = ("voice", "accent")
CHECKPOINT_WEIGHTS = "checkpoint.safetensors"
CHECKPOINT_STATE = "checkpoint.json"
#: validation scores that can pick a run's saved epoch (:func:`selection_score`)
SELECTION_SCORES: tuple[str, ...] = ("all", "goal")
_NET_FIELDS = {f.name: f for f in dataclasses.fields(FusionNetConfig)}


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of a training run (recorded in the artifact's ``extra.training``)."""

    seed: int = field(default=0, metadata=param("seed of init, validation split, pairing and dropout", "", 0,
                                                2**31 - 1))
    replicate: int = field(default=0, metadata=param(
        "replicate of the run of `seed`: k > 0 draws the weight initialisation, recurrent masks, per-epoch "
        "pairing, mispairing, missing-modality dropout and noise choices from (seed, k); the data set, the "
        "validation split and the noisy encoding stay those of `seed`; 0 = the run of `seed` itself", "", 0,
        1000))
    epochs: int = field(default=40, metadata=param("passes over the training part", "", 1, 100000))
    batch_size: int = field(default=32, metadata=param("sequences per minibatch", "", 1, 4096))
    lr: float = field(default=3e-3, metadata=param("Adam learning rate", "", 1e-7, 1.0))
    lr_final_fraction: float = field(default=0.05, metadata=param(
        "cosine schedule: final learning rate as a fraction of lr", "", 0.0, 1.0))
    missing_dropout: float = field(default=0.5, metadata=param(
        "probability per sample of dropping one or two modalities", "", 0.0, 1.0))
    missing_weights: str = field(default="", metadata=param(
        "which modalities the missing-modality dropout removes: relative weights of the six missing sets as "
        "NAME=W,... (names: training.MISSING_SET_NAMES, e.g. dvs=2 draws 'DVS missing' twice as often as each "
        "other set; a set not named weighs 1); empty: uniform"))
    last_weight: float = field(default=1.0, metadata=param(
        "extra weight of the last window's cross-entropy", "", 0.0, 100.0))
    shift_steps: int = field(default=0, metadata=param(
        "augmentation: random shift of each modality's stream per sample, up to this many steps either way",
        "steps", 0, 1000))
    spike_drop: float = field(default=0.0, metadata=param(
        "augmentation: probability of deleting each input spike", "", 0.0, 0.9))
    audio_channel_shift: int = field(default=0, metadata=param(
        "augmentation: each sample's audio spikes move by a random number of cochlear channels up to this many "
        "either way, the same for every delay tap (a vocal-tract-length perturbation; 1 channel is about a "
        "10 % frequency warp with the default filterbank)", "channels", 0, 16))
    noise_fraction: float = field(default=0.0, metadata=param(
        "augmentation: probability per sample and modality of training on the stream encoded with sensor noise "
        "(levels below) instead of the clean one", "", 0.0, 1.0))
    noise_audio_snr_db: float = field(default=10.0, metadata=param(
        "training noise: audio white-noise SNR", "dB", -40.0, 120.0))
    noise_dvs_hz: float = field(default=5.0, metadata=param(
        "training noise: extra DVS noise events per pixel per second", "Hz", 0.0, 1e6))
    noise_imu_std: float = field(default=0.5, metadata=param(
        "training noise: Gaussian noise on each accelerometer axis", "m/s^2", 0.0, 1e3))
    mispair_audio: float = field(default=0.0, metadata=param(
        "augmentation: probability per fused sample that its audio comes from a random training sample of any "
        "class (teaches the network how far to trust audio evidence)", "", 0.0, 1.0))
    mispair_dvs: float = field(default=0.0, metadata=param(
        "augmentation: as mispair_audio, for the DVS sample", "", 0.0, 1.0))
    mispair_imu: float = field(default=0.0, metadata=param(
        "augmentation: as mispair_audio, for the IMU sample", "", 0.0, 1.0))
    recorded_audio_repeat: int = field(default=1, metadata=param(
        "augmentation: each training utterance of a recorded (real) voice enters the per-epoch pairing this "
        "many times, eSpeak voices once (real voices are a few per cent of the utterances and under-fitted)",
        "", 1, 100))
    weight_ema: float = field(default=0.0, metadata=param(
        "decay per update of an exponential moving average of the weights (Polyak averaging); validation, "
        "model selection and the artifact use the average, training the raw weights; 0: off", "", 0.0, 0.99999))
    selection_score: str = field(default="all", metadata=param(
        "the validation score that picks the saved epoch: all = 0.5 fused + 0.5 mean of the six missing sets, "
        "goal = the same over the three one-missing sets (the single paths, IMU alone on 10 series, left out)",
        choices=SELECTION_SCORES))
    val_fraction: float = field(default=0.15, metadata=param(
        "fraction of audio speakers / DVS images / IMU series per class held out for validation", "", 0.0,
        0.9))
    val_audio_holdout: str = field(default="voice", metadata=param(
        "what validation holds out of the eSpeak speakers: whole voices (base + variant; other variants of "
        "the same accent stay in training) or whole accents (every voice of a base, as the test split does)",
        choices=VAL_AUDIO_HOLDOUTS))
    hidden_neurons: int = field(default=64, metadata=param("LIF neurons per modality population", "", 1, 4096))
    fusion_neurons: int = field(default=64, metadata=param("LIF neurons of the fusion layer", "", 1, 4096))
    readout_tau_mem_ms: float = field(default=200.0, metadata=param(
        "membrane time constant of the readout", "ms", 0.01, 1e6))
    # the network's own fields (default, unit, bounds): one definition, in FusionNetConfig
    tau_mem_ms: float = field(default=_NET_FIELDS["tau_mem_ms"].default, metadata=_NET_FIELDS["tau_mem_ms"].metadata)
    tau_syn_ms: float = field(default=_NET_FIELDS["tau_syn_ms"].default, metadata=_NET_FIELDS["tau_syn_ms"].metadata)
    population_tau_mem_ms: tuple[float, ...] = field(default=(), metadata=_NET_FIELDS["population_tau_mem_ms"].metadata)
    population_tau_syn_ms: tuple[float, ...] = field(default=(), metadata=_NET_FIELDS["population_tau_syn_ms"].metadata)
    readout_init_scale: float = field(default=0.1, metadata=param(
        "factor on the initial readout weights (the leaky readout integrates ~tau/step steps, so unscaled "
        "initial logits are ~30 and saturate the softmax)", "", 1e-4, 10.0))

    def __post_init__(self) -> None:
        validate_config(self)
        for name in ("population_tau_mem_ms", "population_tau_syn_ms"):  # tuples, so that run keys are stable
            object.__setattr__(self, name, population_values(self, name))
        missing_set_weights(self.missing_weights)  # refuses a bad spec at construction, not epochs later


def held_out_audio(speakers: list[str], fraction: float, rng: np.random.Generator, audio_holdout: str = "voice"
                   ) -> tuple[list[str | None], set[str]]:
    """The audio part of :func:`split_validation`: ``(unit of each speaker, held-out units)``.

    A unit is the voice (``audio_holdout="voice"``) or its base voice, the accent (``"accent"``); None for
    a speaker that always trains (recorded, or reading only Spanish or French words). The held-out units
    are the first draw from ``rng``, so ``snn-fusion voices`` recomputes a model's validation accents
    from the build's speaker list and the training settings alone.
    """
    if audio_holdout not in VAL_AUDIO_HOLDOUTS:
        raise ValueError(f"audio_holdout={audio_holdout!r}; expected one of {list(VAL_AUDIO_HOLDOUTS)}")

    def unit(speaker: str) -> str | None:
        base = espeak_base(speaker)
        if base is None or base in ENGLISH_LESS_BASES:
            return None
        return base if audio_holdout == "accent" else speaker

    spk = [unit(s) for s in speakers]
    synth = sorted({s for s in spk if s is not None})
    n_val = int(np.ceil(fraction * len(synth))) if fraction > 0 else 0
    held = set(rng.permutation(np.array(synth, dtype=object))[:n_val].tolist()) if n_val else set()
    return spk, held


def build_held_out_audio(build_folder: Path, seed: int, fraction: float, audio_holdout: str) -> set[str]:
    """The audio units (voices or accents) a run of ``seed`` / ``fraction`` / ``audio_holdout`` on the build in
    ``build_folder`` holds out for validation (:func:`held_out_audio` over the build's speaker list)."""
    from snn_fusion_ros.data.store import load_npz

    speakers = load_npz(Path(build_folder) / "audio_train.npz")["speaker"].astype(str).tolist()
    return held_out_audio(speakers, float(fraction), np.random.default_rng([int(seed), 1]), audio_holdout)[1]


def split_validation(enc: EncodedSplit, fraction: float, rng: np.random.Generator, audio_holdout: str = "voice"
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, validation) sample indices per modality, disjoint by speaker / writer block / series.

    * audio, ``audio_holdout="voice"``: ``ceil(fraction * n)`` of the ``n`` synthetic (eSpeak) speakers
      (``espeak:<base>+<variant>``), drawn with ``rng``; ``"accent"``: every speaker of ``ceil(fraction * n)``
      of the ``n`` base voices, so validation accents are unseen in training as the test split's are.
      Real recorded speakers stay in training (Allison; with ``train_voices`` "asterisk" five more), and so
      do the voices that read only Spanish or French words (``ENGLISH_LESS_BASES``, builds with
      ``train_languages`` "en-es-fr"): validation holds out accents of the English words that the test
      split's eSpeak voices read, and a build with those voices holds out exactly what the same build
      without them does;
    * DVS: the last ``fraction`` of the images (a contiguous block: writers are stored in order); the
      distorted renditions of those images (``enc.dvs_image_index``) are left out of both parts, so
      validation sees each of its images once, undistorted, and training none of them;
    * IMU: ``ceil(fraction * n_k)`` series of each class ``k`` (the class is the person).

    With ``fraction == 0`` the validation part is empty.
    """
    train: dict[str, np.ndarray] = {}
    val: dict[str, np.ndarray] = {}
    spk, held = held_out_audio(enc.speakers.tolist(), fraction, rng, audio_holdout)
    is_val = np.array([s in held for s in spk], dtype=bool)
    train["audio"], val["audio"] = np.nonzero(~is_val)[0], np.nonzero(is_val)[0]
    image = enc.dvs_image_index
    images = np.unique(image)
    held_d = np.isin(image, images[len(images) - round(fraction * len(images)):])
    original = np.zeros(len(image), dtype=bool)  # the first sample of each image: the image as written
    original[np.unique(image, return_index=True)[1]] = True
    train["dvs"], val["dvs"] = np.nonzero(~held_d)[0], np.nonzero(held_d & original)[0]
    lab = enc.labels["imu"]
    v_imu = []
    for k in np.unique(lab):
        members = np.nonzero(lab == k)[0]
        n_k = int(np.ceil(fraction * len(members))) if fraction > 0 else 0
        n_k = min(n_k, len(members) - 1)
        v_imu.extend(rng.permutation(members)[:n_k].tolist())
    is_v = np.zeros(len(lab), dtype=bool)
    is_v[np.asarray(v_imu, dtype=np.int64)] = True
    train["imu"], val["imu"] = np.nonzero(~is_v)[0], np.nonzero(is_v)[0]
    return train, val


def paired_index(enc: EncodedSplit, subset: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """((N, 3) rows into ``enc.spikes[m]``, (N,) labels): samples ``subset[m]`` paired by class.

    Only classes present in every modality's subset are paired (see ``pair_samples``).
    """
    common = set.intersection(*(set(enc.labels[m][subset[m]].tolist()) for m in MODALITIES))
    subset = {m: v[np.isin(enc.labels[m][v], sorted(common))] for m, v in subset.items()}
    p = pair_samples({m: enc.labels[m][subset[m]] for m in MODALITIES}, rng)
    return np.stack([subset[m][p.index[:, i]] for i, m in enumerate(MODALITIES)], axis=1), p.labels


def mispair(rows: np.ndarray, subset: dict[str, np.ndarray], p: dict[str, float], rng: np.random.Generator
            ) -> np.ndarray:
    """Copy of fused ``rows`` (N, 3) where modality ``m``'s sample is, with probability ``p[m]`` per row,
    replaced by one drawn uniformly from ``subset[m]`` (any class; the row's label is kept).

    Each training series is learnt until it is recognised every time, so the network would trust a
    modality as much as its *training* accuracy says (IMU: ~100 % on its 4 training series per class,
    36-56 % on unseen series). Pairing that modality's sample with the label only ``1 - p`` of the time
    makes its evidence as reliable in training as it is on unseen data, so a weak modality does not
    outvote a strong one. ``p`` of 0 (or absent) leaves a modality unchanged; the draws for the
    modalities are made in :data:`MODALITIES` order.
    """
    out = np.array(rows, copy=True)
    for i, m in enumerate(MODALITIES):
        pm = float(p.get(m, 0.0))
        if not 0.0 <= pm <= 1.0:
            raise ValueError(f"mispair probability of {m} must be in [0, 1], got {pm}")
        if pm == 0.0:
            continue
        hit = rng.random(len(out)) < pm
        out[hit, i] = rng.choice(np.asarray(subset[m]), size=int(hit.sum()))
    return out


def gather(enc: EncodedSplit, rows: np.ndarray, noisy: EncodedSplit | None = None, fraction: float = 0.0,
           rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """``{m: (len(rows), T, N_m)}`` float32 spikes of fused rows (N, 3).

    With ``noisy`` (the same samples encoded from noisy streams), each sample's modality is taken
    from it with probability ``fraction`` (drawn with ``rng``).
    """
    out = {}
    for i, m in enumerate(MODALITIES):
        x = enc.spikes[m][rows[:, i]]
        if noisy is not None and fraction > 0:
            swap = rng.random(len(rows)) < fraction
            x[swap] = noisy.spikes[m][rows[swap, i]]
        out[m] = x.astype(np.float32)
    return out


def training_noise(s: TrainSettings) -> SensorNoise:
    """The sensor noise of ``noise_fraction`` (its own seed: no draw is shared with evaluation's)."""
    return SensorNoise(audio_snr_db=s.noise_audio_snr_db, dvs_noise_hz=s.noise_dvs_hz, imu_noise_std=s.noise_imu_std,
                       seed=s.seed + 7919)


def accuracy_report(model: FusionNet, inputs: dict[str, np.ndarray], labels: np.ndarray
                    ) -> tuple[dict[str, float], float]:
    """Last-window accuracy with all modalities (``"fused"``) and with each missing set missing, and the
    readout range of the fused pass (:func:`~snn_fusion_ros.snn.training.readout_abs_max`, same pass)."""
    scores, peak = scores_and_peak(model, inputs)
    out = {"fused": float(np.mean(scores.argmax(-1) == labels))}
    for miss in MISSING_SETS:
        x = {m: (np.zeros_like(a) if m in miss else a) for m, a in inputs.items()}
        out["-" + "-".join(miss)] = float(np.mean(last_window_scores(model, x).argmax(-1) == labels))
    return out, peak


def validation_set(train_enc: EncodedSplit, s: TrainSettings
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray] | None,
                              np.ndarray | None]:
    """A run's ``(train, validation)`` sample indices per modality and its fixed validation pairs
    (``{m: (N, T, N_m)}`` inputs, (N,) labels; both None when a modality has no validation samples).

    Drawn from ``s.seed`` only (never from ``s.replicate``): replicates of a run, and networks merged from
    them (``snn-fusion merge --validate``), are judged on the same pairs.
    """
    tr, va = split_validation(train_enc, s.val_fraction, np.random.default_rng([s.seed, 1]), s.val_audio_holdout)
    if not all(len(v) for v in va.values()):
        return tr, va, None, None
    rows, labels = paired_index(train_enc, va, np.random.default_rng([s.seed, 2]))
    return tr, va, gather(train_enc, rows), labels


#: the missing sets the ``goal`` score averages: one modality missing (the goal rows of the task)
ONE_MISSING = ("-audio", "-dvs", "-imu")


def selection_score(rep: dict[str, float], kind: str = "all") -> float:
    """Model-selection score on validation: ``0.5 * fused + 0.5 * mean(missing sets)``, over every missing set
    in ``rep`` (``"all"``: the six, the default) or over the three with one modality missing (``"goal"``).

    With ``"all"`` the two-missing sets are in it, among them IMU alone, whose validation part is 10
    series: one series moves the score by 0.83 pp, more than several pp of audio alone do, so it can pick
    an epoch half-way through training (round 20, models/README.md). ``"goal"`` leaves the single paths
    out (each still counts through the one-missing sets that hold it)."""
    if kind not in SELECTION_SCORES:
        raise ValueError(f"selection score {kind!r}; expected one of {SELECTION_SCORES}")
    miss = [v for k, v in rep.items() if k != "fused" and (kind == "all" or k in ONE_MISSING)]
    return 0.5 * rep["fused"] + 0.5 * float(np.mean(miss))


def network_config(enc_cfgs: EncoderConfigs, s: TrainSettings, num_classes: int = len(CLASS_NAMES)
                   ) -> FusionNetConfig:
    """The network a run of ``s`` trains: input sizes and time grid from the encoders, the rest from ``s``."""
    n = enc_cfgs.num_neurons
    return FusionNetConfig(audio_neurons=n["audio"], dvs_neurons=n["dvs"], imu_neurons=n["imu"],
                           hidden_neurons=s.hidden_neurons, fusion_neurons=s.fusion_neurons,
                           num_classes=num_classes, step_ms=enc_cfgs.audio.step_ms,
                           steps_per_window=enc_cfgs.steps_per_window,
                           readout_tau_mem_ms=s.readout_tau_mem_ms, tau_mem_ms=s.tau_mem_ms,
                           tau_syn_ms=s.tau_syn_ms, population_tau_mem_ms=s.population_tau_mem_ms,
                           population_tau_syn_ms=s.population_tau_syn_ms, seed=run_seed(s))


#: settings added after runs were keyed, with the value that leaves a run key unchanged
_LATER_SETTINGS = {"recorded_audio_repeat": 1, "weight_ema": 0.0, "replicate": 0, "audio_channel_shift": 0,
                   "selection_score": "all", "missing_weights": "", "population_tau_mem_ms": (),
                   "population_tau_syn_ms": ()}


def run_seed(s: TrainSettings) -> int:
    """The seed of a run's own draws (init, masks, pairing, dropout): ``s.seed`` for replicate 0, else an
    integer derived from ``(seed, replicate)`` (``numpy.random.SeedSequence``), so replicates share the data set
    and validation split (both drawn from ``seed``) and nothing else."""
    if s.replicate == 0:
        return int(s.seed)
    return int(np.random.SeedSequence([s.seed, s.replicate]).generate_state(1)[0] % (2**31 - 1))


def repeat_recorded(enc: EncodedSplit, audio: np.ndarray, repeat: int) -> np.ndarray:
    """Audio sample indices ``audio`` with each recorded (non-eSpeak) speaker's sample ``repeat`` times.

    The order is ``audio`` followed by ``repeat - 1`` more copies of its recorded samples; the per-epoch
    pairing shuffles, so only the counts matter: a recorded utterance is drawn ``repeat`` times as often
    as an eSpeak one (and the epoch grows by the copies, see ``pair_samples``).
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    audio = np.asarray(audio, dtype=np.int64)
    recorded = np.array([espeak_base(s) is None for s in np.asarray(enc.speakers)[audio].tolist()], dtype=bool)
    return np.concatenate([audio, *[audio[recorded]] * (repeat - 1)])


def with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The checkpoint tensors named ``<prefix>.<name>``, keyed by ``<name>`` (inverse of adding the prefix)."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def weight_average(model: FusionNet, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """Exponential moving average of ``model``'s parameters (torch's ``AveragedModel``), None at ``decay`` 0.

    ``update_parameters(model)`` after every optimiser step: the first call copies the weights, each
    later one moves the average ``1 - decay`` of the way to them (a horizon of about ``1 / (1 - decay)``
    updates). Buffers are not averaged; the copy keeps those of ``model`` at the time of the call.
    """
    if decay <= 0.0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def weight_average_tensors(ema: torch.optim.swa_utils.AveragedModel) -> dict[str, torch.Tensor]:
    """The average's weights (``ema.<name>``) and update count (``ema_n_averaged``), for a checkpoint."""
    out = {f"ema.{k}": v for k, v in ema.module.artifact_tensors().items()}  # already detached copies
    out["ema_n_averaged"] = ema.n_averaged.detach().clone()
    return out


def load_weight_average(ema: torch.optim.swa_utils.AveragedModel, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`weight_average_tensors`; a checkpoint without them is refused (ValueError)."""
    if "ema_n_averaged" not in tensors:
        raise ValueError("checkpoint has no weight average (ema.*) although the run averages weights")
    ema.module.load_artifact_tensors(with_prefix(tensors, "ema"))
    ema.n_averaged.copy_(tensors["ema_n_averaged"])


def run_key(build_key: str, enc_cfgs: EncoderConfigs, s: TrainSettings) -> str:
    """Identifies a run for ``--resume``: data build, encoders and every setting except epochs."""
    d = without_later_fields(dataclasses.asdict(s), _LATER_SETTINGS)
    d.pop("epochs")
    blob = json.dumps({"build": build_key, "enc": enc_cfgs.hash(), "settings": d}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fit(train_enc: EncodedSplit, enc_cfgs: EncoderConfigs, settings: TrainSettings, out: Path,
        checkpoint_dir: Path, build_key: str, resume: bool = False, progress: bool = True,
        created_by: str | None = None, log: Any = None, noisy_enc: EncodedSplit | None = None) -> dict[str, Any]:
    """Train, checkpoint every epoch, keep the best-validation artifact in ``out``; returns a summary.

    ``log`` (callable taking a str) receives one line per epoch. ``noisy_enc``: the training split
    encoded with :func:`training_noise` (needed when ``settings.noise_fraction > 0``).
    ``checkpoint_dir`` is locked for the run (:func:`lock_checkpoint_dir`): a second run on it raises.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with lock_checkpoint_dir(checkpoint_dir):
        return _fit(train_enc, enc_cfgs, settings, out, checkpoint_dir, build_key, resume, progress, created_by,
                    log, noisy_enc)


def lock_checkpoint_dir(checkpoint_dir: Path) -> Any:
    """Exclusive ``flock`` on ``<checkpoint_dir>/.lock``, as an open file to close (or use in ``with``).

    Runs that differ only in ``--epochs`` share a run key and so a default checkpoint folder; two of
    them at once would overwrite each other's checkpoints (and a ``--resume`` would continue the
    other's), so the second is refused with a ValueError.
    """
    import fcntl

    fh = open(checkpoint_dir / ".lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise ValueError(f"checkpoint folder {checkpoint_dir} is in use by another training run "
                         "(runs that differ only in --epochs share it); pass --checkpoint-dir") from None
    return fh


def _fit(train_enc: EncodedSplit, enc_cfgs: EncoderConfigs, settings: TrainSettings, out: Path,
         checkpoint_dir: Path, build_key: str, resume: bool, progress: bool, created_by: str | None, log: Any,
         noisy_enc: EncodedSplit | None) -> dict[str, Any]:
    if settings.noise_fraction > 0 and noisy_enc is None:
        raise ValueError("noise_fraction > 0 needs noisy_enc (the split encoded with training_noise(settings))")
    from safetensors.torch import load_file, save_file

    from snn_fusion_ros.snn.artifact import save_artifact

    s = settings
    tr, va, val_inputs, val_labels = validation_set(train_enc, s)
    tr_pool = dict(tr, audio=repeat_recorded(train_enc, tr["audio"], s.recorded_audio_repeat))
    cfg = network_config(enc_cfgs, s)
    model = FusionNet(cfg)
    with torch.no_grad():
        model.w_out.mul_(s.readout_init_scale)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    ema = weight_average(model, s.weight_ema)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_score": -1.0, "best_epoch": 0,
                             "run_key": run_key(build_key, enc_cfgs, s), "train_seconds": 0.0}
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    ck_w, ck_s = checkpoint_dir / CHECKPOINT_WEIGHTS, checkpoint_dir / CHECKPOINT_STATE
    if resume and ck_s.is_file() and ck_w.is_file():
        saved = json.loads(ck_s.read_text())
        if saved.get("run_key") != state["run_key"]:
            raise ValueError(f"checkpoint in {checkpoint_dir} is of run {saved.get('run_key')}, "
                             f"expected {state['run_key']} (different data or settings)")
        tensors = load_file(str(ck_w))
        model.load_artifact_tensors(with_prefix(tensors, "model"))
        load_optimizer_tensors(opt, tensors)
        if ema is not None:
            load_weight_average(ema, tensors)
        state = saved
    meta_extra = {"training": dataclasses.asdict(s), "build": build_key, "validation": {
        m: len(v) for m, v in va.items()}, "train_samples": {m: len(v) for m, v in tr.items()}}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.epochs, initial=state["epoch"], desc="train", unit="epoch")
    rs = run_seed(s)
    missing_weights = missing_set_weights(s.missing_weights)
    for epoch in range(state["epoch"], s.epochs):
        t0 = time.perf_counter()
        lr = s.lr * (s.lr_final_fraction + (1 - s.lr_final_fraction) * 0.5 * (1 + np.cos(np.pi * epoch / s.epochs)))
        for g in opt.param_groups:
            g["lr"] = lr
        rows, labels = paired_index(train_enc, tr_pool, np.random.default_rng([rs, 3, epoch]))
        p_mis = {m: getattr(s, f"mispair_{m}") for m in MODALITIES}
        if any(p_mis.values()):
            rows = mispair(rows, tr, p_mis, np.random.default_rng([rs, 5, epoch]))
        gen = torch.Generator()
        gen.manual_seed(rs * 100003 + epoch)
        torch.manual_seed(rs * 100003 + epoch)

        noise_rng = np.random.default_rng([rs, 4, epoch])

        def batches(rows: np.ndarray = rows, labels: np.ndarray = labels, noise_rng=noise_rng):
            for lo in range(0, len(rows), s.batch_size):
                yield (gather(train_enc, rows[lo: lo + s.batch_size], noisy_enc, s.noise_fraction, noise_rng),
                       labels[lo: lo + s.batch_size])

        loss, acc = train_epoch(model, opt, batches(), gen, s.missing_dropout, s.last_weight,
                                on_batch=None if ema is None else (lambda _loss: ema.update_parameters(model)),
                                shift_steps=s.shift_steps, spike_drop=s.spike_drop,
                                audio_channel_shift=s.audio_channel_shift,
                                audio_layout=enc_cfgs.audio.channel_layout,
                                missing_weights=missing_weights)
        judged = model if ema is None else ema.module  # the network that validation scores and `out` gets
        rep, peak = accuracy_report(judged, val_inputs, val_labels) if val_inputs is not None else ({}, 0.0)
        score = selection_score(rep, s.selection_score) if rep else float(epoch)
        entry = {"epoch": epoch + 1, "loss": loss, "train_accuracy": acc, "lr": lr, "val": rep}
        if ema is not None and val_inputs is not None:  # the raw weights' fused accuracy (one pass), for comparison
            entry["val_raw_fused"] = float(np.mean(last_window_scores(model, val_inputs).argmax(-1) == val_labels))
        dt = time.perf_counter() - t0
        state["train_seconds"] = float(state["train_seconds"]) + dt
        state["history"].append(dict(entry, seconds=dt))
        state["epoch"] = epoch + 1
        if score > state["best_score"]:
            state["best_score"], state["best_epoch"] = score, epoch + 1
            extra = dict(meta_extra, best_epoch=epoch + 1, validation_accuracy=rep, history=state["history"])
            if val_inputs is not None:
                extra["readout_abs_max"] = peak
            save_artifact(out, judged, CLASS_NAMES, enc_cfgs.to_dict(), extra=extra, name=out.name,
                          created_by=created_by)
        tensors = {f"model.{k}": v for k, v in model.artifact_tensors().items()}
        tensors.update(optimizer_tensors(opt))
        if ema is not None:
            tensors.update(weight_average_tensors(ema))
        save_file(tensors, str(ck_w))
        ck_s.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        if log is not None:
            log(f"epoch {epoch + 1}/{s.epochs} loss {loss:.4f} train_acc {acc:.4f} lr {lr:.2e} "
                f"val {json.dumps({k: round(v, 4) for k, v in rep.items()})} {dt:.1f}s")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", val=f"{rep.get('fused', float('nan')):.3f}")
    if bar is not None:
        bar.close()
    return state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainSettings()
    parser.add_argument("--cache", type=Path, default=None, help="data set cache (default: as `dataset build`)")
    parser.add_argument("--build", default=None, help="build key (default: the full build of --seed)")
    parser.add_argument("--quick", action="store_true", help="use (and make if needed) the --quick build")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of everything (default {d.seed})")
    parser.add_argument("--replicate", type=int, default=d.replicate, metavar="K",
                        help="K > 0: another run of the same data, validation split and settings with its own "
                             "weight init, pairing and dropout draws (default 0: the run of --seed)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--missing-dropout", type=float, default=d.missing_dropout,
                        help="probability of dropping one or two modalities per sample")
    parser.add_argument("--missing-weights", default=d.missing_weights, metavar="NAME=W,...",
                        help="relative weights of the missing sets the dropout draws, e.g. dvs=2 (names: "
                             + ", ".join(MISSING_SET_NAMES) + "; a set not named weighs 1; default: uniform)")
    parser.add_argument("--shift-steps", type=int, default=d.shift_steps,
                        help="augmentation: max random shift per modality and sample, steps (default 0)")
    parser.add_argument("--spike-drop", type=float, default=d.spike_drop,
                        help="augmentation: probability of deleting an input spike (default 0)")
    parser.add_argument("--audio-channel-shift", type=int, default=d.audio_channel_shift, metavar="K",
                        help="augmentation: each sample's audio spikes move by up to K cochlear channels either way "
                             "(vocal-tract-length perturbation; default 0: off)")
    parser.add_argument("--selection-score", choices=SELECTION_SCORES, default=d.selection_score,
                        help="validation score that picks the saved epoch: all (fused and the six missing sets, "
                             "default) or goal (fused and the three one-missing sets)")
    parser.add_argument("--noise-fraction", type=float, default=d.noise_fraction,
                        help="augmentation: share of modality samples trained from their noisy encoding (default 0); "
                             "levels: --noise-audio-snr-db, --noise-dvs-hz, --noise-imu-std")
    parser.add_argument("--noise-audio-snr-db", type=float, default=d.noise_audio_snr_db)
    parser.add_argument("--noise-dvs-hz", type=float, default=d.noise_dvs_hz)
    parser.add_argument("--noise-imu-std", type=float, default=d.noise_imu_std)
    for m in MODALITIES:
        parser.add_argument(f"--mispair-{m}", type=float, default=getattr(d, f"mispair_{m}"),
                            help=f"probability per sample of pairing a random {m} sample of any class "
                                 f"(default {getattr(d, f'mispair_{m}')})")
    parser.add_argument("--recorded-audio-repeat", type=int, default=d.recorded_audio_repeat, metavar="R",
                        help="augmentation: each recorded (real) voice's training utterance is paired R times per "
                             f"epoch, eSpeak voices once (default {d.recorded_audio_repeat})")
    parser.add_argument("--weight-ema", type=float, default=d.weight_ema, metavar="DECAY",
                        help="validate, select and save an exponential moving average of the weights with this "
                             f"decay per minibatch, e.g. 0.999 (default {d.weight_ema:g}: off)")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction)
    parser.add_argument("--val-audio-holdout", choices=VAL_AUDIO_HOLDOUTS, default=d.val_audio_holdout,
                        help="validation holds out whole eSpeak voices (default) or whole accents (base voices)")
    parser.add_argument("--train-accents", default="core", choices=tuple(TRAIN_ACCENTS),
                        help="data set: accents of the train split's eSpeak voices (core or eu, see "
                             "`snn-fusion dataset build`); ignored with --build")
    parser.add_argument("--train-languages", default="en", choices=tuple(TRAIN_LANGUAGES),
                        help="data set: digit words the train split's eSpeak voices read (en or en-es-fr, see "
                             "`snn-fusion dataset build`); ignored with --build")
    parser.add_argument("--train-voices", default="allison", choices=tuple(TRAIN_VOICES),
                        help="data set: real voices of the train split (allison or asterisk, see `snn-fusion "
                             "dataset build`); ignored with --build")
    parser.add_argument("--train-variants", default="core", choices=tuple(TRAIN_VARIANTS),
                        help="data set: voice variants of the train split's eSpeak voices (core or all, see "
                             "`snn-fusion dataset build`); ignored with --build")
    parser.add_argument("--dvs-distortions", type=int, default=0, metavar="K",
                        help="data set: K distorted renditions of every training image (see `snn-fusion dataset "
                             "build`); ignored with --build")
    add_dvs_emulator_argument(parser, "; ignored with --build")
    parser.add_argument("--hidden", type=int, default=d.hidden_neurons, help="neurons per modality population")
    parser.add_argument("--fusion", type=int, default=d.fusion_neurons, help="fusion layer neurons")
    parser.add_argument("--readout-tau-ms", type=float, default=d.readout_tau_mem_ms)
    parser.add_argument("--tau-mem-ms", type=float, default=d.tau_mem_ms,
                        help=f"membrane time constant of the LIF layers (default {d.tau_mem_ms:g} ms)")
    parser.add_argument("--tau-syn-ms", type=float, default=d.tau_syn_ms,
                        help=f"synaptic time constant of every layer (default {d.tau_syn_ms:g} ms)")
    parser.add_argument("--population-tau-mem-ms", type=float, nargs=3, default=list(d.population_tau_mem_ms),
                        metavar=("AUDIO", "DVS", "IMU"),
                        help="membrane time constant of each modality population (default: --tau-mem-ms for all)")
    parser.add_argument("--population-tau-syn-ms", type=float, nargs=3, default=list(d.population_tau_syn_ms),
                        metavar=("AUDIO", "DVS", "IMU"),
                        help="synaptic time constant of each modality population (default: --tau-syn-ms for all)")
    parser.add_argument("--out", type=Path, default=Path("models/default"), help="artifact directory")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="default <cache>/checkpoints/<run key>")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--params-file", type=Path, default=None,
                        help="ROS parameter file with the encoder sections (default config/snn_fusion.yaml)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="processes for encoding (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from snn_fusion_ros.data.builder import BuildConfig, build, default_cache
    from snn_fusion_ros.data.dataset import load_split

    torch.set_num_threads(max(1, args.threads))
    cache = args.cache if args.cache is not None else default_cache()
    progress = not args.no_progress
    key = args.build
    if key is None:
        dvs = dvs_emulator_overrides(args, "snn-fusion train")
        if dvs is None:
            return 2
        key = build(BuildConfig.create(seed=args.seed, quick=args.quick, train_accents=args.train_accents,
                                       dvs_train_distortions=args.dvs_distortions,
                                       train_languages=args.train_languages, train_voices=args.train_voices,
                                       train_variants=args.train_variants,
                                       **dvs),
                    cache=cache, progress=progress).name
    settings = TrainSettings(seed=args.seed, replicate=args.replicate, epochs=args.epochs, batch_size=args.batch_size,
                             lr=args.lr,
                             missing_dropout=args.missing_dropout, missing_weights=args.missing_weights,
                             val_fraction=args.val_fraction,
                             hidden_neurons=args.hidden, fusion_neurons=args.fusion,
                             readout_tau_mem_ms=args.readout_tau_ms, tau_mem_ms=args.tau_mem_ms,
                             tau_syn_ms=args.tau_syn_ms, population_tau_mem_ms=args.population_tau_mem_ms,
                             population_tau_syn_ms=args.population_tau_syn_ms, shift_steps=args.shift_steps,
                             spike_drop=args.spike_drop, audio_channel_shift=args.audio_channel_shift,
                             selection_score=args.selection_score,
                             noise_fraction=args.noise_fraction,
                             noise_audio_snr_db=args.noise_audio_snr_db, noise_dvs_hz=args.noise_dvs_hz,
                             noise_imu_std=args.noise_imu_std, mispair_audio=args.mispair_audio,
                             val_audio_holdout=args.val_audio_holdout,
                             mispair_dvs=args.mispair_dvs, mispair_imu=args.mispair_imu,
                             recorded_audio_repeat=args.recorded_audio_repeat, weight_ema=args.weight_ema)
    enc_cfgs = node_encoder_configs(args.params_file)
    ds = load_split("train", cache=cache, key=key)
    enc = encode_split(ds, enc_cfgs, progress=progress, workers=args.workers)
    noisy = (encode_split(ds, enc_cfgs, noise=training_noise(settings), progress=progress, workers=args.workers)
             if settings.noise_fraction > 0 else None)
    ck = args.checkpoint_dir or Path(cache) / "checkpoints" / run_key(key, enc_cfgs, settings)
    tail = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "train" else sys.argv[1:]
    created_by = " ".join(["snn-fusion", "train", *(shlex.quote(a) for a in tail)])

    def log(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        state = fit(enc, enc_cfgs, settings, args.out, ck, key, resume=args.resume, progress=progress,
                    created_by=created_by, log=log, noisy_enc=noisy)
    except ValueError as exc:  # a busy checkpoint folder, or --resume of another run's checkpoint
        sys.stderr.write(f"snn-fusion train: {exc}\n")
        return 1
    sys.stdout.write(json.dumps({"out": str(args.out), "best_epoch": state["best_epoch"],
                                 "best_validation_score": state["best_score"], "epochs": state["epoch"],
                                 "train_seconds": round(state["train_seconds"], 1),
                                 "checkpoint_dir": str(ck)}, indent=1) + "\n")
    return 0
