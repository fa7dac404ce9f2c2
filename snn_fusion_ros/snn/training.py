"""Offline surrogate-gradient training of :class:`FusionNet` with modality dropout.

A batch is ``(inputs, labels)``: ``inputs[m]`` (B, T, N_m) bool/float (numpy or torch), ``labels``
(B,) int class of each sequence. The loss is the cross-entropy of the readout membrane at the end of
every window (``softmax(v[t_end])`` are the scores, as in streaming), averaged over windows.

Modality dropout: for each sample, with probability ``modality_dropout`` one modality chosen
uniformly is replaced by zeros (the streaming contract for a missing modality), so the network learns
to classify with a sensor missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from snn_fusion_ros.snn.network import FusionNet
from snn_fusion_ros.spikes import MODALITIES

Batch = tuple[Mapping[str, Any], Any]


def _as_tensor(a: Any) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(torch.float32)
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def apply_modality_dropout(inputs: dict[str, torch.Tensor], p: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Zero one randomly chosen modality per sample with probability ``p`` (never all of them)."""
    present = [m for m in MODALITIES if m in inputs]
    if p <= 0 or len(present) < 2:
        return inputs
    b = next(iter(inputs.values())).shape[0]
    drop = torch.rand(b, generator=gen) < p
    which = torch.randint(len(present), (b,), generator=gen)
    out = {}
    for i, m in enumerate(present):
        keep = (~(drop & (which == i))).to(torch.float32)[:, None, None]
        out[m] = inputs[m] * keep
    return out


def train(model: FusionNet, dataset_iter: Iterable[Batch] | Callable[[], Iterable[Batch]], epochs: int,
          lr: float, seed: int, progress: bool = True, modality_dropout: float = 0.3,
          weight_decay: float = 0.0) -> dict[str, list[float]]:
    """Train ``model`` in place with Adam; returns ``{"loss": [...], "accuracy": [...]}`` per epoch.

    Parameters
    ----------
    dataset_iter: a re-iterable of batches, or a callable returning a fresh iterable each epoch.
    epochs: passes over the data.
    lr: Adam learning rate.
    seed: seeds the dropout generator and torch's global RNG state used by nothing else, so two runs
        with the same seed, model init and data give identical weights.
    progress: show a tqdm bar (stderr).
    modality_dropout: probability of dropping one modality of a sample.

    Accuracy is the fraction of window-end decisions equal to the label (with dropout applied).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    torch.manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs, desc="train", unit="epoch")
    model.train()
    for _ in range(epochs):
        data = dataset_iter() if callable(dataset_iter) else dataset_iter
        tot_loss, tot_ok, tot_n, n_batches = 0.0, 0, 0, 0
        for inputs, labels in data:
            x = {m: _as_tensor(a) for m, a in inputs.items()}
            x = apply_modality_dropout(x, modality_dropout, gen)
            y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
            v = model(x)
            ends = model.window_end_values(v)  # (B, W, C)
            w = ends.shape[1]
            loss = torch.nn.functional.cross_entropy(ends.reshape(-1, ends.shape[2]), y.repeat_interleave(w))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_loss += float(loss.detach())
            tot_ok += int((ends.argmax(-1) == y[:, None]).sum())
            tot_n += int(y.numel() * w)
            n_batches += 1
        if n_batches == 0:
            raise ValueError("dataset_iter yielded no batches")
        history["loss"].append(tot_loss / n_batches)
        history["accuracy"].append(tot_ok / max(1, tot_n))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=history["loss"][-1], acc=history["accuracy"][-1])
    if bar is not None:
        bar.close()
    model.eval()
    model.reset()
    return history


def evaluate_decisions(model: FusionNet, inputs: Mapping[str, Any]) -> np.ndarray:
    """Offline batched decisions at every window end: (S, W) int64 (state starts at zero per sequence)."""
    with torch.no_grad():
        v = model({m: _as_tensor(a) for m, a in inputs.items()})
        out = model.window_end_values(v).argmax(-1).numpy().astype(np.int64)
    model.reset()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Helpers for `snn-fusion train` (epoch-level control: resumable optimiser state, missing-modality sets).

#: Every way of losing one or two of the three modalities, as tuples of the missing ones.
MISSING_SETS: tuple[tuple[str, ...], ...] = tuple(
    tuple(m for j, m in enumerate(MODALITIES) if mask >> j & 1) for mask in (1, 2, 4, 3, 5, 6))


#: A name per missing set, in :data:`MISSING_SETS` order: its missing modalities joined by "+" ("dvs",
#: "audio+imu", ...).
MISSING_SET_NAMES: tuple[str, ...] = tuple("+".join(s) for s in MISSING_SETS)


def missing_set_weights(spec: str) -> tuple[float, ...] | None:
    """Weights of :data:`MISSING_SETS` (in that order) from ``"name=w,name=w"`` (names from
    :data:`MISSING_SET_NAMES`; a set not named weighs 1); None for ``""`` (uniform). Weights are finite and
    >= 0, at least one > 0; unknown or repeated names raise ValueError."""
    if not spec.strip():
        return None
    w = dict.fromkeys(MISSING_SET_NAMES, 1.0)
    seen: set[str] = set()
    for item in spec.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or name not in w:
            raise ValueError(f"missing-set weight {item.strip()!r}: expected NAME=WEIGHT with NAME one of "
                             f"{list(MISSING_SET_NAMES)}")
        if name in seen:
            raise ValueError(f"missing set {name!r} weighted twice in {spec!r}")
        seen.add(name)
        try:
            w[name] = float(value)
        except ValueError:
            raise ValueError(f"missing-set weight {item.strip()!r}: {value!r} is not a number") from None
        if not np.isfinite(w[name]) or w[name] < 0:
            raise ValueError(f"missing-set weight {item.strip()!r}: must be finite and >= 0")
    if not any(w.values()):
        raise ValueError(f"missing-set weights {spec!r}: at least one must be > 0")
    return tuple(w.values())


def apply_missing_dropout(inputs: dict[str, torch.Tensor], p: float, gen: torch.Generator,
                          weights: tuple[float, ...] | None = None) -> dict[str, torch.Tensor]:
    """With probability ``p`` per sample, zero one of :data:`MISSING_SETS`, chosen uniformly or, with
    ``weights`` (one per set, :func:`missing_set_weights`), in proportion to them.

    Unlike :func:`apply_modality_dropout` this also drops two modalities at once (never all three),
    so the network learns to classify from any single modality. Uniform choice draws exactly as before
    ``weights`` existed (``torch.randint``), so earlier runs replay unchanged.
    """
    if p <= 0:
        return inputs
    b = next(iter(inputs.values())).shape[0]
    drop = torch.rand(b, generator=gen) < p
    if weights is None:
        which = torch.randint(len(MISSING_SETS), (b,), generator=gen)
    else:
        if len(weights) != len(MISSING_SETS):
            raise ValueError(f"{len(weights)} missing-set weights for {len(MISSING_SETS)} sets")
        which = torch.multinomial(torch.as_tensor(weights, dtype=torch.float64), b, replacement=True, generator=gen)
    out = {}
    for m, x in inputs.items():
        hit = torch.tensor([m in s for s in MISSING_SETS])[which] & drop
        out[m] = x * (~hit).to(x.dtype)[:, None, None]
    return out


def shift_channels(x: torch.Tensor, layout: tuple[int, int, int], max_shift: int, gen: torch.Generator
                   ) -> torch.Tensor:
    """Audio spikes ``x`` (B, T, N) with each sample's cochlear channels moved by an integer ``c`` drawn
    uniformly from ``[-max_shift, max_shift]`` (channel ``j`` reads channel ``j - c``; zeros shifted in),
    the same ``c`` for every delay tap and ON/OFF group. ``layout`` is the encoder's
    :attr:`~snn_fusion_ros.encoders.audio.AudioEncoderConfig.channel_layout` (``taps * groups * channels``
    must be N).

    Why: a longer or shorter vocal tract moves every formant by about the same factor, and the gammatone
    channels are equally spaced on the ERB-rate scale (about 0.9 ERB apart at 32 channels over
    100-7000 Hz), where a factor of 1.1 is about one channel from 1 to 7 kHz: moving the channels is a
    vocal-tract-length perturbation (Jaitly and Hinton, 2013, warp factors 0.9-1.1) done on the spikes.
    """
    taps, groups, ch = layout
    b, t, n = x.shape
    if taps * groups * ch != n:
        raise ValueError(f"audio channel layout {layout} does not cover {n} neurons")
    c = torch.randint(-max_shift, max_shift + 1, (b, 1, 1, 1), generator=gen)
    src = torch.arange(ch)[None, None, None, :] - c
    valid = ((src >= 0) & (src < ch)).to(x.dtype)
    y = x.reshape(b, t, taps * groups, ch)
    y = torch.take_along_dim(y, src.clamp(0, ch - 1).expand(b, t, taps * groups, ch), dim=3) * valid
    return y.reshape(b, t, n)


def augment_spikes(inputs: dict[str, torch.Tensor], shift_steps: int, drop: float, gen: torch.Generator,
                   audio_channel_shift: int = 0, audio_layout: tuple[int, int, int] | None = None
                   ) -> dict[str, torch.Tensor]:
    """Spike-level augmentation of a training batch ``{m: (B, T, N_m)}``.

    * ``shift_steps``: each sample's stream of each modality moves by an integer ``s`` drawn uniformly
      from ``[-shift_steps, shift_steps]`` steps (zeros shifted in): the sensors of a fused sample
      are not recorded together, and a word or a gesture does not start at the same instant twice.
    * ``audio_channel_shift``: the audio spikes' cochlear channels move by up to this many channels
      (:func:`shift_channels`, ``audio_layout`` its layout).
    * ``drop``: every input spike is deleted with this probability (sensor noise, a quieter voice).

    All are off at 0, and then ``inputs`` is returned unchanged (and ``gen`` is not drawn from).
    """
    if shift_steps <= 0 and drop <= 0 and audio_channel_shift <= 0:
        return inputs
    if audio_channel_shift > 0 and audio_layout is None:
        raise ValueError("audio_channel_shift needs audio_layout (AudioEncoderConfig.channel_layout)")
    out = {}
    for m, x in inputs.items():
        b, t, n = x.shape
        if shift_steps > 0:
            s = torch.randint(-shift_steps, shift_steps + 1, (b, 1), generator=gen)
            src = torch.arange(t)[None, :] - s  # output step j reads input step j - s
            valid = ((src >= 0) & (src < t)).to(x.dtype)[:, :, None]
            x = torch.take_along_dim(x, src.clamp(0, t - 1)[:, :, None].expand(b, t, n), dim=1) * valid
        if m == "audio" and audio_channel_shift > 0:
            x = shift_channels(x, audio_layout, audio_channel_shift, gen)
        if drop > 0:
            x = x * (torch.rand(x.shape, generator=gen) >= drop).to(x.dtype)
        out[m] = x
    return out


def window_loss(ends: torch.Tensor, y: torch.Tensor, last_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy of the window-end readout ``ends`` (B, W, C) against ``y`` (B,).

    ``mean_w CE(ends[:, w], y) + last_weight * CE(ends[:, -1], y)``: every window is trained (the
    streaming output is meaningful at every window) and the last one, the decision rule of
    ``snn-fusion eval``, counts extra.
    """
    _, w, c = ends.shape
    ce = torch.nn.functional.cross_entropy
    return ce(ends.reshape(-1, c), y.repeat_interleave(w)) + last_weight * ce(ends[:, -1], y)


def train_epoch(model: FusionNet, opt: torch.optim.Optimizer, batches: Iterable[Batch], gen: torch.Generator,
                missing_dropout: float = 0.5, last_weight: float = 1.0,
                on_batch: Callable[[float], None] | None = None, shift_steps: int = 0,
                spike_drop: float = 0.0, audio_channel_shift: int = 0,
                audio_layout: tuple[int, int, int] | None = None,
                missing_weights: tuple[float, ...] | None = None) -> tuple[float, float]:
    """One pass of Adam-style updates over ``batches``; returns (mean loss, last-window accuracy).

    ``missing_dropout`` is the per-sample probability of :func:`apply_missing_dropout` and
    ``missing_weights`` its choice among the missing sets (None: uniform);
    ``shift_steps``, ``spike_drop``, ``audio_channel_shift`` and ``audio_layout`` configure
    :func:`augment_spikes` (applied first).
    """
    model.train()
    tot_loss, ok, n, nb = 0.0, 0, 0, 0
    for inputs, labels in batches:
        x = augment_spikes({m: _as_tensor(a) for m, a in inputs.items()}, shift_steps, spike_drop, gen,
                           audio_channel_shift, audio_layout)
        x = apply_missing_dropout(x, missing_dropout, gen, missing_weights)
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        ends = model.window_end_values(model(x))
        loss = window_loss(ends, y, last_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot_loss += float(loss.detach())
        ok += int((ends[:, -1].argmax(-1) == y).sum())
        n += int(y.numel())
        nb += 1
        if on_batch is not None:
            on_batch(float(loss.detach()))
    if nb == 0:
        raise ValueError("batches yielded nothing")
    model.eval()
    model.reset()
    return tot_loss / nb, ok / max(1, n)


def scores_and_peak(model: FusionNet, inputs: Mapping[str, Any], batch_size: int = 256) -> tuple[np.ndarray, float]:
    """One pass over ``inputs`` (state reset per sequence): the readout membrane at the end of the last
    window (S, C) float32, and the largest ``|v|`` of the readout membrane over every step."""
    outs, peak = [], 0.0
    n = len(next(iter(inputs.values())))
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            v = model({m: _as_tensor(a[lo: lo + batch_size]) for m, a in inputs.items()})
            outs.append(model.window_end_values(v)[:, -1].numpy())
            peak = max(peak, float(v.abs().max()))
    model.reset()
    scores = np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, model.config.num_classes), np.float32)
    return scores, peak


def last_window_scores(model: FusionNet, inputs: Mapping[str, Any], batch_size: int = 256) -> np.ndarray:
    """Readout membrane at the end of the last window, (S, C) float32, state reset per sequence."""
    return scores_and_peak(model, inputs, batch_size)[0]


def readout_abs_max(model: FusionNet, inputs: Mapping[str, Any], batch_size: int = 256) -> float:
    """Largest ``|v|`` of the readout membrane over every step of ``inputs`` (state reset per sequence).

    Recorded in a trained artifact (``extra.readout_abs_max``): fixed-point backends size the readout's
    number format from it (Lava's 24-bit membrane wraps around on overflow, see the Lava backend).
    """
    return scores_and_peak(model, inputs, batch_size)[1]


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam state as flat named tensors (``opt.<i>.<key>``), for a safetensors checkpoint."""
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().clone().contiguous()
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor]) -> None:
    """Inverse of :func:`optimizer_tensors` (parameter groups of ``opt`` kept)."""
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, v in tensors.items():
        if not name.startswith("opt."):
            continue
        _, i, k = name.split(".", 2)
        state.setdefault(int(i), {})[k] = v.clone()
    sd["state"] = state
    opt.load_state_dict(sd)
