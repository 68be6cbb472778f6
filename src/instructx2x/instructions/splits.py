"""Patient-wise splits: every patient of folder ``p19`` in ``holdout``; the others shuffled with the
seed and cut into train/val/test by the configured fractions (each split with a non-zero fraction
gets at least one patient when there are enough patients)."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test", "holdout")


def is_holdout(subject_id, folder: str = "p19") -> bool:
    return f"p{str(int(subject_id))[:2]}" == folder


def assign_splits(subject_ids, fractions: dict, seed: int, holdout_folder: str = "p19") -> dict[int, str]:
    """{subject_id: split}. Deterministic for the same subjects, fractions and seed."""
    subjects = sorted({int(s) for s in subject_ids})
    out = {s: "holdout" for s in subjects if is_holdout(s, holdout_folder)}
    rest = np.array([s for s in subjects if s not in out], dtype=np.int64)
    rng = np.random.default_rng(int(seed))
    rest = rest[rng.permutation(len(rest))]
    names = ["train", "val", "test"]
    fr = np.array([float(fractions.get(n, 0.0)) for n in names])
    if fr.sum() <= 0:
        raise ValueError(f"split fractions must have a positive sum, got {fractions}")
    fr = fr / fr.sum()
    n = len(rest)
    counts = np.floor(fr * n).astype(int)
    # at least one patient for every split asked for, when possible; remainder to train
    for i in (1, 2):
        if fr[i] > 0 and counts[i] == 0 and n - counts[1] - counts[2] > 1:
            counts[i] = 1
    counts[0] = n - counts[1] - counts[2]
    start = 0
    for name, c in zip(names, counts):
        for s in rest[start:start + c]:
            out[int(s)] = name
        start += c
    return out


def split_column(subject_ids: pd.Series, mapping: dict) -> pd.Series:
    return subject_ids.astype("int64").map(mapping).astype("str")
