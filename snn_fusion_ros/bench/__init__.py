"""snn_fusion_ros.bench."""
