"""Fused data-set samples as timed sensor streams (for ``make-bag --from-dataset`` and the demo bag).

Samples are played one after another on one sensor clock: sample *i* occupies
``[t_i, t_i + duration)`` with ``t_i = t0 + i * (duration + gap)``; all times are multiples of the
50 ms window grid, so the window ending at ``t_i + duration`` is the sample's decision window.
Streams, as the sensors would deliver them:

* ``/audio``: ``AudioFrame`` chunks of ``audio_chunk_ms`` (S16LE), continuous: silence in the gaps;
* ``/events``: ``EventArray`` (xytp) packets of ``packet_ms`` slices, stamped with the slice end
  ("complete up to"); slices without events (the gaps) are sent as empty packets, the heartbeat a
  time-slicing driver publishes, so the DVS windows of a gap close on time;
* ``/imu``: ``sensor_msgs/Imu`` at the data set's IMU rate, continuous: in a gap the acceleration
  ramps from the last value of one sample to the first of the next over the first half, then holds
  (gyro marked absent, REP-145);
* ``/ground_truth``: one ``std_msgs/String`` label per sample (see :func:`writer.label_msg`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from snn_fusion_ros.bags.writer import AUDIO_FRAME, EVENT_ARRAY, GROUND_TRUTH_TOPIC, IMU, STRING, StreamItem, label_msg

WINDOW_NS = 50_000_000


def sample_starts(n: int, duration_ns: int, gap_ns: int, t0_ns: int) -> np.ndarray:
    """Start time of each of ``n`` samples, ns."""
    period = duration_ns + gap_ns
    if t0_ns % WINDOW_NS or period % WINDOW_NS:
        raise ValueError(f"t0 {t0_ns} ns and duration + gap {period} ns must be multiples of the 50 ms window grid")
    return t0_ns + np.arange(n, dtype=np.int64) * period


def fused_streams(ds, indices: Sequence[int], *, t0_ns: int = 10_000_000_000, gap_ms: float = 500.0,
                  audio_chunk_ms: float = 10.0, packet_ms: float = 10.0) -> Iterator[StreamItem]:
    """Time-ordered ``(topic, type, stamp_ns, message)`` items for the fused samples ``indices`` of ``ds``."""
    import heapq

    from snn_fusion_ros.codecs.xytp import encode_xytp
    from snn_fusion_ros.ros.convert import audio_to_msg, events_to_msg, imu_to_msg

    duration = int(ds.duration_ns)
    gap = round(gap_ms * 1e6)
    starts = sample_starts(len(indices), duration, gap, t0_ns)
    samples = [ds[int(i)] for i in indices]
    rate = samples[0].sample_rate_hz if samples else 16000
    chunk = round(rate * audio_chunk_ms / 1000)
    packet_ns = round(packet_ms * 1e6)

    def audio() -> Iterator[StreamItem]:
        seq = 0
        end = int(starts[-1]) + duration + gap if samples else t0_ns
        silence = np.zeros(chunk, np.float32)
        t = t0_ns
        k = 0
        while t < end:
            i = (t - t0_ns) // (duration + gap)
            offset = t - int(starts[i])
            if offset < duration:
                a = samples[i].audio
                j = offset * rate // 1_000_000_000
                x = a[j:j + chunk]
                x = np.pad(x, (0, chunk - x.size)) if x.size < chunk else x
            else:
                x = silence
            yield "/audio", AUDIO_FRAME, t, audio_to_msg(x, rate, t, seq)
            seq += 1
            k += 1
            t = t0_ns + k * chunk * 1_000_000_000 // rate

    def events() -> Iterator[StreamItem]:
        seq = 0
        for s, start in zip(samples, starts, strict=True):
            ev = s.events.copy()
            ev["t"] += start
            width, height = s.sensor_size
            for a in range(0, duration + gap, packet_ns):
                base = int(start + a)
                lo, hi = np.searchsorted(ev["t"], [base, base + packet_ns])
                payload = encode_xytp(ev[lo:hi], base) if hi > lo else b""
                msg = events_to_msg(payload, encoding="xytp", width=width, height=height, time_base_ns=base,
                                    stamp_ns=base + packet_ns, seq=seq)
                seq += 1
                yield "/events", EVENT_ARRAY, base + packet_ns, msg

    def imu() -> Iterator[StreamItem]:
        for i, (s, start) in enumerate(zip(samples, starts, strict=True)):
            stamps = s.imu_stamps_ns.astype(np.int64)
            for t, a in zip(stamps, s.accel, strict=True):
                yield "/imu", IMU, int(start + t), imu_to_msg(int(start + t), a.astype(np.float64), s.gyro)
            period = int(np.median(np.diff(stamps))) if stamps.size > 1 else 10_000_000
            last = s.accel[-1].astype(np.float64)
            nxt = samples[i + 1].accel[0].astype(np.float64) if i + 1 < len(samples) else last
            t = int(start + stamps[-1]) + period
            gap_end = int(start) + duration + gap
            ramp_end = int(start) + duration + gap // 2
            while t < gap_end:
                f = min(1.0, max(0.0, (t - (int(start) + duration)) / max(ramp_end - int(start) - duration, 1)))
                yield "/imu", IMU, t, imu_to_msg(t, last + f * (nxt - last), None)
                t += period

    def labels() -> Iterator[StreamItem]:
        for i, (s, start) in enumerate(zip(samples, starts, strict=True)):
            yield (GROUND_TRUTH_TOPIC, STRING, int(start),
                   label_msg(str(s.label), int(start), int(start) + duration, class_id=int(s.label),
                             index=int(indices[i]), speaker=s.speaker))

    yield from heapq.merge(labels(), audio(), events(), imu(), key=lambda item: item[2])
