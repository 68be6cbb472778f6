"""Quality statistics of a registered pair and accuracy against a known transform.

- ``central_ncc``: normalised cross-correlation of the aligned images' central region (the gate's
  gross-failure guard);
- ``structure_ncc``: the median of local correlations (8×8-pixel windows at 128²): a follow-up of the
  same patient agrees on fine structure almost everywhere, another patient's image does not (the
  same-patient check; docs/registration.md gives its real-data and demo calibration);
- ``transform_matrix_of`` / ``transform_errors``: a similarity transform as a matrix, and the angle
  and largest displacement (in pixels at 512²) between an estimated and a true transform (tests and
  benchmarks against the generator's truth and known transforms of real radiographs).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def central_ncc(a: np.ndarray, b: np.ndarray, margin: float = 0.15) -> float:
    """Pearson correlation of the central region (border ``margin`` excluded on each side)."""
    h, w = a.shape
    dy, dx = int(h * margin), int(w * margin)
    x = a[dy : h - dy, dx : w - dx].astype(np.float64).ravel()
    y = b[dy : h - dy, dx : w - dx].astype(np.float64).ravel()
    x -= x.mean()
    y -= y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


STRUCTURE_SIZE = 128  # analysis resolution of structure_ncc (so its threshold does not depend on registration.resolution)


def structure_ncc(a: np.ndarray, b: np.ndarray, window: int = 8, step: int = 4, margin: float = 0.1,
                  min_std: float = 2.0) -> float:
    """Median Pearson correlation over local windows of two aligned grey images.

    Both are area-resized to ``STRUCTURE_SIZE``²; windows of ``window``² pixels every ``step``
    pixels over the central region (``margin`` excluded on each side); only windows whose grey
    level standard deviation is above ``min_std`` in both images count (flat background and the
    zero fill outside the resampled image do not). 0.0 when no window counts.
    """

    from numpy.lib.stride_tricks import sliding_window_view

    def prep(x):
        x = np.asarray(x, np.float32)
        if x.shape != (STRUCTURE_SIZE, STRUCTURE_SIZE):
            x = cv2.resize(x, (STRUCTURE_SIZE, STRUCTURE_SIZE), interpolation=cv2.INTER_AREA)
        h, w = x.shape
        dy, dx = int(h * margin), int(w * margin)
        v = sliding_window_view(x[dy : h - dy, dx : w - dx], (window, window))[::step, ::step]
        v = v.reshape(-1, window * window).astype(np.float64)
        return v - v.mean(axis=1, keepdims=True)

    pa, pb = prep(a), prep(b)
    sa, sb = np.sqrt((pa * pa).mean(axis=1)), np.sqrt((pb * pb).mean(axis=1))
    ok = (sa > min_std) & (sb > min_std)
    if not ok.any():
        return 0.0
    return float(np.median((pa * pb).mean(axis=1)[ok] / (sa * sb)[ok]))


def transform_matrix_of(angle_rad, scale, tx, ty, center_x, center_y) -> np.ndarray:
    """3x3 matrix of the estimated similarity (fixed original pixel -> moving original pixel)."""
    c, s_ = math.cos(angle_rad), math.sin(angle_rad)
    R = scale * np.array([[c, -s_], [s_, c]])
    ctr = np.array([center_x, center_y])
    t = ctr + np.array([tx, ty]) - R @ ctr
    return np.vstack([np.hstack([R, t[:, None]]), [0.0, 0.0, 1.0]])


def transform_errors(estimated: np.ndarray, true: np.ndarray, fixed_hw, at: int = 512) -> tuple[float, float]:
    """(|rotation error| in degrees, max displacement error) between two fixed->moving matrices.

    The displacement error is the largest distance between where the two transforms send a 9x9
    grid over the central 80% of the fixed image, in pixels of a ``at``² image (the fixed image's
    longer side scaled to ``at``).
    """
    ang = math.degrees(math.atan2(estimated[1, 0], estimated[0, 0]) - math.atan2(true[1, 0], true[0, 0]))
    ang = (ang + 180.0) % 360.0 - 180.0
    h, w = fixed_hw
    ys, xs = np.mgrid[0.1 * (h - 1) : 0.9 * (h - 1) : 9j, 0.1 * (w - 1) : 0.9 * (w - 1) : 9j]
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    d = np.hypot(*((estimated @ pts)[:2] - (true @ pts)[:2])).max()
    return abs(ang), float(d * at / max(h, w))


