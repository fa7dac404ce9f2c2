"""Byte-reproducible npz and JSON files (no pickle): same arrays in, same bytes out.

``numpy.savez`` stamps each zip member with the current time; :func:`save_npz` writes fixed
timestamps and member order instead, so two builds with the same seed give identical files.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary file next to ``path``, unique to this writer, moved onto ``path`` on success (mode 0644,
    whatever the writer created it with).

    Two processes may write the same cache entry at once (two training runs started together both
    encode the split): each writes its own temporary file and the last ``os.replace`` wins, with
    identical contents; a fixed temporary name let one writer move the other's file away mid-write.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (deflated npz, fixed timestamps, sorted names), atomically."""
    for name in arrays:
        if np.asarray(arrays[name]).dtype.hasobject:
            raise ValueError(f"array {name!r} has object dtype; only plain arrays are stored")
    with atomic_target(Path(path)) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.array(arr, order="C", copy=not arr.flags.c_contiguous),
                                        allow_pickle=False)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file (pickle refused)."""
    with np.load(Path(path), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON, atomically."""
    with atomic_target(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
