"""Crash-safe checkpoints of learned state (online STDP weights).

Each checkpoint is one safetensors file ``<prefix>-<serial:08d>.safetensors`` whose header metadata
holds the format version, the model version it belongs to, and a sha256 over all tensor bytes.
Writing is atomic: write ``*.tmp``, fsync, rename, fsync the directory; the newest ``keep`` files
are kept. Loading tries the newest file first and falls back to older ones when a file is
truncated, corrupt, tampered with, or belongs to another model; every refusal is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT_VERSION = "1"


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(json.dumps(list(arr.shape)).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class LoadResult:
    """What :meth:`CheckpointStore.load_latest` found: the state (or None) and why files were refused."""

    state: dict[str, np.ndarray] | None
    path: Path | None
    refused: list[tuple[Path, str]] = field(default_factory=list)


class CheckpointStore:
    """Atomic, versioned checkpoints in ``directory`` for one model version."""

    def __init__(self, directory: str | Path, model_version: str, prefix: str = "stdp", keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep}; at least 1 checkpoint must be kept")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise ValueError(f"prefix {prefix!r} may only hold letters, digits, '_', '.', '-'")
        self.directory = Path(directory)
        self.model_version = model_version
        self.prefix = prefix
        self.keep = keep
        self._pattern = re.compile(rf"{re.escape(prefix)}-(\d{{8}})\.safetensors")

    def files(self) -> list[Path]:
        """Checkpoint files, newest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := self._pattern.fullmatch(p.name))]
        return [p for _, p in sorted(found, reverse=True)]

    def save(self, state: dict[str, np.ndarray]) -> Path:
        """Write a new checkpoint atomically and prune old ones; returns its path."""
        from safetensors.numpy import save

        self.directory.mkdir(parents=True, exist_ok=True)
        existing = self.files()
        serial = int(self._pattern.fullmatch(existing[0].name).group(1)) + 1 if existing else 1
        final = self.directory / f"{self.prefix}-{serial:08d}.safetensors"
        tmp = final.with_suffix(".safetensors.tmp")
        tensors = {k: np.ascontiguousarray(v) for k, v in state.items()}
        meta = {"format_version": FORMAT_VERSION, "model_version": self.model_version, "sha256": _digest(tensors)}
        data = save(tensors, metadata=meta)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        for old in self.files()[self.keep:]:
            old.unlink(missing_ok=True)
        return final

    def check(self, path: Path) -> dict[str, np.ndarray]:
        """Load one file; raise ValueError naming what is wrong with it."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises several types for damaged files
            raise ValueError(f"{path.name}: unreadable ({type(exc).__name__}: {exc})") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path.name}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
        if meta.get("model_version") != self.model_version:
            raise ValueError(f"{path.name}: belongs to model {meta.get('model_version')!r}, "
                             f"running {self.model_version!r}")
        if meta.get("sha256") != _digest(tensors):
            raise ValueError(f"{path.name}: checksum mismatch (corrupt or modified)")
        return tensors

    def load_latest(self) -> LoadResult:
        """The newest valid checkpoint, with the reasons older/newer files were refused."""
        result = LoadResult(None, None)
        for path in self.files():
            try:
                result.state = self.check(path)
            except ValueError as exc:
                result.refused.append((path, str(exc)))
                continue
            result.path = path
            break
        return result
