"""Configuration of the fusion spiking network (:class:`FusionNetConfig`).

Every field carries :func:`snn_fusion_ros.params.param` metadata so that the ROS layer can declare it
as a parameter with a descriptor; :func:`validate_config` runs in ``__post_init__``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from snn_fusion_ros.params import check_field, param, validate_config
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

    ``population_tau_mem_ms`` / ``population_tau_syn_ms`` give each modality's recurrent population its own
    time constants (one value per modality, in :data:`MODALITIES` order: audio, dvs, imu), e.g. slower IMU
    membranes for second-long gestures beside 20 ms ones for speech; empty (the default) means
    ``tau_mem_ms`` / ``tau_syn_ms`` for all three. The fusion layer always uses ``tau_mem_ms`` / ``tau_syn_ms``,
    and so does the readout's synaptic current.
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
    population_tau_mem_ms: tuple[float, ...] = field(default=(), metadata=param(
        "membrane time constant of each modality population (audio, dvs, imu); empty: tau_mem_ms for all",
        "ms", 0.01, 1e5))
    population_tau_syn_ms: tuple[float, ...] = field(default=(), metadata=param(
        "synaptic current time constant of each modality population (audio, dvs, imu); empty: tau_syn_ms for "
        "all", "ms", 0.01, 1e5))
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
        for name in ("population_tau_mem_ms", "population_tau_syn_ms"):
            object.__setattr__(self, name, population_values(self, name))

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

    def population_decays(self) -> dict[str, tuple[float, float]]:
        """``{modality: (alpha, beta)}`` of each recurrent population (all equal to ``(alpha, beta)`` unless
        ``population_tau_*_ms`` say otherwise)."""
        syn = self.population_tau_syn_ms or (self.tau_syn_ms,) * len(MODALITIES)
        mem = self.population_tau_mem_ms or (self.tau_mem_ms,) * len(MODALITIES)
        return {m: (math.exp(-self.step_ms / ts), math.exp(-self.step_ms / tm))
                for m, ts, tm in zip(MODALITIES, syn, mem, strict=True)}

    @property
    def uniform_populations(self) -> bool:
        """True when every recurrent population has the decays ``(alpha, beta)`` of the fusion layer."""
        return all(d == (self.alpha, self.beta) for d in self.population_decays().values())

    def hidden_decays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-neuron ``(alpha, beta)`` of the hidden layer, each (3H,) float64 in :data:`MODALITIES` order
        (the layout of ``w_in`` / ``w_rec`` in :class:`~snn_fusion_ros.snn.network.FusionNet`)."""
        d = self.population_decays()
        h = self.hidden_neurons
        return (np.repeat([d[m][0] for m in MODALITIES], h), np.repeat([d[m][1] for m in MODALITIES], h))

    @property
    def readout_beta(self) -> float:
        """Per-step readout membrane decay ``exp(-step_ms / readout_tau_mem_ms)``."""
        return math.exp(-self.step_ms / self.readout_tau_mem_ms)


def population_values(cfg: object, name: str) -> tuple[float, ...]:
    """Field ``name`` of ``cfg`` (a per-population time constant, :class:`FusionNetConfig`'s or a config that
    copies its metadata) as a tuple of floats, checked: empty, or one value per modality within the field's
    range; ValueError naming the field otherwise."""
    owner = type(cfg).__name__
    raw = getattr(cfg, name)
    if isinstance(raw, (str, bytes)):
        raise ValueError(f"{owner}.{name}={raw!r}: expected a list of numbers")
    meta = next(f.metadata for f in fields(cfg) if f.name == name)  # type: ignore[arg-type]
    try:
        values = tuple(float(v) for v in raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{owner}.{name}={raw!r}: expected a list of numbers ({exc})") from None
    if values and len(values) != len(MODALITIES):
        raise ValueError(f"{owner}.{name}={list(values)}: give one value per modality {list(MODALITIES)}, "
                         "or none (the shared time constant)")
    for v in values:
        check_field(owner, name, v, meta)
    return values
