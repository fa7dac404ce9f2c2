"""Configuration of the fusion spiking network (:class:`FusionNetConfig`).

Every field carries :func:`snn_fusion_ros.params.param` metadata so that the ROS layer can declare it
as a parameter with a descriptor; :func:`validate_config` runs in ``__post_init__``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from snn_fusion_ros.params import param, validate_config
from snn_fusion_ros.spikes import MODALITIES

#: Reset mechanisms of the spiking layers (see :class:`snn_fusion_ros.snn.base.SpikingNeuron`).
RESET_MECHANISMS: tuple[str, ...] = ("zero", "subtract")
#: Surrogate gradients (see :mod:`snn_fusion_ros.snn.surrogate`).
SURROGATES: tuple[str, ...] = ("fast_sigmoid", "atan", "triangle")


@dataclass(frozen=True)
class FusionNetConfig:
    """Sizes and dynamics of :class:`snn_fusion_ros.snn.network.FusionNet`.

    Per-step decay factors follow from the time constants by exact exponential discretisation:
    ``alpha = exp(-step_ms / tau_syn_ms)`` (synaptic current) and ``beta = exp(-step_ms / tau_mem_ms)``
    (membrane); the readout uses ``readout_tau_mem_ms``.
    """

    audio_neurons: int = field(default=64, metadata=param(
        "input spike neurons of the audio encoder (channels x ON/OFF)", "", 1, 65536))
    dvs_neurons: int = field(default=512, metadata=param(
        "input spike neurons of the DVS encoder (polarity x grid)", "", 1, 65536))
    imu_neurons: int = field(default=48, metadata=param("input spike neurons of the IMU encoder", "", 1, 65536))
    hidden_neurons: int = field(default=64, metadata=param(
        "recurrent LIF neurons per modality population", "", 1, 4096))
    fusion_neurons: int = field(default=64, metadata=param("LIF neurons of the fusion layer", "", 1, 4096))
    num_classes: int = field(default=4, metadata=param("output classes of the readout", "", 2, 1024))
    step_ms: float = field(default=5.0, metadata=param("simulation time step", "ms", 0.01, 1000.0))
    steps_per_window: int = field(default=10, metadata=param("time steps in one window", "", 1, 10000))
    tau_mem_ms: float = field(default=20.0, metadata=param("membrane time constant of LIF layers", "ms", 0.01, 1e5))
    tau_syn_ms: float = field(default=10.0, metadata=param("synaptic current time constant", "ms", 0.01, 1e5))
    readout_tau_mem_ms: float = field(default=100.0, metadata=param(
        "membrane time constant of the leaky-integrator readout", "ms", 0.01, 1e6))
    synaptic_delay_steps: int = field(default=1, metadata=param(
        "delay of every feed-forward projection (input->hidden, hidden->fusion, fusion->readout); 1 = Loihi "
        "timing (a Dense delivers on the next step), which makes the Lava backend exact; 0 = none", "steps", 0, 1))
    threshold: float = field(default=1.0, metadata=param("firing threshold of LIF layers", "", 1e-6, 1e6))
    reset_mechanism: str = field(default="zero", metadata=param(
        "membrane reset after a spike", choices=RESET_MECHANISMS))
    surrogate: str = field(default="fast_sigmoid", metadata=param(
        "surrogate gradient of the spike function (training only)", choices=SURROGATES))
    surrogate_slope: float = field(default=10.0, metadata=param("slope of the surrogate gradient", "", 0.01, 1e4))
    recurrent_density: float = field(default=0.2, metadata=param(
        "fraction of recurrent connections present in each population (fixed mask)", "", 0.0, 1.0))
    input_gain: float = field(default=1.0, metadata=param(
        "scale of the initial input weights relative to 1/sqrt(fan_in)", "", 0.0, 100.0))
    seed: int = field(default=0, metadata=param("seed of weight initialisation and recurrent mask", "", 0, 2**31 - 1))

    def __post_init__(self) -> None:
        validate_config(self)

    @property
    def input_sizes(self) -> dict[str, int]:
        """Neurons per modality, in :data:`MODALITIES` order."""
        return {m: int(getattr(self, f"{m}_neurons")) for m in MODALITIES}

    @property
    def alpha(self) -> float:
        """Per-step synaptic current decay ``exp(-step_ms / tau_syn_ms)``."""
        return math.exp(-self.step_ms / self.tau_syn_ms)

    @property
    def beta(self) -> float:
        """Per-step membrane decay ``exp(-step_ms / tau_mem_ms)``."""
        return math.exp(-self.step_ms / self.tau_mem_ms)

    @property
    def readout_beta(self) -> float:
        """Per-step readout membrane decay ``exp(-step_ms / readout_tau_mem_ms)``."""
        return math.exp(-self.step_ms / self.readout_tau_mem_ms)
