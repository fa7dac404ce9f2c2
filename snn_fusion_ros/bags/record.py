"""Record topics into a rosbag2 MCAP bag (``snn-fusion record -o OUT --topics ...``).

Types come from the ROS graph (``node.get_topic_names_and_types()``); a topic not yet published is
looked up again every ``discovery_period_s`` until it appears. Subscriptions are raw
(``raw=True``): the CDR bytes DDS delivers are written unchanged, nothing is deserialised.

QoS: a topic is subscribed reliable only when every publisher offers reliable (a reliable reader
would not match a best-effort writer), transient-local likewise; the publishers' profiles are
written to the bag as offered_qos_profiles, as ``ros2 bag record`` does. The bag timestamp of a
message is its receive time on the node's clock (ns; sim time with ``use_sim_time``).

:meth:`BagRecorder.close` writes the summary and ``metadata.yaml``; the CLI calls it on SIGINT,
SIGTERM and at the end of ``--duration``, so the bag is valid after Ctrl-C.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from snn_fusion_ros.bags.types import BagError, rclpy_class
from snn_fusion_ros.bags.writer import BagWriter


def _bag_qos(profile: Any):
    """rclpy QoSProfile -> rosbags Qos (the fields rosbag2 records)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(
        QosHistory.KEEP_ALL if profile.history == HistoryPolicy.KEEP_ALL else QosHistory.KEEP_LAST,
        int(profile.depth),
        QosReliability.RELIABLE if profile.reliability == ReliabilityPolicy.RELIABLE else QosReliability.BEST_EFFORT,
        QosDurability.TRANSIENT_LOCAL if profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
        else QosDurability.VOLATILE,
        zero, zero, QosLiveliness.AUTOMATIC, zero, False)


class BagRecorder:
    """Subscribes ``topics`` on ``node`` and writes every message to a new bag at ``out``.

    Parameters
    ----------
    node: an rclpy node (spun by the caller).
    out: bag directory to create (must not exist).
    topics: fully qualified topic names.
    storage: ``"mcap"`` (default) or ``"sqlite3"``.
    discovery_period_s: how often topics not yet on the graph are looked up again, s.

    Attributes
    ----------
    counts: messages written per topic. warnings: topics skipped and why.
    """

    def __init__(self, node: Any, out: str | Path, topics: Sequence[str], storage: str = "mcap",
                 discovery_period_s: float = 0.5) -> None:
        if not topics:
            raise BagError(out, "bad_request", "no topics to record; pass --topics /a /b ...")
        bad = [t for t in topics if not t.startswith("/")]
        if bad:
            raise BagError(out, "bad_request", f"topics {bad} are not fully qualified (expected '/name')")
        self.node = node
        self.topics = list(dict.fromkeys(topics))
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._bag = BagWriter(out, storage)
        self._bag.__enter__()
        self._closed = False
        self._subs: dict[str, Any] = {}
        self._skipped: set[str] = set()
        self._discover()
        self._timer = node.create_timer(discovery_period_s, self._discover)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._bag.counts)

    @property
    def pending(self) -> list[str]:
        """Topics not yet subscribed (not on the graph yet)."""
        return [t for t in self.topics if t not in self._subs and t not in self._skipped]

    def _discover(self) -> None:
        if not self.pending:
            return
        graph = dict(self.node.get_topic_names_and_types())
        for topic in self.pending:
            types = graph.get(topic)
            if not types:
                continue
            tname = types[0]
            if len(types) > 1:
                self.warnings.append(f"{topic} has several types {types}; recording {tname}")
            try:
                cls = rclpy_class(tname)
                infos = self.node.get_publishers_info_by_topic(topic)
                offered = [_bag_qos(i.qos_profile) for i in infos]
                with self._lock:
                    self._bag.add_topic(topic, tname, qos=offered[0] if offered else None)
            except (LookupError, BagError) as exc:
                self._skipped.add(topic)
                self.warnings.append(f"not recording {topic}: {exc}")
                continue
            self._subs[topic] = self.node.create_subscription(
                cls, topic, lambda raw, t=topic, n=tname: self._on_msg(t, n, raw), self._sub_qos(offered), raw=True)

    @staticmethod
    def _sub_qos(offered: list[Any]):
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosbags.interfaces import QosDurability, QosReliability

        reliable = bool(offered) and all(q.reliability == QosReliability.RELIABLE for q in offered)
        latched = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def _on_msg(self, topic: str, tname: str, raw: bytes) -> None:
        stamp = self.node.get_clock().now().nanoseconds
        with self._lock:
            if not self._closed:
                self._bag.write(topic, tname, stamp, raw)

    def close(self) -> None:
        """Stop recording and finish the bag (summary + metadata.yaml). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._bag.close()
        try:
            self.node.destroy_timer(self._timer)
            for sub in self._subs.values():
                self.node.destroy_subscription(sub)
        except Exception:  # the context may already be shut down after Ctrl-C; the bag is safe
            pass
