"""The global window grid shared by all encoders, and the assembler that cuts spikes into windows.

Window ``k`` covers sensor time ``[k*W, (k+1)*W)`` (``W = window_ms * 1e6`` ns) and is published
with ``stamp_ns = (k+1)*W``; it has ``window_ms / step_ms`` steps, step ``j`` (global index
``j = t // step_ns``) covering ``[j*S, (j+1)*S)``. Window ``k`` is emitted once the input has advanced
to a time ``>= (k+1)*W`` (the watermark); windows without activity are emitted all-False so the
stream has no holes, in order, ``seq`` incrementing by 1.

Gap rule: when the watermark jumps more than ``max_gap_windows`` empty windows past the last window
that held a spike (or the stream start), the empty windows beyond the first ``max_gap_windows`` are
not emitted; the grid continues at the next window with data or at the watermark (counted in
``gaps``). This bounds the work a single wild timestamp can cause.

Delay taps (``delay_steps``, a tapped delay line): with taps ``d_0 < d_1 < ...`` steps, every spike of
source neuron ``n`` at step ``j`` is emitted as neuron ``i * N + n`` at step ``j + d_i`` for each tap
``i`` (``N`` source neurons, ``len(delay_steps) * N`` output neurons). A downstream neuron then sees
the present and the recent past of its input at once, so it can respond to the order of input
features and not only to their counts. Delayed copies of a spike land in later windows; the
assembler holds them until those windows are emitted, so the output stays independent of chunking.
"""

from __future__ import annotations

import dataclasses
from itertools import pairwise
from typing import Any

import numpy as np

from snn_fusion_ros.errors import InputRejected, RejectionCounter
from snn_fusion_ros.params import param
from snn_fusion_ros.spikes import SpikeWindow

NS_PER_MS = 1_000_000


def window_geometry(window_ms: float, step_ms: float) -> tuple[int, int, int]:
    """``(window_ns, step_ns, steps_per_window)``; ValueError unless step_ms divides window_ms exactly."""
    window_ns = round(window_ms * NS_PER_MS)
    step_ns = round(step_ms * NS_PER_MS)
    if step_ns <= 0 or window_ns <= 0 or window_ns % step_ns:
        raise ValueError(f"window_ms={window_ms} must be a positive whole multiple of step_ms={step_ms}")
    return window_ns, step_ns, window_ns // step_ns


#: Limits of an encoder's ``delay_taps_ms`` (:func:`tap_delay_steps`).
MAX_DELAY_TAPS = 16
MAX_TAP_DELAY_MS = 10_000.0


def delay_taps_param(what: str) -> dict[str, Any]:
    """Field metadata of an encoder config's ``delay_taps_ms`` (one description for every encoder)."""
    return param(f"delay of each copy of the {what} (tapped delay line; whole steps, increasing, first >= 0, "
                 f"at most {MAX_DELAY_TAPS} taps up to {MAX_TAP_DELAY_MS:g} ms); [0.0] = no delay", "ms")


def tap_delay_steps(owner: str, taps_ms: tuple[float, ...], step_ms: float) -> tuple[int, ...]:
    """``taps_ms`` in steps of ``step_ms``; ValueError (naming ``owner.delay_taps_ms``) unless there are 1 to
    :data:`MAX_DELAY_TAPS` strictly increasing delays in ``[0, MAX_TAP_DELAY_MS]``, each a whole number of steps."""
    taps = tuple(float(d) for d in taps_ms)
    steps = tuple(round(d / step_ms) for d in taps)
    if (not 1 <= len(taps) <= MAX_DELAY_TAPS or any(not 0.0 <= d <= MAX_TAP_DELAY_MS for d in taps)
            or any(abs(d - k * step_ms) > 1e-6 * step_ms for d, k in zip(taps, steps, strict=True))
            or any(b <= a for a, b in pairwise(steps))):
        raise ValueError(f"{owner}.delay_taps_ms={list(taps_ms)}: need 1 to {MAX_DELAY_TAPS} strictly increasing "
                         f"delays in [0, {MAX_TAP_DELAY_MS:g}] ms, each a whole number of steps (step_ms={step_ms})")
    return steps


class DelayTapsConfig:
    """Mixin of an encoder config with ``delay_taps_ms`` and ``step_ms`` fields (audio, IMU): the taps in
    steps, and their normalisation in ``__post_init__`` (ROS and YAML give lists; configs hold tuples)."""

    delay_taps_ms: tuple[float, ...]
    step_ms: float

    @property
    def delay_steps(self) -> tuple[int, ...]:
        """``delay_taps_ms`` in steps (validated by :func:`tap_delay_steps`)."""
        return tap_delay_steps(type(self).__name__, self.delay_taps_ms, self.step_ms)

    def _normalise_delay_taps(self) -> None:
        """Store ``delay_taps_ms`` as a tuple of floats and validate it (ValueError naming the field)."""
        object.__setattr__(self, "delay_taps_ms", tuple(float(d) for d in self.delay_taps_ms))
        _ = self.delay_steps


class WindowAssembler:
    """Collects ``(global step, neuron)`` spikes and emits complete :class:`SpikeWindow` s in order.

    Parameters
    ----------
    modality: "audio", "dvs" or "imu".
    window_ns, step_ns: grid, ns (``window_ns`` a multiple of ``step_ns``).
    num_neurons: source neurons (columns of every window without delay taps).
    max_gap_windows: see the module's gap rule.
    delay_steps: delay of each tap, steps, strictly increasing and >= 0 (see the module docstring);
        the default ``(0,)`` passes spikes through unchanged.
    """

    def __init__(self, modality: str, window_ns: int, step_ns: int, num_neurons: int,
                 max_gap_windows: int = 200, delay_steps: tuple[int, ...] = (0,)) -> None:
        self.modality = modality
        self.window_ns = int(window_ns)
        self.step_ns = int(step_ns)
        self.spw = self.window_ns // self.step_ns
        taps = tuple(int(d) for d in delay_steps)
        if not taps or taps[0] < 0 or any(b <= a for a, b in pairwise(taps)):
            raise ValueError(f"delay_steps={delay_steps!r}: need one or more strictly increasing delays >= 0")
        self.delay_steps = taps
        self.source_neurons = int(num_neurons)
        self.num_neurons = self.source_neurons * len(taps)
        self.max_gap_windows = int(max_gap_windows)
        self.seq = 0
        self.gaps = 0
        self.late_spikes = 0
        self.clear()

    def clear(self) -> None:
        """Forget the open window and its spikes (``seq`` continues)."""
        self.k_open: int | None = None  # first window not yet emitted
        self._steps: list[np.ndarray] = []
        self._neurons: list[np.ndarray] = []
        self._last_data_k: int | None = None

    def reset(self) -> None:
        self.clear()
        self.seq = 0
        self.gaps = 0
        self.late_spikes = 0

    def start(self, t_ns: int) -> None:
        """Open the grid at the window containing ``t_ns`` (no-op when already open)."""
        if self.k_open is None:
            self.k_open = int(t_ns) // self.window_ns

    def add(self, steps: np.ndarray, neurons: np.ndarray) -> int:
        """Add spikes at global step indices ``steps`` (int64) for ``neurons``; both (n,).

        Spikes in windows already emitted cannot be delivered: they are dropped and their number
        returned (and added to :attr:`late_spikes`); the encoders' time rules keep this at 0.
        """
        if steps.size == 0:
            return 0
        steps = np.asarray(steps, np.int64)
        neurons = np.asarray(neurons, np.int64)
        if self.k_open is None:
            self.k_open = int(steps.min()) // self.spw
        late = steps < self.k_open * self.spw
        n_late = int(np.count_nonzero(late))
        if n_late:
            self.late_spikes += n_late
            steps, neurons = steps[~late], neurons[~late]
        for i, d in enumerate(self.delay_steps):
            self._steps.append(steps + d)
            self._neurons.append(neurons + i * self.source_neurons)
        return n_late

    def _emit(self, k_stop: int) -> list[SpikeWindow]:
        """Emit windows ``k_open .. k_stop - 1`` (gap rule applied)."""
        out: list[SpikeWindow] = []
        if self.k_open is None or k_stop <= self.k_open:
            return out
        if self._steps:
            steps = np.concatenate(self._steps)
            neurons = np.concatenate(self._neurons)
        else:
            steps = np.zeros(0, np.int64)
            neurons = np.zeros(0, np.int64)
        if steps.size > 1 and bool(np.any(steps[1:] < steps[:-1])):
            order = np.argsort(steps, kind="stable")
            steps, neurons = steps[order], neurons[order]
        kk = steps // self.spw
        n_done = int(np.searchsorted(kk, k_stop))
        kd = kk[:n_done]
        starts = np.flatnonzero(np.concatenate([[True], kd[1:] != kd[:-1]])) if n_done else np.zeros(0, np.int64)
        data_k = kd[starts]
        bounds = np.append(starts, n_done)
        s_done, n_done_neurons = steps[:n_done], neurons[:n_done]
        di = 0
        k = self.k_open
        anchor = self._last_data_k if self._last_data_k is not None else self.k_open - 1
        while k < k_stop:
            has = di < data_k.size and data_k[di] == k
            if not has and k - anchor > self.max_gap_windows:
                nxt = int(data_k[di]) if di < data_k.size else k_stop
                if nxt > k:
                    self.gaps += 1
                    k = nxt
                    continue
            spikes = np.zeros((self.spw, self.num_neurons), np.bool_)
            if has:
                a, b = bounds[di], bounds[di + 1]
                spikes[s_done[a:b] - k * self.spw, n_done_neurons[a:b]] = True
                di += 1
                anchor = k
            out.append(SpikeWindow(self.modality, spikes, (k + 1) * self.window_ns, self.step_ns, self.seq))
            self.seq += 1
            k += 1
        self._last_data_k = anchor
        self.k_open = k_stop
        self._steps = [steps[n_done:]] if n_done < steps.size else []
        self._neurons = [neurons[n_done:]] if n_done < steps.size else []
        return out

    def advance(self, watermark_ns: int) -> list[SpikeWindow]:
        """Emit every window ``k`` with ``(k+1)*W <= watermark_ns``."""
        if self.k_open is None:
            return []
        return self._emit(int(watermark_ns) // self.window_ns)

    def flush(self, watermark_ns: int | None = None) -> list[SpikeWindow]:
        """Emit all windows up to the one holding the last spike or ``watermark_ns`` (partial), then clear."""
        if self.k_open is None:
            return []
        k_stop = self.k_open
        if self._steps:
            k_stop = max(k_stop, int(max(s.max() for s in self._steps)) // self.spw + 1)
        if watermark_ns is not None:
            k_stop = max(k_stop, int(watermark_ns) // self.window_ns + 1)
        out = self._emit(k_stop)
        self.clear()
        return out


class EncoderStats:
    """Counters an encoder updates and a node reads (diagnostics). Not thread-safe by itself."""

    def __init__(self) -> None:
        self.received = 0  # samples / events handed to push()
        self.accepted = 0  # of those, used after the rejection rules
        self.published_windows = 0
        self.spikes = 0
        self.resets = 0  # stream state resets (rate/resolution change, gaps)

    def count_windows(self, windows: list[SpikeWindow]) -> list[SpikeWindow]:
        self.published_windows += len(windows)
        self.spikes += int(sum(int(np.count_nonzero(w.spikes)) for w in windows))
        return windows

    def snapshot(self) -> dict[str, int]:
        return dict(vars(self))


def dedupe_spikes(steps: np.ndarray, neurons: np.ndarray, num_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique ``(step, neuron)`` pairs, sorted by step then neuron, via a dense mark array.

    Cost is O(n + span * num_neurons) with ``span`` the number of steps covered; falls back to
    ``np.unique`` when the span is large and the spikes sparse.
    """
    if steps.size == 0:
        return steps.astype(np.int64), neurons.astype(np.int64)
    s0 = int(steps.min())
    span = int(steps.max()) - s0 + 1
    if span * num_neurons <= max(4 * steps.size, 1 << 16):
        mark = np.zeros(span * num_neurons, np.bool_)
        mark[(steps - s0) * num_neurons + neurons] = True
        flat = np.flatnonzero(mark)
    else:
        flat = np.unique((steps - s0) * num_neurons + neurons)
    return flat // num_neurons + s0, flat % num_neurons


def replace_runtime(cfg: Any, changes: dict[str, Any]) -> Any:
    """``dataclasses.replace(cfg, **changes)`` allowing only fields whose param() says ``runtime``.

    Raises ValueError naming the refused fields (and the runtime ones) or an invalid value.
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise ValueError(f"unknown {type(cfg).__name__} parameter(s) {unknown}; known: {sorted(fields)}")
    fixed = sorted(k for k in changes if not fields[k].metadata.get("runtime"))
    if fixed:
        runtime = sorted(k for k, f in fields.items() if f.metadata.get("runtime"))
        raise ValueError(f"{type(cfg).__name__} parameter(s) {fixed} cannot change at runtime; "
                         f"runtime ones: {runtime}")
    return dataclasses.replace(cfg, **changes)


def count_rejection(counter: RejectionCounter, exc: InputRejected) -> InputRejected:
    """Count ``exc`` in the encoder's ``counter`` and mark it ``counted = True`` before it is raised.

    A caller that keeps its own counter (a ROS node) skips exceptions with ``counted`` set, so no
    rejection is counted twice when it adds the encoder's counts to its own.
    """
    counter.record(exc)
    exc.counted = True  # type: ignore[attr-defined]
    return exc


class StreamingEncoder:
    """What the three streaming encoders share: ``config`` with a ``num_neurons`` property, and runtime
    reconfiguration through :func:`replace_runtime` (only ``param(runtime=True)`` fields may change)."""

    config: Any

    @property
    def num_neurons(self) -> int:
        return self.config.num_neurons

    def reconfigure(self, **changes) -> None:
        """Change runtime parameters (``param(runtime=True)``) without losing stream state."""
        self.config = replace_runtime(self.config, changes)
