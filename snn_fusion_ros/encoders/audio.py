"""Audio -> spikes: streaming resampler, IIR filterbank (gammatone or mel), per-step log energy,
and a spiking stage (adaptive-threshold delta ON/OFF, or LIF).

Per :meth:`AudioEncoder.push`:

1. mono mix (mean over input channels), float64;
2. resampling to ``sample_rate_hz`` with a streaming polyphase FIR (the ``scipy.signal.resample_poly``
   design: ``firwin(20 * max(L, M) + 1, 1 / max(L, M), kaiser 5.0) * L``, centred, L/M = rate ratio);
   output sample ``m`` is ``y[m] = sum_i x[i] h[m M + D - i L]`` with ``D`` the filter half length;
3. filterbank of ``num_channels`` IIR bands (second-order sections, state carried across calls):
   ``gammatone``: scipy's 4th-order IIR gammatone, centres ERB-spaced in [f_min_hz, f_max_hz];
   ``mel``: 2nd-order Butterworth band-passes, centres mel-spaced, each a band between its neighbours;
4. energy of each channel in each global step (``step_ms`` grid): ``e = 10 log10(mean(y^2) + 1e-12)`` dB FS;
5. spikes per step and channel:
   ``delta``: ``thr = max(delta_threshold_db, adapt_gain * a)`` with ``a`` an exponential average
   (time constant ``adapt_tau_ms``) of ``|e[j] - e[j-1]|``; ON when ``e - ref >= thr``, OFF when
   ``ref - e >= thr``, and ``ref = e`` after a spike (``ref`` starts at the segment's first step);
   neurons ``[0, C)`` ON, ``[C, 2C)`` OFF.
   ``lif``: ``v = beta v + lif_gain * d``, ``beta = exp(-step_ms / lif_tau_ms)``, drive
   ``d = clip((e - energy_floor_db) / -energy_floor_db, 0, 1)``; spike when ``v >= lif_threshold``,
   then ``v -= lif_threshold``; neurons ``[0, C)``.
6. delay taps (``delay_taps_ms``, default ``[0.0]`` = none): tap ``i`` repeats the ``S`` spiking
   neurons of stage 5 delayed by ``delay_taps_ms[i]``, as neurons ``[i S, (i + 1) S)`` (a tapped
   delay line, :class:`~snn_fusion_ros.encoders.windows.WindowAssembler`). A word is an order of
   sounds; with taps the network sees, at one instant, what each channel did a few hundred ms
   earlier. ``flush()`` drains the delay line (windows up to the last delayed spike).

Every stage keeps its state across calls and a step's energy is computed once the step is complete
from all its samples at once, so the output does not depend on how the input is chunked.

Rejection rules (counted in :attr:`AudioEncoder.rejections`):

* ``empty`` (no samples), ``bad_shape`` (not 1-D / 2-D, or zero channels), ``bad_encoding``
  (not a floating-point array), ``out_of_range`` (sample_rate_hz <= 0), ``non_finite`` (NaN/inf):
  message refused;
* ``rate_change``: a different input rate; the segment ends (its last step is completed), state is
  reset and the message is kept as the start of a new segment;
* timing: the expected stamp of a message is the previous stamp + its duration. Within +-1 step of
  it the message is treated as contiguous (jitter ignored). More than one step EARLIER: refused
  ``time_backwards``. More than one step LATER (a gap): the segment ends, state is reset and the
  message starts a new segment at its stamp (steps in the gap carry no spikes); counted in
  ``stats.resets``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

import numba as nb
import numpy as np
import scipy.signal

from snn_fusion_ros.encoders.windows import (
    DelayTapsConfig,
    EncoderStats,
    StreamingEncoder,
    WindowAssembler,
    count_rejection,
    delay_taps_param,
    window_geometry,
)
from snn_fusion_ros.errors import InputRejected, RejectionCounter
from snn_fusion_ros.params import param, validate_config
from snn_fusion_ros.spikes import SpikeWindow

FILTERBANKS: tuple[str, ...] = ("gammatone", "mel")
SPIKING: tuple[str, ...] = ("delta", "lif")
_NS = 1_000_000_000


#: Highest accepted input sample rate, Hz (a rate from the wire can be up to 2**32 - 1).
MAX_INPUT_RATE_HZ = 768_000
#: Largest accepted factor L or M of the reduced rate ratio L/M: the resampling filter has
#: ``20 * max(L, M) + 1`` taps. Standard rates reduce far below it (44.1 -> 16 kHz is 160/441,
#: 44.056 kHz is 2000/5507); a rate such as 767 999 Hz reduces to 16000/767999 (a 15.4M-tap filter).
MAX_RESAMPLE_FACTOR = 8192


def resample_factors(rate_in: int, rate_out: int) -> tuple[int, int]:
    """The reduced rate ratio ``(up, down)`` = ``rate_out / rate_in`` in lowest terms; ``ValueError`` when a
    factor exceeds :data:`MAX_RESAMPLE_FACTOR` (the resampling filter would be too long to design)."""
    g = gcd(int(rate_in), int(rate_out))
    up, down = int(rate_out) // g, int(rate_in) // g
    if max(up, down) > MAX_RESAMPLE_FACTOR:
        raise ValueError(f"rate ratio {rate_out}/{rate_in} Hz reduces to {up}/{down}, whose resampling filter would "
                         f"need {20 * max(up, down) + 1} taps; supported: ratios whose reduced factors are <= "
                         f"{MAX_RESAMPLE_FACTOR} (every standard audio rate)")
    return up, down

@dataclass(frozen=True)
class AudioEncoderConfig(DelayTapsConfig):
    """Parameters of :class:`AudioEncoder` (every field is a ROS parameter)."""

    sample_rate_hz: int = field(default=16000, metadata=param("resampling target rate", "Hz", 4000, 96000))
    num_channels: int = field(default=32, metadata=param("filterbank channels", "", 8, 128))
    filterbank: str = field(default="gammatone", metadata=param("filterbank type", choices=FILTERBANKS))
    f_min_hz: float = field(default=100.0, metadata=param("lowest centre frequency", "Hz", 20.0, 20000.0))
    f_max_hz: float = field(default=7000.0, metadata=param(
        "highest centre frequency (< sample_rate_hz / 2)", "Hz", 50.0, 48000.0))
    spiking: str = field(default="delta", metadata=param("spike generation stage", choices=SPIKING))
    delta_threshold_db: float = field(default=3.0, metadata=param(
        "delta: base threshold on the change of channel energy", "dB", 0.1, 60.0, runtime=True))
    adapt_gain: float = field(default=1.5, metadata=param(
        "delta: threshold floor as a multiple of the recent mean absolute energy change; 0 = fixed", "", 0.0, 10.0,
        runtime=True))
    adapt_tau_ms: float = field(default=200.0, metadata=param(
        "delta: time constant of the threshold adaptation", "ms", 1.0, 100000.0))
    lif_tau_ms: float = field(default=20.0, metadata=param("lif: membrane time constant", "ms", 0.1, 10000.0))
    lif_threshold: float = field(default=1.0, metadata=param("lif: firing threshold", "", 1e-3, 1e3, runtime=True))
    lif_gain: float = field(default=0.5, metadata=param("lif: input gain per step", "", 0.0, 1e3, runtime=True))
    energy_floor_db: float = field(default=-80.0, metadata=param(
        "lif: energy mapped to zero drive", "dB FS", -200.0, -1.0))
    window_ms: float = field(default=50.0, metadata=param("window length (global grid)", "ms", 1.0, 10000.0))
    step_ms: float = field(default=5.0, metadata=param("step length; divides window_ms", "ms", 0.1, 10000.0))
    max_gap_windows: int = field(default=200, metadata=param(
        "empty windows emitted across a time jump before the grid skips ahead", "windows", 1, 1_000_000))
    delay_taps_ms: tuple[float, ...] = field(default=(0.0,), metadata=delay_taps_param("spiking neurons"))

    def __post_init__(self) -> None:
        validate_config(self)
        window_geometry(self.window_ms, self.step_ms)
        if not self.f_min_hz < self.f_max_hz < self.sample_rate_hz / 2:
            raise ValueError(f"AudioEncoderConfig needs f_min_hz ({self.f_min_hz}) < f_max_hz ({self.f_max_hz}) "
                             f"< sample_rate_hz / 2 ({self.sample_rate_hz / 2})")
        self._normalise_delay_taps()

    @property
    def spiking_neurons(self) -> int:
        """Neurons of the spiking stage (ON/OFF per channel for delta, one per channel for lif)."""
        return 2 * self.num_channels if self.spiking == "delta" else self.num_channels

    @property
    def num_neurons(self) -> int:
        """Output neurons: the spiking stage's, once per delay tap."""
        return self.spiking_neurons * len(self.delay_taps_ms)

    @property
    def channel_layout(self) -> tuple[int, int, int]:
        """``(taps, groups, channels)``: output neuron ``(tap * groups + group) * channels + channel``, with
        ``groups`` 2 for delta (ON, OFF) and 1 for lif, channels in filterbank order (low to high)."""
        groups = 2 if self.spiking == "delta" else 1
        return len(self.delay_taps_ms), groups, self.num_channels


def _erb_space(f_min: float, f_max: float, n: int) -> np.ndarray:
    """n centre frequencies equally spaced on the ERB-rate scale (Glasberg & Moore), Hz."""
    def erb_rate(f):
        return 21.4 * np.log10(1 + 0.00437 * f)

    e = np.linspace(erb_rate(f_min), erb_rate(f_max), n)
    return (10 ** (e / 21.4) - 1) / 0.00437


def _mel_space(f_min: float, f_max: float, n: int) -> np.ndarray:
    m = np.linspace(2595 * np.log10(1 + f_min / 700), 2595 * np.log10(1 + f_max / 700), n + 2)
    return 700 * (10 ** (m / 2595) - 1)


def center_frequencies_hz(cfg: AudioEncoderConfig) -> np.ndarray:
    """Centre frequency of each channel, Hz, shape (num_channels,), ascending."""
    if cfg.filterbank == "gammatone":
        return _erb_space(cfg.f_min_hz, cfg.f_max_hz, cfg.num_channels)
    return _mel_space(cfg.f_min_hz, cfg.f_max_hz, cfg.num_channels)[1:-1]


def filterbank_sos(cfg: AudioEncoderConfig) -> np.ndarray:
    """Second-order sections of every channel, shape (num_channels, sections, 6), at ``sample_rate_hz``."""
    fs = cfg.sample_rate_hz
    banks: list[np.ndarray] = []
    if cfg.filterbank == "gammatone":
        for fc in center_frequencies_hz(cfg):
            b, a = scipy.signal.gammatone(fc, "iir", fs=fs)
            banks.append(scipy.signal.tf2sos(b, a))
    else:
        edges = _mel_space(cfg.f_min_hz, cfg.f_max_hz, cfg.num_channels)
        for lo, hi in zip(edges[:-2], edges[2:], strict=True):
            banks.append(scipy.signal.butter(2, [lo, min(hi, 0.99 * fs / 2)], btype="band", output="sos", fs=fs))
    n_sec = max(s.shape[0] for s in banks)
    out = np.zeros((len(banks), n_sec, 6))
    out[:, :, 0] = 1.0  # identity sections pad shorter cascades
    out[:, :, 3] = 1.0
    for c, s in enumerate(banks):
        out[c, : s.shape[0]] = s
    return out


@nb.njit(cache=True, nogil=True)
def sos_bank_numba(x, sos, zi):  # pragma: no cover - numba
    """Run every channel's SOS cascade over ``x`` (n,) -> (n, C); ``zi`` (C, S, 2) updated in place.

    Transposed direct form II per section: ``y = b0 u + z0; z0 = b1 u - a1 y + z1; z1 = b2 u - a2 y``.
    The inner loop runs across channels (independent recursions), which the compiler vectorises.
    """
    n = x.size
    n_ch, n_sec = sos.shape[0], sos.shape[1]
    coef = np.empty((n_sec, 5, n_ch))
    z = np.empty((n_sec, 2, n_ch))
    for c in range(n_ch):
        for s in range(n_sec):
            coef[s, 0, c] = sos[c, s, 0]
            coef[s, 1, c] = sos[c, s, 1]
            coef[s, 2, c] = sos[c, s, 2]
            coef[s, 3, c] = sos[c, s, 4]
            coef[s, 4, c] = sos[c, s, 5]
            z[s, 0, c] = zi[c, s, 0]
            z[s, 1, c] = zi[c, s, 1]
    out = np.empty((n, n_ch))
    u = np.empty(n_ch)
    for i in range(n):
        for c in range(n_ch):
            u[c] = x[i]
        for s in range(n_sec):
            b0, b1, b2, a1, a2 = coef[s, 0], coef[s, 1], coef[s, 2], coef[s, 3], coef[s, 4]
            z0, z1 = z[s, 0], z[s, 1]
            for c in range(n_ch):
                y = b0[c] * u[c] + z0[c]
                z0[c] = b1[c] * u[c] - a1[c] * y + z1[c]
                z1[c] = b2[c] * u[c] - a2[c] * y
                u[c] = y
        for c in range(n_ch):
            out[i, c] = u[c]
    for c in range(n_ch):
        for s in range(n_sec):
            zi[c, s, 0] = z[s, 0, c]
            zi[c, s, 1] = z[s, 1, c]
    return out


@nb.njit(cache=True, nogil=True)
def step_spikes_numba(filt, starts, ends, n_steps, delta, state, thr_db, adapt_gain, alpha, beta, lif_gain,
                      lif_thr, floor_db, out_k, out_n):  # pragma: no cover - numba
    """Energies and spikes of steps ``k < n_steps`` (samples ``filt[starts[k]:ends[k]]``, (n, C)).

    ``state`` (5, C): reference, previous energy, adaptation, membrane, [4, 0] = reference set.
    Writes ``(k, neuron)`` pairs to ``out_k`` / ``out_n``; returns their number. See the module
    docstring for the equations; sums run sequentially so results never depend on chunking.
    """
    C = filt.shape[1]
    n = 0
    energy = np.empty(C)
    for k in range(n_steps):
        a, b = starts[k], ends[k]
        for c in range(C):
            acc = 0.0
            for i in range(a, b):
                acc += filt[i, c] * filt[i, c]
            energy[c] = 10.0 * np.log10(acc / (b - a) + 1e-12)
        if delta:
            if state[4, 0] == 0.0:
                for c in range(C):
                    state[0, c] = energy[c]
                    state[1, c] = energy[c]
                state[4, 0] = 1.0
                continue
            for c in range(C):
                thr = max(thr_db, adapt_gain * state[2, c])
                state[2, c] += alpha * (abs(energy[c] - state[1, c]) - state[2, c])
                state[1, c] = energy[c]
                d = energy[c] - state[0, c]
                if d >= thr:
                    out_k[n] = k
                    out_n[n] = c
                    n += 1
                    state[0, c] = energy[c]
                elif -d >= thr:
                    out_k[n] = k
                    out_n[n] = C + c
                    n += 1
                    state[0, c] = energy[c]
        else:
            for c in range(C):
                drive = min(max((energy[c] - floor_db) / -floor_db, 0.0), 1.0)
                state[3, c] = beta * state[3, c] + lif_gain * drive
                if state[3, c] >= lif_thr:
                    state[3, c] -= lif_thr
                    out_k[n] = k
                    out_n[n] = c
                    n += 1
    return n


@nb.njit(cache=True, nogil=True)
def polyphase_numba(hist, hist_start, n_valid, phases, m0, m1, up, down, delay):  # pragma: no cover
    """Outputs ``m0 .. m1-1`` of the rational resampler; inputs outside ``[hist_start, n_valid)`` are 0.

    ``phases`` (up, K): ``phases[ph, k] = h[ph + k * up]``; ``y[m] = sum_k phases[ph, k] x[i_hi - k]``
    with ``ph = (m * down + delay) % up`` and ``i_hi = (m * down + delay) // up``.
    """
    K = phases.shape[1]
    out = np.empty(m1 - m0)
    for m in range(m0, m1):
        pos = m * down + delay
        ph = pos % up
        i_hi = pos // up
        acc = 0.0
        for k in range(K):
            i = i_hi - k
            if i >= hist_start and i < n_valid:
                acc += phases[ph, k] * hist[i - hist_start]
        out[m - m0] = acc
    return out


class StreamingResampler:
    """Rational-rate FIR resampler with carried state (the resample_poly filter, centred).

    Output sample ``m`` sits at time ``m / rate_out`` from the segment start, like input ``i`` at
    ``i / rate_in``. :meth:`process` returns every output whose inputs have all arrived;
    :meth:`finish` returns the rest, up to ``ceil(n_in * rate_out / rate_in)`` outputs, treating
    inputs after the end as zeros.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.up, self.down = resample_factors(rate_in, rate_out)
        self.identity = self.up == self.down == 1
        if not self.identity:
            half = 10 * max(self.up, self.down)
            h = scipy.signal.firwin(2 * half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
            k = -(-h.size // self.up)
            hp = np.zeros(k * self.up)
            hp[: h.size] = h
            self.phases = np.ascontiguousarray(hp.reshape(k, self.up).T)  # (up, K)
            self.delay = half
        self.n_in = 0
        self.n_out = 0
        self.hist = np.zeros(0)
        self.hist_start = 0

    def _needed_from(self, m: int) -> int:
        return (m * self.down + self.delay) // self.up - self.phases.shape[1] + 1

    def process(self, x: np.ndarray) -> np.ndarray:
        if self.identity:
            self.n_in += x.size
            self.n_out += x.size
            return x
        self.hist = np.concatenate([self.hist, x])
        self.n_in += x.size
        # last m with i_hi(m) <= n_in - 1
        m_end = ((self.n_in - 1) * self.up - self.delay) // self.down + 1 if self.n_in else 0
        return self._run(max(m_end, self.n_out), self.n_in)

    def finish(self) -> np.ndarray:
        if self.identity:
            return np.zeros(0)
        total = -(-self.n_in * self.up // self.down)
        return self._run(total, self.n_in)

    def _run(self, m_end: int, n_valid: int) -> np.ndarray:
        m0 = self.n_out
        if m_end <= m0:
            return np.zeros(0)
        y = polyphase_numba(self.hist, self.hist_start, n_valid, self.phases, m0, m_end, self.up, self.down,
                            self.delay)
        self.n_out = m_end
        drop = max(self._needed_from(m_end) - self.hist_start, 0)
        drop = min(drop, self.hist.size)
        if drop:
            self.hist = self.hist[drop:]
            self.hist_start += drop
        return y


class AudioEncoder(StreamingEncoder):
    """Streaming audio encoder; see the module docstring for the stages and rules.

    Example
    -------
    >>> enc = AudioEncoder(AudioEncoderConfig(num_channels=16))
    >>> windows = enc.push(chunk_float32, sample_rate_hz=44100, stamp_ns=t0)  # (10, 32) windows
    """

    modality = "audio"

    def __init__(self, config: AudioEncoderConfig | None = None) -> None:
        self.config = config or AudioEncoderConfig()
        cfg = self.config
        self.window_ns, self.step_ns, self.steps_per_window = window_geometry(cfg.window_ms, cfg.step_ms)
        self.center_hz = center_frequencies_hz(cfg)
        self.sos = filterbank_sos(cfg)
        self.rejections = RejectionCounter()
        self.stats = EncoderStats()
        self._asm = WindowAssembler("audio", self.window_ns, self.step_ns, cfg.spiking_neurons, cfg.max_gap_windows,
                                    cfg.delay_steps)
        self.reset()

    def reset(self) -> None:
        """Forget all stream state (segment, filters, spiking state, open window, seq)."""
        self._asm.reset()
        self._rate: int | None = None
        self._last_end_ns: int | None = None  # end of the last accepted sample, across segments
        self._end_segment_state()

    def _end_segment_state(self) -> None:
        self._seg_t0: int | None = None  # stamp of the segment's first input sample, ns
        self._n_in = 0
        self._resampler: StreamingResampler | None = None
        self._zi = np.zeros((self.sos.shape[0], self.sos.shape[1], 2))
        self._pending = np.zeros((0, self.sos.shape[0]))  # filtered samples of the incomplete step
        self._pending_step: int | None = None
        # rows: reference, previous energy, adaptation, membrane; [4, 0] = reference set (delta)
        self._spike_state = np.zeros((5, self.sos.shape[0]))

    # -- rejection helpers -------------------------------------------------------------------
    def _reject(self, reason: str, detail: str) -> InputRejected:
        return count_rejection(self.rejections, InputRejected(reason, detail))

    def _expected_stamp(self) -> int | None:
        if self._seg_t0 is None or self._rate is None:
            return None
        return self._seg_t0 + (self._n_in * _NS) // self._rate

    def push(self, samples: np.ndarray, sample_rate_hz: int, stamp_ns: int) -> list[SpikeWindow]:
        """Encode the next chunk of audio.

        Parameters
        ----------
        samples: float array, shape (n,) or (n, channels), full scale 1.0.
        sample_rate_hz: input rate, Hz.
        stamp_ns: sensor time of the first sample, ns.

        Returns the windows completed by this input. Raises :class:`InputRejected` (already counted).
        """
        samples = np.asarray(samples)
        if samples.ndim not in (1, 2) or (samples.ndim == 2 and samples.shape[1] == 0):
            raise self._reject("bad_shape", f"samples shape {samples.shape}; expected (n,) or (n, channels)")
        self.stats.received += int(samples.shape[0])
        if samples.shape[0] == 0:
            raise self._reject("empty", "audio message carries no samples")
        if not np.issubdtype(samples.dtype, np.floating):
            raise self._reject("bad_encoding", f"samples dtype {samples.dtype}; expected float (full scale 1.0)")
        if not 0 < sample_rate_hz <= MAX_INPUT_RATE_HZ:  # the resampler's filter grows with the rate ratio
            raise self._reject("out_of_range", f"sample_rate_hz={sample_rate_hz}; expected 1 .. {MAX_INPUT_RATE_HZ}")
        try:  # checked before any state changes, like every refusal
            resample_factors(sample_rate_hz, self.config.sample_rate_hz)
        except ValueError as exc:
            raise self._reject("out_of_range", f"sample_rate_hz={sample_rate_hz}: {exc}") from None
        if not np.all(np.isfinite(samples)):
            raise self._reject("non_finite", f"{int(np.count_nonzero(~np.isfinite(samples)))} NaN/inf samples")
        x = samples.astype(np.float64)
        if x.ndim == 2:
            x = x.mean(axis=1)
        out: list[SpikeWindow] = []
        stamp_ns = int(stamp_ns)
        # Time is checked first: a refused chunk changes no state (and is counted once).
        expected = self._expected_stamp() if self._seg_t0 is not None else self._last_end_ns
        if expected is not None and stamp_ns < expected - self.step_ns:
            raise self._reject("time_backwards", f"stamp {stamp_ns} ns is {expected - stamp_ns} ns before the "
                                                 f"expected {expected} ns (tolerance one step, {self.step_ns} ns)")
        if self._rate is not None and sample_rate_hz != self._rate:
            self.rejections.add("rate_change", f"input rate {self._rate} -> {sample_rate_hz} Hz")
            self.stats.resets += 1
            out += self._end_segment()
        if expected is not None:
            if stamp_ns > expected + self.step_ns and self._seg_t0 is not None:
                self.stats.resets += 1
                out += self._end_segment()
        self._rate = int(sample_rate_hz)
        if self._seg_t0 is None or self._resampler is None:
            self._seg_t0 = stamp_ns
            self._resampler = StreamingResampler(self._rate, self.config.sample_rate_hz)
            self._asm.start(stamp_ns)
        self._n_in += x.size
        self.stats.accepted += x.size
        self._last_end_ns = self._expected_stamp()
        y = self._resampler.process(x)
        out += self._consume(self._resampler, self._seg_t0, y, final=False)
        return self.stats.count_windows(out)

    def _consume(self, resampler: StreamingResampler, seg_t0: int, y: np.ndarray,
                 final: bool) -> list[SpikeWindow]:
        """Filter resampled samples ``y`` (the resampler's latest output), complete steps, spike,
        and advance the window grid (not when ``final``: the caller flushes)."""
        fs = self.config.sample_rate_hz
        m_first = resampler.n_out - y.size
        filt = sos_bank_numba(y, self.sos, self._zi) if y.size else np.zeros((0, self.sos.shape[0]))
        m = np.arange(m_first, m_first + y.size, dtype=np.int64)
        steps = (seg_t0 + (m * _NS) // fs) // self.step_ns
        if self._pending_step is not None:
            steps = np.concatenate([np.full(self._pending.shape[0], self._pending_step, np.int64), steps])
            filt = np.concatenate([self._pending, filt])
        if steps.size == 0:
            return []
        cut = np.flatnonzero(steps[1:] != steps[:-1]) + 1
        starts = np.concatenate([[0], cut])
        ends = np.concatenate([cut, [steps.size]])
        n_complete = starts.size if final else starts.size - 1
        if not final and (seg_t0 + (resampler.n_out * _NS) // fs) // self.step_ns != steps[-1]:
            n_complete = starts.size  # the next sample starts a new step: the last one is complete now
        cfg = self.config
        C = self.sos.shape[0]
        out_k = np.empty(n_complete * 2 * C, np.int64)
        out_n = np.empty(n_complete * 2 * C, np.int64)
        n_sp = step_spikes_numba(filt, starts, ends, n_complete, cfg.spiking == "delta", self._spike_state,
                                 cfg.delta_threshold_db, cfg.adapt_gain,
                                 min(self.step_ns / (cfg.adapt_tau_ms * 1e6), 1.0),
                                 float(np.exp(-cfg.step_ms / cfg.lif_tau_ms)), cfg.lif_gain, cfg.lif_threshold,
                                 cfg.energy_floor_db, out_k, out_n)
        if n_sp:
            self._asm.add(steps[starts[out_k[:n_sp]]], out_n[:n_sp])
        if n_complete < starts.size:
            a = starts[-1]
            self._pending, self._pending_step = filt[a:], int(steps[a])
        else:
            self._pending, self._pending_step = filt[:0], None
        if final:
            return []
        # every step before the pending one is complete
        watermark = (self._pending_step if self._pending_step is not None else int(steps[-1]) + 1) * self.step_ns
        return self._asm.advance(watermark)

    def _end_segment(self) -> list[SpikeWindow]:
        """Complete the segment (resampler tail, last partial step) and reset its state."""
        out: list[SpikeWindow] = []
        if self._resampler is not None and self._seg_t0 is not None:
            tail = self._resampler.finish()
            self._consume(self._resampler, self._seg_t0, tail, final=True)
        self._end_segment_state()
        return out

    def flush(self) -> list[SpikeWindow]:
        """End the stream: complete the last step and emit the last (partial) window."""
        end_ns = self._expected_stamp()
        self._end_segment()
        out = self._asm.flush(None if end_ns is None else end_ns - 1)
        self._rate = None
        return self.stats.count_windows(out)

    def filterbank_energy_db(self, samples: np.ndarray, sample_rate_hz: int) -> np.ndarray:
        """Mean energy of each channel over ``samples`` (a fresh filter state), dB FS, shape (C,)."""
        rs = StreamingResampler(sample_rate_hz, self.config.sample_rate_hz)
        y = np.concatenate([rs.process(np.asarray(samples, np.float64)), rs.finish()])
        filt = sos_bank_numba(y, self.sos, np.zeros((self.sos.shape[0], self.sos.shape[1], 2)))
        return 10.0 * np.log10(np.mean(filt * filt, axis=0) + 1e-12)
