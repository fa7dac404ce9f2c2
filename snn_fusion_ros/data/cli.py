"""``snn-fusion dataset build|info``: build the fused digit data set into the cache, or describe it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from snn_fusion_ros.data.builder import (
    TRAIN_ACCENTS,
    TRAIN_LANGUAGES,
    TRAIN_VARIANTS,
    TRAIN_VOICES,
    BuildConfig,
    build,
    default_cache,
)
from snn_fusion_ros.data.dvs_emulator import parse_overrides
from snn_fusion_ros.data.sources import SourceUnavailable


def add_dvs_emulator_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--dvs-emulator FIELD=VALUE`` (repeatable), shared by ``dataset build`` and ``train``."""
    parser.add_argument("--dvs-emulator", action="append", default=[], metavar="FIELD=VALUE",
                        help="data set: override a field of the DVS emulator (DvsEmulatorConfig, e.g. saccade_px=4 "
                             "threshold=0.1; repeat the option for more; see doc/data.md)" + note)


def dvs_emulator_overrides(args: argparse.Namespace, command: str) -> dict[str, int | float] | None:
    """The parsed ``--dvs-emulator`` items, or None after writing ``<command>: <why>`` to stderr."""
    try:
        return parse_overrides(args.dvs_emulator)
    except ValueError as exc:
        sys.stderr.write(f"{command}: --dvs-emulator: {exc}\n")
        return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="fetch the sources and build the data set (skips what is cached)")
    i = sub.add_parser("info", help="counts per split / modality / class and speakers per split")
    for p in (b, i):
        p.add_argument("--cache", type=Path, default=None,
                       help="cache folder (default $SNN_FUSION_DATA or ~/.cache/snn_fusion_ros/datasets)")
    b.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    b.add_argument("--quick", action="store_true", help="small build: few speakers, every 10th image")
    b.add_argument("--duration-ms", type=float, default=1000.0, help="span of each fused sample (ms)")
    b.add_argument("--train-accents", choices=tuple(TRAIN_ACCENTS), default="core",
                   help="accents of the train split's eSpeak voices: core (6) or eu (21; see doc/data.md)")
    b.add_argument("--train-languages", choices=tuple(TRAIN_LANGUAGES), default="en",
                   help="digit words the train split's eSpeak voices read: en, or en-es-fr (also Spanish and "
                        "French, the languages of the real voices; see doc/data.md)")
    b.add_argument("--train-voices", choices=tuple(TRAIN_VOICES), default="allison",
                   help="real voices of the train split: allison, or asterisk (every Debian Asterisk voice but "
                        "the test split's June; see doc/data.md)")
    b.add_argument("--train-variants", choices=tuple(TRAIN_VARIANTS), default="core",
                   help="voice variants of the train split's eSpeak voices: core (the same 6 for every accent) or "
                        "all (97, 6 per accent in rotation; see doc/data.md)")
    b.add_argument("--dvs-distortions", type=int, default=0, metavar="K",
                   help="K extra renditions of every training image, each randomly distorted (default 0)")
    add_dvs_emulator_argument(b)
    b.add_argument("--offline", action="store_true", help="never fetch; fail if a source is not cached")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.add_argument("--workers", type=int, default=None, help="processes for the DVS emulator (default: CPUs)")
    i.add_argument("--build", default=None, help="build key (default: the latest build)")
    i.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from snn_fusion_ros.data.dataset import dataset_info

    cache = args.cache if args.cache is not None else default_cache()
    if args.action == "build":
        dvs = dvs_emulator_overrides(args, "snn-fusion dataset build")
        if dvs is None:
            return 2
        cfg = BuildConfig.create(seed=args.seed, quick=args.quick, duration_ms=args.duration_ms,
                                 train_accents=args.train_accents, dvs_train_distortions=args.dvs_distortions,
                                 train_languages=args.train_languages, train_voices=args.train_voices,
                                 train_variants=args.train_variants, **dvs)
        try:
            out = build(cfg, cache=cache, offline=args.offline,
                        progress=not args.no_progress and sys.stderr.isatty(), workers=args.workers)
        except SourceUnavailable as exc:
            sys.stderr.write(f"snn-fusion dataset build: {exc}\n")
            return 1
        sys.stdout.write(f"built {out}\n")
        return 0
    try:
        info = dataset_info(cache, args.build)
    except FileNotFoundError as exc:
        sys.stderr.write(f"snn-fusion dataset info: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(info, indent=1, sort_keys=True) + "\n")
        return 0
    sys.stdout.write(f"build {info['build']} at {info['path']}\n")
    for split, entry in info["splits"].items():
        counts = ", ".join(f"{m} {entry[m]['total']}" for m in ("audio", "dvs", "imu"))
        fused = f", fused {entry['fused']}" if "fused" in entry else ""
        sys.stdout.write(f"{split}: {counts}{fused}; {len(entry['speakers'])} speakers: "
                         f"{', '.join(entry['speakers'])}\n")
    return 0
