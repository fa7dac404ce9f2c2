"""snn_fusion_ros.fusion."""
