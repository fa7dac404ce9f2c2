"""Launch files and the parameters file: they parse, name executables that exist, and every YAML key is
a parameter the named node declares (launch/launch_ros have no wheels here; the real launch runs where
launch_ros is importable)."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))
CONFIG = REPO / "config" / "snn_fusion.yaml"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


@pytest.mark.unit
@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_file_parses_and_names_installed_executables(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    funcs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    executables = {s for s in literals if s.endswith("_node")}
    for exe in executables:
        script = REPO / "scripts" / exe
        assert script.is_file() and script.stat().st_mode & stat.S_IXUSR, f"{path.name} names missing {exe}"
    installed = REPO / "install" / "lib" / "snn_fusion_ros"
    if installed.is_dir():
        for exe in executables:
            assert os.access(installed / exe, os.X_OK), f"{exe} not installed to lib/snn_fusion_ros"


@pytest.mark.unit
def test_launch_names_match_node_names():
    text = (REPO / "launch" / "snn_fusion.launch.py").read_text()
    for name in ("audio_encoder", "dvs_encoder", "imu_encoder", "fusion"):
        assert f'"{name}"' in text


@pytest.mark.unit
def test_installed_share_has_launch_and_config():
    share = REPO / "install" / "share" / "snn_fusion_ros"
    if not share.is_dir():
        pytest.skip("install tree not built (run through make)")
    assert (share / "config" / "snn_fusion.yaml").is_file()
    assert {p.name for p in (share / "launch").iterdir()} >= {p.name for p in LAUNCH}


@pytest.mark.ros
def test_every_yaml_parameter_is_declared_by_its_node(tiny_model, ros_msgs):
    import rclpy
    from rclpy.context import Context

    from snn_fusion_ros.ros.audio_encoder_node import AudioEncoderNode
    from snn_fusion_ros.ros.dvs_encoder_node import DvsEncoderNode
    from snn_fusion_ros.ros.fusion_node import FusionNode
    from snn_fusion_ros.ros.imu_encoder_node import ImuEncoderNode

    sections = yaml.safe_load(CONFIG.read_text())
    classes = {"audio_encoder": AudioEncoderNode, "dvs_encoder": DvsEncoderNode, "imu_encoder": ImuEncoderNode,
               "fusion": FusionNode}
    ctx = Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(CONFIG), "-p", f"fusion:model_path:={tiny_model}"])
    try:
        for key, section in sections.items():
            name = key.split("/")[-1]
            node = classes[name](context=ctx)
            try:
                for param, value in flatten(section["ros__parameters"]).items():
                    assert node.has_parameter(param), f"{CONFIG.name}: {name} declares no parameter {param!r}"
                    if param != "model_path":
                        got = node.get_parameter(param).value
                        got = list(got) if isinstance(got, (list, tuple)) else got
                        assert got == value, f"{name}.{param}: YAML {value!r} but node has {got!r}"
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


@pytest.mark.ros
def test_launch_runs_for_real_where_launch_ros_exists():
    pytest.importorskip("launch_ros", reason="launch_ros has no PyPI wheel; runs on a real ROS 2 install")
    from launch import LaunchDescription
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    desc = get_launch_description_from_python_launch_file(str(REPO / "launch" / "snn_fusion.launch.py"))
    assert isinstance(desc, LaunchDescription)
