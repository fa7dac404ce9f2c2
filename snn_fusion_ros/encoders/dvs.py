"""DVS events -> spikes on a downsampled grid (polarity x grid_height x grid_width neurons).

Pipeline per :meth:`DvsEncoder.push` / :meth:`DvsEncoder.push_xytp`. The per-event filter state
makes the core sequential, so it is ONE numba pass over the events (decoding packed ``xytp``
records on the fly); everything around it (window grid, spike de-duplication) is vectorised numpy:

1. rejection rules (below), counted in :attr:`DvsEncoder.rejections`;
2. background-activity filter (``ba_filter``): an event passes when one of its 8 neighbouring pixels
   had an event within ``ba_window_us`` before it (``t - t_last[neighbour] <= ba_window_us``);
   every in-range event, passing or not, updates its own pixel's ``t_last``. (tonic's ``Denoise``
   looks at 4 neighbours; 8 keeps diagonal edges.)
3. refractory period: an event that passed the filter is dropped when its pixel's last KEPT event
   is less than ``refractory_us`` earlier. Filter times have 1 us resolution.
4. region of interest (``roi_*``): events outside it are ignored by configuration (not counted);
   they still feed the filter state, so the filter behaves the same at the ROI border;
5. binning: ``cx = (x - roi_x) * grid_width // roi_width`` (same for y), global step
   ``j = t // step_ns``; neuron ``n = p * grid_height * grid_width + cy * grid_width + cx``
   (polarity-major, then row-major; with ``polarity_channels = 1`` both polarities share
   ``n = cy * grid_width + cx``). A neuron spikes in step ``j`` when at least one kept event fell in it.

Rejection rules:

* ``empty``: no events; ``oversized``: more than ``max_events`` (whole message refused);
* ``bad_shape``: width or height <= 0; ``rate_change``: resolution differs from the previous message
  (filter state reset, message kept);
* ``out_of_range``: events with ``x >= width`` or ``y >= height`` are dropped, counted per event;
* ``time_backwards``: an event earlier than the latest accepted event time (including earlier in the
  same message) is dropped, counted per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np

from snn_fusion_ros.codecs.xytp import view_xytp
from snn_fusion_ros.encoders.windows import (
    EncoderStats,
    StreamingEncoder,
    WindowAssembler,
    count_rejection,
    dedupe_spikes,
    window_geometry,
)
from snn_fusion_ros.errors import InputRejected, RejectionCounter
from snn_fusion_ros.params import param, validate_config
from snn_fusion_ros.spikes import SpikeWindow

_NEVER32 = -(1 << 31) + 1  # "never" in the int32 filter maps
_MAX32 = (1 << 31) - 1
_REBASE_US = 1 << 30  # keep map times within +-2**30 us (~18 min) of the epoch


#: Largest accepted sensor side, pixels (per-pixel filter maps are allocated for the whole sensor).
MAX_SENSOR_SIDE = 4096

@dataclass(frozen=True)
class DvsEncoderConfig:
    """Parameters of :class:`DvsEncoder` (every field is a ROS parameter)."""

    grid_width: int = field(default=16, metadata=param("output grid columns", "cells", 1, 1024))
    grid_height: int = field(default=16, metadata=param("output grid rows", "cells", 1, 1024))
    roi_x: int = field(default=0, metadata=param("region of interest left column", "px", 0, 65535))
    roi_y: int = field(default=0, metadata=param("region of interest top row", "px", 0, 65535))
    roi_width: int = field(default=0, metadata=param("ROI width; 0 = to the right sensor edge", "px", 0, 65535))
    roi_height: int = field(default=0, metadata=param("ROI height; 0 = to the bottom sensor edge", "px", 0, 65535))
    polarity_channels: int = field(default=2, metadata=param(
        "2: separate ON/OFF neuron planes, 1: polarities merged", "", 1, 2))
    refractory_us: float = field(default=1000.0, metadata=param(
        "per-pixel refractory period after a kept event; 0 disables", "us", 0.0, 1e7, runtime=True))
    ba_filter: bool = field(default=True, metadata=param(
        "background-activity filter on/off (needs a neighbour event within ba_window_us)", runtime=True))
    ba_window_us: float = field(default=10000.0, metadata=param(
        "background-activity filter support window", "us", 1.0, 1e7, runtime=True))
    window_ms: float = field(default=50.0, metadata=param("window length (global grid)", "ms", 1.0, 10000.0))
    step_ms: float = field(default=5.0, metadata=param("step length; divides window_ms", "ms", 0.01, 10000.0))
    max_events: int = field(default=10_000_000, metadata=param(
        "largest event count accepted in one push (else rejected 'oversized')", "events", 1, 1_000_000_000))
    max_gap_windows: int = field(default=200, metadata=param(
        "empty windows emitted across a time jump before the grid skips ahead", "windows", 1, 1_000_000))

    def __post_init__(self) -> None:
        validate_config(self)
        window_geometry(self.window_ms, self.step_ms)

    @property
    def num_neurons(self) -> int:
        return self.polarity_channels * self.grid_height * self.grid_width


@nb.njit(cache=True, nogil=True)
def encode_events_numba(x, y, t, t_scale, t_offset, p, width, height, start_t, last_any, last_kept,
                        epoch_us, ba, ba_us, refr_us,
                        col_lut, row_lut, plane, step_ns, s0, span_steps, mark, out_step, out_neuron,
                        counts):  # pragma: no cover - numba
    """One pass over the events: range check, time order, BA filter, refractory, ROI and binning.

    Event time is ``t_offset + t_scale * t[i]`` ns (1, 0 for EVENT_DTYPE; 1000, time_base_ns for
    packed xytp records, which are then encoded without a separate decode pass).

    ``col_lut[x]`` is the grid column of sensor column x (-1 outside the ROI), ``row_lut[y]`` the
    grid row times grid_width (-1 outside); ``plane`` is grid_height * grid_width for separate
    polarity planes, 0 when polarities share neurons.

    The per-pixel state is updated in place, as int32 microseconds since ``epoch_us`` (half the
    memory traffic of int64 ns; this pass is memory bound): ``last_any`` (H+2, W+2) is each pixel's
    last event time (1-pixel border keeps neighbours in bounds), ``last_kept`` (H, W) its last KEPT
    event time; ``-2**31 + 1`` = never.
    Kept events mark ``mark[(step - s0) * N + neuron]`` when ``mark`` is non-empty, else they are
    appended to ``out_step`` / ``out_neuron``.
    ``counts`` (4,) receives ``[n_out_of_range, n_time_backwards, n_kept, latest accepted t]``.
    """
    n_oor = 0
    n_back = 0
    n_out = 0
    cur = start_t
    n_neurons = mark.size // max(span_steps, 1)
    use_mark = mark.size > 0
    step = np.int64(0)
    next_boundary = np.int64(-(1 << 62))
    for i in range(t.size):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        ti = t_offset + t_scale * np.int64(t[i])
        if xi >= width or yi >= height:
            n_oor += 1
            continue
        if ti < cur:
            n_back += 1
            continue
        cur = ti
        t_rel = min(max(ti // 1000 - epoch_us, _NEVER32 + 1), _MAX32)
        if ba:
            # newest neighbour time, branch-free over the 8 neighbours
            r0 = last_any[yi]
            r1 = last_any[yi + 1]
            r2 = last_any[yi + 2]
            newest = max(max(max(r0[xi], r0[xi + 1]), max(r0[xi + 2], r1[xi])),
                         max(max(r1[xi + 2], r2[xi]), max(r2[xi + 1], r2[xi + 2])))
            r1[xi + 1] = t_rel
            if t_rel - np.int64(newest) > ba_us:
                continue
        if refr_us > 0:
            if t_rel - np.int64(last_kept[yi, xi]) < refr_us:
                continue
            last_kept[yi, xi] = t_rel
        col = col_lut[xi]
        row = row_lut[yi]
        if col < 0 or row < 0:
            continue
        neuron = row + col
        if p[i]:
            neuron += plane
        if ti >= next_boundary:  # steps advance monotonically: divide only when a boundary is crossed
            step = ti // step_ns
            next_boundary = (step + 1) * step_ns
        if use_mark:
            mark[(step - s0) * n_neurons + neuron] = True
        else:
            out_step[n_out] = step
            out_neuron[n_out] = neuron
        n_out += 1
    counts[0] = n_oor
    counts[1] = n_back
    counts[2] = n_out
    counts[3] = cur


class DvsEncoder(StreamingEncoder):
    """Streaming DVS encoder; see the module docstring for the pipeline and rules.

    Example
    -------
    >>> enc = DvsEncoder(DvsEncoderConfig(grid_width=8, grid_height=8))
    >>> windows = enc.push(events, width=346, height=260)  # list[SpikeWindow], shape (10, 128)
    """

    modality = "dvs"

    def __init__(self, config: DvsEncoderConfig | None = None) -> None:
        self.config = config or DvsEncoderConfig()
        self.window_ns, self.step_ns, self.steps_per_window = window_geometry(self.config.window_ms,
                                                                              self.config.step_ms)
        self.rejections = RejectionCounter()
        self.stats = EncoderStats()
        self._asm = WindowAssembler("dvs", self.window_ns, self.step_ns, self.num_neurons,
                                    self.config.max_gap_windows)
        self.reset()

    def reset(self) -> None:
        """Forget all stream state (filter maps, open window, watermark, seq)."""
        self._asm.reset()
        self._size: tuple[int, int] | None = None
        self._last_any = np.zeros((0, 0), np.int32)
        self._last_kept = np.zeros((0, 0), np.int32)
        self._epoch_us: int | None = None
        self._watermark: int | None = None
        self._lut_key: tuple[int, int] | None = None

    def prepare(self, width: int, height: int) -> None:
        """Allocate the per-pixel filter state for a ``width x height`` sensor ahead of the first push."""
        if self._size != (width, height):
            self._reset_maps(width, height)
        self._luts(width, height)

    def _reset_maps(self, width: int, height: int) -> None:
        self._size = (width, height)
        self._last_any = np.full((height + 2, width + 2), _NEVER32, np.int32)
        self._last_kept = np.full((height, width), _NEVER32, np.int32)
        self._epoch_us = None

    def _rebase(self, start_us: int) -> int:
        """Epoch (us) of the int32 filter maps, moved (and the maps shifted) when times outgrow it."""
        if self._epoch_us is None:
            self._epoch_us = start_us
        elif start_us - self._epoch_us > _REBASE_US:
            shift = start_us - self._epoch_us
            for m in (self._last_any, self._last_kept):
                shifted = np.maximum(m.astype(np.int64) - shift, _NEVER32)
                m[...] = shifted.astype(np.int32)
            self._epoch_us = start_us
        return self._epoch_us

    def _luts(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(col_lut (width,), row_lut (height,), plane) for the ROI -> grid mapping; cached per size."""
        if self._lut_key != (width, height):
            cfg = self.config
            rx, ry = cfg.roi_x, cfg.roi_y
            rw = cfg.roi_width or max(width - rx, 1)
            rh = cfg.roi_height or max(height - ry, 1)
            xs = np.arange(width, dtype=np.int64) - rx
            ys = np.arange(height, dtype=np.int64) - ry
            col = np.where((xs >= 0) & (xs < rw), (xs * cfg.grid_width) // rw, -1)
            row = np.where((ys >= 0) & (ys < rh), ((ys * cfg.grid_height) // rh) * cfg.grid_width, -1)
            plane = cfg.grid_width * cfg.grid_height if cfg.polarity_channels == 2 else 0
            self._lut = (col, row, plane)
            self._lut_key = (width, height)
        return self._lut

    def _reject(self, reason: str, detail: str) -> InputRejected:
        return count_rejection(self.rejections, InputRejected(reason, detail))

    def push(self, events: np.ndarray, width: int, height: int) -> list[SpikeWindow]:
        """Encode the next time-ordered events of a ``width x height`` sensor.

        Parameters
        ----------
        events: (n,) :data:`~snn_fusion_ros.codecs.layout.EVENT_DTYPE`, t in ns.
        width, height: sensor size, pixels.

        Returns the windows completed by this input (possibly none). Raises :class:`InputRejected`
        (already counted) for a refused message.
        """
        n = int(events.size)
        self.stats.received += n
        self._check_message(n, width, height)
        return self._encode(events["x"], events["y"], events["t"], 1, 0, events["p"], width, height)

    def _check_message(self, n: int, width: int, height: int) -> None:
        cfg = self.config
        if n == 0:
            raise self._reject("empty", "event message carries no events")
        if n > cfg.max_events:
            raise self._reject("oversized", f"{n} events > max_events={cfg.max_events}")
        if not (0 < width <= MAX_SENSOR_SIDE and 0 < height <= MAX_SENSOR_SIDE):
            raise self._reject("bad_shape", f"sensor size {width}x{height}; each side must be 1 .. {MAX_SENSOR_SIDE}")
        if self._size != (width, height):
            if self._size is not None:
                self.rejections.add("rate_change", f"resolution {self._size} -> {(width, height)}")
                self.stats.resets += 1
            self._reset_maps(width, height)

    def push_xytp(self, payload: bytes | memoryview | np.ndarray, time_base_ns: int, width: int,
                  height: int) -> list[SpikeWindow]:
        """:meth:`push` for a packed ``xytp`` payload, decoded inside the encoding pass (no copy).

        Same output and rules as ``push(decode_xytp(payload, time_base_ns), width, height)``; a payload
        whose length is not a multiple of 10 raises (and counts) ``bad_length``.
        """
        try:
            rec = view_xytp(payload)
        except InputRejected as exc:
            count_rejection(self.rejections, exc)
            raise
        n = int(rec.size)
        self.stats.received += n
        self._check_message(n, width, height)
        return self._encode(rec["x"], rec["y"], rec["t_us"], 1000, int(time_base_ns), rec["p"], width, height)

    def _encode(self, x: np.ndarray, y: np.ndarray, t_raw: np.ndarray, t_scale: int, t_offset: int,
                p: np.ndarray, width: int, height: int) -> list[SpikeWindow]:
        cfg = self.config
        n = int(t_raw.size)
        first = t_offset + t_scale * int(t_raw[0])
        start = self._watermark if self._watermark is not None else first
        s0 = start // self.step_ns
        span = max((t_offset + t_scale * int(t_raw.max())) // self.step_ns - s0 + 1, 0)
        use_mark = 0 < span * self.num_neurons <= max(8 * n, 1 << 20)
        mark = np.zeros(span * self.num_neurons if use_mark else 0, np.bool_)
        out_step = np.empty(0 if use_mark else n, np.int64)
        out_neuron = np.empty(0 if use_mark else n, np.int64)
        counts = np.zeros(4, np.int64)
        encode_events_numba(x, y, t_raw, t_scale, t_offset, p, width, height, start,
                            self._last_any, self._last_kept, self._rebase(start // 1000), cfg.ba_filter,
                            round(cfg.ba_window_us), round(cfg.refractory_us), *self._luts(width, height),
                            self.step_ns, s0, span, mark, out_step, out_neuron, counts)
        n_oor, n_back, n_kept, latest = (int(c) for c in counts)
        if n_oor:
            self.rejections.add("out_of_range", f"{n_oor} events outside {width}x{height}", n=n_oor)
        if n_back:
            self.rejections.add("time_backwards", f"{n_back} events earlier than the latest accepted one",
                                n=n_back)
        n_acc = n - n_oor - n_back
        self.stats.accepted += n_acc
        if n_acc == 0:
            return []
        self._watermark = latest
        self._asm.start(start)
        if use_mark:
            flat = np.flatnonzero(mark)
            steps, neurons = flat // self.num_neurons + s0, flat % self.num_neurons
        else:
            steps, neurons = dedupe_spikes(out_step[:n_kept], out_neuron[:n_kept], self.num_neurons)
        self._asm.add(steps, neurons)
        return self.stats.count_windows(self._asm.advance(self._watermark))

    def advance(self, until_ns: int) -> list[SpikeWindow]:
        """Declare the stream complete up to sensor time ``until_ns`` (a packet's end stamp).

        Emits the windows ending at or before ``until_ns`` without waiting for the next packet's
        events; a later event earlier than ``until_ns`` then counts as ``time_backwards``. No-op
        before the first event or when ``until_ns`` is not past the current watermark.
        """
        if self._watermark is None:  # a stream that starts with heartbeats: the grid starts here
            self._asm.start(int(until_ns))
            self._watermark = int(until_ns)
            return []
        if until_ns <= self._watermark:
            return []
        self._watermark = int(until_ns)
        return self.stats.count_windows(self._asm.advance(self._watermark))

    @property
    def watermark_ns(self) -> int | None:
        """Sensor time up to which the stream is complete (None before any input)."""
        return self._watermark

    def flush(self) -> list[SpikeWindow]:
        """Emit the last (partial) window and end the stream (filter maps and watermark kept)."""
        out = self._asm.flush(self._watermark)
        return self.stats.count_windows(out)
