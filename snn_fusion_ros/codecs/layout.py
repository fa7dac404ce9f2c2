"""In-memory and wire layouts of DVS events (the one definition every module uses).

In memory, events are a numpy structured array of :data:`EVENT_DTYPE`:

* ``t`` int64, sensor time in nanoseconds (absolute, same clock as message stamps)
* ``x`` uint16, column in pixels (0 = left), ``y`` uint16, row in pixels (0 = top)
* ``p`` uint8, polarity: 1 = ON (brightness up), 0 = OFF

On the wire (``EventArray.encoding == "xytp"``) each event is a 10-byte little-endian record of
:data:`XYTP_DTYPE`: ``t_us`` uint32 microseconds since the message's ``time_base_ns``, ``x``, ``y``
uint16, ``p`` uint8, one reserved byte.
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])

XYTP_DTYPE = np.dtype([("t_us", "<u4"), ("x", "<u2"), ("y", "<u2"), ("p", "u1"), ("_reserved", "u1")])
if XYTP_DTYPE.itemsize != 10:  # layout constant: the wire format is 10 bytes per event
    raise ImportError(f"XYTP_DTYPE is {XYTP_DTYPE.itemsize} bytes, the wire format needs 10")

#: EventArray.encoding values this package decodes.
EVENT_ENCODINGS: tuple[str, ...] = ("xytp", "evt3")


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)
