"""Start the three encoders and the fusion node as separate processes.

ros2 launch snn_fusion_ros snn_fusion.launch.py backend:=akida modalities:=audio,imu namespace:=robot1

Arguments: backend (torch|lava|akida|nir), fallback_backends (comma list), config (parameters
file), model_path, namespace, use_sim_time, modalities (comma list of audio, dvs, imu),
log_level.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "snn_fusion_ros"
ENCODERS = {
    "audio": ("audio_encoder_node", "audio_encoder"),
    "dvs": ("dvs_encoder_node", "dvs_encoder"),
    "imu": ("imu_encoder_node", "imu_encoder"),
}


def _nodes(context):
    modalities = [m.strip() for m in LaunchConfiguration("modalities").perform(context).split(",") if m.strip()]
    unknown = [m for m in modalities if m not in ENCODERS]
    if not modalities or unknown:
        raise RuntimeError(f"modalities {modalities}: choose a comma-separated subset of {list(ENCODERS)}")
    namespace = LaunchConfiguration("namespace")
    config = LaunchConfiguration("config")
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() in ("1", "true", "yes")
    log_level = LaunchConfiguration("log_level")
    common = {"use_sim_time": use_sim_time}
    nodes = [
        Node(package=PACKAGE, executable=ENCODERS[m][0], name=ENCODERS[m][1], namespace=namespace,
             parameters=[config, common], arguments=["--ros-args", "--log-level", log_level], output="screen")
        for m in modalities
    ]
    fallbacks = [b.strip() for b in LaunchConfiguration("fallback_backends").perform(context).split(",") if b.strip()]
    fusion_params = {
        **common,
        "backend": LaunchConfiguration("backend").perform(context),
        "fallback_backends": fallbacks,
        "alignment.modalities": modalities,
    }
    model_path = LaunchConfiguration("model_path").perform(context)
    if model_path:
        fusion_params["model_path"] = model_path
    nodes.append(Node(package=PACKAGE, executable="fusion_node", name="fusion", namespace=namespace,
                      parameters=[config, fusion_params], arguments=["--ros-args", "--log-level", log_level],
                      output="screen"))
    return nodes


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("backend", default_value="torch", description="torch | lava | akida | nir"),
        DeclareLaunchArgument("fallback_backends", default_value="torch",
                              description="comma-separated backends tried when the primary fails"),
        DeclareLaunchArgument("config", default_value=PathJoinSubstitution(
            [FindPackageShare(PACKAGE), "config", "snn_fusion.yaml"]), description="parameters file"),
        DeclareLaunchArgument("model_path", default_value="", description="model artifact (empty: shipped default)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of every node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        DeclareLaunchArgument("modalities", default_value="audio,dvs,imu",
                              description="comma-separated encoders to run and fuse"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug | info | warn | error"),
        OpaqueFunction(function=_nodes),
    ])
