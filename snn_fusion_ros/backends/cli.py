"""``snn-fusion info [--json]``: every backend, whether it can run here, and why not."""

from __future__ import annotations

import argparse
import json
from typing import Any

from snn_fusion_ros.backends.registry import BACKENDS, backend_availability


def hardware_report(name: str) -> dict[str, Any]:
    """Neuromorphic hardware behind backend ``name``: ``{"hardware": str, "present": bool, "detail": str}``."""
    if name == "lava":
        from snn_fusion_ros.backends.lava_backend import loihi2_hardware_present

        ok, why = loihi2_hardware_present()
        return {"hardware": "Loihi 2", "present": ok, "detail": why or "lava-loihi importable"}
    if name == "akida":
        from snn_fusion_ros.backends.akida_backend import akida_devices

        devs = akida_devices()
        return {"hardware": "AKD1000/AKD1500", "present": bool(devs),
                "detail": ", ".join(str(d) for d in devs) if devs else "akida.devices() is empty"}
    if name == "nir":
        return {"hardware": "SpiNNaker 2", "present": False,
                "detail": "export only: a .nir file for py-spinnaker2; no SpiNNaker 2 board is driven from here"}
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    return {"hardware": "CUDA GPU", "present": cuda, "detail": "torch.cuda.is_available()"}


def collect() -> dict[str, dict[str, Any]]:
    """``{backend: {"available": bool, "reason": str, "hardware": {...}}}`` for every registered backend."""
    out: dict[str, dict[str, Any]] = {}
    for name in BACKENDS:
        ok, reason = backend_availability(name)
        entry: dict[str, Any] = {"available": ok, "reason": reason}
        if ok:
            entry["hardware"] = hardware_report(name)
        out[name] = entry
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info))
        return 0
    for name, e in info.items():
        state = "available" if e["available"] else f"UNAVAILABLE: {e['reason']}"
        line = f"{name:6s} {state}"
        hw = e.get("hardware")
        if hw:
            line += f"; {hw['hardware']}: {'present' if hw['present'] else 'absent'} ({hw['detail']})"
        print(line)
    return 0
