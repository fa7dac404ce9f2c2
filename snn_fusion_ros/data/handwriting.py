"""Handwritten digits: scikit-learn's ``load_digits`` (real, 8x8, ships inside scikit-learn).

``load_digits`` is the *test* part of the UCI "Optical Recognition of Handwritten Digits" data set
(optdigits.tes): 1,797 images written by 13 people who are disjoint from the 30 writers of the UCI
training part. Writers are not labelled, so writer-disjointness inside load_digits cannot be
verified from the data. The split is by index blocks, on the assumption that the file keeps the
order in which the forms were processed (its first 30 labels run 0..9 three times, the preprinted
order of a form; later labels are mixed, so the order is at best partly by writer):
train = indices [0, TRAIN_END), test = [TEST_START, 1797), and a guard block
[TRAIN_END, TEST_START) of about one writer's share (1797 / 13 ~ 138 images) is dropped between
them so that, if the file is in writer order, no writer is in both splits. doc/data.md states this
as an assumption, not a guarantee.
"""

from __future__ import annotations

import numpy as np

from snn_fusion_ros.data.sources import SourceUnavailable

N_IMAGES = 1797
TRAIN_END = 1250
TEST_START = 1400


def load_handwritten() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64) from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise SourceUnavailable("scikit-learn", f"cannot import sklearn.datasets ({exc}); "
                                                "pip install scikit-learn==1.9.1") from None
    d = load_digits()
    images = np.asarray(d.images, dtype=np.float32) / 16.0
    labels = np.asarray(d.target, dtype=np.int64)
    if images.shape != (N_IMAGES, 8, 8):
        raise SourceUnavailable("scikit-learn", f"load_digits returned images of shape {images.shape}, "
                                                f"expected ({N_IMAGES}, 8, 8)")
    return images, labels


def split_indices(split: str, quick: bool = False) -> np.ndarray:
    """Image indices of ``split`` ("train" or "test"); ``quick`` keeps every 10th of them."""
    if split == "train":
        idx = np.arange(0, TRAIN_END)
    elif split == "test":
        idx = np.arange(TEST_START, N_IMAGES)
    else:
        raise ValueError(f"split={split!r}; expected 'train' or 'test'")
    return idx[::10] if quick else idx


#: Ranges of the random affine distortion of :func:`distort` (uniform draws), the kind used to enlarge
#: handwritten-digit training sets (Simard, Steinkraus, Platt 2003): rotation in degrees, isotropic
#: scale, horizontal shear (x += shear * y), each about the image centre.
DISTORTION = {"rotation_deg": 15.0, "scale": 0.15, "shear": 0.3}


def distort(image: np.ndarray, out_px: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` (any 2-D intensities) upscaled to ``out_px`` square (bilinear) and warped by a random
    affine map drawn from :data:`DISTORTION` with ``rng``; float32 in [0, 1] (ink leaving the square is
    cut). Another writer's version of the same digit, for training only."""
    import cv2

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"image must be a non-empty 2-D array, got shape {img.shape}")
    if out_px < 2:
        raise ValueError(f"out_px must be >= 2, got {out_px}")
    big = cv2.resize(img, (out_px, out_px), interpolation=cv2.INTER_LINEAR)
    rot, scale, shear = rng.uniform(-1.0, 1.0, 3) * np.array(
        [np.deg2rad(DISTORTION["rotation_deg"]), DISTORTION["scale"], DISTORTION["shear"]])
    c, s = np.cos(rot), np.sin(rot)
    a = (1.0 + scale) * np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    centre = np.array([(out_px - 1) / 2.0, (out_px - 1) / 2.0])
    m = np.hstack([a, (centre - a @ centre)[:, None]])
    out = cv2.warpAffine(big, m, (out_px, out_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
