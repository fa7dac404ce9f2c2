"""Input rejection: one exception type with a machine-readable reason, and a counter per reason.

Every encoder and node path that refuses input raises :class:`InputRejected` with a reason from
:data:`REASONS`; callers count it with :class:`RejectionCounter` and report the counts in
diagnostics. Nothing is dropped without a reason.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping

#: Rejection reasons, with the documented rule for each. Keys appear verbatim in diagnostics.
REASONS: Mapping[str, str] = {
    "empty": "message carries no samples/events",
    "oversized": "payload larger than the configured cap (max_*_bytes / max_events)",
    "bad_encoding": "encoding / sample_format string not supported",
    "bad_length": "payload length not a whole number of records/samples",
    "bad_shape": "declared sizes (width, height, channels, neurons, steps) inconsistent or zero",
    "non_finite": "NaN or infinity in the data",
    "out_of_range": "coordinates outside width/height or values outside their legal range",
    "time_backwards": "timestamp earlier than the previous accepted one on this stream",
    "duplicate_seq": "sequence number already seen (duplicate delivery)",
    "rate_change": "sample rate or resolution changed mid-stream (stream state reset, message kept)",
    "stale": "too old to be aligned (older than the alignment window allows)",
    "late": "arrived after its window was already classified",
    "corrupt": "payload fails to decode (bad words, truncated records)",
    "unknown_modality": "modality not configured on this node",
}


class InputRejected(ValueError):
    """Input refused by a documented rule.

    Parameters
    ----------
    reason:
        One of the keys of :data:`REASONS`.
    detail:
        Human-readable detail naming the bad value and what was expected.
    """

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; expected one of {sorted(REASONS)}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RejectionCounter:
    """Thread-safe counts of rejected (and repaired) inputs by reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.last_detail: str = ""

    def add(self, reason: str, detail: str = "", n: int = 1) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; expected one of {sorted(REASONS)}")
        with self._lock:
            self._counts[reason] += n
            if detail:
                self.last_detail = f"{reason}: {detail}"

    def record(self, exc: InputRejected) -> None:
        self.add(exc.reason, exc.detail)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
