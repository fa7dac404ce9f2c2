"""snn_fusion_ros.encoders."""
