"""IMU (accelerometer + gyroscope) -> spikes.

Six input channels, in this order: ``ax, ay, az`` (m/s^2), ``gx, gy, gz`` (rad/s). Codings:

``delta`` (default): multi-threshold delta modulation (cf. arXiv 2407.09260). Each channel ``c`` has
    ``L`` thresholds ``theta_l`` (``accel_thresholds`` / ``gyro_thresholds``), each with its own
    reference ``r[c, l]``. A sample ``v`` fires ON neuron ``(c, l)`` when ``v - r >= theta_l`` and OFF
    when ``r - v >= theta_l``; the reference then jumps to ``v``. A step of size ``A`` therefore fires
    one spike on every level with ``theta_l <= |A|``. References start at the first sample.
    Neuron index: ``pol * 6L + c * L + l`` (pol 0 = ON, 1 = OFF). Event-driven, so irregular sample
    intervals and rate changes need no special handling.
``rate``: deterministic rate coding by integrate-and-fire of the magnitude: per channel and sign,
    ``acc += |v| / full_scale * max_rate_hz * dt`` (dt = time since the previous sample, s; longer
    than ``gap_ms`` resets); when ``acc >= 1`` the neuron spikes and ``acc`` keeps its fractional
    part. Neurons ``sign * 6 + c`` (sign 0 = positive).
``population``: ``population_size`` neurons per channel with centres evenly spaced over
    ``[-full_scale, +full_scale]``; each sample fires the neuron nearest its value (clipped).
    Neuron ``c * population_size + i``.

Full scales: ``accel_full_scale`` (m/s^2) and ``gyro_full_scale`` (rad/s).

Delay taps (``delay_taps_ms``, default ``[0.0]`` = none), as in the audio encoder: tap ``i`` repeats the
``S`` neurons of the coding above delayed by ``delay_taps_ms[i]``, as neurons ``[i S, (i + 1) S)`` (a
tapped delay line, :class:`~snn_fusion_ros.encoders.windows.WindowAssembler`). A gesture is a
sequence of postures and movements; with taps the network sees, at one instant, what each channel did
a few hundred ms earlier. ``flush()`` drains the delay line (windows up to the last delayed spike).

Rules (counted in :attr:`ImuEncoder.rejections`):

* a sample whose accel or gyro row is ALL NaN, or ``None`` for the whole message, is "absent" for
  that sensor: its three channels are skipped for that sample (no rejection);
* a row with some but not all NaN, or any infinity: the sample is dropped, ``non_finite`` (per sample);
* a sample earlier than the latest accepted one: dropped, ``time_backwards`` (per sample);
  equal stamps are accepted;
* ``empty`` (no samples or both sensors absent), ``bad_shape`` (not (n,) stamps with (n, 3) rows):
  message refused;
* a gap longer than ``gap_ms`` between accepted samples resets the coding state (references,
  accumulators) at the sample after the gap, which fires nothing (``stats.resets``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from snn_fusion_ros.encoders.windows import (
    DelayTapsConfig,
    EncoderStats,
    StreamingEncoder,
    WindowAssembler,
    count_rejection,
    delay_taps_param,
    replace_runtime,
    window_geometry,
)
from snn_fusion_ros.errors import InputRejected, RejectionCounter
from snn_fusion_ros.params import check_field, param, validate_config
from snn_fusion_ros.spikes import SpikeWindow

CODINGS: tuple[str, ...] = ("delta", "rate", "population")
CHANNELS: tuple[str, ...] = ("ax", "ay", "az", "gx", "gy", "gz")


@dataclass(frozen=True)
class ImuEncoderConfig(DelayTapsConfig):
    """Parameters of :class:`ImuEncoder` (every field is a ROS parameter)."""

    coding: str = field(default="delta", metadata=param("spike coding", choices=CODINGS))
    accel_thresholds: tuple[float, ...] = field(default=(0.05, 0.2, 0.8, 3.2), metadata=param(
        "delta: accelerometer thresholds, one neuron level each", "m/s^2", 1e-6, 1e3, runtime=True))
    gyro_thresholds: tuple[float, ...] = field(default=(0.005, 0.02, 0.08, 0.32), metadata=param(
        "delta: gyroscope thresholds (as many as accel_thresholds)", "rad/s", 1e-6, 1e3, runtime=True))
    accel_full_scale: float = field(default=20.0, metadata=param(
        "rate/population: accelerometer full scale", "m/s^2", 1e-3, 1e4))
    gyro_full_scale: float = field(default=5.0, metadata=param(
        "rate/population: gyroscope full scale", "rad/s", 1e-3, 1e3))
    max_rate_hz: float = field(default=200.0, metadata=param("rate: spike rate at full scale", "Hz", 1.0, 1e5))
    population_size: int = field(default=8, metadata=param("population: neurons per channel", "", 2, 256))
    gap_ms: float = field(default=100.0, metadata=param(
        "sample interval above which coding state is reset", "ms", 0.1, 1e6))
    window_ms: float = field(default=50.0, metadata=param("window length (global grid)", "ms", 1.0, 10000.0))
    step_ms: float = field(default=5.0, metadata=param("step length; divides window_ms", "ms", 0.01, 10000.0))
    max_gap_windows: int = field(default=200, metadata=param(
        "empty windows emitted across a time jump before the grid skips ahead", "windows", 1, 1_000_000))
    delay_taps_ms: tuple[float, ...] = field(default=(0.0,), metadata=delay_taps_param("coded neurons"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "accel_thresholds", tuple(float(v) for v in self.accel_thresholds))
        object.__setattr__(self, "gyro_thresholds", tuple(float(v) for v in self.gyro_thresholds))
        validate_config(self)
        window_geometry(self.window_ms, self.step_ms)
        self._normalise_delay_taps()
        if not self.accel_thresholds or len(self.accel_thresholds) != len(self.gyro_thresholds):
            raise ValueError(f"ImuEncoderConfig needs as many accel_thresholds ({len(self.accel_thresholds)}) as "
                             f"gyro_thresholds ({len(self.gyro_thresholds)}), at least one")
        for f in dataclasses.fields(self):
            if f.name in ("accel_thresholds", "gyro_thresholds"):
                for v in getattr(self, f.name):
                    check_field(type(self).__name__, f.name, v, f.metadata)

    @property
    def levels(self) -> int:
        return len(self.accel_thresholds)

    @property
    def coded_neurons(self) -> int:
        """Neurons of the coding (before delay taps)."""
        if self.coding == "delta":
            return 2 * 6 * self.levels
        if self.coding == "rate":
            return 12
        return 6 * self.population_size

    @property
    def num_neurons(self) -> int:
        """Output neurons: the coding's, once per delay tap."""
        return self.coded_neurons * len(self.delay_taps_ms)


@nb.njit(cache=True, nogil=True)
def _imu_code(t, v, present, coding, thr, scale, max_rate, pop, gap_ns, state, ref_set, last_t,
              out_t, out_n):  # pragma: no cover - numba
    """Sequential coding of samples (n,) x 6 channels; returns the number of spikes written.

    ``state`` (6, L) holds delta references or (6, 2) rate accumulators; ``ref_set`` (6,) marks
    channels with a reference; ``last_t`` (1,) the previous accepted sample time (-1: none).
    """
    n_out = 0
    L = thr.shape[1]
    for i in range(t.size):
        ti = t[i]
        if last_t[0] >= 0 and ti - last_t[0] > gap_ns:
            ref_set[:] = False
            state[:, :] = 0.0
        dt = (ti - last_t[0]) * 1e-9 if last_t[0] >= 0 else 0.0
        last_t[0] = ti
        for c in range(6):
            if not present[i, c // 3]:
                continue
            x = v[i, c]
            if coding == 0:
                if not ref_set[c]:
                    for lv in range(L):
                        state[c, lv] = x
                    ref_set[c] = True
                    continue
                for lv in range(L):
                    d = x - state[c, lv]
                    if d >= thr[c, lv]:
                        out_t[n_out] = ti
                        out_n[n_out] = c * L + lv
                        n_out += 1
                        state[c, lv] = x
                    elif -d >= thr[c, lv]:
                        out_t[n_out] = ti
                        out_n[n_out] = 6 * L + c * L + lv
                        n_out += 1
                        state[c, lv] = x
            elif coding == 1:
                if not ref_set[c]:
                    ref_set[c] = True
                    continue
                sign = 0 if x >= 0 else 1
                state[c, sign] += abs(x) / scale[c] * max_rate * dt
                if state[c, sign] >= 1.0:
                    # several crossings at one sample land in one step anyway: one spike, keep the fraction
                    state[c, sign] -= np.floor(state[c, sign])
                    out_t[n_out] = ti
                    out_n[n_out] = sign * 6 + c
                    n_out += 1
            else:
                pos = (x / scale[c] + 1.0) * 0.5 * (pop - 1)
                k = int(np.floor(pos + 0.5))
                k = min(max(k, 0), pop - 1)
                out_t[n_out] = ti
                out_n[n_out] = c * pop + k
                n_out += 1
    return n_out


class ImuEncoder(StreamingEncoder):
    """Streaming IMU encoder; see the module docstring for codings and rules.

    Example
    -------
    >>> enc = ImuEncoder()
    >>> windows = enc.push(stamps_ns, accel_m_s2, gyro_rad_s)  # (10, 48) windows
    """

    modality = "imu"

    def __init__(self, config: ImuEncoderConfig | None = None) -> None:
        self.config = config or ImuEncoderConfig()
        cfg = self.config
        self.window_ns, self.step_ns, self.steps_per_window = window_geometry(cfg.window_ms, cfg.step_ms)
        self.rejections = RejectionCounter()
        self.stats = EncoderStats()
        self._asm = WindowAssembler("imu", self.window_ns, self.step_ns, cfg.coded_neurons, cfg.max_gap_windows,
                                    cfg.delay_steps)
        self._set_tables()
        self.reset()

    def _set_tables(self) -> None:
        cfg = self.config
        self._thr = np.array([cfg.accel_thresholds] * 3 + [cfg.gyro_thresholds] * 3, np.float64).reshape(6, cfg.levels)
        self._scale = np.array([cfg.accel_full_scale] * 3 + [cfg.gyro_full_scale] * 3, np.float64)
        self._coding = CODINGS.index(cfg.coding)

    def reconfigure(self, **changes) -> None:
        """Change runtime parameters (``param(runtime=True)``) without losing stream state.

        The number of threshold levels is fixed (it sets the neuron count).
        """
        cfg = replace_runtime(self.config, changes)
        if cfg.levels != self.config.levels:
            raise ValueError(f"threshold levels {self.config.levels} -> {cfg.levels}: the neuron count is fixed; "
                             f"create a new ImuEncoder")
        self.config = cfg
        self._set_tables()

    def reset(self) -> None:
        """Forget all stream state (references, accumulators, watermark, open window, seq)."""
        self._asm.reset()
        self._state = np.zeros((6, max(self.config.levels, 2)))
        self._ref_set = np.zeros(6, np.bool_)
        self._last_t = np.full(1, -1, np.int64)
        self._watermark: int | None = None

    def _reject(self, reason: str, detail: str) -> InputRejected:
        return count_rejection(self.rejections, InputRejected(reason, detail))

    def _rows(self, rows: np.ndarray | None, n: int, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values (n, 3) float64, present (n,), bad (n,)) for one sensor."""
        if rows is None:
            return np.zeros((n, 3)), np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        arr = np.asarray(rows, dtype=np.float64)
        if arr.shape != (n, 3):
            raise self._reject("bad_shape", f"{name} shape {arr.shape}; expected ({n}, 3)")
        nan = np.isnan(arr)
        absent = nan.all(axis=1)
        bad = (~np.isfinite(arr)).any(axis=1) & ~absent
        return arr, ~absent & ~bad, bad

    def push(self, stamps_ns: np.ndarray, accel: np.ndarray | None, gyro: np.ndarray | None) -> list[SpikeWindow]:
        """Encode the next samples.

        Parameters
        ----------
        stamps_ns: int64 (n,), sensor time of each sample, ns.
        accel: float (n, 3) m/s^2, or None (absent); all-NaN rows = absent samples.
        gyro: float (n, 3) rad/s, or None; all-NaN rows = absent samples.
        """
        stamps = np.asarray(stamps_ns)
        if stamps.ndim != 1:
            raise self._reject("bad_shape", f"stamps shape {stamps.shape}; expected (n,)")
        n = int(stamps.size)
        self.stats.received += n
        if n == 0 or (accel is None and gyro is None):
            raise self._reject("empty", "IMU message carries no samples")
        stamps = stamps.astype(np.int64)
        a, a_ok, a_bad = self._rows(accel, n, "accel")
        g, g_ok, g_bad = self._rows(gyro, n, "gyro")
        bad = a_bad | g_bad
        if bad.any():
            self.rejections.add("non_finite", f"{int(bad.sum())} samples with NaN/inf values", n=int(bad.sum()))
        start = self._watermark if self._watermark is not None else int(stamps[0])
        prev_max = np.maximum.accumulate(np.concatenate([[start], stamps[:-1]]))
        back = (stamps < prev_max) & ~bad
        if back.any():
            self.rejections.add("time_backwards", f"{int(back.sum())} samples earlier than {start} ns",
                                n=int(back.sum()))
        keep = ~bad & ~back & (a_ok | g_ok)
        if not keep.any():
            return []
        t = stamps[keep]
        values = np.concatenate([a[keep], g[keep]], axis=1)
        present = np.stack([a_ok[keep], g_ok[keep]], axis=1)
        self.stats.accepted += int(t.size)
        cfg = self.config
        cap = t.size * 6 * max(cfg.levels, 1) * 2 + 16
        out_t = np.empty(cap, np.int64)
        out_n = np.empty(cap, np.int64)
        gap_before = self._last_t[0] >= 0 and t[0] - self._last_t[0] > cfg.gap_ms * 1e6
        n_gaps = int(np.count_nonzero(np.diff(t) > cfg.gap_ms * 1e6)) + int(gap_before)
        self.stats.resets += n_gaps
        k = _imu_code(t, values, present, self._coding, self._thr, self._scale, cfg.max_rate_hz,
                      cfg.population_size, int(cfg.gap_ms * 1e6), self._state, self._ref_set, self._last_t,
                      out_t, out_n)
        self._asm.start(int(t[0]))
        self._watermark = int(t[-1])
        if k:
            self._asm.add(out_t[:k] // self.step_ns, out_n[:k])
        return self.stats.count_windows(self._asm.advance(self._watermark))

    def flush(self) -> list[SpikeWindow]:
        """Emit the last (partial) window; coding state is kept."""
        return self.stats.count_windows(self._asm.flush(self._watermark))
