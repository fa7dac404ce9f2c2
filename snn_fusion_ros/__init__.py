"""snn_fusion_ros: spiking-neural-network sensor fusion for ROS 2.

The core (codecs, encoders, snn, backends, fusion, data) never imports rclpy; ``snn_fusion_ros.ros``
holds the thin node wrappers. The rosidl-generated ``snn_fusion_ros.msg`` module lives in the
colcon/cmake install tree; extending ``__path__`` lets a source checkout find it there.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
