"""snn_fusion_ros.ros."""
