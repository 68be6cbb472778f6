"""Patient-wise splits that do not move: every patient of folder ``p19`` in ``holdout``; every other
patient placed by a hash of (seed, subject_id) alone.

``u = sha256("<seed>:<subject_id>")`` read as a number in [0, 1) is cut by the cumulative fractions
(train, then val, then test). A patient's split therefore depends only on its own id and the seed:
changing the registration gate (``registration.mi_threshold``...), adding or removing patients never
moves a remaining patient between splits, and a test patient can never drift into training.

The fractions are met in expectation (binomially), not exactly. One exception keeps tiny cohorts
usable: when a split with a non-zero fraction would be empty and the cohort has enough patients, the
patient of the largest split whose hash lies nearest to that split's interval is moved into it and the
move is logged (``SplitAssignment.borrowed``). At real scale (tens of thousands of patients) a split is
never empty and nothing is borrowed; the demo's few patients may be.
"""

from __future__ import annotations

import hashlib
import logging

import pandas as pd

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "holdout")
_ORDER = ("train", "val", "test")


def is_holdout(subject_id, folder: str = "p19") -> bool:
    return f"p{str(int(subject_id))[:2]}" == folder


def subject_hash(subject_id, seed: int) -> float:
    """A patient's position in [0, 1): the first 8 bytes of sha256("<seed>:<subject_id>")."""
    digest = hashlib.sha256(f"{int(seed)}:{int(subject_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _bounds(fractions: dict) -> list[tuple[str, float, float]]:
    fr = [max(0.0, float(fractions.get(n, 0.0))) for n in _ORDER]
    total = sum(fr)
    if total <= 0:
        raise ValueError(f"split fractions must have a positive sum, got {fractions}")
    out, start = [], 0.0
    for name, f in zip(_ORDER, fr):
        end = start + f / total
        out.append((name, start, end))
        start = end
    return out


def split_of(subject_id, fractions: dict, seed: int, holdout_folder: str = "p19") -> str:
    """The split of one patient, by its id and the seed only."""
    if is_holdout(subject_id, holdout_folder):
        return "holdout"
    u = subject_hash(subject_id, seed)
    bounds = _bounds(fractions)
    for name, a, b in bounds:
        if a <= u < b:
            return name
    return [n for n, a, b in bounds if b > a][-1]


class SplitAssignment(dict):
    """{subject_id: split}; ``borrowed`` lists (subject_id, from, to) moves made for empty splits."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.borrowed: list[tuple[int, str, str]] = []


def assign_splits(subject_ids, fractions: dict, seed: int, holdout_folder: str = "p19") -> SplitAssignment:
    """{subject_id: split}, each patient by ``split_of`` (see the module doc for the tiny-cohort exception)."""
    subjects = sorted({int(s) for s in subject_ids})
    out = SplitAssignment()
    for s in subjects:
        out[s] = split_of(s, fractions, seed, holdout_folder)
    bounds = {n: (a, b) for n, a, b in _bounds(fractions)}
    rest = [s for s in subjects if out[s] != "holdout"]
    wanted = [n for n in _ORDER if bounds[n][1] > bounds[n][0]]
    if len(rest) > len(wanted):
        for name in wanted:
            if any(out[s] == name for s in rest):
                continue
            counts = pd.Series([out[s] for s in rest]).value_counts()
            donor = str(counts.index[0])
            a, b = bounds[name]
            cands = [s for s in rest if out[s] == donor]
            s = min(cands, key=lambda x: min(abs(subject_hash(x, seed) - a), abs(subject_hash(x, seed) - b)))
            out[s] = name
            out.borrowed.append((s, donor, name))
            log.warning("split %s would be empty among %d patients: patient %d moved from %s (tiny cohort only)",
                        name, len(rest), s, donor)
    return out


def split_column(subject_ids: pd.Series, mapping: dict) -> pd.Series:
    return subject_ids.astype("int64").map(mapping).astype("str")
