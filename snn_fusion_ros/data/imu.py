"""IMU gestures: UCR/UEA time series read from the data files that the ``aeon`` wheel ships.

aeon itself cannot be installed next to numpy 1.26.4 (aeon >= 1.4 requires numpy >= 2; aeon 1.0-1.3
downgrade scipy, scikit-learn and numba), so the wheel ``aeon==1.6.0`` is only *downloaded* with
pip (``--no-deps``, nothing installed) and the ``.ts`` files inside it are parsed here.

* ``PickupGestureWiimoteZ`` (10 classes, 50 train / 50 test series): a Nintendo Wiimote's z-axis
  acceleration while each of 10 people performs a "pick-up" gesture; the class is the *person*.
  Values are in g (1.0 at rest); only z is recorded, so x and y are zero. Sampling rate: not in
  the file; the Wiimote reports its accelerometer at about 100 Hz, which is assumed
  (:data:`WIIMOTE_RATE_HZ`). Lengths vary (29..361 samples).
* ``BasicMotions`` (4 classes, 40 train / 40 test, 6 channels: 3-axis accelerometer then 3-axis
  gyroscope of a smart watch, 100 samples at 10 Hz over 10 s). Units are as recorded (the file does
  not state them); they are passed through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snn_fusion_ros.data.sources import fetch_wheel, read_wheel_member

AEON_VERSION = "1.6.0"
STANDARD_GRAVITY = 9.80665  # m/s^2 per g
WIIMOTE_RATE_HZ = 100.0
BASIC_MOTIONS_RATE_HZ = 10.0

#: data set name -> folder inside the aeon wheel
AEON_DATASETS = {
    "PickupGestureWiimoteZ": "aeon/datasets/data/PickupGestureWiimoteZ",
    "BasicMotions": "aeon/datasets/data/BasicMotions",
}


@dataclass(frozen=True)
class TsData:
    """A parsed ``.ts`` file: ``series[i]`` is (channels, length_i) float64, ``labels`` index ``classes``."""

    series: list[np.ndarray]
    labels: np.ndarray
    classes: tuple[str, ...]


def parse_ts(text: str) -> TsData:
    """Parse the sktime/aeon ``.ts`` format (header ``@...`` lines, then ``ch0:ch1:...:label`` rows).

    Trailing NaN padding and ``?`` missing values at the end of a channel are dropped; a NaN inside
    a series raises ``ValueError``.
    """
    classes: tuple[str, ...] = ()
    series, labels = [], []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            low = line.lower()
            if low.startswith("@classlabel"):
                parts = line.split()
                if len(parts) < 3 or parts[1].lower() != "true":
                    raise ValueError(f"line {lineno}: expected '@classLabel true <labels...>', got {line!r}")
                classes = tuple(parts[2:])
            elif low.startswith("@data"):
                in_data = True
            continue
        *chans, label = line.split(":")
        if label not in classes:
            raise ValueError(f"line {lineno}: label {label!r} not in @classLabel {list(classes)}")
        arrs = []
        for ch in chans:
            vals = np.array([float("nan") if v in ("?", "NaN", "nan") else float(v)
                             for v in ch.split(",") if v], dtype=np.float64)
            finite = np.nonzero(np.isfinite(vals))[0]
            vals = vals[: finite[-1] + 1] if len(finite) else vals[:0]
            if not np.all(np.isfinite(vals)):
                raise ValueError(f"line {lineno}: missing value inside the series")
            arrs.append(vals)
        n = min(len(a) for a in arrs)
        series.append(np.stack([a[:n] for a in arrs]))
        labels.append(classes.index(label))
    if not in_data:
        raise ValueError("no @data section")
    return TsData(series, np.asarray(labels, dtype=np.int64), classes)


def load_aeon_dataset(name: str, split: str, cache: Path, offline: bool = False) -> TsData:
    """``name`` ("PickupGestureWiimoteZ" or "BasicMotions"), ``split`` "train"/"test", from the aeon wheel."""
    if name not in AEON_DATASETS:
        raise ValueError(f"unknown data set {name!r}; expected one of {sorted(AEON_DATASETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; expected 'train' or 'test'")
    wheel = fetch_wheel("aeon", AEON_VERSION, cache, offline=offline)
    member = f"{AEON_DATASETS[name]}/{name}_{split.upper()}.ts"
    return parse_ts(read_wheel_member(wheel, member).decode("utf-8"))


def motion_centre(z: np.ndarray) -> int:
    """Index of the centre of motion energy ``sum |a - median(a)|`` of a 1-D series."""
    dev = np.abs(z - np.median(z))
    if dev.sum() <= 0:
        return len(z) // 2
    return int(np.rint(np.arange(len(z)) @ dev / dev.sum()))


def wiimote_to_imu(series: np.ndarray, duration_ms: float, rate_hz: float = WIIMOTE_RATE_HZ
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(stamps_ns (n,), accel (n, 3) float32 m/s^2) of a z-axis Wiimote series (1, length) in g.

    ``n = round(duration * rate)``; the window is centred on the centre of motion energy, and a
    series shorter than the window is padded with its first / last value (the hand at rest).
    x and y are 0 (not recorded).
    """
    z = np.asarray(series, dtype=np.float64).reshape(-1)
    if len(z) == 0:
        raise ValueError("empty series")
    n = int(np.rint(duration_ms * 1e-3 * rate_hz))
    start = motion_centre(z) - n // 2
    idx = np.clip(np.arange(start, start + n), 0, len(z) - 1)
    accel = np.zeros((n, 3), dtype=np.float32)
    accel[:, 2] = z[idx] * STANDARD_GRAVITY
    stamps_ns = np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)
    return stamps_ns, accel


def basic_motions_to_imu(series: np.ndarray, rate_hz: float = BASIC_MOTIONS_RATE_HZ
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stamps_ns (n,), accel (n, 3), gyro (n, 3)) float32 of a BasicMotions series (6, n).

    Channels 0-2 are the accelerometer and 3-5 the gyroscope; values pass through in the units of
    the file (not stated there; see the module docstring). Not part of the fused 10-class build: the
    second task (:mod:`snn_fusion_ros.snn.motions`).
    """
    s = np.asarray(series, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != 6:
        raise ValueError(f"BasicMotions series must be (6, n), got shape {s.shape}")
    stamps_ns = np.round(np.arange(s.shape[1]) * (1e9 / rate_hz)).astype(np.int64)
    return stamps_ns, s[:3].T.astype(np.float32), s[3:].T.astype(np.float32)
