"""Read rosbag2 bags (MCAP, sqlite3; directory or bare storage file), tolerating damage where possible.

:class:`BagReader` wraps rosbags' reader and reports every problem as a
:class:`~snn_fusion_ros.bags.types.BagError` naming the bag and the problem. What can still be read
is read:

=====================================  ============================================================
damage                                  behaviour
=====================================  ============================================================
no metadata.yaml                        ``salvage=True``: the storage file(s) in the directory are
                                        read directly (warning); ``salvage=False``: BagError
                                        ``missing_metadata``
truncated MCAP (no summary / footer)    linear scan from the start: every message up to the cut is
                                        delivered (complete records of a cut uncompressed chunk
                                        too), then BagError ``truncated``
chunk failing its CRC / unreadable      messages of the chunks before it are delivered, then
                                        BagError ``corrupt``
sqlite3 file truncated / malformed      BagError ``corrupt`` at open (sqlite refuses the file);
                                        sqlite keeps no checksums, so bytes flipped inside a
                                        message blob go unnoticed: prefer MCAP
=====================================  ============================================================

Messages come out as ``(topic, type_name, log_time_ns, cdr_bytes)`` in bag order (log time).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snn_fusion_ros.bags.types import BagError

_MAGIC = b"\x89MCAP0\r\n"
BagMessage = tuple[str, str, int, bytes]


@dataclass
class TopicMeta:
    """One topic of a bag: ROS type name, message count (None where unknown), offered QoS profiles."""

    topic: str
    type_name: str
    count: int | None
    qos: list[Any] = field(default_factory=list)  # rosbags Qos entries from offered_qos_profiles
    msgdef: str = ""


def _read_errors() -> tuple[type[BaseException], ...]:
    from rosbags.rosbag2.errors import ReaderError

    return (ReaderError, struct.error, ValueError, IndexError, EOFError, OSError, sqlite3.DatabaseError,
            KeyError, MemoryError, TypeError)


# --- tolerant MCAP scan -------------------------------------------------------------------------

class _Damage(Exception):
    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    if pos + 4 + n > len(buf):
        raise struct.error("string runs past its record")
    return bytes(buf[pos + 4:pos + 4 + n]).decode("utf-8"), pos + 4 + n


def _records(buf: memoryview, pos: int, end: int, where: str) -> Iterator[tuple[int, memoryview, int]]:
    """(opcode, body, offset) of each complete record in ``buf[pos:end]``; _Damage ``truncated`` at a cut."""
    while pos < end:
        if pos + 9 > end:
            raise _Damage("truncated", f"{where}: record header cut at byte {pos}")
        op = buf[pos]
        (n,) = struct.unpack_from("<Q", buf, pos + 1)
        if pos + 9 + n > end:
            raise _Damage("truncated", f"{where}: record opcode 0x{op:02x} of {n} bytes at byte {pos} is cut "
                                       f"({end - pos - 9} bytes present)")
        yield op, buf[pos + 9:pos + 9 + n], pos
        pos += 9 + n


class _McapScan:
    """Linear scan of an MCAP file that needs neither its summary nor its footer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.schemas: dict[int, tuple[str, str, str]] = {}
        self.channels: dict[int, tuple[str, int, dict[str, str]]] = {}  # id -> (topic, schema id, metadata)

    def _meta(self, op: int, body: memoryview) -> None:
        if op == 0x03:
            (sid,) = struct.unpack_from("<H", body, 0)
            name, p = _string(body, 2)
            enc, p = _string(body, p)
            (n,) = struct.unpack_from("<I", body, p)
            self.schemas[sid] = (name, enc, bytes(body[p + 4:p + 4 + n]).decode("utf-8", "replace"))
        elif op == 0x04:
            cid, sid = struct.unpack_from("<HH", body, 0)
            topic, p = _string(body, 4)
            _enc, p = _string(body, p)
            (mlen,) = struct.unpack_from("<I", body, p)
            p += 4
            meta: dict[str, str] = {}
            stop = p + mlen
            while p < stop:
                k, p = _string(body, p)
                v, p = _string(body, p)
                meta[k] = v
            self.channels[cid] = (topic, sid, meta)

    def scan(self) -> Iterator[tuple[int, int, memoryview]]:
        """(channel id, log time ns, data) per message in file order; raises _Damage at the first damage."""
        from rosbags.rosbag2.storage_mcap import decompress

        data = memoryview(self.path.read_bytes())
        end = len(data)
        if bytes(data[:8]) != _MAGIC:
            raise _Damage("corrupt", f"file magic {bytes(data[:8])!r}, expected {_MAGIC!r} (not an MCAP file)")
        pos = 8
        while pos < end:
            if pos + 9 > end:
                raise _Damage("truncated", f"record header cut at byte {pos} (file ends at {end})")
            op = data[pos]
            (n,) = struct.unpack_from("<Q", data, pos + 1)
            cut = pos + 9 + n > end
            body = data[pos + 9:min(pos + 9 + n, end)]
            if cut and op != 0x06:
                raise _Damage("truncated", f"record opcode 0x{op:02x} of {n} bytes at byte {pos} is cut "
                                           f"({end - pos - 9} bytes present)")
            if op == 0x05:
                cid, _seq, log_time = struct.unpack_from("<HIQ", body, 0)
                yield cid, log_time, body[22:]
            elif op in (0x03, 0x04):
                self._meta(op, body)
            elif op == 0x06:
                _t0, _t1, usize, crc = struct.unpack_from("<QQQI", body, 0)
                comp, p = _string(body, 28)
                (csize,) = struct.unpack_from("<Q", body, p)
                payload = body[p + 8:p + 8 + csize]
                if cut:
                    if comp == "":  # uncompressed: the complete records before the cut are intact
                        yield from self._chunk(payload, pos)
                    raise _Damage("truncated", f"chunk at byte {pos} is cut ({len(payload)} of {csize} bytes)")
                try:
                    inner = memoryview(decompress(bytes(payload), comp, usize, crc))
                except _read_errors() as exc:
                    raise _Damage("corrupt", f"chunk at byte {pos}: {exc}") from exc
                yield from self._chunk(inner, pos)
            elif op in (0x0F, 0x02):  # DataEnd / Footer: the data section is over
                return
            pos += 9 + n
        raise _Damage("truncated", f"file ends at byte {end} without DataEnd/footer (recording cut?)")

    def _chunk(self, inner: memoryview, pos: int) -> Iterator[tuple[int, int, memoryview]]:
        for op, body, _ in _records(inner, 0, len(inner), f"chunk at byte {pos}"):
            if op == 0x05:
                cid, _seq, log_time = struct.unpack_from("<HIQ", body, 0)
                yield cid, log_time, body[22:]
            else:
                self._meta(op, body)


# --- reader -------------------------------------------------------------------------------------

class BagReader:
    """A rosbag2 bag opened for reading (context manager).

    Parameters
    ----------
    path: bag directory (with or without metadata.yaml) or a ``.mcap`` / ``.db3`` file.
    salvage: read what is readable of a damaged bag (see the module docstring); False: any damage
        found at open raises :class:`BagError`.

    Attributes
    ----------
    topics: topic -> :class:`TopicMeta`.
    warnings: problems that were worked around (e.g. missing metadata.yaml, salvage scan).
    """

    def __init__(self, path: str | Path, salvage: bool = True) -> None:
        self.path = Path(path)
        self.salvage = salvage
        self.warnings: list[str] = []
        self.topics: dict[str, TopicMeta] = {}
        self._reader: Any = None
        self._scan_file: Path | None = None
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        if not self.path.exists():
            raise BagError(self.path, "missing", "no such bag directory or file")
        target = self.path
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            files = sorted([*self.path.glob("*.mcap"), *self.path.glob("*.db3")])
            if not files:
                raise BagError(self.path, "missing_metadata", "no metadata.yaml and no .mcap/.db3 storage file")
            if not salvage:
                raise BagError(self.path, "missing_metadata",
                               f"metadata.yaml is missing (storage file {files[0].name} present; "
                               f"salvage=True reads it directly)")
            if len(files) > 1:
                self.warnings.append(f"metadata.yaml missing and {len(files)} storage files: reading only "
                                     f"{files[0].name}")
            self.warnings.append(f"metadata.yaml missing: reading {files[0].name} directly")
            target = files[0]
        self._open(target)

    def _open(self, target: Path) -> None:
        from rosbags.rosbag2 import Reader

        try:
            reader = Reader(target)
            reader.open()
        except _read_errors() as exc:
            mcap = self._mcap_file(target)
            if mcap is None or not self.salvage:
                kind = "truncated" if "magic" in str(exc) or "summary" in str(exc) else "corrupt"
                raise BagError(self.path, kind, f"cannot open ({type(exc).__name__}: {exc})") from exc
            self.warnings.append(f"{mcap.name}: index unreadable ({exc}); scanning records linearly")
            self._open_scan(mcap)
            return
        self._reader = reader
        for conn in reader.connections:
            meta = self.topics.get(conn.topic)
            if meta is None:
                self.topics[conn.topic] = TopicMeta(conn.topic, conn.msgtype, conn.msgcount,
                                                    list(getattr(conn.ext, "offered_qos_profiles", []) or []),
                                                    conn.msgdef.data if conn.msgdef else "")
            else:
                meta.count = (meta.count or 0) + conn.msgcount
        if reader.message_count:
            self.start_ns, self.end_ns = int(reader.start_time), int(reader.end_time) - 1

    def _mcap_file(self, target: Path) -> Path | None:
        if target.suffix == ".mcap":
            return target
        if target.is_dir():
            files = sorted(target.glob("*.mcap"))
            return files[0] if files else None
        return None

    def _open_scan(self, mcap: Path) -> None:
        from rosbags.rosbag2.metadata import parse_qos

        self._scan_file = mcap
        scan = _McapScan(mcap)
        counts: dict[int, int] = {}
        t_min, t_max = None, None
        try:
            for cid, t, _ in scan.scan():
                counts[cid] = counts.get(cid, 0) + 1
                t_min = t if t_min is None else min(t_min, t)
                t_max = t if t_max is None else max(t_max, t)
        except _Damage as dmg:
            self.warnings.append(f"{dmg.problem}: {dmg.detail}")
        except _read_errors() as exc:
            self.warnings.append(f"corrupt: {exc}")
        for cid, (topic, sid, meta) in scan.channels.items():
            name, _enc, text = scan.schemas.get(sid, ("", "", ""))
            qos = []
            if "offered_qos_profiles" in meta:
                try:
                    qos = parse_qos(meta["offered_qos_profiles"])
                except _read_errors():
                    qos = []
            self.topics[topic] = TopicMeta(topic, name, counts.get(cid, 0), qos, text)
        self.start_ns, self.end_ns = t_min, t_max

    @property
    def message_count(self) -> int:
        return sum(m.count or 0 for m in self.topics.values())

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _storage_messages(self, topics: set[str] | None) -> Iterator[tuple[Any, int, bytes]]:
        return _read_storage(self._reader, topics)

    def close(self) -> None:
        if self._reader is not None and self._reader.is_open:
            self._reader.close()

    def messages(self, topics: set[str] | None = None) -> Iterator[BagMessage]:
        """``(topic, type_name, log_time_ns, cdr_bytes)`` for every readable message of ``topics`` (None = all).

        Raises :class:`BagError` (``truncated`` / ``corrupt``) after the last readable message of a
        damaged bag.
        """
        n = 0
        if self._scan_file is not None:
            scan = _McapScan(self._scan_file)
            try:
                for cid, t, data in scan.scan():
                    topic = scan.channels[cid][0] if cid in scan.channels else None
                    if topic is None:
                        raise _Damage("corrupt", f"message on unknown channel id {cid}")
                    if topics is None or topic in topics:
                        n += 1
                        yield topic, self.topics[topic].type_name, t, bytes(data)
            except _Damage as dmg:
                raise BagError(self.path, dmg.problem, dmg.detail, n) from None
            except _read_errors() as exc:
                raise BagError(self.path, "corrupt", f"{type(exc).__name__}: {exc}", n) from exc
            return
        try:
            for conn, t, raw in self._storage_messages(topics):
                n += 1
                yield conn.topic, conn.msgtype, int(t), bytes(raw)
        except _read_errors() as exc:
            kind = "truncated" if "nexpected end" in str(exc) or "truncat" in str(exc).lower() else "corrupt"
            raise BagError(self.path, kind, f"{type(exc).__name__}: {exc}", n) from exc


def _storages(reader: Any) -> list[Any] | None:
    """The per-file storage readers of an open rosbags Reader, or None where messages must go through it."""
    storage = reader.storage
    if hasattr(storage, "storages"):  # a directory: metadata.yaml + one or more files
        if storage.metadata.compression_mode == "message":
            return None
        return list(storage.storages)
    return [storage]


def _read_storage(reader: Any, topics: set[str] | None) -> Iterator[tuple[Any, int, bytes]]:
    """Messages straight from each storage file, selected by topic name.

    rosbags' directory reader matches a file's connections to metadata.yaml's by topic, type, QoS
    *and* hash; a bag whose metadata.yaml disagrees with its MCAP channels (edited, or written by
    another tool) would silently yield nothing. Topic names are what matters for replay.
    """
    storages = _storages(reader)
    if storages is None:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if conns:
            yield from reader.messages(connections=conns)
        return
    for storage in storages:  # split bags: files follow each other in time
        conns = [c for c in storage.connections if topics is None or c.topic in topics]
        if conns:
            yield from storage.messages(conns, None, None)


def read_all(path: str | Path, topics: set[str] | None = None) -> list[BagMessage]:
    """Every message of a healthy bag, in log-time order (raises :class:`BagError` on any damage)."""
    with BagReader(path, salvage=False) as bag:
        return list(bag.messages(topics))
