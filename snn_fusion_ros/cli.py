"""``snn-fusion``: the command-line entry point (training, evaluation, benchmarks, bags, demo).

Subcommands stay thin: each lives in the module named in :data:`COMMANDS`, which provides
``add_arguments(parser)`` and ``run(args) -> int``, and is imported only when chosen, so a
missing optional package (lava, akida) never breaks an unrelated command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("snn_fusion_ros.bench.cli", "run benchmarks (encoders, backends, e2e, all)"),
    "info": ("snn_fusion_ros.backends.cli", "list backends, whether they can run here and why not"),
    "dataset": ("snn_fusion_ros.data.cli", "build / describe the fused digit data set (audio, emulated DVS, IMU)"),
    "train": ("snn_fusion_ros.snn.train_cli", "train the fusion SNN on the built data set (checkpoints, resume)"),
    "merge": ("snn_fusion_ros.snn.merge", "merge trained networks into one whose readout is the sum of theirs"),
    "eval": ("snn_fusion_ros.snn.eval_cli", "accuracy on the test split: modalities, missing sets, noise, backends"),
    "voices": ("snn_fusion_ros.snn.voices", "audio alone on fresh eSpeak voices no split holds (accents x variants)"),
    "task": ("snn_fusion_ros.snn.motions", "train + test the second task: BasicMotions, real 6-axis IMU (4 classes)"),
    "make-bag": ("snn_fusion_ros.bags.cli_make", "write a rosbag2 bag from real recordings or the data set"),
    "replay": ("snn_fusion_ros.bags.cli_replay", "publish a bag with its original timing (and /clock)"),
    "record": ("snn_fusion_ros.bags.cli_record", "record topics (classifications, diagnostics) to MCAP"),
    "demo": ("snn_fusion_ros.demo", "replay the demo bag through the nodes and report (make demo)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snn-fusion", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Arguments are added lazily in main() for the chosen command only.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the error listing valid commands
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"snn-fusion {name}", description=COMMANDS[name][1])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
