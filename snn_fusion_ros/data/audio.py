"""Spoken digits 0-9: real recorded voices (Asterisk prompts) and eSpeak NG voices, as raw waveforms.

Speakers (a speaker is one voice; the same person in two languages is ONE speaker):

* ``allison`` (real, female): Asterisk prompts ``en_US_f_Allison`` and ``es_MX_f_Allison``, Debian
  packages ``asterisk-core-sounds-en-wav`` / ``-es-wav`` (digit words in English and Spanish).
* ``june`` (real, female): ``fr_CA_f_June``, ``asterisk-core-sounds-fr-wav`` (French digit words).
* Further real voices (``BuildConfig.train_voices`` "asterisk", train split only): ``carlo``
  (``it_IT_m_Carlo``, ``asterisk-core-sounds-it-wav``, Italian, male), ``menardi`` (``it_IT_f_Menardi``,
  ``asterisk-prompt-it-menardi-wav``, Italian, female), ``ivrvoice`` (``ru_RU_f_IvrvoiceRU``,
  ``asterisk-core-sounds-ru-wav``, Russian, female), ``armelle`` (Armelle Desjardins,
  ``asterisk-prompt-fr-armelle``, French, female) and ``es_co`` (``asterisk-prompt-es-co``, Colombian
  Spanish). The last two ship raw GSM 6.10 (``.gsm``, 8 kHz), read with libsndfile.
* ``espeak:<voice>+<variant>``: eSpeak NG voices reading the English digit words; the base voice
  (en, de, fr, ...) sets the accent rules and the variant (m1.., f1..) the voice quality. A voice
  whose language is Spanish or French may also read that language's digit words
  (:data:`DIGIT_WORDS_BY_LANGUAGE`; source ``espeak:<voice>:<language>``), still as the same speaker.

Every waveform is band-limited to the telephone band of the Asterisk prompts (resampled through
8 kHz), resampled to ``sample_rate_hz``, peak-normalised and placed centred in a window of
``duration_ms`` (zero-padded; a longer utterance is cropped around its centre of energy).
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from snn_fusion_ros.data.espeak import ESPEAK_RATE_HZ, Utterance, synthesize
from snn_fusion_ros.data.sources import SourceUnavailable, fetch_debian_package

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: The digit words 0..9 of the languages the data set's real voices speak (Allison: en, es; June: fr).
DIGIT_WORDS_BY_LANGUAGE: dict[str, tuple[str, ...]] = {
    "en": DIGIT_WORDS,
    "es": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
    "fr": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
}

ASTERISK_RATE_HZ = 8000
#: Bytes of one raw GSM 6.10 frame (160 samples, 20 ms at 8 kHz).
GSM_FRAME_BYTES = 33


@dataclass(frozen=True)
class AsteriskVoice:
    """Where one voice's digit prompts lie: ``usr/share/asterisk/sounds/<folder>/digits/<d>.<ext>`` in a
    Debian package. ``ext`` "wav" is 16-bit PCM WAV, "gsm" raw GSM 6.10 at 8 kHz."""

    package: str
    folder: str
    ext: str = "wav"


#: speaker -> the prompt sets of that person (one per language; the languages are in the module docstring).
ASTERISK_SPEAKERS: dict[str, tuple[AsteriskVoice, ...]] = {
    "allison": (AsteriskVoice("asterisk-core-sounds-en-wav", "en_US_f_Allison"),
                AsteriskVoice("asterisk-core-sounds-es-wav", "es_MX_f_Allison")),
    "june": (AsteriskVoice("asterisk-core-sounds-fr-wav", "fr_CA_f_June"),),
    "carlo": (AsteriskVoice("asterisk-core-sounds-it-wav", "it_IT_m_Carlo"),),
    "menardi": (AsteriskVoice("asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi"),),
    "ivrvoice": (AsteriskVoice("asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU"),),
    "armelle": (AsteriskVoice("asterisk-prompt-fr-armelle", "fr", "gsm"),),
    "es_co": (AsteriskVoice("asterisk-prompt-es-co", "es", "gsm"),),
}


@dataclass(frozen=True)
class RawAudio:
    """One utterance before placement: mono float32 samples in [-1, 1] at ``rate_hz``."""

    samples: np.ndarray
    rate_hz: int
    label: int
    speaker: str
    source: str  # e.g. "asterisk:en_US_f_Allison/digits/7.wav" or "espeak:de+m3"


def read_wav(data: bytes | Path) -> tuple[np.ndarray, int]:
    """(float32 mono samples in [-1, 1], rate in Hz) of a 16-bit PCM WAV file or its bytes."""
    src = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with wave.open(src, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{data if isinstance(data, Path) else 'WAV'}: sample width "
                             f"{w.getsampwidth()} bytes, expected 2 (16-bit PCM)")
        n_ch, rate = w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if n_ch > 1:
        pcm = pcm.reshape(-1, n_ch).mean(axis=1)
    return pcm, rate


def read_gsm(path: Path) -> tuple[np.ndarray, int]:
    """(float32 mono samples in [-1, 1], 8000) of a raw GSM 6.10 file (Asterisk ``.gsm``)."""
    import soundfile

    size = Path(path).stat().st_size
    if size == 0 or size % GSM_FRAME_BYTES:
        raise ValueError(f"{path}: {size} bytes is not a whole number of {GSM_FRAME_BYTES}-byte GSM 6.10 frames")
    pcm, _ = soundfile.read(str(path), format="RAW", subtype="GSM610", samplerate=ASTERISK_RATE_HZ, channels=1,
                            dtype="float32")
    return pcm, ASTERISK_RATE_HZ


def asterisk_digit_paths(root: Path, folder: str, ext: str = "wav") -> list[Path]:
    """The ten files ``usr/share/asterisk/sounds/<folder>/digits/<d>.<ext>`` under an unpacked package."""
    where = Path(root) / "usr" / "share" / "asterisk" / "sounds" / folder / "digits"
    paths = [where / f"{d}.{ext}" for d in range(10)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SourceUnavailable(folder, f"digit prompts {missing} missing under {where}")
    return paths


def load_asterisk(speaker: str, cache: Path, offline: bool = False) -> list[RawAudio]:
    """The digit prompts 0-9 of an Asterisk ``speaker`` (all its languages), fetched into ``cache``.

    The source of an utterance is ``asterisk:<folder>/digits/<d>.<ext>``.
    """
    if speaker not in ASTERISK_SPEAKERS:
        raise ValueError(f"unknown Asterisk speaker {speaker!r}; expected one of {sorted(ASTERISK_SPEAKERS)}")
    out = []
    for voice in ASTERISK_SPEAKERS[speaker]:
        root = fetch_debian_package(voice.package, cache, offline=offline)
        for digit, path in enumerate(asterisk_digit_paths(root, voice.folder, voice.ext)):
            try:
                pcm, rate = read_wav(path) if voice.ext == "wav" else read_gsm(path)
            except (ValueError, EOFError, RuntimeError, wave.Error) as exc:  # soundfile errors are RuntimeErrors
                raise SourceUnavailable(voice.package, f"{path} cannot be decoded ({exc}); delete {root} to "
                                                       "fetch the package again") from exc
            out.append(RawAudio(pcm, rate, digit, speaker, f"asterisk:{voice.folder}/digits/{digit}.{voice.ext}"))
    return out


def espeak_speaker(voice: str) -> str:
    """Speaker id of an eSpeak voice name such as ``de+m3``."""
    return f"espeak:{voice}"


def espeak_base(speaker: str) -> str | None:
    """Base voice (accent) of an eSpeak speaker id (``espeak:de+m3`` -> ``de``); None for a recorded speaker."""
    return speaker.split(":", 1)[1].split("+", 1)[0] if speaker.startswith("espeak:") else None


def espeak_requests(voices: list[str], reps: int, rng: np.random.Generator, language: str = "en"
                    ) -> list[tuple[Utterance, int]]:
    """Synthesis requests with their digit: each voice says each digit word of ``language`` ``reps``
    times, with random rate and pitch.

    Repetition 0 uses eSpeak's defaults (175 wpm, pitch 50, range 50); the others draw
    rate ~ U(140, 210) wpm, pitch ~ U(25, 75), range ~ U(25, 75) from ``rng``.
    """
    if language not in DIGIT_WORDS_BY_LANGUAGE:
        raise ValueError(f"language={language!r}; expected one of {list(DIGIT_WORDS_BY_LANGUAGE)}")
    reqs = []
    for voice in voices:
        for digit, word in enumerate(DIGIT_WORDS_BY_LANGUAGE[language]):
            for r in range(reps):
                if r == 0:
                    reqs.append((Utterance(voice, word), digit))
                else:
                    rate, pitch, rng_ = rng.integers([140, 25, 25], [211, 76, 76])
                    reqs.append((Utterance(voice, word, int(rate), int(pitch), int(rng_)), digit))
    return reqs


def load_espeak(voices: list[str], reps: int, rng: np.random.Generator, language: str = "en"
                ) -> list[RawAudio]:
    """Digits 0-9 in ``language`` read by each eSpeak ``voice`` ``reps`` times (see :func:`espeak_requests`).

    The source of an English utterance is ``espeak:<voice>``, of another language's
    ``espeak:<voice>:<language>``; the speaker is ``espeak:<voice>`` either way.
    """
    reqs = espeak_requests(voices, reps, rng, language)
    waves = synthesize([u for u, _ in reqs])
    out = []
    suffix = "" if language == "en" else f":{language}"
    for (req, digit), pcm in zip(reqs, waves, strict=True):
        if len(pcm) == 0:
            raise SourceUnavailable("espeakng-loader", f"eSpeak produced no audio for {req}")
        out.append(RawAudio(pcm.astype(np.float32) / 32768.0, ESPEAK_RATE_HZ, digit,
                            espeak_speaker(req.voice), f"espeak:{req.voice}{suffix}"))
    return out


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x.astype(np.float64)
    g = gcd(rate_in, rate_out)
    return resample_poly(x.astype(np.float64), rate_out // g, rate_in // g)


def speech_centre(x: np.ndarray, rate_hz: int) -> int:
    """Sample index of the centre of energy of ``x`` (10 ms frames)."""
    hop = max(1, rate_hz // 100)
    n = len(x) // hop
    if n == 0:
        return len(x) // 2
    energy = (x[: n * hop].reshape(n, hop) ** 2).sum(axis=1)
    if energy.sum() <= 0:
        return len(x) // 2
    return int(np.rint((np.arange(n) + 0.5) @ energy / energy.sum() * hop))


def place_audio(raw: RawAudio, sample_rate_hz: int, duration_ms: float, speed: float = 1.0,
                gain: float = 1.0) -> np.ndarray:
    """Waveform (round(duration * rate),) float32 at ``sample_rate_hz``, speech centred (see module doc).

    ``speed`` > 1 shortens the utterance (and raises its pitch) by resampling; ``gain`` scales the
    peak-normalised (0.5) waveform.
    """
    x = _resample(raw.samples, raw.rate_hz, ASTERISK_RATE_HZ)  # telephone band for every voice
    x = _resample(x, ASTERISK_RATE_HZ, sample_rate_hz)
    if speed != 1.0:
        n_out = max(1, int(np.rint(len(x) / speed)))
        x = np.interp(np.linspace(0, len(x) - 1, n_out), np.arange(len(x)), x)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    if peak > 0:
        x = x * (0.5 * gain / peak)
    n = int(np.rint(duration_ms * 1e-3 * sample_rate_hz))
    out = np.zeros(n, dtype=np.float32)
    start = n // 2 - speech_centre(x, sample_rate_hz)
    lo, hi = max(0, start), min(n, start + len(x))
    if hi > lo:
        out[lo:hi] = x[lo - start: hi - start]
    return np.clip(out, -1.0, 1.0)
