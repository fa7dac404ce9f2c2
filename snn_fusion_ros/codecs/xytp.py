"""The packed ``xytp`` wire format (10-byte records, :data:`~snn_fusion_ros.codecs.layout.XYTP_DTYPE`).

Decoding is one vectorised pass: the payload is viewed in place as a structured array (no copy)
and the four fields are widened into an :data:`EVENT_DTYPE` array, ``t = time_base_ns + 1000 * t_us``.
"""

from __future__ import annotations

import numpy as np

from snn_fusion_ros.codecs.layout import EVENT_DTYPE, XYTP_DTYPE
from snn_fusion_ros.errors import InputRejected

_MAX_T_US = np.iinfo(np.uint32).max


def view_xytp(payload: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Zero-copy structured view of a packed payload as :data:`XYTP_DTYPE` records.

    Raises :class:`InputRejected` ``bad_length`` when the byte count is not a multiple of 10.
    """
    buf = payload.view(np.uint8).reshape(-1) if isinstance(payload, np.ndarray) else np.frombuffer(payload, np.uint8)
    if buf.size % XYTP_DTYPE.itemsize:
        raise InputRejected("bad_length",
                            f"xytp payload of {buf.size} bytes is not a multiple of {XYTP_DTYPE.itemsize}")
    return buf.view(XYTP_DTYPE)


def decode_xytp(payload: bytes | bytearray | memoryview | np.ndarray, time_base_ns: int) -> np.ndarray:
    """Decode a packed ``xytp`` payload into an :data:`EVENT_DTYPE` array.

    Parameters
    ----------
    payload: ``10 * n`` bytes, little-endian records ``(t_us u32, x u16, y u16, p u8, reserved u8)``.
    time_base_ns: sensor time of ``t_us == 0``, ns.

    Returns
    -------
    ``(n,)`` array of :data:`EVENT_DTYPE` with ``t = time_base_ns + 1000 * t_us`` (ns). Polarity bytes
    other than 0 are mapped to 1 (ON).
    """
    rec = view_xytp(payload)
    out = np.empty(rec.size, dtype=EVENT_DTYPE)
    t = out["t"]
    np.multiply(rec["t_us"], 1000, out=t, dtype=np.int64)
    t += np.int64(time_base_ns)
    out["x"] = rec["x"]
    out["y"] = rec["y"]
    np.not_equal(rec["p"], 0, out=out["p"].view(np.bool_))
    return out


def encode_xytp(events: np.ndarray, time_base_ns: int) -> bytes:
    """Pack :data:`EVENT_DTYPE` events as ``xytp`` records relative to ``time_base_ns``.

    ``t_us = (t - time_base_ns) // 1000`` must fit an unsigned 32-bit integer (0 .. ~71.6 min);
    otherwise :class:`InputRejected` ``out_of_range`` names the offending span.
    """
    rel = (events["t"] - np.int64(time_base_ns)) // 1000
    if rel.size and (rel.min() < 0 or rel.max() > _MAX_T_US):
        raise InputRejected("out_of_range", f"event times span {rel.min()}..{rel.max()} us from time_base_ns="
                                            f"{time_base_ns}; expected 0..{_MAX_T_US}")
    rec = np.zeros(events.size, dtype=XYTP_DTYPE)
    rec["t_us"] = rel
    rec["x"] = events["x"]
    rec["y"] = events["y"]
    rec["p"] = events["p"] != 0
    return rec.tobytes()


def validate_events(events: np.ndarray, width: int, height: int) -> tuple[np.ndarray, int]:
    """Drop events outside the ``width x height`` sensor.

    Rule: an event with ``x >= width`` or ``y >= height`` is removed and counted as ``out_of_range``;
    the others are kept in order (a view-free copy only when something was dropped).

    Returns ``(kept_events, n_out_of_range)``. ``width``/``height`` <= 0 raise ``bad_shape``.
    """
    if width <= 0 or height <= 0:
        raise InputRejected("bad_shape", f"sensor size {width}x{height}; both must be > 0")
    ok = (events["x"] < width) & (events["y"] < height)
    n_bad = int(ok.size - np.count_nonzero(ok))
    return (events if n_bad == 0 else events[ok]), n_bad
