"""A picture of recent spikes per modality and the class scores (for ``~/debug/raster``)."""

from __future__ import annotations

from collections import deque

import numpy as np

from snn_fusion_ros.spikes import MODALITIES

#: BGR colours per modality
COLOURS = {"audio": (80, 200, 255), "dvs": (255, 160, 60), "imu": (120, 255, 120)}


class RasterHistory:
    """Keeps the last ``windows`` fused windows (per modality) and renders them with OpenCV."""

    def __init__(self, windows: int = 20, max_rows: int = 128) -> None:
        self.windows = windows
        self.max_rows = max_rows
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=windows)

    def add(self, inputs: dict[str, np.ndarray]) -> None:
        self._history.append({m: np.asarray(s, dtype=bool) for m, s in inputs.items()})

    def render(self, scores: np.ndarray, class_names: list[str], width: int = 640) -> np.ndarray:
        """BGR uint8 image: one raster band per modality (time -> right), a score bar chart below."""
        import cv2

        bands = []
        for m in MODALITIES:
            frames = [h[m] for h in self._history if m in h]
            if not frames:
                continue
            raster = np.concatenate(frames, axis=0).T  # (neurons, time)
            if raster.shape[0] > self.max_rows:  # fold neurons so the band stays readable
                fold = -(-raster.shape[0] // self.max_rows)
                pad = fold * self.max_rows - raster.shape[0]
                raster = np.pad(raster, ((0, pad), (0, 0))).reshape(self.max_rows, fold, -1).any(axis=1)
            img = np.zeros((*raster.shape, 3), np.uint8)
            img[raster] = COLOURS[m]
            img = cv2.resize(img, (width, max(48, raster.shape[0])), interpolation=cv2.INTER_NEAREST)
            cv2.putText(img, m, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            bands.append(img)
            bands.append(np.full((2, width, 3), 90, np.uint8))
        bar_h = 18 * max(1, len(class_names)) + 4
        bars = np.zeros((bar_h, width, 3), np.uint8)
        best = int(np.argmax(scores)) if len(scores) else -1
        for i, (name, s) in enumerate(zip(class_names, scores, strict=False)):
            y = 4 + 18 * i
            x1 = 90 + int((width - 100) * float(np.clip(s, 0, 1)))
            cv2.rectangle(bars, (90, y), (x1, y + 12), (0, 200, 0) if i == best else (150, 150, 150), -1)
            cv2.putText(bars, f"{name[:10]} {s:.2f}", (2, y + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                        (255, 255, 255), 1, cv2.LINE_AA)
        return np.concatenate([*bands, bars], axis=0)
