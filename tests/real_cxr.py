"""The real chest radiograph corpus (``../shared/real-cxr``) for tests and benchmarks (a test helper).

The corpus is referenced, never copied into the repository or the demo dataset. Its location:
``$INSTRUCTX2X_REAL_CXR`` if set, else ``<repository root>/../shared/real-cxr``. It holds 340 real
chest X-rays (8-bit JPEG, longest side <= 768 px) and ``metadata.csv`` (file, patient,
offset_days, view, ...; see its README).

Pairs built from it (deterministic, seeded):
- ``same_patient_pairs``: consecutive PA studies of one patient (sorted by ``offset_days``, then
  file; a missing offset sorts last): past = earlier, current = later;
- ``other_patient_pairs``: each PA image (past) with a PA image of another patient (current);
- ``warp``: a known similarity transform of an image, with an exposure change (gamma, contrast,
  brightness, noise) and a different field of view, returning the truth matrix
  (past pixel -> current pixel, the convention of ``registration.transform_matrix_of``);
- a mirror: ``np.fliplr`` of a (warped) image.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = "INSTRUCTX2X_REAL_CXR"


def corpus_root() -> Path:
    return Path(os.environ.get(ENV) or (REPO_ROOT.parent / "shared" / "real-cxr")).resolve()


def available() -> bool:
    return (corpus_root() / "metadata.csv").is_file()


def metadata(root: Path | None = None) -> pd.DataFrame:
    root = root or corpus_root()
    m = pd.read_csv(root / "metadata.csv", dtype={"patient": str})
    m["path"] = [str(root / f) for f in m["file"]]
    return m


def pa_images(meta: pd.DataFrame) -> pd.DataFrame:
    pa = meta[meta["view"] == "PA"].copy()
    pa["_order"] = pa["offset_days"].fillna(np.inf)
    return pa.sort_values(["patient", "_order", "file"], kind="stable").drop(columns="_order").reset_index(drop=True)


def same_patient_pairs(meta: pd.DataFrame) -> pd.DataFrame:
    """Consecutive PA studies of each patient: columns pair_id, patient, past, current (paths), gap_days."""
    rows = []
    for patient, g in pa_images(meta).groupby("patient", sort=True):
        g = g.reset_index(drop=True)
        for i in range(1, len(g)):
            rows.append({"pair_id": f"same_{g.loc[i - 1, 'file'][7:12]}_{g.loc[i, 'file'][7:12]}", "patient": patient,
                         "past": g.loc[i - 1, "path"], "current": g.loc[i, "path"],
                         "gap_days": g.loc[i, "offset_days"] - g.loc[i - 1, "offset_days"]})
    return pd.DataFrame(rows)


def other_patient_pairs(meta: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Each PA image (past) with a PA image of another patient (current), drawn with ``seed``."""
    pa = pa_images(meta)
    rng = np.random.default_rng(seed)
    rows = []
    for r in pa.itertuples(index=False):
        others = pa[pa["patient"] != r.patient]
        o = others.iloc[int(rng.integers(len(others)))]
        rows.append({"pair_id": f"other_{r.file[7:12]}_{o['file'][7:12]}", "patient": r.patient,
                     "past": r.path, "current": o["path"], "gap_days": np.nan})
    return pd.DataFrame(rows)


def held_out(patient: str) -> bool:
    """The patient split of the calibration: half the patients (CRC32 of the id, odd) are held out."""
    return zlib.crc32(str(patient).encode()) % 2 == 1


def warp(arr: np.ndarray, seed: int, *, max_angle: float = 10.0, scales=(0.9, 1.1), max_shift: float = 0.06):
    """(current image, truth 3x3 matrix past->current): ``arr`` moved by a random similarity about its
    centre, cropped to a 90-100% field of view, with an exposure change (gamma 0.7-1.4, contrast
    0.8-1.2, brightness ±15 grey levels, noise sigma 2-5)."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = arr.shape
    a = math.radians(rng.uniform(-max_angle, max_angle))
    s = rng.uniform(*scales)
    t = np.array([rng.uniform(-max_shift, max_shift) * w, rng.uniform(-max_shift, max_shift) * h])
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    R = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    A = np.eye(3)
    A[:2, :2] = R
    A[:2, 2] = c + t - R @ c
    oh, ow = int(round(h * rng.uniform(0.9, 1.0))), int(round(w * rng.uniform(0.9, 1.0)))
    inv = np.linalg.inv(A)[:2]
    out = cv2.warpAffine(arr.astype(np.float32), inv, (ow, oh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    gamma, contrast, bright = rng.uniform(0.7, 1.4), rng.uniform(0.8, 1.2), rng.uniform(-15, 15)
    out = 255.0 * (out / 255.0) ** gamma
    out = (out - 128.0) * contrast + 128.0 + bright + rng.normal(0, rng.uniform(2, 5), out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), A
