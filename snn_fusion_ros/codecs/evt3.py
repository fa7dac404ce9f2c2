"""Prophesee EVT 3.0: a streaming decoder (numba state machine), an encoder, and a ``.raw`` reader.

EVT 3.0 is a stream of little-endian 16-bit words; the top 4 bits give the word type:

======  ===============  =====================================================================
type    name             payload (bits)
======  ===============  =====================================================================
0x0     EVT_ADDR_Y       y = [10:0] (bit 11: system type, ignored)
0x2     EVT_ADDR_X       x = [10:0], polarity = [11]; one event at (x, current y)
0x3     VECT_BASE_X      base x = [10:0], polarity = [11] for the following vectors
0x4     VECT_12          valid mask [11:0]: events at base_x + i for each set bit i; base_x += 12
0x5     VECT_8           valid mask [7:0]: events at base_x + i; base_x += 8
0x6     EVT_TIME_LOW     time low = [11:0] (us)
0x8     EVT_TIME_HIGH    time high = [11:0]; time = high << 12 | low (24 bits, us)
0x7, 0xA, 0xE, 0xF       continued / external trigger / others: skipped
======  ===============  =====================================================================

The 24-bit time wraps every 16.78 s: a TIME_HIGH smaller than the previous one counts one wrap
(``time_us = wraps * 2**24 + high * 4096 + low``). Events before the first TIME_HIGH have no time
base and are skipped (as the vendor decoders do); they are counted in
:attr:`Evt3Decoder.unanchored`.

State (time high/low, wrap count, y, base x, vector polarity) is carried across
:meth:`Evt3Decoder.decode` calls, so a stream split at ANY 2-byte boundary decodes to the same
events. An odd byte count is not an error: the trailing byte is kept and prepended to the next
call's payload (:attr:`Evt3Decoder.pending_bytes`).
"""

from __future__ import annotations

from pathlib import Path

import numba as nb
import numpy as np

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.errors import InputRejected

# state vector slots
_TH, _TL, _WRAPS, _Y, _BASE_X, _POL, _HAVE_TH, _UNANCHORED, _UNKNOWN = range(9)
_STATE_LEN = 9


@nb.njit(cache=True, nogil=True)
def _evt3_run(words, start, state, out, n0, scale, offset):  # pragma: no cover - numba
    """Decode ``words[start:]`` into ``out[n0:]`` (EVENT_DTYPE) until the words end or fewer than 12
    free slots remain; returns ``(events written in total, index of the next word)``.

    Event time = ``offset + scale * camera_us``.
    """
    th = state[_TH]
    tl = state[_TL]
    wraps = state[_WRAPS]
    y = state[_Y]
    bx = state[_BASE_X]
    pol = state[_POL]
    have = state[_HAVE_TH]
    unanchored = state[_UNANCHORED]
    unknown = state[_UNKNOWN]
    n = n0
    limit = out.size - 12
    i = start
    while i < words.size and n <= limit:
        w = np.int64(words[i])
        i += 1
        typ = w >> 12
        if typ == 0x0:
            y = w & 0x7FF
        elif typ == 0x2:
            if have:
                rec = out[n]
                rec["t"] = offset + scale * ((wraps << 24) | (th << 12) | tl)
                rec["x"] = w & 0x7FF
                rec["y"] = y
                rec["p"] = (w >> 11) & 1
                n += 1
            else:
                unanchored += 1
        elif typ == 0x3:
            bx = w & 0x7FF
            pol = (w >> 11) & 1
        elif typ == 0x4 or typ == 0x5:
            nbits = 12 if typ == 0x4 else 8
            mask = w & 0xFFF if typ == 0x4 else w & 0xFF
            if have:
                t = offset + scale * ((wraps << 24) | (th << 12) | tl)
                for b in range(nbits):
                    if (mask >> b) & 1:
                        rec = out[n]
                        rec["t"] = t
                        rec["x"] = bx + b
                        rec["y"] = y
                        rec["p"] = pol
                        n += 1
            else:
                while mask:
                    mask &= mask - 1
                    unanchored += 1
            bx += nbits
        elif typ == 0x6:
            tl = w & 0xFFF
        elif typ == 0x8:
            new_th = w & 0xFFF
            if have and new_th < th:
                wraps += 1
            th = new_th
            have = 1
        elif typ == 0x7 or typ == 0xA or typ == 0xE or typ == 0xF:
            pass
        else:
            unknown += 1
    state[_TH] = th
    state[_TL] = tl
    state[_WRAPS] = wraps
    state[_Y] = y
    state[_BASE_X] = bx
    state[_POL] = pol
    state[_HAVE_TH] = have
    state[_UNANCHORED] = unanchored
    state[_UNKNOWN] = unknown
    return n, i


class Evt3Decoder:
    """Streaming EVT 3.0 decoder.

    Parameters
    ----------
    time_base_ns: sensor time (ns) of camera time 0; events get ``t = time_base_ns + 1000 * time_us``.

    Example
    -------
    >>> dec = Evt3Decoder()
    >>> events = dec.decode(chunk1)  # EVENT_DTYPE array
    >>> more = dec.decode(chunk2)    # state carried over
    """

    def __init__(self, time_base_ns: int = 0) -> None:
        self.time_base_ns = int(time_base_ns)
        self.reset()

    def reset(self) -> None:
        """Forget all stream state (time base, wraps, y, base x, a pending odd byte)."""
        self._state = np.zeros(_STATE_LEN, dtype=np.int64)
        self._carry = b""

    @property
    def pending_bytes(self) -> int:
        """Bytes kept from the last call (0 or 1) waiting for the rest of their word."""
        return len(self._carry)

    @property
    def unanchored(self) -> int:
        """Events skipped because no EVT_TIME_HIGH had been seen yet."""
        return int(self._state[_UNANCHORED])

    @property
    def unknown_words(self) -> int:
        """Words with a reserved type code (skipped)."""
        return int(self._state[_UNKNOWN])

    @property
    def time_us(self) -> int:
        """Current camera time in us (wraps included); -1 before the first TIME_HIGH."""
        s = self._state
        return int((s[_WRAPS] << 24) | (s[_TH] << 12) | s[_TL]) if s[_HAVE_TH] else -1

    def decode(self, payload: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
        """Decode the next chunk of the stream into an :data:`EVENT_DTYPE` array."""
        buf = np.frombuffer(payload, np.uint8) if not isinstance(payload, np.ndarray) \
            else payload.view(np.uint8).reshape(-1)
        if self._carry:
            buf = np.concatenate([np.frombuffer(self._carry, np.uint8), buf])
            self._carry = b""
        if buf.size % 2:
            self._carry = buf[-1:].tobytes()
            buf = buf[:-1]
        words = buf.view("<u2")
        # most words carry at most one event; vectors carry up to 12: grow when needed
        out = np.empty(words.size + 16, dtype=EVENT_DTYPE)
        n, i = _evt3_run(words, 0, self._state, out, 0, 1000, self.time_base_ns)
        while i < words.size:
            grown = np.empty(out.size * 2 + 16, dtype=EVENT_DTYPE)
            grown[:n] = out[:n]
            out = grown
            n, i = _evt3_run(words, i, self._state, out, n, 1000, self.time_base_ns)
        return out[:n]


@nb.njit(cache=True, nogil=True)
def _evt3_encode(t_us, x, y, p, out):  # pragma: no cover - numba
    n = 0
    last_th = -1  # absolute (t_us >> 12), wraps included
    last_tl = -1
    last_y = -1
    for i in range(t_us.size):
        t = t_us[i]
        th_abs = t >> 12
        if th_abs != last_th:
            # step through skipped wraps so the decoder's "high went down" rule counts each one
            if last_th >= 0:
                while th_abs - last_th > 0x800:
                    last_th += 0x800
                    out[n] = 0x8000 | (last_th & 0xFFF)
                    n += 1
            out[n] = 0x8000 | (th_abs & 0xFFF)
            n += 1
            last_th = th_abs
            last_tl = -1
        tl = t & 0xFFF
        if tl != last_tl:
            out[n] = 0x6000 | tl
            n += 1
            last_tl = tl
        if y[i] != last_y:
            out[n] = y[i] & 0x7FF
            n += 1
            last_y = y[i]
        out[n] = 0x2000 | ((p[i] & 1) << 11) | (x[i] & 0x7FF)
        n += 1
    return n


def encode_evt3(events: np.ndarray, time_base_ns: int = 0) -> bytes:
    """Encode time-sorted :data:`EVENT_DTYPE` events as an EVT 3.0 word stream.

    Camera time is ``(t - time_base_ns) // 1000`` us (must be >= 0 and non-decreasing); x, y < 2048.
    Uses only TIME_HIGH / TIME_LOW / ADDR_Y / ADDR_X words (no vectors), which every EVT 3.0
    decoder reads. Raises ValueError on unsorted or negative times or coordinates >= 2048.
    """
    t_us = (events["t"].astype(np.int64) - np.int64(time_base_ns)) // 1000
    if t_us.size:
        if t_us[0] < 0 or np.any(np.diff(t_us) < 0):
            raise ValueError("encode_evt3 needs non-negative, non-decreasing times (t - time_base_ns)")
        if events["x"].max() >= 2048 or events["y"].max() >= 2048:
            raise ValueError("EVT 3.0 addresses are 11 bits: x and y must be < 2048")
    span_words = int(t_us[-1] >> 23) + 2 if t_us.size else 0
    out = np.empty(4 * t_us.size + span_words + 8, dtype="<u2")
    n = _evt3_encode(t_us, events["x"].astype(np.int64), events["y"].astype(np.int64),
                     events["p"].astype(np.int64), out)
    return out[:n].tobytes()


def parse_raw_header(data: bytes) -> tuple[dict[str, str], int]:
    """Parse the ``% key value`` ASCII header of a Prophesee ``.raw`` file.

    Returns ``(fields, offset of the first data byte)``. The header ends at ``% end`` or at the first
    line that does not start with ``%``.
    """
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos:pos + 1] == b"%":
        nl = data.find(b"\n", pos)
        if nl < 0:
            nl = len(data) - 1
        line = data[pos + 1:nl].decode("ascii", errors="replace").strip()
        pos = nl + 1
        if line == "end":
            break
        key, _, value = line.partition(" ")
        fields[key] = value.strip()
    return fields, pos


def raw_geometry(fields: dict[str, str]) -> tuple[int, int]:
    """``(width, height)`` from ``% geometry WxH`` or ``% format EVT3;height=H;width=W``; (0, 0) if absent."""
    try:
        if "geometry" in fields:
            w, _, h = fields["geometry"].partition("x")
            return int(w), int(h)
        opts = dict(kv.split("=", 1) for kv in fields.get("format", "").split(";") if "=" in kv)
        return int(opts.get("width", 0)), int(opts.get("height", 0))
    except ValueError as exc:
        raise InputRejected("corrupt", f"unreadable sensor geometry in the header: {exc}") from None


def read_evt3_file(path: str | Path, time_base_ns: int = 0) -> tuple[np.ndarray, int, int]:
    """Read a Prophesee EVT 3.0 ``.raw`` file: ``(events EVENT_DTYPE, width, height)``."""
    data = Path(path).read_bytes()
    fields, offset = parse_raw_header(data)
    evt = fields.get("evt", "3.0")
    if not evt.startswith("3"):
        raise InputRejected("bad_encoding", f"{path}: header says evt {evt!r}; this reader handles EVT 3.0 only")
    width, height = raw_geometry(fields)
    events = Evt3Decoder(time_base_ns).decode(memoryview(data)[offset:])
    return events, width, height
