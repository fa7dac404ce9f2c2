"""``snn-fusion merge``: K trained fusion networks as one network whose readout is the sum of theirs.

:class:`~snn_fusion_ros.snn.network.FusionNet` is linear up to its LIF layers, and every LIF neuron sees
only its own input current. K networks with the same time constants, threshold, delays and input sizes
can therefore be placed side by side in one network of ``sum H_k`` neurons per modality population and
``sum F_k`` fusion neurons:

* ``w_in.<m>``: the members' rows stacked; ``w_rec.<m>`` and ``rec_mask.<m>``: block-diagonal (no
  connection between members);
* ``w_fuse``: member k's fusion rows read only member k's hidden neurons of each modality
  (block-structured, columns still in :data:`~snn_fusion_ros.spikes.MODALITIES` order);
* ``w_out``: the members' columns side by side, so the readout current, and hence the readout membrane
  (a linear leaky integrator from zero), is the **sum** of the members' at every step.

The merged network's decision is the argmax of the summed readout membranes (an ensemble of the members'
logits), computed by one ordinary network: the torch, NIR, Lava and Akida backends run it unchanged (the
torch step computes only the members' blocks, :mod:`snn_fusion_ros.snn.blocks`). The artifact stores the
block-structured tensors as their blocks (format 2, :mod:`snn_fusion_ros.snn.artifact`), so the weights
file grows with the member count, not with its square; loading restores the full tensors exactly.
Its scores are ``softmax`` of the sum (sharper than any member's).

With ``--validate`` the merged network (and, as a check, each member) is scored on the validation pairs
of the members' training runs, which must share the data build, seed, validation fraction and hold-out
(replicates made with ``snn-fusion train --replicate K`` do); the rows are written to the artifact's
``extra.validation_accuracy`` as ``snn-fusion train`` writes them. A member may itself be a merge (its
training settings are its first member's).

``--validation-build KEY`` scores on the validation pairs of build ``KEY`` instead, for members trained
on builds that differ only in their training voices (``--train-variants``): every member's run must have
held out accents (``--val-audio-holdout accent``) with one split, its own build must hold out the same
accents as ``KEY`` and have byte-identical DVS and IMU training files, so the pairs are held out of
every member's training. A member trained on ``KEY`` is checked against its recorded rows as above; the
others are scored without that check (their recorded rows are on other voices of the same accents).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.spikes import MODALITIES

#: network fields that may differ between members (they add up, or only seed the discarded init)
_SUMMED = ("hidden_neurons", "fusion_neurons")
_FREE = ("seed",)


def merged_config(configs: Sequence[FusionNetConfig]) -> FusionNetConfig:
    """The configuration of the members side by side; raises ``ValueError`` unless every field other than
    the population sizes and the seed is equal (time constants, threshold, delays, input sizes, ...)."""
    if len(configs) < 2:
        raise ValueError(f"merging needs at least 2 networks, got {len(configs)}")
    first = dataclasses.asdict(configs[0])
    for i, c in enumerate(configs[1:], start=1):
        d = dataclasses.asdict(c)
        diff = sorted(k for k in first if k not in _SUMMED + _FREE and first[k] != d[k])
        if diff:
            raise ValueError(f"network {i} differs from network 0 in {diff} "
                             f"({', '.join(f'{k}: {first[k]!r} vs {d[k]!r}' for k in diff)}); only "
                             f"{', '.join(_SUMMED)} may differ")
    return dataclasses.replace(configs[0], **{k: sum(getattr(c, k) for c in configs) for k in _SUMMED})


def merge_tensors(members: Sequence[tuple[FusionNetConfig, dict[str, torch.Tensor]]]
                  ) -> tuple[FusionNetConfig, dict[str, torch.Tensor]]:
    """``(config, artifact tensors)`` of the merged network (see the module docstring for the layout)."""
    cfg = merged_config([c for c, _ in members])
    h_all, f_all = cfg.hidden_neurons, cfg.fusion_neurons
    out: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        out[f"w_in.{m}"] = torch.cat([t[f"w_in.{m}"] for _, t in members], dim=0)
        out[f"w_rec.{m}"] = torch.block_diag(*[t[f"w_rec.{m}"] for _, t in members])
        out[f"rec_mask.{m}"] = torch.block_diag(*[t[f"rec_mask.{m}"] for _, t in members])
    w_fuse = torch.zeros(f_all, len(MODALITIES) * h_all, dtype=torch.float32)
    row = hid = 0
    for c, t in members:
        h, f = c.hidden_neurons, c.fusion_neurons
        for i in range(len(MODALITIES)):
            w_fuse[row: row + f, i * h_all + hid: i * h_all + hid + h] = t["w_fuse"][:, i * h: (i + 1) * h]
        row, hid = row + f, hid + h
    out["w_fuse"] = w_fuse
    out["w_out"] = torch.cat([t["w_out"] for _, t in members], dim=1)
    return cfg, {k: v.float().contiguous() for k, v in out.items()}


def merge_networks(models: Sequence[FusionNet]) -> FusionNet:
    """One :class:`FusionNet` whose readout membrane equals the sum of ``models``' (eval mode)."""
    cfg, tensors = merge_tensors([(m.config, m.artifact_tensors()) for m in models])
    net = FusionNet(cfg)
    net.load_artifact_tensors(tensors)
    net.eval()
    return net


def _member_record(art: Any) -> dict[str, Any]:
    ex = art.metadata.get("extra", {})
    return {"path": str(art.path), "version": art.version, "created_by": art.metadata.get("created_by"),
            "hidden_neurons": art.config.hidden_neurons, "fusion_neurons": art.config.fusion_neurons,
            "best_epoch": ex.get("best_epoch"), "validation_accuracy": ex.get("validation_accuracy"),
            "training": training_record(art), "build": ex.get("build")}


def _common_build(arts: Sequence[Any]) -> str | None:
    """The data build key every member records (``extra.build``), or None when they differ or lack one."""
    builds = {a.metadata.get("extra", {}).get("build") for a in arts}
    return builds.pop() if len(builds) == 1 else None


def training_record(art: Any) -> Any:
    """``extra.training`` of a trained artifact; of a merge, its first member's (members share the split)."""
    extra = art.metadata.get("extra", {})
    tr = extra.get("training")
    if not isinstance(tr, dict) and extra.get("merged_from"):
        tr = extra["merged_from"][0].get("training")
    return tr


def model_build(art: Any) -> str | None:
    """The data build whose splits fit ``art``: the one it was trained on (``extra.build``), or for a merge of
    members from builds that differ only in training voices (and so share their test split) the build its
    validation was scored on (``extra.validation_build``); None if it records neither."""
    extra = art.metadata.get("extra", {})
    return extra.get("build") or extra.get("validation_build")


def _validation_settings(arts: Sequence[Any]) -> Any:
    """The members' common training settings, or ``ValueError`` saying what differs."""
    from snn_fusion_ros.snn.train_cli import TrainSettings

    known = {f.name for f in dataclasses.fields(TrainSettings)}
    settings = []
    for a in arts:
        tr = training_record(a)
        if not isinstance(tr, dict):
            raise ValueError(f"--validate: {a.path} records no training settings (extra.training)")
        settings.append(TrainSettings(**{k: v for k, v in tr.items() if k in known}))
    split = {(s.seed, s.val_fraction, s.val_audio_holdout) for s in settings}
    if len(split) != 1:
        raise ValueError("--validate needs members with one validation split (same seed, val_fraction, "
                         f"val_audio_holdout); theirs: {sorted(split)}")
    return settings[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True, metavar="DIR",
                        help="a member artifact (directory or installed model name); give it 2 or more times")
    parser.add_argument("--out", type=Path, required=True, help="directory of the merged artifact")
    parser.add_argument("--name", default=None, help="model name in model.json (default: the --out folder name)")
    parser.add_argument("--validate", action="store_true",
                        help="score the merged network and each member on the members' validation pairs")
    parser.add_argument("--validation-build", default=None, metavar="KEY",
                        help="with --validate: the validation pairs of this build (members trained on builds that "
                             "differ only in training voices; see the module doc)")
    parser.add_argument("--cache", type=Path, default=None, help="data set cache (default: as `dataset build`)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from snn_fusion_ros.models import resolve_model
    from snn_fusion_ros.snn.artifact import ArtifactError, load_artifact, save_artifact

    torch.set_num_threads(max(1, args.threads))

    def fail(msg: str) -> int:
        sys.stderr.write(f"snn-fusion merge: {msg}\n")
        return 1

    try:
        arts = [load_artifact(resolve_model(m)) for m in args.model]
        if len(arts) < 2:
            raise ValueError(f"give --model at least twice, got {len(arts)}")
        for a in arts[1:]:
            if tuple(a.class_names) != tuple(arts[0].class_names):
                raise ValueError(f"{a.path} has classes {list(a.class_names)}, {arts[0].path} "
                                 f"{list(arts[0].class_names)}")
            if a.encoder_config != arts[0].encoder_config:
                raise ValueError(f"{a.path} was trained with other encoder settings than {arts[0].path}")
        members = [a.build_model() for a in arts]
        merged = merge_networks(members)
        build = _common_build(arts)
        if args.validation_build is not None and not args.validate:
            raise ValueError("--validation-build needs --validate")
        validation = _validate(arts, members, merged, args.validation_build or build, args) \
            if args.validate else None
    except (OSError, ArtifactError, ValueError) as exc:
        return fail(str(exc))
    extra: dict[str, Any] = {"merged_from": [_member_record(a) for a in arts]}
    if build is not None:
        extra["build"] = build
    peaks = [a.metadata.get("extra", {}).get("readout_abs_max") for a in arts]
    if all(isinstance(p, (int, float)) for p in peaks):
        extra["readout_abs_max"] = float(sum(peaks))  # an upper bound of the sum; --validate measures it
    if validation is not None:
        extra.update(validation_accuracy=validation["merged"], readout_abs_max=validation["readout_abs_max"],
                     validation=validation["samples"])
        if args.validation_build is not None:  # members of several builds: the build their split was scored on
            extra["validation_build"] = args.validation_build
    created_by = " ".join(["snn-fusion merge", *(f"--model {shlex.quote(m)}" for m in args.model),
                           f"--out {shlex.quote(str(args.out))}",
                           *([f"--name {shlex.quote(args.name)}"] if args.name else []),
                           *(["--validate"] if args.validate else []),
                           *([f"--validation-build {args.validation_build}"] if args.validation_build else [])])
    try:
        save_artifact(args.out, merged, arts[0].class_names, arts[0].encoder_config, extra=extra, name=args.name,
                      created_by=created_by, store_blocks=True)
        out = load_artifact(args.out)
    except (OSError, ArtifactError) as exc:
        return fail(str(exc))
    res = {"out": str(args.out), "version": out.version, "members": [a.version for a in arts],
           "hidden_neurons": merged.config.hidden_neurons, "fusion_neurons": merged.config.fusion_neurons}
    if validation is not None:
        res["validation_accuracy"] = validation["merged"]
        res["member_validation_accuracy"] = validation["members"]
    if args.json:
        sys.stdout.write(json.dumps(res, indent=1, sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"merged {len(arts)} networks into {out.version} at {args.out} (hidden "
                         f"{res['hidden_neurons']} per modality, fusion {res['fusion_neurons']})\n")
        for k, v in res.get("validation_accuracy", {}).items():
            sys.stdout.write(f"  validation {k} {v:.4f}\n")
    return 0


def _validate(arts: Sequence[Any], members: Sequence[FusionNet], merged: FusionNet, build: str | None,
              args: argparse.Namespace) -> dict[str, Any]:
    """Validation rows of ``merged`` and of each member on the members' validation pairs. A member's rows
    must match what its training run recorded (else the pairs are not the ones it was judged on)."""
    from snn_fusion_ros.data.builder import default_cache
    from snn_fusion_ros.data.dataset import load_split
    from snn_fusion_ros.data.encode import EncoderConfigs, encode_split
    from snn_fusion_ros.snn.train_cli import accuracy_report, validation_set

    if build is None:
        raise ValueError("--validate needs members trained on one data build; theirs: "
                         f"{sorted({str(a.metadata.get('extra', {}).get('build')) for a in arts})}")
    settings = _validation_settings(arts)
    cache = args.cache if args.cache is not None else default_cache()
    foreign = {i for i, a in enumerate(arts) if a.metadata.get("extra", {}).get("build") != build}
    if foreign:
        _check_same_held_out(build, [arts[i] for i in sorted(foreign)], settings, cache)
    ds = load_split("train", cache=cache, key=build)
    enc = encode_split(ds, EncoderConfigs.from_dict(arts[0].encoder_config), progress=not args.no_progress)
    _, va, inputs, labels = validation_set(enc, settings)
    if inputs is None:
        raise ValueError("--validate: the members' runs had no validation split (val_fraction 0)")
    rows = []
    tol = 1.5 / len(labels)  # one sample: float sums may differ with the thread count
    for i, (a, m) in enumerate(zip(arts, members, strict=True)):
        rep, _ = accuracy_report(m, inputs, labels)
        if i in foreign:
            rows.append(rep)
            continue
        recorded = a.metadata.get("extra", {}).get("validation_accuracy") or {}
        off = {k: (recorded[k], v) for k, v in rep.items() if k in recorded and abs(recorded[k] - v) > tol}
        if off:
            raise ValueError(f"--validate: {a.path} scores {off} (recorded, now) on the reconstructed validation "
                             "pairs: they are not the pairs its run was judged on")
        rows.append(rep)
    rep, peak = accuracy_report(merged, inputs, labels)
    return {"merged": rep, "members": rows, "readout_abs_max": peak,
            "samples": {m: len(v) for m, v in va.items()}}


def _training_builds(art: Any) -> list[str | None]:
    """The data builds ``art`` was trained on: its ``extra.build``, or for a merge of several builds each
    member's (recorded in ``extra.merged_from``)."""
    extra = art.metadata.get("extra", {})
    if extra.get("build") or not extra.get("merged_from"):
        return [extra.get("build")]
    return [m.get("build") for m in extra["merged_from"]]


def _check_same_held_out(build: str, arts: Sequence[Any], settings: Any, cache: Path) -> None:
    """``ValueError`` unless build ``build``'s validation pairs are held out of the training of every artifact
    in ``arts`` (trained on other builds): accent hold-out, the same held-out accents, identical DVS and IMU
    training files (their validation parts are drawn by index; compared by the sha256 each build's manifest
    records for its files)."""
    from snn_fusion_ros.data.builder import find_build
    from snn_fusion_ros.data.store import load_json
    from snn_fusion_ros.snn.train_cli import build_held_out_audio

    if settings.val_audio_holdout != "accent":
        raise ValueError("--validation-build: members trained on other builds must have held out accents "
                         f"(--val-audio-holdout accent), not {settings.val_audio_holdout!r}")

    def held_out(folder: Path) -> set[str]:
        return build_held_out_audio(folder, settings.seed, settings.val_fraction, "accent")

    def digests(folder: Path) -> dict[str, str]:
        return load_json(folder / "manifest.json")["files"]

    target = find_build(cache, build)
    want, want_files = held_out(target), digests(target)
    for a, other in ((art, b) for art in arts for b in _training_builds(art)):
        if not other:
            raise ValueError(f"--validation-build: {a.path} records no data build (extra.build)")
        if other == build:
            continue
        folder = find_build(cache, other)
        held, files = held_out(folder), digests(folder)
        if held != want:
            raise ValueError(f"--validation-build: build {other} of {a.path} holds out accents "
                             f"{sorted(held)}, build {build} {sorted(want)}")
        for name in ("dvs_train.npz", "imu_train.npz"):
            if files.get(name) is None or files.get(name) != want_files.get(name):
                raise ValueError(f"--validation-build: {name} of build {other} ({a.path}) differs from build "
                                 f"{build}'s: its DVS / IMU validation part may have trained the other members")
