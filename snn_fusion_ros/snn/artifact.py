"""Model artifact: a directory with ``weights.safetensors`` and ``model.json``.

``model.json`` (UTF-8 JSON object):

``format_version`` (int, :data:`FORMAT_VERSION`), ``name``, ``class_names`` (list of str, one per
class), ``network_config`` (the :class:`FusionNetConfig` fields), ``encoder_config`` (the encoder
settings the model was trained with, free-form dict), ``input_neurons`` (``{modality: N_m}``),
``created_by`` (command line), ``weights_file``, ``weights_sha256`` (hex digest of the weights
file), ``tensors`` (``{name: shape}``: the network's tensors as loaded), ``extra`` (free-form dict); with
format 2 also ``stored_blocks`` (``{name: number of blocks}``).

Storage. Format 1 stores every tensor whole under its name. Format 2 (``save_artifact(...,
store_blocks=True)``, which ``snn-fusion merge`` uses: a merge of K networks,
:mod:`snn_fusion_ros.snn.merge`) stores a 2-D tensor whose non-zero entries
fall in two or more independent blocks (:func:`~snn_fusion_ros.snn.blocks.independent_blocks`) that
together hold less than half of its entries as those blocks: ``<name>@block<i>.rows`` and ``.cols``
(sorted int32 indices) and ``.values`` (float32, rows x cols); loading puts them back into a zero
tensor of the recorded shape, so the loaded tensors equal the saved ones exactly (a stored ``-0.0``
outside the blocks loads as ``0.0``). A merge's fusion and recurrent weights are block-structured, and
their zeros grow with the square of the member count (five members: 13.5 MB dense, 3.7 MB in blocks).

Loading never unpickles (safetensors only) and refuses, with :class:`ArtifactError`, a weights file
whose checksum differs, an unknown format version, or metadata inconsistent with the tensors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snn_fusion_ros.data.store import atomic_target
from snn_fusion_ros.params import config_from_mapping
from snn_fusion_ros.snn.config import FusionNetConfig
from snn_fusion_ros.snn.network import FusionNet

FORMAT_VERSION = 1
#: format of an artifact that stores some tensors as independent blocks (see the module docstring)
BLOCKS_FORMAT_VERSION = 2
SUPPORTED_FORMATS = (FORMAT_VERSION, BLOCKS_FORMAT_VERSION)
_BLOCK = "@block"
METADATA_FILE = "model.json"
WEIGHTS_FILE = "weights.safetensors"
_REQUIRED = ("format_version", "name", "class_names", "network_config", "encoder_config", "input_neurons",
             "created_by", "weights_file", "weights_sha256", "tensors")


class ArtifactError(ValueError):
    """A model artifact is missing, corrupt, tampered with or inconsistent."""


@dataclass(frozen=True)
class ModelArtifact:
    """A loaded, verified model artifact.

    Attributes
    ----------
    path: the artifact directory.
    config: the network configuration.
    tensors: named float32 weight tensors (see :meth:`FusionNet.artifact_tensors`).
    metadata: the parsed ``model.json``.
    version: ``"<name>@<sha256 of weights, first 12 hex digits>"``.
    """

    path: Path
    config: FusionNetConfig
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    version: str
    class_names: tuple[str, ...] = field(default=())

    @property
    def encoder_config(self) -> dict[str, Any]:
        return dict(self.metadata.get("encoder_config", {}))

    def build_model(self) -> FusionNet:
        """A fresh :class:`FusionNet` (eval mode) holding these weights."""
        model = FusionNet(self.config)
        model.load_artifact_tensors(self.tensors)
        model.eval()
        return model


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _block_keys(name: str, i: int) -> tuple[str, str, str]:
    return tuple(f"{name}{_BLOCK}{i}.{part}" for part in ("rows", "cols", "values"))  # type: ignore[return-value]


def pack_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """``(stored tensors, {name: number of blocks})``: the weights file's content (module docstring)."""
    from snn_fusion_ros.snn.blocks import independent_blocks

    stored: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for name, t in tensors.items():
        blocks = independent_blocks(t.numpy()) if t.ndim == 2 else []
        area = sum(len(r) * len(c) + len(r) + len(c) for r, c in blocks)
        if len(blocks) < 2 or 2 * area >= t.numel():
            stored[name] = t
            continue
        counts[name] = len(blocks)
        for i, (r, c) in enumerate(blocks):
            k_rows, k_cols, k_values = _block_keys(name, i)
            stored[k_rows] = torch.from_numpy(r.astype(np.int32))
            stored[k_cols] = torch.from_numpy(c.astype(np.int32))
            stored[k_values] = t[torch.from_numpy(r)][:, torch.from_numpy(c)].contiguous()
    return stored, counts


def unpack_tensors(stored: dict[str, torch.Tensor], shapes: dict[str, list[int]],
                   counts: dict[str, int]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`pack_tensors`; raises :class:`ArtifactError` on any inconsistency (the caller
    compares the result's shapes with ``shapes``)."""
    if counts == {}:
        return dict(stored)
    if not isinstance(shapes, dict):
        raise ArtifactError(f"tensors {shapes!r} must map names to shapes")
    if not isinstance(counts, dict) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 2
                                               for n in counts.values()):
        raise ArtifactError(f"stored_blocks {counts!r} must map tensor names to block counts >= 2")
    if set(counts) - set(shapes):
        raise ArtifactError(f"stored_blocks names {sorted(set(counts) - set(shapes))} are not in tensors")
    expected = {n for n in shapes if n not in counts}
    for name, n in counts.items():
        for i in range(n):
            expected.update(_block_keys(name, i))
    if set(stored) != expected:
        raise ArtifactError(f"weights file holds {sorted(set(stored) - expected)[:6]} beyond, and lacks "
                            f"{sorted(expected - set(stored))[:6]} of, what model.json describes")
    out = {n: stored[n] for n in shapes if n not in counts}
    for name, n in counts.items():
        shape = shapes[name]
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d > 0 for d in shape)):
            raise ArtifactError(f"tensor {name!r} stored in blocks must be 2-D, recorded shape {shape!r}")
        dense = torch.zeros(shape, dtype=torch.float32)
        used = [np.zeros(shape[0], bool), np.zeros(shape[1], bool)]
        for i in range(n):
            k_rows, k_cols, k_values = _block_keys(name, i)
            idx = []
            for axis, key in enumerate((k_rows, k_cols)):
                t = stored[key]
                a = t.numpy()
                if t.dtype != torch.int32 or a.ndim != 1 or not len(a) or np.any(np.diff(a) <= 0) \
                        or a[0] < 0 or a[-1] >= shape[axis] or used[axis][a].any():
                    raise ArtifactError(f"{key}: block indices must be sorted, distinct int32 within "
                                        f"[0, {shape[axis]}) and used by no other block")
                used[axis][a] = True
                idx.append(torch.from_numpy(a.astype(np.int64)))
            values = stored[k_values]
            if values.dtype != torch.float32 or tuple(values.shape) != (len(idx[0]), len(idx[1])):
                raise ArtifactError(f"{k_values}: float32 of shape {(len(idx[0]), len(idx[1]))} expected, "
                                    f"got {values.dtype} {tuple(values.shape)}")
            dense[idx[0][:, None], idx[1][None, :]] = values
        out[name] = dense
    return out


def save_artifact(path: str | Path, model: FusionNet, class_names: list[str] | tuple[str, ...],
                  encoder_config: dict[str, Any], extra: dict[str, Any] | None = None,
                  name: str | None = None, created_by: str | None = None, store_blocks: bool = False) -> Path:
    """Write ``model`` to the directory ``path`` (created; existing files replaced); returns ``path``.

    ``store_blocks``: store block-structured tensors as their blocks (format 2, see the module docstring)
    when any is; otherwise, and always when False, format 1.

    ``class_names`` must have ``num_classes`` distinct entries; ``encoder_config`` and ``extra`` must be
    JSON-serialisable.
    """
    from safetensors.torch import save_file

    out = Path(path)
    cfg = model.config
    names = [str(c) for c in class_names]
    if len(names) != cfg.num_classes or len(set(names)) != len(names):
        raise ArtifactError(f"class_names {names} must be {cfg.num_classes} distinct names (num_classes)")
    out.mkdir(parents=True, exist_ok=True)
    tensors = model.artifact_tensors()
    stored, blocks = pack_tensors(tensors) if store_blocks else (tensors, {})
    version = BLOCKS_FORMAT_VERSION if blocks else FORMAT_VERSION
    weights = out / WEIGHTS_FILE
    # atomic, and mode 0644: safetensors alone creates the file owner-only (0600), but a model is
    # installed to share/ and read by whichever user runs the node
    with atomic_target(weights) as tmp:
        save_file(stored, str(tmp), metadata={"format_version": str(version)})
    meta = {
        "format_version": version,
        "name": name or out.name,
        "class_names": names,
        "network_config": dataclasses.asdict(cfg),
        "encoder_config": dict(encoder_config),
        "input_neurons": cfg.input_sizes,
        "created_by": created_by if created_by is not None else " ".join(shlex.quote(a) for a in sys.argv),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": sha256_file(weights),
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "extra": dict(extra or {}),
    }
    if blocks:
        meta["stored_blocks"] = blocks
    try:
        text = json.dumps(meta, indent=2, sort_keys=True)
    except TypeError as exc:
        raise ArtifactError(f"encoder_config/extra must be JSON-serialisable: {exc}") from exc
    with atomic_target(out / METADATA_FILE) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return out


def load_artifact(path: str | Path) -> ModelArtifact:
    """Load and verify an artifact directory (or its ``model.json``); raises :class:`ArtifactError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    meta_path = p if p.is_file() and p.name == METADATA_FILE else p / METADATA_FILE
    if not meta_path.is_file():
        raise ArtifactError(f"no {METADATA_FILE} at {p} (expected an artifact directory)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path} must hold a JSON object, got {type(meta).__name__}")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ArtifactError(f"{meta_path} lacks keys {missing}")
    if meta["format_version"] not in SUPPORTED_FORMATS:
        raise ArtifactError(f"format_version {meta['format_version']!r} is not supported; expected one of "
                            f"{SUPPORTED_FORMATS}")
    if "stored_blocks" in meta and meta["format_version"] != BLOCKS_FORMAT_VERSION:
        raise ArtifactError(f"stored_blocks needs format_version {BLOCKS_FORMAT_VERSION}, "
                            f"got {meta['format_version']!r}")
    wname = meta["weights_file"]
    if not isinstance(wname, str) or Path(wname).name != wname:
        raise ArtifactError(f"weights_file {wname!r} must be a plain file name inside the artifact directory")
    weights = meta_path.parent / wname
    if not weights.is_file():
        raise ArtifactError(f"weights file {weights} is missing")
    digest = sha256_file(weights)
    if digest != meta["weights_sha256"]:
        raise ArtifactError(f"sha256 of {weights} is {digest}, metadata says {meta['weights_sha256']} "
                            "(file changed or corrupt)")
    try:
        config = config_from_mapping(FusionNetConfig, meta["network_config"])
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"network_config invalid: {exc}") from exc
    if meta["input_neurons"] != config.input_sizes:
        raise ArtifactError(f"input_neurons {meta['input_neurons']} disagree with network_config {config.input_sizes}")
    names = meta["class_names"]
    if not isinstance(names, list) or len(names) != config.num_classes or len(set(names)) != len(names):
        raise ArtifactError(f"class_names {names!r} must be {config.num_classes} distinct names")
    try:
        stored = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(f"{weights} is not a readable safetensors file: {exc}") from exc
    tensors = unpack_tensors(stored, meta["tensors"], meta.get("stored_blocks", {}))
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    if shapes != meta["tensors"]:
        raise ArtifactError(f"tensor shapes {shapes} disagree with metadata {meta['tensors']}")
    try:
        FusionNet(config).load_artifact_tensors(tensors)
    except ValueError as exc:
        raise ArtifactError(f"weights do not fit network_config: {exc}") from exc
    version = f"{meta['name']}@{digest[:12]}"
    return ModelArtifact(path=meta_path.parent, config=config, tensors=tensors, metadata=meta, version=version,
                         class_names=tuple(names))


def save_untrained_encoder_sized(path: str | Path, *, num_classes: int, created_by: str, encoders: Any = None,
                                 **net_config: Any) -> Path:
    """An untrained artifact whose input sizes are the encoders' ``num_neurons`` (tests, benchmarks).

    ``encoders``: an :class:`~snn_fusion_ros.data.encode.EncoderConfigs` (e.g. ``node_encoder_configs()``,
    the nodes' parameter file); default the encoder dataclasses' defaults. Latency and transport do
    not depend on the weights' values; ``net_config`` overrides other :class:`FusionNetConfig` fields
    (e.g. ``seed``, ``step_ms``, ``steps_per_window``). Classes are "0".."n-1".
    """
    from snn_fusion_ros.data.encode import EncoderConfigs

    sizes = (encoders if encoders is not None else EncoderConfigs()).num_neurons
    cfg = FusionNetConfig(audio_neurons=sizes["audio"], dvs_neurons=sizes["dvs"], imu_neurons=sizes["imu"],
                          num_classes=num_classes, **net_config)
    return save_artifact(path, FusionNet(cfg), [str(i) for i in range(num_classes)], {}, created_by=created_by)
