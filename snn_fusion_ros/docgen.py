"""Generated README sections (parameters tables, message definitions), kept true by a test.

``python -m snn_fusion_ros.docgen --write README.md`` rewrites every block between
``<!-- gen:NAME -->`` and ``<!-- /gen:NAME -->``; ``test_readme_generated_sections_are_current``
fails when README.md and the code disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fmt_default(v) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v).lower() if isinstance(v, bool) else str(v)


def params_table(cls, prefix: str = "") -> str:
    """Markdown rows: name, type, default, units, range / choices, runtime, description."""
    rows = ["| parameter | type | default | units | range / choices | runtime | description |",
            "|---|---|---|---|---|---|---|"]
    inst = cls()
    for f in dataclasses.fields(cls):
        meta = f.metadata or {}
        value = getattr(inst, f.name)
        typ = type(value).__name__ if not isinstance(value, tuple) else f"{type(value[0]).__name__}[]"
        if meta.get("choices"):
            rng = " \\| ".join(meta["choices"])
        elif meta.get("low") is not None:
            rng = f"{meta['low']:g} .. {meta['high']:g}"
        else:
            rng = ""
        name = f"{prefix}{f.name}"
        rows.append(f"| `{name}` | {typ} | {_fmt_default(value)} | {meta.get('units', '')} | {rng} | "
                    f"{'yes' if meta.get('runtime') else ''} | {meta.get('description', '')} |")
    return "\n".join(rows)


def _node_params() -> str:
    from snn_fusion_ros.encoders.audio import AudioEncoderConfig
    from snn_fusion_ros.encoders.dvs import DvsEncoderConfig
    from snn_fusion_ros.encoders.imu import ImuEncoderConfig
    from snn_fusion_ros.fusion.alignment import AlignerConfig
    from snn_fusion_ros.ros.encoder_node import EncoderNodeConfig
    from snn_fusion_ros.ros.fusion_node import FusionNodeConfig
    from snn_fusion_ros.snn.stdp import STDPConfig

    parts = [
        "#### Every encoder node (`audio_encoder`, `dvs_encoder`, `imu_encoder`)\n",
        "Also `input_type` (string, read-only): `snn_fusion_ros` or the optional third-party message package "
        "(`audio_common_msgs` for audio, `event_camera_msgs` for DVS).\n",
        params_table(EncoderNodeConfig),
        "\n#### `audio_encoder`: `encoder.*`\n",
        params_table(AudioEncoderConfig, "encoder."),
        "\n#### `dvs_encoder`: `encoder.*`\n",
        params_table(DvsEncoderConfig, "encoder."),
        "\n#### `imu_encoder`: `encoder.*`\n",
        params_table(ImuEncoderConfig, "encoder."),
        "\n#### `fusion`\n",
        params_table(FusionNodeConfig),
        "\n#### `fusion`: `alignment.*`\n",
        params_table(AlignerConfig, "alignment."),
        "\n#### `fusion`: `stdp.*` (online learning, off by default)\n",
        params_table(STDPConfig, "stdp."),
    ]
    return "\n".join(parts)


def _messages() -> str:
    out = []
    for path in sorted((REPO / "msg").glob("*.msg")):
        out.append(f"#### `snn_fusion_ros/msg/{path.stem}`\n\n```\n{path.read_text().strip()}\n```\n")
    return "\n".join(out)


SECTIONS: dict[str, Callable[[], str]] = {"parameters": _node_params, "messages": _messages}


def render(text: str) -> str:
    for name, fn in SECTIONS.items():
        pattern = re.compile(rf"(<!-- gen:{name} -->\n)(?:.*?\n)?(<!-- /gen:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no <!-- gen:{name} --> ... <!-- /gen:{name} --> block")
        body = fn()
        text = pattern.sub(lambda m, b=body: m.group(1) + b.rstrip("\n") + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", default=str(REPO / "README.md"))
    args = parser.parse_args(argv)
    path = Path(args.write)
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
