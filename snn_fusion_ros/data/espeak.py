"""Spoken digits synthesised with eSpeak NG (the library bundled in the PyPI wheel ``espeakng-loader``).

libespeak-ng keeps state between utterances (its output for the same text and voice differs from one
call to the next within a process), but a fresh process that synthesises the same list of utterances
in the same order produces identical samples. :func:`synthesize` therefore runs each batch in a new
worker process (``python -m snn_fusion_ros.data.espeak``): batches are reproducible bit for bit.

Wire format of the worker: a JSON list of requests on stdin; on stdout, per request, a little-endian
uint32 sample count followed by that many int16 samples at :data:`ESPEAK_RATE_HZ`.
"""

from __future__ import annotations

import ctypes
import json
import struct
import subprocess
import sys
from dataclasses import asdict, dataclass

import numpy as np

from snn_fusion_ros.data.sources import SourceUnavailable

#: Sample rate of eSpeak NG's output.
ESPEAK_RATE_HZ = 22050

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 3, 4


@dataclass(frozen=True)
class Utterance:
    """One synthesis request: ``voice`` is an eSpeak voice name with optional ``+variant``."""

    voice: str
    text: str
    rate_wpm: int = 175
    pitch: int = 50  # eSpeak base pitch, 0..100
    pitch_range: int = 50  # eSpeak intonation range, 0..100


def espeak_available() -> str:
    """Empty string when the bundled eSpeak NG can be loaded, else the reason why not."""
    try:
        import espeakng_loader  # noqa: F401
    except ImportError as exc:
        return f"Python package espeakng-loader not installed ({exc}); pip install espeakng-loader==0.2.4"
    return ""


def synthesize(utterances: list[Utterance]) -> list[np.ndarray]:
    """int16 waveforms at :data:`ESPEAK_RATE_HZ`, one per utterance, synthesised in one fresh process."""
    why = espeak_available()
    if why:
        raise SourceUnavailable("espeakng-loader", why)
    payload = json.dumps([asdict(u) for u in utterances]).encode()
    res = subprocess.run([sys.executable, "-m", "snn_fusion_ros.data.espeak"], input=payload,
                         capture_output=True, check=False)
    if res.returncode != 0:
        raise SourceUnavailable("espeakng-loader", f"eSpeak worker failed (exit {res.returncode}): "
                                                   f"{res.stderr.decode(errors='replace')[-400:]}")
    out, pos = [], 0
    data = res.stdout
    for u in utterances:
        if pos + 4 > len(data):
            raise SourceUnavailable("espeakng-loader", f"eSpeak worker output truncated at {u}")
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        out.append(np.frombuffer(data, dtype="<i2", count=n, offset=pos).copy())
        pos += 2 * n
    return out


def _worker() -> int:
    """Worker entry point: read requests from stdin, write samples to stdout."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate != ESPEAK_RATE_HZ:
        sys.stderr.write(f"espeak_Initialize returned {rate}, expected {ESPEAK_RATE_HZ} Hz\n")
        return 1
    chunks: list[bytes] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                     ctypes.c_void_p)

    def on_audio(wav, n, _events):
        if n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    cb = callback_type(on_audio)
    lib.espeak_SetSynthCallback(cb)
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    out = sys.stdout.buffer
    for req in json.loads(sys.stdin.buffer.read()):
        if lib.espeak_SetVoiceByName(req["voice"].encode()) != 0:
            sys.stderr.write(f"unknown eSpeak voice {req['voice']!r}\n")
            return 2
        lib.espeak_SetParameter(_ESPEAK_RATE, int(req["rate_wpm"]), 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, int(req["pitch"]), 0)
        lib.espeak_SetParameter(_ESPEAK_RANGE, int(req["pitch_range"]), 0)
        chunks.clear()
        lib.espeak_ng_SetRandSeed(ctypes.c_long(12345))  # noise generators (breathy variants)
        text = req["text"].encode() + b"\0"
        if lib.espeak_Synth(text, len(text), 0, 0, 0, 0, None, None) != 0:
            sys.stderr.write(f"espeak_Synth failed for {req}\n")
            return 3
        lib.espeak_Synchronize()
        pcm = b"".join(chunks)
        out.write(struct.pack("<I", len(pcm) // 2))
        out.write(pcm)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
