"""Where the shipped default model lives, for a colcon install, a pip install and a source checkout."""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_MODEL = "default"


def model_search_path() -> list[Path]:
    """Candidate ``models/`` folders, most specific first."""
    out: list[Path] = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            out.append(Path(get_package_share_directory("snn_fusion_ros")) / "models")
        except (PackageNotFoundError, OSError, ValueError):  # no ament index / AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    out.append(Path(__file__).resolve().parents[1] / "models")  # source checkout
    out.append(Path(sys.prefix) / "share" / "snn_fusion_ros" / "models")  # pip data_files
    return out


def resolve_model(path_or_name: str = "") -> Path:
    """An artifact directory from a path, or a model name looked up in :func:`model_search_path`.

    Raises FileNotFoundError listing where it looked.
    """
    name = path_or_name or DEFAULT_MODEL
    p = Path(name).expanduser()
    if p.is_absolute() or len(p.parts) > 1 or p.exists():
        if (p / "model.json").is_file() or (p.is_file() and p.name == "model.json"):
            return p if p.is_dir() else p.parent
        raise FileNotFoundError(f"no model artifact (model.json) at {p}")
    tried = []
    for folder in model_search_path():
        cand = folder / name
        tried.append(str(cand))
        if (cand / "model.json").is_file():
            return cand
    raise FileNotFoundError(f"model {name!r} not found; looked in {tried}")
