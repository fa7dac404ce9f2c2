"""DVS event-camera emulator: intensity frames in, :data:`EVENT_DTYPE` events out (v2e-style).

The emulator models each pixel of a dynamic vision sensor as in v2e (Hu, Liu, Delbruck 2021):

* The photoreceptor output is the log intensity ``L = ln(I + eps)``, ``I`` in [0, 1].
* Each pixel memorises a reference level ``L_ref``. Whenever ``L - L_ref`` reaches the pixel's ON
  threshold ``theta_on[x, y]`` it emits an ON event and ``L_ref += theta_on``; when it falls by
  ``theta_off`` it emits an OFF event and ``L_ref -= theta_off``. A step of ``delta`` emits
  ``floor(|delta| / theta)`` events, time-stamped by linear interpolation of ``L`` between the two
  frames (the k-th crossing happens when ``L_prev + (L_new - L_prev) * s = L_ref0 + k * theta``).
* Thresholds vary per pixel: ``theta ~ N(threshold, threshold_sigma)``, clipped at 0.01
  (fixed-pattern mismatch).
* Refractory period: an event closer than ``refractory_us`` to the previous output event of the
  same pixel is suppressed (the reference level still moves, as the comparator did reset).
* Leak noise: the reference drifts down by ``theta_on * leak_rate_hz`` per second, so a static
  pixel emits ON events at about ``leak_rate_hz``; initial phases are random when leak is on.
* Shot noise: Poisson events at ``shot_noise_rate_hz`` per pixel, polarity 50/50.

:func:`saccade_frames` renders a (digit) image on a ``width x height`` canvas moving along the
N-MNIST triangle path (three straight saccades, repeated), and :func:`emulate_dvs_numpy` turns
any frame sequence into events. All randomness comes from the passed ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.params import param, validate_config

_EPS = 1e-3  # log(I + eps): keeps black pixels finite (v2e uses a similar floor)


@dataclass(frozen=True)
class DvsEmulatorConfig:
    """Sensor and motion parameters of the emulated event camera (N-MNIST-like defaults)."""

    width_px: int = field(default=34, metadata=param("sensor width", "px", 8, 1280))
    height_px: int = field(default=34, metadata=param("sensor height", "px", 8, 720))
    digit_px: int = field(default=28, metadata=param("side of the upscaled digit image", "px", 4, 720))
    frame_step_us: int = field(default=1000, metadata=param("frame interpolation step", "us", 10, 100000))
    duration_ms: float = field(default=1000.0, metadata=param("recording length", "ms", 1.0, 60000.0))
    saccade_ms: float = field(default=100.0, metadata=param("duration of one saccade", "ms", 1.0, 10000.0))
    saccade_px: float = field(default=2.0, metadata=param("saccade amplitude (triangle side)", "px",
                                                          0.0, 20.0))
    threshold: float = field(default=0.2, metadata=param("mean ON/OFF contrast threshold", "ln units",
                                                         0.01, 2.0))
    threshold_sigma: float = field(default=0.03, metadata=param("per-pixel threshold mismatch (std)",
                                                                "ln units", 0.0, 1.0))
    refractory_us: float = field(default=100.0, metadata=param("per-pixel refractory period", "us",
                                                               0.0, 1e6))
    leak_rate_hz: float = field(default=0.1, metadata=param("leak (ON) noise rate per pixel", "Hz",
                                                            0.0, 1000.0))
    shot_noise_rate_hz: float = field(default=0.1, metadata=param("shot noise rate per pixel", "Hz",
                                                                  0.0, 1000.0))
    background: float = field(default=0.05, metadata=param("screen intensity where the digit is blank",
                                                            "", 0.0, 1.0))

    def __post_init__(self) -> None:
        validate_config(self)
        if self.digit_px > min(self.width_px, self.height_px):
            raise ValueError(f"DvsEmulatorConfig.digit_px={self.digit_px} does not fit the "
                             f"{self.width_px}x{self.height_px} sensor; expected <= "
                             f"{min(self.width_px, self.height_px)}")

    @property
    def frame_step_ns(self) -> int:
        return int(self.frame_step_us) * 1000

    @property
    def num_frames(self) -> int:
        """Frames including the one at t = 0: ``duration / step + 1``."""
        return int(np.rint(self.duration_ms * 1e6 / self.frame_step_ns)) + 1


#: Fields of :class:`DvsEmulatorConfig` a data set build may not override: the recording spans the fused sample.
_NOT_OVERRIDABLE = ("duration_ms",)


def parse_overrides(items: Iterable[str]) -> dict[str, int | float]:
    """``["saccade_px=4", "threshold=0.1"]`` -> ``{"saccade_px": 4.0, "threshold": 0.1}`` (CLI ``FIELD=VALUE``).

    Each value takes the type of the field's default, so ``4`` and ``4.0`` name the same build; the result
    is checked against the field ranges. Raises ValueError naming the item for a missing ``=``, an unknown
    or repeated field, ``duration_ms`` (set by the build's span), a value that is not a number of the
    field's type, or one out of range.
    """
    defaults = DvsEmulatorConfig()
    known = sorted(f.name for f in fields(DvsEmulatorConfig) if f.name not in _NOT_OVERRIDABLE)
    out: dict[str, int | float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"DVS emulator override {item!r} is not FIELD=VALUE; fields: {known}")
        if name in _NOT_OVERRIDABLE:
            raise ValueError(f"DVS emulator field {name!r} follows the fused sample's span (--duration-ms)")
        if name not in known:
            raise ValueError(f"unknown DVS emulator field {name!r}; fields: {known}")
        if name in out:
            raise ValueError(f"DVS emulator field {name!r} is given twice")
        kind = type(getattr(defaults, name))
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"DVS emulator field {name}={text!r} is not a number") from None
        if kind is int:
            if not value.is_integer():
                raise ValueError(f"DVS emulator field {name}={text!r} must be a whole number")
            value = int(value)
        out[name] = value
    DvsEmulatorConfig(**out)  # ranges, NaN and the digit-fits-the-sensor check
    return out


def triangle_path(t_ns: np.ndarray, saccade_ms: float, amplitude_px: float) -> np.ndarray:
    """Offset (dx, dy) in px of the N-MNIST saccade path at times ``t_ns``, shape (T, 2).

    Three straight saccades along the sides of a triangle with side ``amplitude_px`` (corners
    (0, 0) -> (A, 0) -> (A/2, A*sqrt(3)/2) -> (0, 0)), each lasting ``saccade_ms``; the cycle repeats.
    """
    corners = amplitude_px * np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2], [0.0, 0.0]])
    phase = (np.asarray(t_ns, dtype=np.float64) / (saccade_ms * 1e6)) % 3.0
    seg = np.minimum(phase.astype(np.int64), 2)
    frac = (phase - seg)[:, None]
    return corners[seg] * (1.0 - frac) + corners[seg + 1] * frac


def saccade_frames(image: np.ndarray, cfg: DvsEmulatorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Render ``image`` moving along the saccade path: (frames (T, H, W) float32 in [0, 1], t_ns (T,)).

    ``image`` is any 2-D array of non-negative intensities (scaled so its maximum is 1); it is
    upscaled with OpenCV (bilinear) to ``digit_px`` square, centred on the canvas and translated with
    sub-pixel bilinear interpolation. The canvas shows ``background + (1 - background) * image``.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {img.shape}")
    peak = float(img.max())
    img = img / peak if peak > 0 else img
    digit = cv2.resize(img, (cfg.digit_px, cfg.digit_px), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((cfg.height_px, cfg.width_px), dtype=np.float32)
    # Start so that the whole triangle stays on the canvas: centre minus half the amplitude.
    x0 = (cfg.width_px - cfg.digit_px) // 2 - int(cfg.saccade_px // 2)
    y0 = (cfg.height_px - cfg.digit_px) // 2 - int(cfg.saccade_px // 2)
    x0, y0 = max(x0, 0), max(y0, 0)
    h = min(cfg.digit_px, cfg.height_px - y0)
    w = min(cfg.digit_px, cfg.width_px - x0)
    canvas[y0:y0 + h, x0:x0 + w] = digit[:h, :w]
    t_ns = np.arange(cfg.num_frames, dtype=np.int64) * cfg.frame_step_ns
    offsets = triangle_path(t_ns, cfg.saccade_ms, cfg.saccade_px)
    frames = np.empty((len(t_ns), cfg.height_px, cfg.width_px), dtype=np.float32)
    for i, (dx, dy) in enumerate(offsets):
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float64)
        frames[i] = cv2.warpAffine(canvas, m, (cfg.width_px, cfg.height_px), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    frames = cfg.background + (1.0 - cfg.background) * np.clip(frames, 0.0, 1.0)
    return frames, t_ns


def emulate_dvs_numpy(frames: np.ndarray, t_ns: np.ndarray, cfg: DvsEmulatorConfig,
                      rng: np.random.Generator) -> np.ndarray:
    """Events of a DVS watching ``frames`` (T, H, W) intensities in [0, 1] taken at ``t_ns`` (T,).

    Returns a time-sorted :data:`EVENT_DTYPE` array with ``t`` in [t_ns[0], t_ns[-1]]. Vectorised
    over pixels; the loop runs over frames and, within a frame, over the k-th threshold crossing.
    """
    frames = np.asarray(frames, dtype=np.float64)
    t_ns = np.asarray(t_ns, dtype=np.int64)
    if frames.ndim != 3 or len(frames) != len(t_ns) or len(t_ns) < 1:
        raise ValueError(f"frames must be (T, H, W) with T = len(t_ns) >= 1; got {frames.shape} and "
                         f"{t_ns.shape}")
    if np.any(np.diff(t_ns) <= 0):
        raise ValueError("t_ns must be strictly increasing")
    if not np.all(np.isfinite(frames)) or frames.min() < 0:
        raise ValueError("frames must be finite and non-negative")
    _, height, width = frames.shape
    shape = (height, width)
    th_on = np.clip(rng.normal(cfg.threshold, cfg.threshold_sigma, shape), 0.01, None)
    th_off = np.clip(rng.normal(cfg.threshold, cfg.threshold_sigma, shape), 0.01, None)
    leak_per_ns = th_on * cfg.leak_rate_hz * 1e-9
    log_prev = np.log(frames[0] + _EPS)
    ref = log_prev.copy()
    if cfg.leak_rate_hz > 0:  # random phase so leak events are not synchronised across pixels
        ref -= rng.uniform(0.0, 1.0, shape) * th_on
    refr_ns = cfg.refractory_us * 1e3
    last_ns = np.full(shape, -np.inf)
    out_t: list[np.ndarray] = []
    out_y: list[np.ndarray] = []
    out_x: list[np.ndarray] = []
    out_p: list[np.ndarray] = []
    for i in range(1, len(t_ns)):
        t0, dt = float(t_ns[i - 1]), float(t_ns[i] - t_ns[i - 1])
        log_new = np.log(frames[i] + _EPS)
        ref -= leak_per_ns * dt
        slope = log_new - log_prev
        for pol, th in ((1, th_on), (0, th_off)):
            diff = (log_new - ref) if pol else (ref - log_new)
            n = np.floor(diff / th).astype(np.int64)
            n[n < 0] = 0
            kmax = int(n.max())
            for k in range(1, kmax + 1):
                yy, xx = np.nonzero(n >= k)
                level = ref[yy, xx] + (k * th[yy, xx] if pol else -k * th[yy, xx])
                s = slope[yy, xx]
                with np.errstate(divide="ignore", invalid="ignore"):
                    frac = np.where(s != 0, (level - log_prev[yy, xx]) / s, 1.0)
                te = t0 + np.clip(frac, 0.0, 1.0) * dt
                ok = te - last_ns[yy, xx] >= refr_ns
                yy, xx, te = yy[ok], xx[ok], te[ok]
                last_ns[yy, xx] = te
                out_t.append(np.round(te).astype(np.int64))
                out_y.append(yy)
                out_x.append(xx)
                out_p.append(np.full(len(yy), pol, dtype=np.uint8))
            ref += n * th if pol else -n * th
        log_prev = log_new
    if cfg.shot_noise_rate_hz > 0:
        span = float(t_ns[-1] - t_ns[0])
        n_shot = rng.poisson(cfg.shot_noise_rate_hz * span * 1e-9 * height * width)
        out_t.append(rng.integers(t_ns[0], t_ns[-1], n_shot, endpoint=True))
        out_y.append(rng.integers(0, height, n_shot))
        out_x.append(rng.integers(0, width, n_shot))
        out_p.append(rng.integers(0, 2, n_shot).astype(np.uint8))
    n_total = sum(len(a) for a in out_t)
    ev = np.zeros(n_total, dtype=EVENT_DTYPE)
    if n_total:
        ev["t"] = np.concatenate(out_t)
        ev["x"] = np.concatenate(out_x)
        ev["y"] = np.concatenate(out_y)
        ev["p"] = np.concatenate(out_p)
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev


def emulate_image(image: np.ndarray, cfg: DvsEmulatorConfig, rng: np.random.Generator) -> np.ndarray:
    """Events of the sensor watching ``image`` move in saccades for ``cfg.duration_ms`` (t from 0 ns)."""
    frames, t_ns = saccade_frames(image, cfg)
    return emulate_dvs_numpy(frames, t_ns, cfg, rng)
