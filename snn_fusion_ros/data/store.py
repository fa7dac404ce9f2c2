"""Byte-reproducible npz and JSON files (no pickle): same arrays in, same bytes out.

``numpy.savez`` stamps each zip member with the current time; :func:`save_npz` writes fixed
timestamps and member order instead, so two builds with the same seed give identical files.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (deflated npz, fixed timestamps, sorted names), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(arrays):
            arr = np.asarray(arrays[name])
            if arr.dtype.hasobject:
                raise ValueError(f"array {name!r} has object dtype; only plain arrays are stored")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.array(arr, order="C", copy=not arr.flags.c_contiguous),
                                        allow_pickle=False)
    os.replace(tmp, path)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an npz file (pickle refused)."""
    with np.load(Path(path), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as sorted, indented JSON, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
