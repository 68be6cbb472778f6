"""Edit success: did the editor move each input towards its target, and in the instructed way?

Two measures per mode, beside Table 2 (issue 15):

- **distance ratio** per pair: mean |edit - target| / mean |input - target| in grey levels, inside
  the binary edit mask for RSE (the pixels RSE may change; outside them the edit is the input) and
  over the whole image for wo-RSE. Below 1: the edit is closer to the target than the input is.
  Reported: the median ratio, the share of pairs below 1, a bootstrap interval of the median.
- **evaluator direction** per Add/Remove operation whose finding is one of the evaluator's five:
  the trained (or xrv) pathology evaluator's probability on the edit minus that on the input; the
  operation succeeds when it moves the instructed way (up for Add, down for Remove). Change
  operations and findings the evaluator does not score are counted as such, not scored.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

# instruction finding (vocabulary.DISEASES) -> evaluator finding (labels.FINDINGS)
EVALUATOR_FINDING = {"atelectasis": "Atelectasis", "cardiomegaly": "Cardiomegaly", "edema": "Edema",
                     "pleural effusion": "Pleural Effusion", "pneumothorax": "Pneumothorax"}


def distance_ratio(edit: np.ndarray, inp: np.ndarray, target: np.ndarray, region: np.ndarray | None = None) -> dict:
    """Mean absolute grey-level distances to the target of the edit and of the input, over ``region``."""
    e, i, t = (np.asarray(a, dtype=np.float64) for a in (edit, inp, target))
    if not (e.shape == i.shape == t.shape):
        raise ValueError(f"shapes differ: edit {e.shape}, input {i.shape}, target {t.shape}")
    m = np.ones(e.shape, bool) if region is None else np.asarray(region, bool)
    if m.shape != e.shape:
        raise ValueError(f"region shape {m.shape} differs from the image shape {e.shape}")
    if not m.any():
        return {"edit_mad": float("nan"), "input_mad": float("nan"), "ratio": float("nan"), "region_px": 0}
    d_e = float(np.abs(e - t)[m].mean())
    d_i = float(np.abs(i - t)[m].mean())
    return {"edit_mad": d_e, "input_mad": d_i, "ratio": d_e / d_i if d_i > 0 else float("nan"),
            "region_px": int(m.sum())}


def pair_distances(records: pd.DataFrame, read) -> pd.DataFrame:
    """One row per (pair, mode) of the ``ok`` records: distances and ratio (RSE inside its mask)."""
    rows = []
    for r in records[records["status"] == "ok"].itertuples(index=False):
        if not all(isinstance(p, str) for p in (r.input_path, r.target_path, r.edited_path)):
            continue
        inp, tgt, edit = read(r.input_path), read(r.target_path), read(r.edited_path)
        region = None
        if r.mode == "rse":
            mask_path = getattr(r, "mask_path", None)
            if not isinstance(mask_path, str):
                continue
            region = read(mask_path) > 127
        d = distance_ratio(edit, inp, tgt, region)
        rows.append({"pair_id": r.pair_id, "mode": r.mode, **d})
    return pd.DataFrame(rows, columns=["pair_id", "mode", "edit_mad", "input_mad", "ratio", "region_px"])


def operation_directions(records: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, mode, Add/Remove operation on an evaluator finding): probability change."""
    p_in = predictions[predictions["row"] == "input"].set_index("pair_id")
    rows = []
    for mode in ("rse", "wo_rse"):
        p_ed = predictions[predictions["row"] == mode].set_index("pair_id")
        sub = records[(records["mode"] == mode) & (records["status"] == "ok")]
        for r in sub.itertuples(index=False):
            if r.pair_id not in p_ed.index or r.pair_id not in p_in.index:
                continue
            raw = getattr(r, "operations", None)
            if raw is None or (isinstance(raw, float) and np.isnan(raw)):
                continue  # records without operations: nothing to score
            ops = json.loads(raw) if isinstance(raw, str) else list(raw)
            for op in ops:
                f = EVALUATOR_FINDING.get(str(op.get("finding", "")).lower())
                if op.get("op") not in ("add", "remove") or f is None:
                    continue
                delta = float(p_ed.at[r.pair_id, f"p_{f}"] - p_in.at[r.pair_id, f"p_{f}"])
                want = 1.0 if op["op"] == "add" else -1.0
                rows.append({"pair_id": r.pair_id, "mode": mode, "op": op["op"], "finding": f, "delta": delta,
                             "moved_as_instructed": bool(delta * want > 0)})
    return pd.DataFrame(rows, columns=["pair_id", "mode", "op", "finding", "delta", "moved_as_instructed"])


def _boot_median(x: np.ndarray, n_boot: int, seed: int) -> list | None:
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return None
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), (n_boot, len(x)))], axis=1)
    return [float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))]


def _boot_share(x: np.ndarray, n_boot: int, seed: int) -> list | None:
    if len(x) < 2:
        return None
    rng = np.random.default_rng(seed)
    shares = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
    return [float(np.percentile(shares, 2.5)), float(np.percentile(shares, 97.5))]


def summarize(distances: pd.DataFrame, directions: pd.DataFrame, n_boot: int = 200, seed: int = 0) -> dict:
    """Per mode: median ratio (+ interval), share of pairs closer, and the evaluator-direction share."""
    out = {}
    for k, mode in enumerate(("rse", "wo_rse")):
        d = distances[distances["mode"] == mode]
        ratio = d["ratio"].to_numpy(dtype=np.float64)
        ok = ratio[np.isfinite(ratio)]
        closer = (ok < 1).astype(np.float64)
        o = directions[directions["mode"] == mode]
        moved = o["moved_as_instructed"].to_numpy(dtype=np.float64)
        out[mode] = {
            "region": "inside the RSE edit mask" if mode == "rse" else "whole image",
            "n_pairs": int(len(ok)),
            "median_ratio": float(np.median(ok)) if len(ok) else None,
            "median_ratio_interval": _boot_median(ok, n_boot, seed + k),
            "share_closer": float(closer.mean()) if len(ok) else None,
            "share_closer_interval": _boot_share(closer, n_boot, seed + 10 + k),
            "median_edit_mad": float(np.median(d["edit_mad"])) if len(d) else None,
            "median_input_mad": float(np.median(d["input_mad"])) if len(d) else None,
            "n_operations": int(len(o)),
            "share_moved_as_instructed": float(moved.mean()) if len(o) else None,
            "share_moved_interval": _boot_share(moved, n_boot, seed + 20 + k),
            "by_op": {op: {"n": int((o["op"] == op).sum()),
                           "share": float(o.loc[o["op"] == op, "moved_as_instructed"].mean()) if (o["op"] == op).any() else None}
                      for op in ("add", "remove")},
        }
    return out
