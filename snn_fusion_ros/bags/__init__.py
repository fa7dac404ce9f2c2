"""snn_fusion_ros.bags."""
