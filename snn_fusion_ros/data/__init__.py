"""Real data sources, the DVS emulator, pairing and the fused digit data set (no ROS).

* ``sources``: fetching Debian packages / wheels into the cache (``SourceUnavailable``)
* ``audio``, ``espeak``: spoken digits (Asterisk recordings, eSpeak NG voices)
* ``handwriting``: scikit-learn handwritten digits and their split
* ``dvs_emulator``: v2e-style event camera emulation with N-MNIST saccades
* ``imu``: UCR ``.ts`` gesture series -> IMU streams
* ``pairing``, ``builder``, ``dataset``, ``store``: fused samples, the reproducible cache, loading
* ``cli``: ``snn-fusion dataset build|info``

Submodules are imported explicitly (this package imports nothing heavy).
"""
