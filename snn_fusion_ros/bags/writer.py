"""Write rosbag2 bags (MCAP or sqlite3) with rosbags: a generic stream writer and the real recordings.

* :func:`write_streams` takes any time-ordered iterable of ``(topic, type_name, stamp_ns, message)``
  where ``message`` is an rclpy message or its CDR bytes, and writes one bag. The dataset builder
  (``make-bag --from-dataset``) calls it; labels go on :data:`GROUND_TRUTH_TOPIC` as
  ``std_msgs/String`` JSON made by :func:`label_msg`.
* :func:`recording_streams` turns a real recording (``.aedat4`` events + IMU, EVT 3.0 ``.raw``,
  Event Stream ``.es``) into such streams: ``/events`` EventArray packets and ``/imu``.

Time: a message's bag (receive/log) timestamp is its sensor stamp (``header.stamp``) plus an
optional ``receive_offset_ns``; recordings keep their own clock.

MCAP chunks are written with a CRC-32 of their records (rosbags 0.11 writes 0 = "no CRC"), so a
flipped byte inside a chunk is reported as corruption instead of replaying damaged messages.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any
from zlib import crc32

import numpy as np

from snn_fusion_ros.bags.types import BagError, to_cdr, type_name, typestore

STORAGES: tuple[str, ...] = ("mcap", "sqlite3")
GROUND_TRUTH_TOPIC = "/ground_truth"
EVENT_ARRAY = "snn_fusion_ros/msg/EventArray"
AUDIO_FRAME = "snn_fusion_ros/msg/AudioFrame"
IMU = "sensor_msgs/msg/Imu"
STRING = "std_msgs/msg/String"
#: Types published with the sensor-data QoS (best effort) by drivers; everything else is reliable.
SENSOR_TYPES: frozenset[str] = frozenset({EVENT_ARRAY, AUDIO_FRAME, IMU, "sensor_msgs/msg/Image"})

StreamItem = tuple[str, str, int, Any]  # (topic, type name, sensor stamp ns, rclpy message or CDR bytes)


def bag_qos(type_name_: str, depth: int | None = None):
    """The rosbags ``Qos`` offered for a topic of this type (matches :mod:`snn_fusion_ros.ros.qos`)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    sensor = type_name_ in SENSOR_TYPES
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth or (50 if sensor else 10),
               QosReliability.BEST_EFFORT if sensor else QosReliability.RELIABLE,
               QosDurability.VOLATILE, zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def _crc_mcap_writer():
    """rosbags' MCAP storage writer, with chunk CRCs (subclass defined lazily: rosbags is imported late)."""
    from rosbags.rosbag2.storage_mcap import (
        McapWriter,
        PendingChunk,
        write_record,
        write_string,
        write_uint16,
        write_uint32,
        write_uint64,
    )

    class CrcMcapWriter(McapWriter):
        def close_chunk(self) -> None:  # same record layout as McapWriter.close_chunk, plus the CRC
            from collections import defaultdict

            raw = self.chunk.bio.getvalue()
            rec = BytesIO()
            write_uint64(rec, self.chunk.message_start_time)
            write_uint64(rec, self.chunk.message_end_time)
            write_uint64(rec, len(raw))
            write_uint32(rec, crc32(raw))
            compressed = self.compressor(raw)
            write_string(rec, self.compression)
            write_uint64(rec, len(compressed))
            rec.write(compressed)
            chunk_start = self.bio.tell()
            write_record(self.bio, 0x06, rec)
            chunk_end = self.bio.tell()
            offsets: list[tuple[int, int]] = []
            for cid, msgs in self.chunk.msgs.items():
                offsets.append((cid, self.bio.tell()))
                rec = BytesIO()
                write_uint16(rec, cid)
                write_uint32(rec, len(msgs) * 16)
                for ts, offset in msgs:
                    write_uint64(rec, ts)
                    write_uint64(rec, offset)
                write_record(self.bio, 0x07, rec)
            rec = BytesIO()
            write_uint64(rec, self.chunk.message_start_time)
            write_uint64(rec, self.chunk.message_end_time)
            write_uint64(rec, chunk_start)
            write_uint64(rec, chunk_end - chunk_start)
            write_uint32(rec, len(offsets) * 10)
            for cid, offset in offsets:
                write_uint16(rec, cid)
                write_uint64(rec, offset)
            write_uint64(rec, self.bio.tell() - chunk_end)
            write_string(rec, self.compression)
            write_uint64(rec, len(compressed))
            write_uint64(rec, len(raw))
            self.chunks.append(rec)
            self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))

    return CrcMcapWriter


class BagWriter:
    """A rosbag2 bag being written; connections are added on a topic's first message.

    Use as a context manager; on exit (also on an exception or Ctrl-C) the bag is closed with a
    valid ``metadata.yaml`` and MCAP summary.

    Parameters
    ----------
    path: bag directory to create (must not exist).
    storage: ``"mcap"`` or ``"sqlite3"``.
    qos: optional topic -> rosbags ``Qos`` recorded as offered_qos_profiles; default :func:`bag_qos`.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", qos: dict[str, Any] | None = None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(path, "bad_request", f"storage {storage!r}; expected one of {STORAGES}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(self.path, "exists", "the output bag already exists; choose another -o path")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        if storage == "mcap":
            self._writer.STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: _crc_mcap_writer()}
        self._qos = dict(qos or {})
        self._conns: dict[str, tuple[str, Any]] = {}
        self.counts: dict[str, int] = {}
        self.bytes_written = 0

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._writer.storage is not None:
            self._writer.close()

    def add_topic(self, topic: str, type_name_: str, msgdef: str | None = None, rihs01: str | None = None,
                  qos: Any = None) -> None:
        """Declare a topic (implicit on first :meth:`write`); ``msgdef``/``rihs01`` for types rosbags lacks."""
        if topic in self._conns:
            if self._conns[topic][0] != type_name_:
                raise BagError(self.path, "bad_request",
                               f"topic {topic} has type {self._conns[topic][0]}, got a {type_name_} message")
            return
        profile = qos or self._qos.get(topic) or bag_qos(type_name_)
        try:
            if msgdef and rihs01:
                conn = self._writer.add_connection(topic, type_name_, msgdef=msgdef, rihs01=rihs01,
                                                   offered_qos_profiles=[profile])
            else:
                conn = self._writer.add_connection(topic, type_name_, typestore=typestore(),
                                                   offered_qos_profiles=[profile])
        except KeyError as exc:
            raise BagError(self.path, "unknown_type", f"message type {type_name_} (topic {topic}) is not in the "
                                                      f"rosbags Jazzy type store nor in msg/") from exc
        self._conns[topic] = (type_name_, conn)
        self.counts[topic] = 0

    def write(self, topic: str, type_name_: str, log_time_ns: int, message: Any) -> None:
        """Write one message (rclpy message or CDR bytes) with bag timestamp ``log_time_ns``."""
        if topic not in self._conns:
            self.add_topic(topic, type_name_)
        raw = message if isinstance(message, bytes | bytearray | memoryview) else to_cdr(message)
        self._writer.write(self._conns[topic][1], int(log_time_ns), raw)
        self.counts[topic] += 1
        self.bytes_written += len(raw)


def write_streams(path: str | Path, streams: Iterable[StreamItem], storage: str = "mcap",
                  receive_offset_ns: int = 0, qos: dict[str, Any] | None = None) -> dict[str, int]:
    """Write ``(topic, type_name, stamp_ns, message)`` items into a new bag; returns messages per topic.

    Parameters
    ----------
    path: bag directory to create.
    streams: items in non-decreasing ``stamp_ns`` (sensor time, ns); ``message`` is an rclpy message
        (its ``header.stamp`` is the producer's business) or CDR bytes. ``type_name`` may be None
        for an rclpy message (taken from its class).
    storage: ``"mcap"`` (default) or ``"sqlite3"``.
    receive_offset_ns: added to ``stamp_ns`` to give the bag (receive) timestamp, ns.
    qos: topic -> rosbags ``Qos`` to record instead of :func:`bag_qos`.
    """
    with BagWriter(path, storage, qos) as bag:
        for topic, tname, stamp_ns, message in streams:
            bag.write(topic, tname or type_name(message), int(stamp_ns) + int(receive_offset_ns), message)
        return dict(bag.counts)


# --- labels --------------------------------------------------------------------------------------

def label_msg(label: str, start_ns: int, end_ns: int, **extra: Any):
    """A ``std_msgs/String`` whose data is ``{"label": ..., "start_ns": ..., "end_ns": ...}`` (JSON).

    Ground-truth segments in sensor time, ns; ``end_ns`` exclusive. Extra keys (e.g. ``class_id``)
    are kept. Published on :data:`GROUND_TRUTH_TOPIC` with bag time ``start_ns``.
    """
    from std_msgs.msg import String

    if int(end_ns) < int(start_ns):
        raise ValueError(f"label {label!r}: end_ns {end_ns} < start_ns {start_ns}")
    return String(data=json.dumps({"label": str(label), "start_ns": int(start_ns), "end_ns": int(end_ns), **extra}))


def parse_label(msg_or_text: Any) -> dict[str, Any]:
    """Inverse of :func:`label_msg`: the dict of a ground-truth ``std_msgs/String`` (or its text)."""
    text = msg_or_text if isinstance(msg_or_text, str) else msg_or_text.data
    out = json.loads(text)
    if not isinstance(out, dict) or not {"label", "start_ns", "end_ns"} <= out.keys():
        raise ValueError(f"ground-truth text {text[:80]!r}; expected JSON with label, start_ns, end_ns")
    return out


# --- real recordings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordingOptions:
    """How a recording is cut into messages.

    Attributes
    ----------
    packet_ms: EventArray packet length, ms: xytp packets cover ``[k*P, (k+1)*P)`` of sensor time
        (the global grid); evt3 packets are cut at the first TIME_HIGH word (4.096 ms steps) at or
        after each boundary.
    max_duration_s: keep only the first this many seconds of the recording (None = all).
    events_topic, imu_topic: output topics.
    camera_frame, imu_frame: ``header.frame_id`` values.
    evt3_time_base_ns: sensor time of EVT 3.0 timestamp 0 (raw files have no absolute clock).
    """

    packet_ms: float = 10.0
    max_duration_s: float | None = None
    events_topic: str = "/events"
    imu_topic: str = "/imu"
    camera_frame: str = "camera"
    imu_frame: str = "imu"
    evt3_time_base_ns: int = 0

    def __post_init__(self) -> None:
        if not self.packet_ms > 0:
            raise ValueError(f"packet_ms {self.packet_ms}; expected > 0")
        if self.max_duration_s is not None and not self.max_duration_s > 0:
            raise ValueError(f"max_duration_s {self.max_duration_s}; expected > 0 or None")


def _xytp_packets(events: np.ndarray, width: int, height: int, opts: RecordingOptions) -> Iterator[StreamItem]:
    from snn_fusion_ros.codecs.xytp import encode_xytp
    from snn_fusion_ros.ros.convert import events_to_msg

    if events.size == 0:
        return
    p_ns = round(opts.packet_ms * 1e6)
    keys = events["t"] // p_ns
    cuts = np.flatnonzero(np.diff(keys)) + 1
    for seq, (a, b) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, events.size], strict=True)):
        chunk = events[a:b]
        base = int(keys[a]) * p_ns
        stamp = int(chunk["t"][-1])
        msg = events_to_msg(encode_xytp(chunk, base), encoding="xytp", width=width, height=height,
                            time_base_ns=base, stamp_ns=stamp, seq=seq, frame_id=opts.camera_frame)
        yield opts.events_topic, EVENT_ARRAY, stamp, msg


def _imu_messages(imu: dict[str, np.ndarray], opts: RecordingOptions) -> Iterator[StreamItem]:
    from snn_fusion_ros.ros.convert import imu_to_msg

    for t, a, g in zip(imu["t_ns"].tolist(), imu["accel"], imu["gyro"], strict=True):
        yield opts.imu_topic, IMU, int(t), imu_to_msg(int(t), a, g, frame_id=opts.imu_frame)


def _clip(events: np.ndarray, opts: RecordingOptions) -> np.ndarray:
    if opts.max_duration_s is None or events.size == 0:
        return events
    end = int(events["t"][0]) + int(opts.max_duration_s * 1e9)
    return events[: int(np.searchsorted(events["t"], end, side="left"))]


def evt3_packets(data: bytes, opts: RecordingOptions, width: int, height: int) -> Iterator[StreamItem]:
    """EVT 3.0 word stream -> EventArray ``evt3`` packets of raw words, cut at TIME_HIGH words.

    Each packet starts with a TIME_HIGH word (the first also carries any words before it), so the
    concatenated payloads are exactly the input words. ``header.stamp`` = last event decoded so far
    (decoder state carried across packets, as a subscriber's decoder does); ``time_base_ns`` is the
    same for every packet.
    """
    from snn_fusion_ros.codecs.evt3 import Evt3Decoder
    from snn_fusion_ros.ros.convert import events_to_msg

    words = np.frombuffer(data, "<u2", count=len(data) // 2)
    th_idx = np.flatnonzero((words >> 12) == 0x8)
    if th_idx.size == 0:
        return
    th = (words[th_idx] & 0xFFF).astype(np.int64)
    wraps = np.r_[0, np.cumsum(np.diff(th) < 0)]
    t_ns = ((wraps << 12) + th) * 4096 * 1000  # time of each TIME_HIGH word, ns (low bits 0)
    p_ns = round(opts.packet_ms * 1e6)
    keys = t_ns // p_ns
    starts = th_idx[np.r_[0, np.flatnonzero(np.diff(keys)) + 1]]
    starts[0] = 0
    bounds = np.r_[starts, words.size]
    end_ns = None if opts.max_duration_s is None else int(t_ns[0]) + int(opts.max_duration_s * 1e9)
    dec = Evt3Decoder(opts.evt3_time_base_ns)
    last = opts.evt3_time_base_ns
    for seq, (a, b) in enumerate(itertools.pairwise(bounds)):
        payload = words[a:b].tobytes()
        ev = dec.decode(payload)
        last = int(ev["t"][-1]) if ev.size else max(last, opts.evt3_time_base_ns + dec.time_us * 1000)
        if end_ns is not None and last - opts.evt3_time_base_ns > end_ns:
            return
        yield opts.events_topic, EVENT_ARRAY, last, events_to_msg(
            payload, encoding="evt3", width=width, height=height, time_base_ns=opts.evt3_time_base_ns,
            stamp_ns=last, seq=seq, frame_id=opts.camera_frame)


def recording_streams(path: str | Path, opts: RecordingOptions | None = None) -> Iterator[StreamItem]:
    """A real recording as time-ordered bag items (by file suffix).

    * ``.aedat4``: ``/events`` xytp packets and ``/imu`` sensor_msgs/Imu (gyro + accel; orientation
      marked absent, REP-145), one clock (the camera's, unix time).
    * ``.raw`` (EVT 3.0): ``/events`` evt3 packets of the raw words (see :func:`evt3_packets`).
    * ``.es`` (Event Stream): ``/events`` xytp packets; the file's clock starts at 0.
    """
    opts = opts or RecordingOptions()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".aedat4":
        from snn_fusion_ros.codecs.aedat4 import read_aedat4

        events, imu, width, height = read_aedat4(path)
        events = _clip(events, opts)
        if opts.max_duration_s is not None:
            t0 = int(events["t"][0]) if events.size else (int(imu["t_ns"][0]) if imu["t_ns"].size else 0)
            keep = imu["t_ns"] < t0 + int(opts.max_duration_s * 1e9)
            imu = {k: v[keep] for k, v in imu.items()}
        yield from heapq.merge(_xytp_packets(events, width, height, opts), _imu_messages(imu, opts),
                               key=lambda item: item[2])
    elif suffix == ".raw":
        from snn_fusion_ros.codecs.evt3 import parse_raw_header, raw_geometry

        data = path.read_bytes()
        fields, offset = parse_raw_header(data)
        width, height = raw_geometry(fields)
        yield from evt3_packets(data[offset:], opts, width, height)
    elif suffix == ".es":
        from snn_fusion_ros.codecs.es import read_es

        events, width, height = read_es(path)
        yield from _xytp_packets(_clip(events, opts), width, height, opts)
    else:
        raise BagError(path, "bad_request", f"recording suffix {suffix!r}; expected .aedat4, .raw (EVT 3.0) or .es")
