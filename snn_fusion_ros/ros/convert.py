"""Message <-> numpy conversions: the one place each message type is packed and unpacked.

Bulk payloads travel as ``uint8[]`` and are viewed with numpy on both ends (``np.frombuffer``),
never converted element by element. Every function that reads a message raises
:class:`~snn_fusion_ros.errors.InputRejected` with a documented reason on bad input.
"""

from __future__ import annotations

import array
import math
from dataclasses import dataclass

import numpy as np

from snn_fusion_ros.encoders.audio import MAX_INPUT_RATE_HZ
from snn_fusion_ros.errors import InputRejected
from snn_fusion_ros.spikes import MODALITIES, SpikeWindow, pack_spikes, unpack_spikes

AUDIO_FORMATS: dict[str, tuple[np.dtype, float]] = {
    "S16LE": (np.dtype("<i2"), 32768.0),
    "F32LE": (np.dtype("<f4"), 1.0),
}



def ns_to_stamp(ns: int):
    """builtin_interfaces/Time from integer nanoseconds (>= 0)."""
    from builtin_interfaces.msg import Time

    ns = int(ns)
    if ns < 0:
        raise ValueError(f"stamp {ns} ns is negative; ROS time starts at 0")
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_to_ns(stamp) -> int:
    """Integer nanoseconds from builtin_interfaces/Time."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def to_uint8_array(buf: bytes | bytearray | memoryview | np.ndarray) -> array.array:
    """An ``array.array('B')`` (what rosidl keeps for uint8[]) holding ``buf``; one memcpy."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(buf) if isinstance(buf, np.ndarray) else buf).cast("B"))
    return out


def payload_view(field) -> np.ndarray:
    """A zero-copy uint8 numpy view of a received ``uint8[]`` field."""
    return np.frombuffer(field, dtype=np.uint8)


# --- SpikeTrain --------------------------------------------------------------------------------

def spike_window_to_msg(window: SpikeWindow, encoding: str = "dense_bits", frame_id: str = ""):
    from snn_fusion_ros.msg import SpikeTrain

    msg = SpikeTrain()
    msg.header.stamp = ns_to_stamp(window.stamp_ns)
    msg.header.frame_id = frame_id
    msg.modality = window.modality
    msg.num_neurons = window.num_neurons
    msg.num_steps = window.num_steps
    msg.step_ns = int(window.step_ns)
    msg.encoding = encoding
    msg.seq = int(window.seq)
    msg.data = to_uint8_array(pack_spikes(window.spikes, encoding))
    return msg


def msg_to_spike_window(msg, max_cells: int = 1 << 24) -> SpikeWindow:
    """SpikeTrain -> SpikeWindow; rejects unknown modality, bad sizes and payload lengths."""
    if msg.modality not in MODALITIES:
        raise InputRejected("unknown_modality", f"modality {msg.modality!r}; expected one of {MODALITIES}")
    if msg.step_ns == 0:
        raise InputRejected("bad_shape", "step_ns is 0")
    if msg.num_steps * msg.num_neurons > max_cells:
        raise InputRejected("oversized", f"{msg.num_steps}x{msg.num_neurons} cells exceed the cap {max_cells}")
    stamp_ns = stamp_to_ns(msg.header.stamp)
    if stamp_ns < 0:  # builtin_interfaces/Time.sec is int32: a negative stamp cannot be republished
        raise InputRejected("out_of_range", f"window stamp {stamp_ns} ns is before the epoch")
    spikes = unpack_spikes(payload_view(msg.data), msg.num_steps, msg.num_neurons, msg.encoding)
    return SpikeWindow(msg.modality, spikes, stamp_ns, int(msg.step_ns), int(msg.seq))


# --- EventArray --------------------------------------------------------------------------------

def events_to_msg(payload: bytes | np.ndarray, *, encoding: str, width: int, height: int, time_base_ns: int,
                  stamp_ns: int, seq: int, frame_id: str = "camera"):
    """An EventArray around an already packed payload (``encode_xytp`` / ``encode_evt3`` output).

    ``stamp_ns`` is the sensor time of the last event in the packet (see EventArray.msg).
    """
    from snn_fusion_ros.msg import EventArray

    msg = EventArray(width=int(width), height=int(height), encoding=encoding, time_base_ns=int(time_base_ns),
                     seq=int(seq))
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.events = to_uint8_array(payload)
    return msg


# --- AudioFrame --------------------------------------------------------------------------------

def audio_to_msg(samples: np.ndarray, sample_rate_hz: int, stamp_ns: int, seq: int,
                 sample_format: str = "S16LE", frame_id: str = "microphone"):
    """Float samples in [-1, 1], shape (n,) or (n, channels) -> AudioFrame."""
    from snn_fusion_ros.msg import AudioFrame

    if sample_format not in AUDIO_FORMATS:
        raise ValueError(f"sample_format {sample_format!r}; expected one of {sorted(AUDIO_FORMATS)}")
    x = np.asarray(samples, dtype=np.float32)
    x2 = x.reshape(x.shape[0], -1)
    dtype, scale = AUDIO_FORMATS[sample_format]
    if dtype.kind == "i":
        data = np.clip(np.round(x2 * scale), -scale, scale - 1).astype(dtype)
    else:
        data = x2.astype(dtype)
    msg = AudioFrame()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.sample_rate_hz = int(sample_rate_hz)
    msg.channels = int(x2.shape[1])
    msg.sample_format = sample_format
    msg.seq = int(seq)
    msg.data = to_uint8_array(data)
    return msg


@dataclass(frozen=True)
class AudioChunk:
    """A decoded AudioFrame: float32 samples (n, channels) full scale 1.0, rate in Hz, first-sample stamp."""

    samples: np.ndarray
    sample_rate_hz: int
    stamp_ns: int
    seq: int


def msg_to_audio(msg, max_bytes: int) -> AudioChunk:
    if msg.sample_format not in AUDIO_FORMATS:
        raise InputRejected("bad_encoding",
                            f"sample_format {msg.sample_format!r}; expected one of {sorted(AUDIO_FORMATS)}")
    if msg.channels == 0 or not 0 < msg.sample_rate_hz <= MAX_INPUT_RATE_HZ:
        raise InputRejected("bad_shape", f"channels={msg.channels}, sample_rate_hz={msg.sample_rate_hz}; expected "
                                         f"channels >= 1 and 1 <= sample_rate_hz <= {MAX_INPUT_RATE_HZ}")
    raw = payload_view(msg.data)
    if raw.size == 0:
        raise InputRejected("empty", "AudioFrame with no samples")
    if raw.size > max_bytes:
        raise InputRejected("oversized", f"{raw.size} bytes > max_audio_bytes {max_bytes}")
    dtype, scale = AUDIO_FORMATS[msg.sample_format]
    frame_bytes = dtype.itemsize * msg.channels
    if raw.size % frame_bytes:
        raise InputRejected("bad_length", f"{raw.size} bytes is not a multiple of {frame_bytes} "
                                          f"({msg.channels} channel(s) x {dtype.itemsize} bytes)")
    samples = raw.view(dtype).reshape(-1, msg.channels)
    out = samples.astype(np.float32) / np.float32(scale) if dtype.kind == "i" else samples.astype(np.float32)
    if dtype.kind == "f" and not np.isfinite(out).all():
        raise InputRejected("non_finite", "NaN or infinity in F32LE samples")
    return AudioChunk(out, int(msg.sample_rate_hz), stamp_to_ns(msg.header.stamp), int(msg.seq))


# --- sensor_msgs/Imu ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ImuSample:
    """One IMU reading; a vector is NaN where the message marks it absent (covariance[0] == -1)."""

    stamp_ns: int
    accel: np.ndarray  # (3,) m/s^2
    gyro: np.ndarray  # (3,) rad/s


def msg_to_imu(msg) -> ImuSample:
    """sensor_msgs/Imu -> ImuSample, honouring REP-145: covariance[0] == -1 means "field absent".

    An all-zero covariance means "unknown covariance", and the field is used.
    """
    def vec(v, cov) -> np.ndarray:
        if cov[0] == -1.0:
            return np.full(3, np.nan)
        out = np.array([v.x, v.y, v.z], dtype=np.float64)
        if not np.isfinite(out).all():
            raise InputRejected("non_finite", f"non-finite IMU vector {out.tolist()}")
        return out

    accel = vec(msg.linear_acceleration, msg.linear_acceleration_covariance)
    gyro = vec(msg.angular_velocity, msg.angular_velocity_covariance)
    if np.isnan(accel).all() and np.isnan(gyro).all():
        raise InputRejected("empty", "Imu message marks both linear_acceleration and angular_velocity absent")
    return ImuSample(stamp_to_ns(msg.header.stamp), accel, gyro)


def imu_to_msg(stamp_ns: int, accel: np.ndarray | None, gyro: np.ndarray | None, frame_id: str = "imu"):
    """A sensor_msgs/Imu with orientation marked absent and covariances unknown (all zero)."""
    from sensor_msgs.msg import Imu

    msg = Imu()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.orientation_covariance[0] = -1.0
    if accel is None or not np.isfinite(accel).all():
        msg.linear_acceleration_covariance[0] = -1.0
    else:
        msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = map(float, accel)
    if gyro is None or not np.isfinite(gyro).all():
        msg.angular_velocity_covariance[0] = -1.0
    else:
        msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = map(float, gyro)
    return msg


# --- Classification ----------------------------------------------------------------------------

def classification_to_msg(*, stamp_ns: int, scores: np.ndarray, class_names: list[str],
                          modalities_used: list[str], backend: str, backend_device: str,
                          fallback_active: bool, latency_ms: float, model_version: str, seq: int,
                          min_confidence: float = 0.0):
    """Build a Classification; class_id is -1 when the best score is below ``min_confidence``."""
    from snn_fusion_ros.msg import Classification

    probs = np.asarray(scores, dtype=np.float32)
    msg = Classification()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    best = int(np.argmax(probs)) if probs.size else -1
    conf = float(probs[best]) if best >= 0 else 0.0
    if best >= 0 and conf < min_confidence:
        best = -1
    msg.class_id = best
    msg.label = class_names[best] if best >= 0 else ""
    msg.confidence = conf if math.isfinite(conf) else 0.0
    msg.class_names = list(class_names)
    msg.scores = probs.tolist()
    msg.modalities_used = list(modalities_used)
    msg.backend = backend
    msg.backend_device = backend_device
    msg.fallback_active = bool(fallback_active)
    msg.latency_ms = float(latency_ms)
    msg.model_version = model_version
    msg.seq = int(seq)
    return msg


# --- sensor_msgs/Image (debug views) -----------------------------------------------------------

def image_to_msg(img_bgr: np.ndarray, stamp_ns: int, frame_id: str = ""):
    """A ``bgr8`` sensor_msgs/Image from an (H, W, 3) uint8 array."""
    from sensor_msgs.msg import Image

    img = np.ascontiguousarray(img_bgr, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) BGR image, got shape {img.shape}")
    msg = Image(height=img.shape[0], width=img.shape[1], encoding="bgr8", is_bigendian=0, step=img.shape[1] * 3)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = to_uint8_array(img)
    return msg
