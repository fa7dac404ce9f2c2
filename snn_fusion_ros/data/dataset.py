"""Reading a built data set: :func:`load_split` -> :class:`FusedDataset` of raw per-modality samples.

All three streams of a fused sample lie on one time axis starting at 0 ns and spanning
``duration_ns``: audio sample j is at ``j * 1e9 / sample_rate_hz`` ns, DVS events carry ``t`` in
ns, IMU samples are at ``imu_stamps_ns``. Encoders turn these into spikes on the 50 ms window grid.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn_fusion_ros.data.builder import SPLITS, find_build
from snn_fusion_ros.data.pairing import Pairing, pair_samples
from snn_fusion_ros.data.store import load_json, load_npz
from snn_fusion_ros.spikes import MODALITIES


@dataclass(frozen=True)
class FusedSample:
    """One fused sample: raw audio, DVS events and IMU series of the same class ``label``."""

    label: int
    audio: np.ndarray  # (S,) float32 in [-1, 1]
    sample_rate_hz: int
    events: np.ndarray  # (E,) EVENT_DTYPE, t in [0, duration_ns]
    sensor_size: tuple[int, int]  # (width, height) px
    imu_stamps_ns: np.ndarray  # (n,) int64
    accel: np.ndarray  # (n, 3) float32 m/s^2
    gyro: np.ndarray | None  # (n, 3) rad/s, None: not recorded
    duration_ns: int
    speaker: str


@dataclass(frozen=True)
class FusedDataset:
    """Per-modality raw samples of one split and a pairing into fused samples.

    ``audio`` (Na, S) float32, ``audio_labels`` (Na,), ``audio_speakers`` (Na,) str;
    ``dvs_events`` (E,) EVENT_DTYPE concatenated with ``dvs_offsets`` (Nd + 1,), ``dvs_labels`` (Nd,),
    ``dvs_image_index`` (Nd,) the handwritten image each DVS sample shows (distorted renditions of a
    training image share its index);
    ``imu_stamps_ns`` (n,), ``imu_accel`` (Ni, n, 3) m/s^2, ``imu_labels`` (Ni,);
    ``pairs`` picks one sample of each modality per fused sample.
    """

    split: str
    audio: np.ndarray
    audio_labels: np.ndarray
    audio_speakers: np.ndarray
    sample_rate_hz: int
    dvs_events: np.ndarray
    dvs_offsets: np.ndarray
    dvs_labels: np.ndarray
    sensor_size: tuple[int, int]
    imu_stamps_ns: np.ndarray
    imu_accel: np.ndarray
    imu_labels: np.ndarray
    pairs: Pairing
    duration_ns: int
    build_dir: Path
    dvs_image_index: np.ndarray

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labels(self) -> np.ndarray:
        """Class of each fused sample, (N,) int64."""
        return self.pairs.labels

    def modality_labels(self) -> dict[str, np.ndarray]:
        return {"audio": self.audio_labels, "dvs": self.dvs_labels, "imu": self.imu_labels}

    def dvs(self, j: int) -> np.ndarray:
        """Events of DVS sample ``j`` (not fused index)."""
        return self.dvs_events[self.dvs_offsets[j]: self.dvs_offsets[j + 1]]

    def __getitem__(self, i: int) -> FusedSample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"fused sample {i} out of range for {len(self)} samples")
        a, d, m = (int(v) for v in self.pairs.index[i])
        return FusedSample(label=int(self.pairs.labels[i]), audio=self.audio[a],
                           sample_rate_hz=self.sample_rate_hz, events=self.dvs(d),
                           sensor_size=self.sensor_size, imu_stamps_ns=self.imu_stamps_ns,
                           accel=self.imu_accel[m], gyro=None, duration_ns=self.duration_ns,
                           speaker=str(self.audio_speakers[a]))

    def repaired(self, rng: np.random.Generator) -> FusedDataset:
        """The same samples with a new random pairing (one per training epoch)."""
        return dataclasses.replace(self, pairs=pair_samples(self.modality_labels(), rng))


def read_labels(build_dir: Path, split: str) -> dict[str, np.ndarray]:
    """{modality: labels} of ``split`` in a build folder."""
    return {m: load_npz(Path(build_dir) / f"{m}_{split}.npz")["labels"] for m in MODALITIES}


def load_split(split: str, cache: Path | None = None, key: str | None = None,
               rng: np.random.Generator | None = None) -> FusedDataset:
    """Load ``split`` ("train" or "test") of a built data set.

    The test split uses the stored, seeded pairing. The train split is paired with ``rng``
    (default ``default_rng(seed of the build)``); call :meth:`FusedDataset.repaired` per epoch.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; expected one of {list(SPLITS)}")
    out = find_build(cache, key)
    manifest = load_json(out / "manifest.json")
    au, dv, im = (load_npz(out / f"{m}_{split}.npz") for m in MODALITIES)
    labels = {"audio": au["labels"], "dvs": dv["labels"], "imu": im["labels"]}
    if split == "test":
        p = load_npz(out / "pairs_test.npz")
        pairs = Pairing(p["index"], p["labels"])
    else:
        pairs = pair_samples(labels, rng if rng is not None else np.random.default_rng(manifest["config"]["seed"]))
    w, h = (int(v) for v in dv["sensor_size"])
    return FusedDataset(
        split=split, audio=au["waveforms"], audio_labels=au["labels"], audio_speakers=au["speaker"],
        sample_rate_hz=int(au["sample_rate_hz"]), dvs_events=dv["events"], dvs_offsets=dv["offsets"],
        dvs_labels=dv["labels"], sensor_size=(w, h), imu_stamps_ns=im["stamps_ns"],
        imu_accel=im["accel"], imu_labels=im["labels"], pairs=pairs,
        duration_ns=int(np.rint(float(manifest["config"]["duration_ms"]) * 1e6)), build_dir=out,
        dvs_image_index=np.asarray(dv["image_index"], np.int64))


def dataset_info(cache: Path | None = None, key: str | None = None) -> dict:
    """Counts per split / modality / class and speakers per split of a built data set."""
    out = find_build(cache, key)
    manifest = load_json(out / "manifest.json")
    info: dict = {"build": manifest["key"], "path": str(out), "config": manifest["config"], "splits": {}}
    for split in SPLITS:
        labels = read_labels(out, split)
        au = load_npz(out / f"audio_{split}.npz")
        entry: dict = {}
        for m in MODALITIES:
            cls, cnt = np.unique(labels[m], return_counts=True)
            entry[m] = {"total": len(labels[m]),
                        "per_class": {str(int(c)): int(n) for c, n in zip(cls, cnt, strict=True)}}
        entry["speakers"] = sorted(set(au["speaker"].tolist()))
        if split == "test":
            entry["fused"] = (len(load_npz(out / "pairs_test.npz")["labels"]))
        info["splits"][split] = entry
    return info
