"""The fusion spiking network (no ROS): neurons, network, training, online STDP, model artifact.

* :mod:`config` - :class:`FusionNetConfig` (sizes, time constants, reset, surrogate, delays, seed)
* :mod:`base`, :mod:`cuba_lif`, :mod:`leaky_integrator`, :mod:`surrogate` - neuron models
* :mod:`network` - :class:`FusionNet` (offline ``forward`` and streaming ``step``)
* :mod:`training` - surrogate-gradient training with modality dropout
* :mod:`stdp` - optional online pair-based STDP on the fusion weights
* :mod:`artifact` - safetensors + JSON model artifact with checksum
* :mod:`synthetic` - synthetic class-dependent spikes for tests and benchmarks
"""
