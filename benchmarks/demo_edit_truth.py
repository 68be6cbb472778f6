"""Did each demo edit add or remove the named finding on the named side? Scored with the generator's
ground truth, which the pipeline never reads.

For every Add/Remove operation of an edited pair of a finished demo run whose finding the ground
truth has (in the current study for Add, in the past study for Remove), the finding's drawn region
(``phantom.finding_boxes`` with the truth's side, zone and severity) is mapped through the past
image's acquisition transform into the working-resolution past image, which is the frame of the
input, the registered target and the edit. Per operation and mode:

- ``change`` = mean(edit - input) over that region; the instructed direction is denser (brighter)
  for Add and lighter for Remove (pneumothorax the other way round: it makes the lung darker);
- ``on the named side``: for a left or right finding, |change| on its region is larger than on the
  same region mirrored to the other side (for bilateral findings and cardiomegaly: not applicable).

An operation succeeds when its change has the instructed sign and (if sided) is larger on the named
side. The same score of the target itself (target - input) is the reference: near 100% when the
truth and the pairing agree. Usage:

    .venv/bin/python benchmarks/demo_edit_truth.py RESULTS_DIR [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from instructx2x.core.images import read_gray  # noqa: E402
from instructx2x.core.paths import read_parquet  # noqa: E402
from instructx2x.synthetic import phantom  # noqa: E402
from instructx2x.synthetic.truth import transform_matrix  # noqa: E402

DARKER = {"pneumothorax"}


def _region(box, M, img_hw, res_hw) -> np.ndarray:
    """Boolean mask (working resolution) of a reference-frame box mapped into the past image."""
    x, y, w, h = phantom.box_to_image(box, M, img_hw)
    sy, sx = res_hw[0] / img_hw[0], res_hw[1] / img_hw[1]
    m = np.zeros(res_hw, bool)
    y0, y1 = int(np.floor(y * sy)), int(np.ceil((y + h) * sy))
    x0, x1 = int(np.floor(x * sx)), int(np.ceil((x + w) * sx))
    m[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return m


def score(results: Path) -> dict:
    results = Path(results)
    gt = results / "raw" / "demo" / "ground_truth"
    if not gt.is_dir():
        raise SystemExit(f"{gt}: no ground truth (only demo runs have one)")
    rec = read_parquet(results / "inference" / "records.parquet")
    rec = rec[rec["status"] == "ok"]
    ins = read_parquet(results / "instructions" / "instructions.parquet").set_index("pair_id")
    images = pd.read_parquet(gt / "images.parquet").set_index("dicom_id")
    pats = pd.read_parquet(gt / "patients.parquet").set_index("subject_id")
    fnd = pd.read_parquet(gt / "findings.parquet")
    by_study = {s: g for s, g in fnd.groupby("study_id")}
    rows = []
    for r in rec.itertuples(index=False):
        pr = ins.loc[r.pair_id]
        im = images.loc[pr["past_dicom_id"]]
        tpl = int(pats.at[int(pr["subject_id"]), "lung_template"])
        M = transform_matrix(im.angle_rad, im.scale, im.tx, im.ty, (im.ref_height, im.ref_width), (im.height, im.width))
        inp = read_gray(r.input_path).astype(np.float64)
        tgt = read_gray(r.target_path).astype(np.float64)
        edit = read_gray(r.edited_path).astype(np.float64)
        hw = inp.shape
        for op in json.loads(r.operations):
            if op.get("op") not in ("add", "remove"):
                continue
            study = pr["current_study_id"] if op["op"] == "add" else pr["past_study_id"]
            g = by_study.get(int(study))
            t = None if g is None else g[g["finding"] == op["finding"]]
            if t is None or not len(t):
                rows.append({"pair_id": r.pair_id, "mode": r.mode, "op": op["op"], "finding": op["finding"],
                             "scored": False})
                continue
            t = t.iloc[0]
            side = t["side"] if isinstance(t["side"], str) else None
            zone = t["zone"] if isinstance(t["zone"], str) else None
            boxes = phantom.finding_boxes(tpl, op["finding"], side, zone, int(t["level_rank"]))
            named = np.zeros(hw, bool)
            for b in boxes:
                named |= _region(b, M, (int(im.height), int(im.width)), hw)
            sign = (-1.0 if op["finding"] in DARKER else 1.0) * (1.0 if op["op"] == "add" else -1.0)
            other = None
            if side in ("left", "right"):
                flip = "right" if side == "left" else "left"
                other = np.zeros(hw, bool)
                for b in phantom.finding_boxes(tpl, op["finding"], flip, zone, int(t["level_rank"])):
                    other |= _region(b, M, (int(im.height), int(im.width)), hw)
                other &= ~named
            out = {"pair_id": r.pair_id, "mode": r.mode, "op": op["op"], "finding": op["finding"], "side": side,
                   "scored": bool(named.any())}
            for name, img in (("edit", edit), ("target", tgt)):
                d = img - inp
                ch = float(d[named].mean()) if named.any() else float("nan")
                ok = bool(ch * sign > 0)
                if other is not None and other.any():
                    ok = ok and abs(ch) > abs(float(d[other].mean()))
                out[f"{name}_change"] = ch
                out[f"{name}_ok"] = ok
            rows.append(out)
    df = pd.DataFrame(rows)
    summary = {"ops": int(len(df)), "scored": int(df["scored"].sum()) if len(df) else 0, "modes": {}}
    for mode in ("rse", "wo_rse"):
        d = df[(df["mode"] == mode) & df["scored"]] if len(df) else df
        n = int(len(d))
        summary["modes"][mode] = {
            "ops": n,
            "edit_ok": float(d["edit_ok"].mean()) if n else None,
            "target_ok": float(d["target_ok"].mean()) if n else None,
            "add_ok": float(d[d["op"] == "add"]["edit_ok"].mean()) if (d["op"] == "add").any() else None,
            "remove_ok": float(d[d["op"] == "remove"]["edit_ok"].mean()) if (d["op"] == "remove").any() else None,
        }
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    s = score(a.results)
    text = json.dumps(s, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
