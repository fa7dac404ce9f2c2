"""Replay a rosbag through the pipeline with simulated time.

ros2 launch snn_fusion_ros replay.launch.py bag:=/path/to/bag rate:=1.0 backend:=torch

Starts snn_fusion.launch.py with use_sim_time:=true and `snn-fusion replay BAG --clock`
(rosbags-based; `ros2 bag play --clock` works the same where rosbag2 is installed).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "snn_fusion_ros"


def generate_launch_description():
    pipeline = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare(PACKAGE), "launch",
                                                            "snn_fusion.launch.py"])),
        launch_arguments={
            "use_sim_time": "true",
            "backend": LaunchConfiguration("backend"),
            "namespace": LaunchConfiguration("namespace"),
            "modalities": LaunchConfiguration("modalities"),
            "config": LaunchConfiguration("config"),
        }.items(),
    )
    replay = ExecuteProcess(
        cmd=["snn-fusion", "replay", LaunchConfiguration("bag"), "--clock", "--rate", LaunchConfiguration("rate"),
             "--namespace", LaunchConfiguration("namespace")],
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder or .mcap file to replay"),
        DeclareLaunchArgument("rate", default_value="1.0", description="replay speed factor"),
        DeclareLaunchArgument("backend", default_value="torch"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("modalities", default_value="audio,dvs,imu"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare(PACKAGE), "config", "snn_fusion.yaml"])),
        pipeline,
        replay,
    ])
