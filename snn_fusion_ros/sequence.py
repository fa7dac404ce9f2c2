"""Per-stream sequence-number bookkeeping: duplicates, gaps and publisher restarts."""

from __future__ import annotations

from dataclasses import dataclass

from snn_fusion_ros.errors import InputRejected


@dataclass
class SequenceTracker:
    """Checks each message's ``seq`` (and stamp) against the last accepted one on its stream.

    Rules (documented in README):

    * first message: accepted;
    * ``seq == last + 1``: accepted;
    * ``seq > last + 1``: accepted, ``missing`` grows by the gap (messages lost upstream);
    * ``seq <= last`` with a stamp not later than the last: rejected as ``duplicate_seq``;
    * ``seq <= last`` with a later stamp: the publisher restarted; accepted, ``restarts`` grows.
    """

    last_seq: int | None = None
    last_stamp_ns: int | None = None
    missing: int = 0
    restarts: int = 0

    def check(self, seq: int, stamp_ns: int) -> None:
        """Raise InputRejected('duplicate_seq') or accept and update the counters."""
        if self.last_seq is not None:
            if seq <= self.last_seq:
                if self.last_stamp_ns is not None and stamp_ns <= self.last_stamp_ns:
                    raise InputRejected("duplicate_seq", f"seq {seq} after {self.last_seq} with no newer stamp")
                self.restarts += 1
            elif seq > self.last_seq + 1:
                self.missing += seq - self.last_seq - 1
        self.last_seq = seq
        self.last_stamp_ns = stamp_ns

    def reset(self) -> None:
        self.last_seq = None
        self.last_stamp_ns = None
