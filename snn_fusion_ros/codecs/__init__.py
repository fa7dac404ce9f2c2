"""snn_fusion_ros.codecs."""
