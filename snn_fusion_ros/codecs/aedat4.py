"""AEDAT 4.0 reader (iniVation DV): polarity events and IMU samples, flatbuffers parsed with numpy.

File layout: ``#!AER-DAT4.0\\r\\n``, int32 header size, an ``IOHeader`` flatbuffer (compression,
data-table position, an XML ``infoNode`` naming each stream's id, type identifier and sensor
size), then packets ``(int32 stream_id, int32 size, payload)``. Each payload is compressed as the
header says (NONE, LZ4 / LZ4_HIGH = LZ4 frame, ZSTD / ZSTD_HIGH = zstd frame) and holds a
size-prefixed flatbuffer whose root table has one field, a vector ``elements``:

* ``EVTS``: vector of structs ``Event {t: int64 us; x: int16; y: int16; on: bool}`` (16 bytes),
* ``IMUS``: vector of tables ``Imu {timestamp: int64 us; temperature; accelerometerX/Y/Z (g);
  gyroscopeX/Y/Z (deg/s); magnetometerX/Y/Z (uT)}`` (float32; absent fields are 0).

Frames and triggers are skipped. Units are converted on read: accelerometer g -> m/s^2
(x 9.80665), gyroscope deg/s -> rad/s (x pi/180), times us -> ns.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from snn_fusion_ros.codecs.layout import EVENT_DTYPE
from snn_fusion_ros.errors import InputRejected

MAGIC = b"#!AER-DAT4.0\r\n"
STANDARD_GRAVITY = 9.80665  # m/s^2 per g
_COMPRESSION = {0: "NONE", 1: "LZ4", 2: "LZ4_HIGH", 3: "ZSTD", 4: "ZSTD_HIGH"}
_AEDAT_EVENT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


def _field_pos(buf: bytes, table: int, index: int) -> int:
    """Absolute position of field ``index`` of the table at ``table``; 0 when absent."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    vt_size = struct.unpack_from("<H", buf, vtable)[0]
    slot = 4 + 2 * index
    if slot >= vt_size:
        return 0
    off = struct.unpack_from("<H", buf, vtable + slot)[0]
    return table + off if off else 0


def _vector(buf: bytes, table: int, index: int) -> tuple[int, int]:
    """(start of elements, length) of the vector field ``index``; (0, 0) when absent."""
    pos = _field_pos(buf, table, index)
    if not pos:
        return 0, 0
    vec = pos + _u32(buf, pos)
    return vec + 4, _u32(buf, vec)


def _decompress(payload: bytes, compression: str) -> bytes:
    if compression == "NONE":
        return payload
    if compression in ("LZ4", "LZ4_HIGH"):
        import lz4.frame

        return lz4.frame.decompress(payload)
    if compression in ("ZSTD", "ZSTD_HIGH"):
        try:
            from compression import zstd  # Python >= 3.14
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]
        return zstd.decompress(payload)
    raise InputRejected("bad_encoding", f"AEDAT4 compression {compression!r}; expected one of "
                                        f"{sorted(set(_COMPRESSION.values()))}")


def _table_fields_f32_i64(buf: np.ndarray, tables: np.ndarray, n_fields: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised read of table vectors whose field 0 is int64 and fields 1.. are float32.

    Returns ``(field0 int64 (n,), floats float32 (n, n_fields-1))``; absent fields read as 0.
    """
    soff = buf[tables[:, None] + np.arange(4)].copy().view("<i4")[:, 0]
    vt = tables - soff
    vt_size = buf[vt[:, None] + np.arange(2)].copy().view("<u2")[:, 0].astype(np.int64)
    slots = 4 + 2 * np.arange(n_fields)
    present = slots[None, :] < vt_size[:, None]
    idx = np.where(present, vt[:, None] + slots[None, :], 0)
    offs = buf[idx[..., None] + np.arange(2)].copy().view("<u2")[..., 0].astype(np.int64)
    offs = np.where(present, offs, 0)
    pos0 = tables + offs[:, 0]
    f0 = buf[pos0[:, None] + np.arange(8)].copy().view("<i8")[:, 0]
    f0 = np.where(offs[:, 0] > 0, f0, 0)
    posf = tables[:, None] + offs[:, 1:]
    vals = buf[posf[..., None] + np.arange(4)].copy().view("<f4")[..., 0]
    vals = np.where(offs[:, 1:] > 0, vals, np.float32(0))
    return f0, vals


def _parse_info(xml: str) -> dict[int, dict[str, Any]]:
    """Stream id -> {type, width, height} from the header's XML info node.

    Streams are the ``<node name="ID" path=".../outInfo/ID/">`` elements; their ``typeIdentifier``
    attr gives the type, the ``sizeX`` / ``sizeY`` attrs of their ``info`` child the sensor size.
    """
    streams: dict[int, dict[str, Any]] = {}
    try:
        root = ElementTree.fromstring(xml.strip().rstrip("\x00"))
    except ElementTree.ParseError as exc:
        raise InputRejected("corrupt", f"AEDAT4 info node is not XML ({exc})") from exc
    for node in root.iter("node"):
        path = node.get("path", "")
        name = node.get("name", "")
        if not name.isdigit() or not re.search(r"/outInfo/\d+/$", path):
            continue
        attrs = {a.get("key"): (a.text or "") for a in node.iter("attr")}
        streams[int(name)] = {
            "type": attrs.get("typeIdentifier", ""),
            "width": int(attrs.get("sizeX", 0) or 0),
            "height": int(attrs.get("sizeY", 0) or 0),
        }
    return streams


def _zstd_error() -> type[Exception]:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:
        try:
            from backports import zstd  # type: ignore[no-redef]
        except ImportError:  # pragma: no cover - zstd support absent
            return RuntimeError
    return zstd.ZstdError


def read_aedat4(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray], int, int]:
    """Read polarity events and IMU samples of an AEDAT 4.0 file.

    Returns
    -------
    events: :data:`EVENT_DTYPE` array, ``t`` in ns (the file's us clock x 1000), p = 1 for ON.
    imu: dict with ``t_ns`` int64 (n,), ``accel`` float64 (n, 3) m/s^2, ``gyro`` float64 (n, 3) rad/s,
        ``temperature_c`` float64 (n,), ``mag`` float64 (n, 3) (file units, uT).
    width, height: of the (first) event stream, pixels.

    Raises :class:`InputRejected` ``bad_encoding`` (not AEDAT 4.0 / unknown compression) or
    ``corrupt`` (truncated packet, bad flatbuffer).
    """
    data = Path(path).read_bytes()
    try:
        return _parse(data, path)
    except InputRejected:
        raise
    except (struct.error, IndexError, ValueError, RuntimeError, OverflowError, _zstd_error()) as exc:
        raise InputRejected("corrupt", f"{path}: unreadable AEDAT4 content ({type(exc).__name__}: {exc})") from exc


def _parse(data: bytes, path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray], int, int]:
    if not data.startswith(MAGIC):
        raise InputRejected("bad_encoding", f"{path}: magic {data[:14]!r}, expected {MAGIC!r}")
    pos = len(MAGIC)
    (hsize,) = struct.unpack_from("<i", data, pos)
    pos += 4
    header = data[pos:pos + hsize]
    pos += hsize
    try:
        root = _u32(header, 0)
        cpos = _field_pos(header, root, 0)
        compression = _COMPRESSION.get(struct.unpack_from("<i", header, cpos)[0] if cpos else 0, "?")
        tpos = _field_pos(header, root, 1)
        table_pos = struct.unpack_from("<q", header, tpos)[0] if tpos else -1
        spos = _field_pos(header, root, 2)
        sstart = spos + _u32(header, spos)
        xml = header[sstart + 4:sstart + 4 + _u32(header, sstart)].decode("utf-8", errors="replace")
    except struct.error as exc:
        raise InputRejected("corrupt", f"{path}: IOHeader flatbuffer unreadable ({exc})") from exc
    streams = _parse_info(xml)
    ev_parts: list[np.ndarray] = []
    imu_raw: list[bytes] = []
    imu_tables: list[np.ndarray] = []
    imu_size = 0
    width = height = 0
    for _sid, info in sorted(streams.items()):
        if info["type"] == "EVTS":
            width, height = info["width"], info["height"]
            break
    # packets stop where the file's data table starts (when the writer recorded one)
    end = table_pos if 0 < table_pos <= len(data) else len(data)
    while pos + 8 <= end:
        sid, size = struct.unpack_from("<ii", data, pos)
        pos += 8
        if size < 0 or pos + size > end:
            raise InputRejected("corrupt", f"{path}: packet of {size} bytes at {pos - 8} runs past the end")
        info = streams.get(sid)
        kind = info["type"] if info else ""
        if kind in ("EVTS", "IMUS"):
            raw = _decompress(data[pos:pos + size], compression)
            ident = raw[8:12].decode("ascii", errors="replace")
            if ident != kind:
                raise InputRejected("corrupt", f"{path}: packet identifier {ident!r}, expected {kind!r}")
            table = 4 + _u32(raw, 4)  # size-prefixed flatbuffer: root offset after the 4-byte size
            start, length = _vector(raw, table, 0)
            if start + length * (16 if kind == "EVTS" else 4) > len(raw):
                raise InputRejected("corrupt", f"{path}: {kind} vector of {length} elements overruns its packet")
            if kind == "EVTS":
                ev_parts.append(np.frombuffer(raw, _AEDAT_EVENT, count=length, offset=start))
            elif length:
                # tables of all IMU packets are parsed in one vectorised call at the end
                rel = np.frombuffer(raw, "<u4", count=length, offset=start).astype(np.int64)
                imu_tables.append(imu_size + start + 4 * np.arange(length) + rel)
                imu_raw.append(raw)
                imu_size += len(raw)
        pos += size
    ev = np.concatenate(ev_parts) if ev_parts else np.zeros(0, _AEDAT_EVENT)
    events = np.empty(ev.size, EVENT_DTYPE)
    events["t"] = ev["t"] * 1000
    events["x"] = ev["x"]
    events["y"] = ev["y"]
    events["p"] = ev["on"] != 0
    if imu_tables:
        t_us, vals32 = _table_fields_f32_i64(np.frombuffer(b"".join(imu_raw), np.uint8),
                                             np.concatenate(imu_tables), 11)
        vals = vals32.astype(np.float64)
    else:
        t_us, vals = np.zeros(0, np.int64), np.zeros((0, 10))
    imu = {
        "t_ns": t_us * 1000,
        "temperature_c": vals[:, 0],
        "accel": vals[:, 1:4] * STANDARD_GRAVITY,
        "gyro": np.deg2rad(vals[:, 4:7]),
        "mag": vals[:, 7:10],
    }
    return events, imu, width, height
