"""Invented identifiers in the real ranges of data-contract §0 (never real ones)."""

from __future__ import annotations

import numpy as np

FOLDERS = tuple(range(10, 20))  # p10 .. p19


def subject_ids(rng: np.random.Generator, n: int, holdout_fraction: float = 0.125) -> np.ndarray:
    """``n`` unique 8-digit subject ids (1xxxxxxx); about ``holdout_fraction`` of them in folder p19.

    The count in p19 is exact (``round(n * holdout_fraction)``, at least 1 when n >= 2) so that a
    small demo always has a holdout cohort; the others are spread over p10..p18.
    """
    n19 = max(1, int(round(n * holdout_fraction))) if n >= 2 else 0
    folders = np.concatenate([np.full(n19, 19), rng.integers(10, 19, size=n - n19)])
    rng.shuffle(folders)
    out = np.empty(n, dtype=np.int64)
    for f in FOLDERS:
        idx = np.flatnonzero(folders == f)
        if len(idx):
            out[idx] = f * 1_000_000 + rng.choice(1_000_000, size=len(idx), replace=False)
    return out


def study_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` unique 8-digit study ids (5xxxxxxx), random order (carries no chronology)."""
    return 50_000_000 + rng.choice(10_000_000, size=n, replace=False).astype(np.int64)


def hadm_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return 20_000_000 + rng.choice(10_000_000, size=n, replace=False).astype(np.int64)


def dicom_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` unique dicom ids: five groups of 8 lowercase hex digits joined by ``-``."""
    words = rng.integers(0, 2**32, size=(n, 5), dtype=np.uint64)
    ids = ["%08x-%08x-%08x-%08x-%08x" % tuple(int(v) for v in row) for row in words]
    if len(set(ids)) != n:  # astronomically unlikely; keep the guarantee anyway
        raise RuntimeError("dicom id collision")
    return ids


def image_rel_path(subject_id: int, study_id: int, dicom_id: str) -> str:
    s = str(subject_id)
    return f"files/p{s[:2]}/p{s}/s{study_id}/{dicom_id}.jpg"


def report_rel_path(subject_id: int, study_id: int) -> str:
    s = str(subject_id)
    return f"files/p{s[:2]}/p{s}/s{study_id}.txt"
