"""Message types for bags: the rosbags type store, rclpy classes by name, and the bag error type.

Bags store every message as the CDR bytes that rclpy itself puts on the wire (4-byte encapsulation
header + payload), so conversion between a bag and rclpy is one call each way and never touches
fields: ``rclpy.serialization.serialize_message(msg)`` -> bytes for the bag, and
``deserialize_message(raw, cls)`` -> message (replay even publishes the raw bytes directly).
rosbags' type store is needed only for the message *definitions* written into a bag's schema
(msgdef + RIHS01 hash), and for reading bags outside ROS.

Type names use the ROS 2 form ``package/msg/Name`` throughout.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any

#: The package's own messages (msg/*.msg), in the order they are registered.
OWN_TYPES: tuple[str, ...] = ("AudioFrame", "Classification", "EventArray", "SpikeTrain")
PACKAGE = "snn_fusion_ros"


class BagError(RuntimeError):
    """A bag that cannot be read, written or replayed as asked: the message names the bag and the problem.

    Attributes
    ----------
    path: the bag (directory or storage file).
    problem: short machine-readable kind: ``missing``, ``missing_metadata``, ``truncated``,
        ``corrupt``, ``unknown_type``, ``bad_request``, ``exists``.
    messages_read: messages delivered before the problem was found (0 when none).
    """

    def __init__(self, path: str | Path, problem: str, detail: str, messages_read: int = 0) -> None:
        super().__init__(f"{path}: {problem}: {detail}"
                         + (f" ({messages_read} messages before the damage were read)" if messages_read else ""))
        self.path = Path(path)
        self.problem = problem
        self.detail = detail
        self.messages_read = messages_read


def msg_dir() -> Path:
    """The directory holding this package's ``*.msg`` files (source tree first, then the install tree)."""
    here = Path(__file__).resolve().parents[2] / "msg"
    if (here / "EventArray.msg").is_file():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory(PACKAGE)) / "msg"
    except (ImportError, LookupError, ValueError):
        share = None
    if share is not None and (share / "EventArray.msg").is_file():
        return share
    raise BagError(here, "missing",
                   f"no {PACKAGE} msg definitions in {here} nor in the install tree's share/{PACKAGE}/msg")


@lru_cache(maxsize=1)
def typestore():
    """A rosbags Jazzy type store with this package's messages registered (built once).

    Holds every standard type rosbags ships for Jazzy (std_msgs, sensor_msgs/Imu,
    diagnostic_msgs, rosgraph_msgs/Clock, ...) plus ``snn_fusion_ros/msg/{AudioFrame, ...}`` read
    from the ``.msg`` files.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    folder = msg_dir()
    types: dict[str, Any] = {}
    for name in OWN_TYPES:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"{PACKAGE}/msg/{name}"))
    store.register(types)
    return store


def type_name(cls_or_msg: Any) -> str:
    """``package/msg/Name`` of an rclpy message class or instance."""
    cls = cls_or_msg if isinstance(cls_or_msg, type) else type(cls_or_msg)
    package = cls.__module__.split(".")[0]
    return f"{package}/msg/{cls.__name__}"


def rclpy_class(name: str) -> Any:
    """The rclpy message class for ``package/msg/Name`` (also ``package/Name``).

    Raises :class:`LookupError` naming the type when its Python package is not importable.
    """
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise LookupError(f"message type {name!r} is not of the form package/msg/Name")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"message type {name!r} has no Python class here ({exc}); "
                          f"install/build the package {parts[0]!r}") from exc


def to_cdr(msg: Any) -> bytes:
    """rclpy message -> CDR bytes exactly as stored in a rosbag2 bag (one C call, payloads copied once)."""
    from rclpy.serialization import serialize_message

    return serialize_message(msg)


def from_cdr(raw: bytes | memoryview, cls_or_name: Any) -> Any:
    """CDR bytes from a bag -> rclpy message of ``cls_or_name`` (a class or ``package/msg/Name``)."""
    from rclpy.serialization import deserialize_message

    cls = rclpy_class(cls_or_name) if isinstance(cls_or_name, str) else cls_or_name
    return deserialize_message(bytes(raw), cls)
