"""Event Stream (``.es``) files, version 2.x, DVS type (neuromorphic-paris/event_stream).

Layout: ``"Event Stream"`` (12 bytes), version major/minor/patch (3 bytes), type (1 byte, 1 = DVS),
width and height (2 x uint16 LE), then a byte stream. In the idle state a byte ``0xFF`` adds
127 us to the time (overflow), ``0xFE`` is a reset (ignored), and any other byte ``b`` starts an
event: ``t += b >> 1``, polarity ``= b & 1``, followed by ``x`` (uint16 LE) and ``y`` (uint16 LE).
Times start at 0 us. Event Stream puts y = 0 at the BOTTOM row; this reader flips it
(``y = height - 1 - y_es``) to the package convention (y = 0 at the top), as faery does.
"""

from __future__ import annotations

from pathlib import Path

import numba as nb
import numpy as np

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.errors import InputRejected

MAGIC = b"Event Stream"


@nb.njit(cache=True, nogil=True)
def _es_dvs(buf, out_t, out_x, out_y, out_p):  # pragma: no cover - numba
    t = np.int64(0)
    n = 0
    i = 0
    size = buf.size
    while i < size:
        b = buf[i]
        if b == 0xFF:
            t += 127
            i += 1
        elif b == 0xFE:
            i += 1
        else:
            if i + 4 >= size:
                break
            t += b >> 1
            out_t[n] = t
            out_p[n] = b & 1
            out_x[n] = np.uint16(buf[i + 1]) | (np.uint16(buf[i + 2]) << 8)
            out_y[n] = np.uint16(buf[i + 3]) | (np.uint16(buf[i + 4]) << 8)
            n += 1
            i += 5
    return n, size - i


def read_es(path: str | Path, time_base_ns: int = 0) -> tuple[np.ndarray, int, int]:
    """Read a DVS Event Stream 2.x file: ``(events EVENT_DTYPE, width, height)``.

    ``t = time_base_ns + 1000 * t_us``. Raises :class:`InputRejected` (``bad_encoding``) for another
    magic, major version or stream type, and ``corrupt`` for coordinates outside the declared size
    or a truncated last event.
    """
    data = Path(path).read_bytes()
    if data[:12] != MAGIC:
        raise InputRejected("bad_encoding", f"{path}: magic {data[:12]!r}, expected {MAGIC!r}")
    if len(data) < 20:
        raise InputRejected("corrupt", f"{path}: header truncated ({len(data)} of 20 bytes)")
    major, minor, patch, typ = data[12], data[13], data[14], data[15]
    if major != 2:
        raise InputRejected("bad_encoding", f"{path}: Event Stream {major}.{minor}.{patch}, expected 2.x")
    if typ != 1:
        raise InputRejected("bad_encoding", f"{path}: stream type {typ}, expected 1 (DVS)")
    width, height = np.frombuffer(data, "<u2", count=2, offset=16).tolist()
    buf = np.frombuffer(data, np.uint8, offset=20)
    cap = buf.size // 5 + 1
    t = np.empty(cap, np.int64)
    x = np.empty(cap, np.uint16)
    y = np.empty(cap, np.uint16)
    p = np.empty(cap, np.uint8)
    n, left = _es_dvs(buf, t, x, y, p)
    if left:
        raise InputRejected("corrupt", f"{path}: last event truncated ({left} bytes left)")
    out = np.empty(n, EVENT_DTYPE)
    out["t"] = t[:n] * 1000 + time_base_ns
    out["x"] = x[:n]
    out["p"] = p[:n]
    if n and (x[:n].max() >= width or y[:n].max() >= height):
        raise InputRejected("corrupt", f"{path}: coordinates outside the declared {width}x{height}")
    out["y"] = (height - 1) - y[:n]
    return out, int(width), int(height)
