"""User recordings as a test source: judge the shipped model on unseen speakers and motions.

Folder layouts (``<label>`` is the class name, ``"0"`` .. ``"9"``; other folders are refused):

* **audio**: ``<folder>/<label>/*.wav``, any sample rate, 8/16/32-bit integer or float WAV, mono or
  multi-channel (averaged). Each file is processed like the data set build
  (:func:`snn_fusion_ros.data.audio.place_audio`: telephone band 8 kHz, resampled to the encoder
  rate, peak-normalised to 0.5, speech centred in the sample duration) and then encoded.
* **imu**: ``<folder>/<label>/*.csv`` with a header row naming the columns ``t_s, ax, ay, az`` and
  optionally ``gx, gy, gz``: time in seconds (increasing), acceleration in m/s^2, angular rate in
  rad/s (SI units). Times are shifted to start at 0. A recording longer than the sample duration is
  cropped to the window of that duration centred on the centre of motion energy
  ``sum |a| - median |a|`` (as the build does for the Wiimote series); a shorter one is used as is
  (the encoder emits empty windows after it). Gyro columns, when present, are passed to the encoder
  as the IMU node would (the default model was trained with the gyroscope absent).

Every file becomes one sample; its spikes are produced by the node encoders exactly as for the data
set (:mod:`snn_fusion_ros.data.encode`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn_fusion_ros.data.audio import RawAudio, place_audio
from snn_fusion_ros.data.encode import EncoderConfigs, encode_audio, encode_imu

USER_MODALITIES: tuple[str, ...] = ("audio", "imu")
IMU_COLUMNS: tuple[str, ...] = ("t_s", "ax", "ay", "az")
GYRO_COLUMNS: tuple[str, ...] = ("gx", "gy", "gz")


@dataclass(frozen=True)
class UserSamples:
    """Encoded user samples of one modality: ``spikes`` (N, T, N_m) bool, ``labels`` (N,), ``files``."""

    modality: str
    spikes: np.ndarray
    labels: np.ndarray
    files: tuple[str, ...]


def _files(folder: Path, pattern: str, class_names: tuple[str, ...]) -> list[tuple[int, Path]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"user data folder {folder} does not exist")
    out = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in class_names:
            raise ValueError(f"folder {sub} is not a class name; expected one of {list(class_names)}")
        out.extend((class_names.index(sub.name), f) for f in sorted(sub.glob(pattern)))
    if not out:
        raise ValueError(f"no {pattern} files under {folder}/<label>/ (labels {list(class_names)})")
    return out


def read_wav_any(path: Path) -> tuple[np.ndarray, int]:
    """(float32 mono samples at full scale 1.0, rate Hz) of a PCM (8/16/32-bit) or float WAV file."""
    from scipy.io import wavfile

    rate, data = wavfile.read(str(path))
    x = np.asarray(data)
    if x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    else:
        raise ValueError(f"{path}: WAV sample type {x.dtype} not supported; expected integer PCM or float")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        raise ValueError(f"{path}: no samples")
    return x, int(rate)


def read_imu_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(stamps_ns (n,) from 0, accel (n, 3) m/s^2, gyro (n, 3) rad/s or None) of a user CSV file."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header {list(IMU_COLUMNS)}[+{list(GYRO_COLUMNS)}]")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in IMU_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing; header {header}, expected {list(IMU_COLUMNS)} "
                         f"and optionally {list(GYRO_COLUMNS)}")
    try:
        data = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric value: {exc}") from exc
    if data.ndim != 2 or len(data) < 2:
        raise ValueError(f"{path}: needs at least 2 data rows, got {len(data)}")
    col = {c: header.index(c) for c in header}
    t = data[:, col["t_s"]]
    if not np.all(np.diff(t) >= 0):
        raise ValueError(f"{path}: t_s must not decrease")
    stamps = np.round((t - t[0]) * 1e9).astype(np.int64)
    accel = data[:, [col[c] for c in ("ax", "ay", "az")]].astype(np.float32)
    gyro = data[:, [col[c] for c in GYRO_COLUMNS]].astype(np.float32) if all(c in col for c in GYRO_COLUMNS) \
        else None
    return stamps, accel, gyro


def crop_imu(stamps_ns: np.ndarray, accel: np.ndarray, gyro: np.ndarray | None, duration_ns: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Window of ``duration_ns`` centred on the motion-energy centre, restarted at 0 (see module doc)."""
    if stamps_ns[-1] < duration_ns:
        return stamps_ns, accel, gyro
    mag = np.linalg.norm(accel, axis=1)
    dev = np.abs(mag - np.median(mag))
    centre = float(stamps_ns @ dev / dev.sum()) if dev.sum() > 0 else float(stamps_ns[-1]) / 2
    start = int(np.clip(centre - duration_ns / 2, 0, stamps_ns[-1] - duration_ns))
    keep = (stamps_ns >= start) & (stamps_ns < start + duration_ns)
    return stamps_ns[keep] - start, accel[keep], (gyro[keep] if gyro is not None else None)


def load_user_modality(modality: str, folder: Path, cfgs: EncoderConfigs, duration_ns: int,
                       class_names: tuple[str, ...] = tuple(str(d) for d in range(10))) -> UserSamples:
    """Read and encode every file of a user folder (layouts in the module docstring)."""
    if modality not in USER_MODALITIES:
        raise ValueError(f"user data for modality {modality!r} not supported; expected one of {list(USER_MODALITIES)}")
    window_ns = round(cfgs.window_ms * 1e6)
    n_windows = int(duration_ns // window_ns)
    spikes, labels, names = [], [], []
    if modality == "audio":
        rate = cfgs.audio.sample_rate_hz
        for label, f in _files(folder, "*.wav", class_names):
            x, r = read_wav_any(f)
            wave = place_audio(RawAudio(x, r, label, "user", str(f)), rate, duration_ns / 1e6)
            spikes.append(encode_audio(wave, rate, cfgs.audio, n_windows))
            labels.append(label)
            names.append(str(f))
    else:
        for label, f in _files(folder, "*.csv", class_names):
            st, acc, gyr = crop_imu(*read_imu_csv(f), duration_ns)
            spikes.append(encode_imu(st, acc, gyr, cfgs.imu, n_windows))
            labels.append(label)
            names.append(str(f))
    return UserSamples(modality, np.stack(spikes), np.asarray(labels, np.int64), tuple(names))
