"""Raw fused data -> per-modality spike tensors, exactly as the encoder nodes produce them (cached).

Each **modality sample** of a split (not each fused pair: the pairing is artificial and re-drawn per
epoch) is streamed through the node's encoder class (:class:`AudioEncoder`, :class:`DvsEncoder`,
:class:`ImuEncoder`) with the node's configuration (the ``encoder`` sections of
``config/snn_fusion.yaml``, else the dataclass defaults), from sensor time 0, in one ``push`` followed
by ``flush()`` (the encoders are chunk-invariant, so this equals any message chunking). Window ``k``
(stamp ``(k+1) W``) fills steps ``[k S, (k+1) S)`` of a ``(T, N_m)`` bool tensor with
``T = n_windows * S``, ``n_windows = duration_ns // W`` (20 for 1 s and 50 ms windows); a window the
encoder did not emit stays all-False and a window past the sample's duration (an event at exactly
``t = duration_ns``) is dropped.

Optional **sensor noise** (evaluation of robustness), drawn from
``default_rng([noise.seed, modality index, sample index])``:

* audio: white Gaussian noise at ``audio_snr_db`` relative to the mean power of the sample's
  waveform over its whole duration ``P_s``: ``sigma = sqrt(P_s / 10^(snr / 10))``;
* DVS: ``dvs_noise_hz`` extra events per pixel per second, uniform in space, time and polarity;
* IMU: Gaussian noise of standard deviation ``imu_noise_std`` m/s^2 on every accelerometer axis.

Cache: ``<cache_dir>/<key>.npz`` with bit-packed spikes; ``key`` hashes the build key, the split,
the encoder configuration dict, the encoder modules' source code, the noise and the layout version,
so any change re-encodes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.data.dataset import FusedDataset
from snn_fusion_ros.data.store import load_npz, save_npz
from snn_fusion_ros.encoders.audio import AudioEncoder, AudioEncoderConfig
from snn_fusion_ros.encoders.dvs import DvsEncoder, DvsEncoderConfig
from snn_fusion_ros.encoders.imu import ImuEncoder, ImuEncoderConfig
from snn_fusion_ros.params import config_from_mapping, param, validate_config
from snn_fusion_ros.spikes import MODALITIES, SpikeWindow

#: Bump when the cached layout or the encoding procedure changes.
ENCODE_VERSION = 1
_NODE_SECTIONS = {"audio": "audio_encoder", "dvs": "dvs_encoder", "imu": "imu_encoder"}


@dataclass(frozen=True)
class EncoderConfigs:
    """The three encoder configurations a model is trained with (as the encoder nodes use them)."""

    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    dvs: DvsEncoderConfig = field(default_factory=DvsEncoderConfig)
    imu: ImuEncoderConfig = field(default_factory=ImuEncoderConfig)

    def __post_init__(self) -> None:
        geo = {(c.window_ms, c.step_ms) for c in (self.audio, self.dvs, self.imu)}
        if len(geo) != 1:
            raise ValueError(f"encoders must share window_ms/step_ms; got {sorted(geo)}")

    @property
    def window_ms(self) -> float:
        return self.audio.window_ms

    @property
    def steps_per_window(self) -> int:
        return round(self.audio.window_ms / self.audio.step_ms)

    @property
    def num_neurons(self) -> dict[str, int]:
        """Input neurons per modality, ``{m: N_m}``."""
        return {m: int(getattr(self, m).num_neurons) for m in MODALITIES}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{modality: {field: value}}`` (JSON-serialisable; stored as the artifact's encoder_config)."""
        out = {}
        for m in MODALITIES:
            d = dataclasses.asdict(getattr(self, m))
            out[m] = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, dict[str, Any]]) -> EncoderConfigs:
        kinds = {"audio": AudioEncoderConfig, "dvs": DvsEncoderConfig, "imu": ImuEncoderConfig}
        return cls(**{m: config_from_mapping(kinds[m], d.get(m, {})) for m in MODALITIES})

    def hash(self) -> str:
        """16 hex digits of sha256 over :meth:`to_dict` (sorted JSON)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def default_params_file() -> Path | None:
    """``config/snn_fusion.yaml`` of the source checkout or the installed share folder, if present."""
    cands = [Path(__file__).resolve().parents[2] / "config" / "snn_fusion.yaml",
             Path(sys.prefix) / "share" / "snn_fusion_ros" / "config" / "snn_fusion.yaml"]
    return next((p for p in cands if p.is_file()), None)


def node_encoder_configs(params_file: Path | None = None) -> EncoderConfigs:
    """Encoder configurations of the nodes: the ``encoder`` sections of the ROS parameter file.

    ``params_file`` defaults to :func:`default_params_file`; keys absent there keep the dataclass
    defaults (which is what the nodes declare). Without a file the defaults are returned.
    """
    path = params_file if params_file is not None else default_params_file()
    if path is None:
        return EncoderConfigs()
    import yaml

    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    sections: dict[str, dict[str, Any]] = {}
    for m, node in _NODE_SECTIONS.items():
        for key, entry in doc.items():
            if key.rstrip("/").split("/")[-1] == node and isinstance(entry, dict):
                enc = (entry.get("ros__parameters") or {}).get("encoder") or {}
                sections[m] = dict(enc)
    return EncoderConfigs.from_dict(sections)


@dataclass(frozen=True)
class SensorNoise:
    """Noise added to the raw streams before encoding (all zero = clean)."""

    audio_snr_db: float | None = field(default=None, metadata=param(
        "white-noise SNR relative to the sample's mean power; None = no audio noise", "dB", -40.0, 120.0))
    dvs_noise_hz: float = field(default=0.0, metadata=param(
        "extra uniform noise events per pixel per second", "Hz", 0.0, 1e6))
    imu_noise_std: float = field(default=0.0, metadata=param(
        "Gaussian noise on each accelerometer axis", "m/s^2", 0.0, 1e3))
    seed: int = field(default=0, metadata=param("seed of the noise draws", "", 0, 2**31 - 1))

    def __post_init__(self) -> None:
        if self.audio_snr_db is not None:
            validate_config(self)
        elif self.dvs_noise_hz < 0 or self.imu_noise_std < 0:
            raise ValueError(f"noise must be >= 0; got dvs_noise_hz={self.dvs_noise_hz}, "
                             f"imu_noise_std={self.imu_noise_std}")

    @property
    def clean(self) -> bool:
        return self.audio_snr_db is None and self.dvs_noise_hz == 0 and self.imu_noise_std == 0


def windows_to_array(windows: list[SpikeWindow], n_windows: int, steps: int, neurons: int, window_ns: int
                     ) -> np.ndarray:
    """Place windows by stamp into a (n_windows * steps, neurons) bool array (others all-False)."""
    out = np.zeros((n_windows * steps, neurons), dtype=bool)
    for w in windows:
        k = int(w.stamp_ns // window_ns) - 1
        if 0 <= k < n_windows:
            out[k * steps: (k + 1) * steps] = w.spikes
    return out


def _rng(seed: int, modality: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, MODALITIES.index(modality), index])


def noisy_audio(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus white noise at ``snr_db`` relative to ``mean(x^2)`` (float32, clipped to [-1, 1])."""
    p = float(np.mean(np.asarray(x, np.float64) ** 2))
    sigma = np.sqrt(p / 10 ** (snr_db / 10)) if p > 0 else 0.0
    return np.clip(x + rng.normal(0.0, sigma, len(x)), -1.0, 1.0).astype(np.float32)


def noisy_events(ev: np.ndarray, rate_hz: float, sensor_size: tuple[int, int], duration_ns: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``ev`` merged (time order) with Poisson(rate * pixels * duration) uniform noise events."""
    w, h = sensor_size
    n = int(rng.poisson(rate_hz * w * h * duration_ns * 1e-9))
    noise = np.zeros(n, dtype=EVENT_DTYPE)
    noise["t"] = rng.integers(0, duration_ns, n)
    noise["x"] = rng.integers(0, w, n)
    noise["y"] = rng.integers(0, h, n)
    noise["p"] = rng.integers(0, 2, n)
    out = np.concatenate([np.asarray(ev, EVENT_DTYPE), noise])
    return out[np.argsort(out["t"], kind="stable")]


def encode_audio(x: np.ndarray, rate_hz: int, cfg: AudioEncoderConfig, n_windows: int) -> np.ndarray:
    """(T, N) bool spikes of one waveform streamed from t = 0 through a fresh :class:`AudioEncoder`."""
    enc = AudioEncoder(cfg)
    wins = enc.push(np.asarray(x, np.float32), int(rate_hz), 0) + enc.flush()
    return windows_to_array(wins, n_windows, _steps(cfg), enc.num_neurons, _window_ns(cfg))


def encode_dvs(ev: np.ndarray, sensor_size: tuple[int, int], cfg: DvsEncoderConfig, n_windows: int) -> np.ndarray:
    """(T, N) bool spikes of one event array (t from 0 ns) through a fresh :class:`DvsEncoder`."""
    enc = DvsEncoder(cfg)
    wins = (enc.push(ev, int(sensor_size[0]), int(sensor_size[1])) if len(ev) else []) + enc.flush()
    return windows_to_array(wins, n_windows, _steps(cfg), enc.num_neurons, _window_ns(cfg))


def encode_imu(stamps_ns: np.ndarray, accel: np.ndarray | None, gyro: np.ndarray | None, cfg: ImuEncoderConfig,
               n_windows: int) -> np.ndarray:
    """(T, N) bool spikes of one IMU series through a fresh :class:`ImuEncoder` (``gyro`` None = absent)."""
    enc = ImuEncoder(cfg)
    wins = enc.push(np.asarray(stamps_ns, np.int64), accel, gyro) + enc.flush()
    return windows_to_array(wins, n_windows, _steps(cfg), enc.num_neurons, _window_ns(cfg))


def _steps(cfg: Any) -> int:
    return round(cfg.window_ms / cfg.step_ms)


def _window_ns(cfg: Any) -> int:
    return round(cfg.window_ms * 1e6)


@dataclass(frozen=True)
class EncodedSplit:
    """Spike tensors of every modality sample of a split.

    ``spikes[m]`` (N_m samples, T, neurons) bool; ``labels[m]`` (N_m samples,) int64; ``speakers``
    (audio samples,) str; ``pairs`` (N fused, 3) index of the split's stored / current pairing and
    ``pair_labels`` (N,); ``dvs_image_index`` (DVS samples,) the handwritten image each DVS sample
    shows (distorted renditions share their image's index).
    """

    spikes: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    speakers: np.ndarray
    pairs: np.ndarray
    pair_labels: np.ndarray
    key: str
    dvs_image_index: np.ndarray

    def fused(self, index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``{m: (N, T, N_m)}`` spikes of fused samples ``index`` of :attr:`pairs` (default all)."""
        rows = self.pairs if index is None else self.pairs[np.asarray(index)]
        return {m: self.spikes[m][rows[:, i]] for i, m in enumerate(MODALITIES)}


def encoder_source_hash() -> str:
    """sha256 (16 hex digits) of the encoder modules' source, so an encoder code change re-encodes."""
    from snn_fusion_ros.encoders import audio, dvs, imu, windows

    h = hashlib.sha256()
    for mod in (audio, dvs, imu, windows):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def cache_key(ds: FusedDataset, cfgs: EncoderConfigs, noise: SensorNoise) -> str:
    """Hash of build key, split, encoder configuration and source, noise, duration, :data:`ENCODE_VERSION`."""
    blob = json.dumps({"build": ds.build_dir.name, "split": ds.split, "encoders": cfgs.to_dict(),
                       "noise": dataclasses.asdict(noise), "duration_ns": ds.duration_ns,
                       "source": encoder_source_hash(), "version": ENCODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_encode_cache(ds: FusedDataset) -> Path:
    """``<dataset cache>/encoded`` (next to ``builds/``)."""
    return ds.build_dir.parent.parent / "encoded"


def _encode_modality_job(job: tuple[str, int, tuple, dict, dict, int, tuple]) -> tuple[int, np.ndarray]:
    m, i, data, cfg_dict, noise_dict, n_windows, extra = job
    cfgs = EncoderConfigs.from_dict(cfg_dict)
    noise = SensorNoise(**noise_dict)
    return i, _encode_one(m, i, data, cfgs, noise, n_windows, extra)


def _encode_one(m: str, i: int, data: tuple, cfgs: EncoderConfigs, noise: SensorNoise, n_windows: int,
                extra: tuple) -> np.ndarray:
    if m == "audio":
        x, rate = data
        if noise.audio_snr_db is not None:
            x = noisy_audio(x, noise.audio_snr_db, _rng(noise.seed, m, i))
        return encode_audio(x, rate, cfgs.audio, n_windows)
    if m == "dvs":
        (ev,) = data
        sensor_size, duration_ns = extra
        if noise.dvs_noise_hz > 0:
            ev = noisy_events(ev, noise.dvs_noise_hz, sensor_size, duration_ns, _rng(noise.seed, m, i))
        return encode_dvs(ev, sensor_size, cfgs.dvs, n_windows)
    stamps, accel = data
    if noise.imu_noise_std > 0:
        accel = (accel + _rng(noise.seed, m, i).normal(0.0, noise.imu_noise_std, accel.shape)).astype(np.float32)
    return encode_imu(stamps, accel, None, cfgs.imu, n_windows)


def _jobs(ds: FusedDataset, m: str) -> list[tuple[tuple, tuple]]:
    if m == "audio":
        return [((ds.audio[i], ds.sample_rate_hz), ()) for i in range(len(ds.audio_labels))]
    if m == "dvs":
        return [((ds.dvs(i),), (ds.sensor_size, ds.duration_ns)) for i in range(len(ds.dvs_labels))]
    return [((ds.imu_stamps_ns, ds.imu_accel[i]), ()) for i in range(len(ds.imu_labels))]


def encode_split(ds: FusedDataset, cfgs: EncoderConfigs | None = None, noise: SensorNoise | None = None,
                 cache_dir: Path | None = None, progress: bool = True, workers: int = 1,
                 use_cache: bool = True) -> EncodedSplit:
    """Encode every modality sample of ``ds`` (cached; see the module docstring).

    Parameters
    ----------
    ds: a split from :func:`snn_fusion_ros.data.dataset.load_split`; its current pairing is kept.
    cfgs: encoder configurations (default :func:`node_encoder_configs`).
    noise: sensor noise added before encoding (default none).
    cache_dir: folder of the npz cache (default :func:`default_encode_cache`).
    progress: tqdm bars on stderr.
    workers: processes (1 = in this process); results do not depend on it.
    use_cache: read / write the cache.
    """
    cfgs = cfgs if cfgs is not None else node_encoder_configs()
    noise = noise if noise is not None else SensorNoise()
    window_ns = round(cfgs.window_ms * 1e6)
    n_windows = int(ds.duration_ns // window_ns)
    if n_windows < 1:
        raise ValueError(f"sample duration {ds.duration_ns} ns is shorter than one window ({window_ns} ns)")
    key = cache_key(ds, cfgs, noise)
    folder = Path(cache_dir) if cache_dir is not None else default_encode_cache(ds)
    path = folder / f"{key}.npz"
    labels = ds.modality_labels()
    if use_cache and path.is_file():
        z = load_npz(path)
        t_len = n_windows * cfgs.steps_per_window
        spikes = {m: np.unpackbits(z[f"{m}_packed"], axis=-1, count=cfgs.num_neurons[m]).astype(bool)
                  .reshape(len(labels[m]), t_len, cfgs.num_neurons[m]) for m in MODALITIES}
    else:
        spikes = {}
        for m in MODALITIES:
            spikes[m] = _encode_modality(ds, m, cfgs, noise, n_windows, progress, workers)
        if use_cache:
            folder.mkdir(parents=True, exist_ok=True)
            save_npz(path, {f"{m}_packed": np.packbits(spikes[m], axis=-1) for m in MODALITIES})
    return EncodedSplit(spikes=spikes, labels={m: np.asarray(v, np.int64) for m, v in labels.items()},
                        speakers=np.asarray(ds.audio_speakers).astype(str), pairs=np.asarray(ds.pairs.index),
                        pair_labels=np.asarray(ds.pairs.labels, np.int64), key=key,
                        dvs_image_index=np.asarray(ds.dvs_image_index, np.int64))


def _encode_modality(ds: FusedDataset, m: str, cfgs: EncoderConfigs, noise: SensorNoise, n_windows: int,
                     progress: bool, workers: int) -> np.ndarray:
    jobs = _jobs(ds, m)
    t_len = n_windows * cfgs.steps_per_window
    out = np.zeros((len(jobs), t_len, cfgs.num_neurons[m]), dtype=bool)
    bar = _bar(len(jobs), f"encode {ds.split} {m}", progress)
    if workers > 1 and len(jobs) > 1:
        cd, nd = cfgs.to_dict(), dataclasses.asdict(noise)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            tasks = ((m, i, d, cd, nd, n_windows, e) for i, (d, e) in enumerate(jobs))
            for i, arr in pool.map(_encode_modality_job, tasks, chunksize=16):
                out[i] = arr
                bar(1)
    else:
        for i, (d, e) in enumerate(jobs):
            out[i] = _encode_one(m, i, d, cfgs, noise, n_windows, e)
            bar(1)
    bar(0, close=True)
    return out


def _bar(total: int, desc: str, enabled: bool) -> Callable[..., None]:
    if not enabled:
        return lambda n, close=False: None
    from tqdm import tqdm

    b = tqdm(total=total, desc=desc, unit="sample", leave=False)

    def update(n: int, close: bool = False) -> None:
        if n:
            b.update(n)
        if close:
            b.close()
    return update
