"""One window of spikes from one modality, and its packed wire layouts.

The ``SpikeTrain`` message carries a :class:`SpikeWindow`; :func:`pack_spikes` and
:func:`unpack_spikes` are the only conversions between the boolean matrix and the bytes.

Layouts (``encoding``):

``dense_bits``
    ``num_steps x num_neurons`` boolean matrix, row-major, packed with
    ``numpy.packbits(bitorder="little")``; ``ceil(num_steps * num_neurons / 8)`` bytes.
``sparse_u32``
    little-endian ``uint32`` pairs ``(step, neuron)`` sorted by step then neuron; 8 bytes a spike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snn_fusion_ros.errors import InputRejected

MODALITIES: tuple[str, ...] = ("audio", "dvs", "imu")
ENCODINGS: tuple[str, ...] = ("dense_bits", "sparse_u32")


@dataclass(frozen=True)
class SpikeWindow:
    """Spikes of one modality over one window.

    Attributes
    ----------
    modality: "audio", "dvs" or "imu".
    spikes: bool array, shape (num_steps, num_neurons).
    stamp_ns: sensor time at the END of the window, ns.
    step_ns: length of one step, ns.
    seq: window sequence number of the producing encoder.
    """

    modality: str
    spikes: np.ndarray
    stamp_ns: int
    step_ns: int
    seq: int = 0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality {self.modality!r} is not one of {MODALITIES}")
        if self.spikes.ndim != 2 or self.spikes.dtype != np.bool_:
            raise ValueError(
                f"spikes must be a 2-D bool array (steps, neurons), got {self.spikes.dtype} {self.spikes.shape}"
            )
        if self.step_ns <= 0:
            raise ValueError(f"step_ns must be > 0, got {self.step_ns}")

    @property
    def num_steps(self) -> int:
        return int(self.spikes.shape[0])

    @property
    def num_neurons(self) -> int:
        return int(self.spikes.shape[1])

    @property
    def start_ns(self) -> int:
        return self.stamp_ns - self.num_steps * self.step_ns


def pack_spikes(spikes: np.ndarray, encoding: str = "dense_bits") -> bytes:
    """Pack a (steps, neurons) bool matrix into the wire layout ``encoding``."""
    if encoding == "dense_bits":
        return np.packbits(np.ascontiguousarray(spikes, dtype=np.bool_).ravel(), bitorder="little").tobytes()
    if encoding == "sparse_u32":
        steps, neurons = np.nonzero(spikes)
        pairs = np.empty((steps.size, 2), dtype="<u4")
        pairs[:, 0] = steps
        pairs[:, 1] = neurons
        return pairs.tobytes()
    raise ValueError(f"unknown spike encoding {encoding!r}; expected one of {ENCODINGS}")


def unpack_spikes(data: bytes | memoryview | np.ndarray, num_steps: int, num_neurons: int,
                  encoding: str) -> np.ndarray:
    """Inverse of :func:`pack_spikes`; raises :class:`InputRejected` on inconsistent input."""
    if num_steps <= 0 or num_neurons <= 0:
        raise InputRejected("bad_shape", f"num_steps={num_steps}, num_neurons={num_neurons}; both must be > 0")
    buf = np.frombuffer(data, dtype=np.uint8)
    n_bits = num_steps * num_neurons
    if encoding == "dense_bits":
        expected = (n_bits + 7) // 8
        if buf.size != expected:
            raise InputRejected("bad_length", f"dense_bits payload is {buf.size} bytes, expected {expected}")
        bits = np.unpackbits(buf, count=n_bits, bitorder="little")
        return bits.reshape(num_steps, num_neurons).astype(np.bool_)
    if encoding == "sparse_u32":
        if buf.size % 8:
            raise InputRejected("bad_length", f"sparse_u32 payload of {buf.size} bytes is not a multiple of 8")
        pairs = buf.view("<u4").reshape(-1, 2)
        if pairs.size and (pairs[:, 0].max() >= num_steps or pairs[:, 1].max() >= num_neurons):
            raise InputRejected("out_of_range", f"spike index outside ({num_steps}, {num_neurons})")
        out = np.zeros((num_steps, num_neurons), dtype=np.bool_)
        out[pairs[:, 0], pairs[:, 1]] = True
        return out
    raise InputRejected("bad_encoding", f"spike encoding {encoding!r}; expected one of {ENCODINGS}")
