"""QoS profiles, in one place.

* Sensor inputs (audio, events, IMU): the sensor-data profile (best effort, volatile) with a
  configurable depth, as sensor drivers publish.
* Spike windows between encoders and fusion: reliable, keep last ``depth`` (the nodes'
  ``spikes_queue_depth``): a lost window would leave a hole in the fused stream.
* Classifications: reliable, keep last 10.
"""

from __future__ import annotations


def sensor_qos(depth: int = 50):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def spikes_qos(depth: int = 50):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def results_qos(depth: int = 10):
    return spikes_qos(depth)
