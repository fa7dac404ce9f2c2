"""``snn-fusion voices``: a model's audio path on fresh eSpeak voices that no split of the data set holds.

Why: validation over-rates the audio path (models/README.md, rounds 14-18). Its voices are accents
held out of training, but spoken with the training split's voice variants (``m1 f1 m2 f2 m3 f5``),
whereas the test split's eSpeak voices use variants that training never heard (``m4 f3 m5 f4``). This
command synthesises the digit words "zero".."nine" for accents x variants, places them in a 1 s sample
as the data builder does (telephone-band 8 kHz, speech centred; repetitions vary rate, pitch and
gain), encodes them with the model's own audio encoder configuration, and decides with the audio
alone (DVS and IMU all-zero input) at the last window, as ``snn-fusion eval`` does. Nothing of the
test split is read.

Defaults: the accents are the model's own validation accents (recomputed from its recorded training
settings and the build's speaker list; they exist only for a model trained with
``--val-audio-holdout accent``), so the model never trained on them; the variants are
:data:`UNUSED_VARIANTS`, which no split uses. ``split_overlap`` in the result names every chosen
accent or variant that a split does use, so a probe of test-like voices is visible as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from snn_fusion_ros.data.builder import PROBE_VARIANTS as UNUSED_VARIANTS  # in no split of any build


def espeak_variants() -> set[str]:
    """Names of the voice variants in the bundled eSpeak NG data (``voices/!v``)."""
    import espeakng_loader

    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return {p.name for p in folder.iterdir() if p.is_file()}


def model_validation_accents(art: Any, cache: Path | None = None) -> list[str]:
    """The accents the model's validation held out (never in its training), sorted.

    Raises ValueError when the artifact records no training settings or build, when its validation
    held out voices rather than accents, or when the build is not in the cache.
    """
    from snn_fusion_ros.data.builder import find_build
    from snn_fusion_ros.snn.merge import model_build, training_record
    from snn_fusion_ros.snn.train_cli import build_held_out_audio

    tr, build = training_record(art), model_build(art)
    if not isinstance(tr, dict) or not build:
        raise ValueError(f"{art.path} records no training settings and build; pass --accents")
    holdout = tr.get("val_audio_holdout", "voice")
    if holdout != "accent":
        raise ValueError(f"{art.path} was validated on held-out voices ({holdout!r}), not accents; pass --accents")
    try:
        folder = find_build(cache, build)
    except FileNotFoundError as exc:
        raise ValueError(f"build {build} of {art.path} is not in the cache ({exc}); pass --accents") from exc
    return sorted(build_held_out_audio(folder, tr["seed"], tr["val_fraction"], holdout))


def split_overlap(accents: list[str], variants: list[str], validation: frozenset[str] = frozenset()
                  ) -> dict[str, list[str]]:
    """Which of ``accents`` / ``variants`` a split of the data set uses (any train-accent set or variant pool); accents
    in ``validation`` (the model's validation accents, held out of its training) are listed as such."""
    from snn_fusion_ros.data.builder import ESPEAK_BASES, ESPEAK_VARIANTS, TRAIN_ACCENTS, TRAIN_VARIANTS

    train_accents = {a for group in TRAIN_ACCENTS.values() for a in group}
    train_variants = {v for pool in TRAIN_VARIANTS.values() for v in pool}
    return {"train_accents": [a for a in accents if a in train_accents and a not in validation],
            "model_validation_accents": [a for a in accents if a in validation],
            "test_accents": [a for a in accents if a in ESPEAK_BASES["test"]],
            "train_variants": [v for v in variants if v in train_variants],
            "test_variants": [v for v in variants if v in ESPEAK_VARIANTS["test"]]}


def synthesize_voices(voices: list[str], reps: int, seed: int, sample_rate_hz: int, duration_ms: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(waveforms (N, S) float32, labels (N,), speakers (N,))``: every voice says every digit ``reps``
    times (repetition 0 at eSpeak's defaults, the others with drawn rate, pitch and gain, as in the
    builder), placed in ``duration_ms`` at ``sample_rate_hz``."""
    from snn_fusion_ros.data import audio as audio_mod

    raws = audio_mod.load_espeak(voices, reps, np.random.default_rng([seed, 0]))
    gains = np.random.default_rng([seed, 1]).uniform(0.6, 1.0, len(raws))
    waves = [audio_mod.place_audio(raw, sample_rate_hz, duration_ms, 1.0, 1.0 if i % reps == 0 else float(gains[i]))
             for i, raw in enumerate(raws)]
    return (np.stack(waves).astype(np.float32), np.asarray([r.label for r in raws], np.int64),
            np.asarray([r.speaker for r in raws]))


def audio_alone_decisions(art: Any, waves: np.ndarray, sample_rate_hz: int, duration_ms: float) -> np.ndarray:
    """Decisions (N,) of the model on ``waves`` with only the audio present (last window, state reset)."""
    from snn_fusion_ros.data.encode import EncoderConfigs, encode_audio
    from snn_fusion_ros.snn.training import last_window_scores

    cfgs = EncoderConfigs.from_dict(art.encoder_config)
    n_windows = int(duration_ms // cfgs.window_ms)
    x = np.stack([encode_audio(w, sample_rate_hz, cfgs.audio, n_windows) for w in waves]).astype(np.float32)
    return last_window_scores(art.build_model().eval(), {"audio": x}).argmax(-1)  # absent modalities: zeros


def _grouped(keys: np.ndarray, ok: np.ndarray) -> dict[str, dict[str, float]]:
    return {str(k): {"n": int((keys == k).sum()), "accuracy": float(ok[keys == k].mean())} for k in np.unique(keys)}


def probe(art: Any, accents: list[str], variants: list[str], reps: int = 3, seed: int = 0,
          validation: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The result of ``snn-fusion voices`` (see the module docstring) as a JSON-serialisable dict; the
    samples have the data builder's default rate and duration (:class:`BuildConfig`)."""
    from snn_fusion_ros.data.builder import BuildConfig
    from snn_fusion_ros.snn.evaluate import proportion_ci95

    build = BuildConfig()
    sample_rate_hz, duration_ms = build.sample_rate_hz, build.duration_ms
    voices = [f"{a}+{v}" for a in accents for v in variants]
    waves, labels, speakers = synthesize_voices(voices, reps, seed, sample_rate_hz, duration_ms)
    ok = audio_alone_decisions(art, waves, sample_rate_hz, duration_ms) == labels
    accent = np.array([s.split(":", 1)[1].split("+", 1)[0] for s in speakers])
    variant = np.array([s.rsplit("+", 1)[1] for s in speakers])
    return {"model": str(art.path), "model_version": art.version, "accents": accents, "variants": variants,
            "reps": reps, "seed": seed, "n": len(ok), "audio_alone_accuracy": float(ok.mean()),
            "accuracy_ci95": proportion_ci95(int(ok.sum()), len(ok)), "per_voice": _grouped(speakers, ok),
            "per_accent": _grouped(accent, ok), "per_variant": _grouped(variant, ok),
            "split_overlap": split_overlap(accents, variants, validation),
            "decision_rule": "argmax of the scores at the last window of each 1 s sample, audio alone "
                             "(DVS and IMU all-zero), state reset per sample"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="", help="artifact directory or model name (default: the shipped default)")
    parser.add_argument("--accents", default="",
                        help="comma-separated eSpeak base voices (default: the model's own validation accents)")
    parser.add_argument("--variants", default=",".join(UNUSED_VARIANTS),
                        help=f"comma-separated eSpeak variants (default {','.join(UNUSED_VARIANTS)}, in no split)")
    parser.add_argument("--reps", type=int, default=3, help="renditions of each digit per voice (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the rendition draws")
    parser.add_argument("--cache", type=Path, default=None, help="data set cache (for the model's validation accents)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from snn_fusion_ros.data.builder import default_cache
    from snn_fusion_ros.data.sources import SourceUnavailable
    from snn_fusion_ros.models import resolve_model
    from snn_fusion_ros.snn.artifact import ArtifactError, load_artifact

    torch.set_num_threads(max(1, args.threads))
    try:
        if args.reps < 1:
            raise ValueError(f"--reps must be >= 1, got {args.reps}")
        art = load_artifact(resolve_model(args.model))
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = sorted(set(variants) - espeak_variants())
        if not variants or unknown:
            raise ValueError(f"unknown eSpeak variant(s) {unknown or variants}; "
                             f"known: {', '.join(sorted(espeak_variants()))}")
        cache = args.cache if args.cache is not None else default_cache()
        accents = [a.strip() for a in args.accents.split(",") if a.strip()]
        if accents:
            try:
                validation = frozenset(model_validation_accents(art, cache))
            except ValueError:  # only annotates split_overlap when the accents were given
                validation = frozenset()
        else:
            accents = model_validation_accents(art, cache)
            validation = frozenset(accents)
        res = probe(art, accents, variants, args.reps, args.seed, validation)
    except (OSError, ImportError, ArtifactError, ValueError, SourceUnavailable) as exc:
        sys.stderr.write(f"snn-fusion voices: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(res, indent=1, sort_keys=True) + "\n")
    else:
        lo, hi = res["accuracy_ci95"]
        sys.stdout.write(f"model {res['model_version']}: audio alone {res['audio_alone_accuracy']:.4f} "
                         f"(95 % CI {lo:.4f}-{hi:.4f}) on {res['n']} utterances, accents {','.join(accents)} x "
                         f"variants {','.join(variants)}\n")
        for k, v in res["per_voice"].items():
            sys.stdout.write(f"  {k} {v['accuracy']:.4f} ({v['n']})\n")
        overlap = {k: v for k, v in res["split_overlap"].items() if v}
        if overlap:
            sys.stdout.write(f"  note: used by a split of the data set: {overlap}\n")
    return 0
