"""Benchmark: PA view selection on real radiographs (../shared/real-cxr), the trained backend cross-fitted.

The corpus' metadata view is the label (PA, AP, AP supine → AP, L → LATERAL, unknown → missing).
The trained backend (``views.classifier``, the config's demo settings: 64² tiny CNN, seeded) is
cross-fitted on the corpus itself by patient (``views.folds``), so every image is scored by a model
that never saw its patient. Reported:

- the pipeline's decision (``views.decide``: metadata says PA and p_lateral < threshold) against
  "PA vs everything else" (AP, AP supine, L, unknown): precision and recall of PA;
- the classifier alone, lateral vs frontal (PA/AP): precision and recall of "lateral"; the recall is
  how many *mislabelled* laterals it would catch (a lateral's score comes from a model that did not
  learn its label, so a wrong label would not change it).

Appends the section "Views on real radiographs" to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/views_real.py
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import real_cxr  # noqa: E402
from results_md import replace_section  # noqa: E402

from instructx2x.core.config import validate_config  # noqa: E402
from instructx2x.views import classifier  # noqa: E402
from instructx2x.views.decide import decide_pa  # noqa: E402
from instructx2x.views.score import score_views  # noqa: E402

SECTION = "## Views on real radiographs: PA precision and recall, cross-fitted trained backend"
VIEW = {"PA": "PA", "AP": "AP", "AP supine": "AP", "L": "LATERAL", "unknown": ""}


def main() -> int:
    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    v = cfg["views"]
    meta = real_cxr.metadata()
    images = pd.DataFrame({
        "dicom_id": meta["file"].str[7:12], "subject_id": meta["patient"].astype(str), "study_id": meta["file"].str[7:12],
        "ViewPosition": meta["view"].map(VIEW), "image_path": meta["path"], "label": meta["view"],
    })
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        images.drop(columns="label").to_parquet(t / "images.parquet")
        info = classifier.train(t / "images.parquet", t / "model.pt", seed=cfg["seed"], epochs=v["train_epochs"],
                                max_images=v["train_max_images"], folds=v["folds"])
        score_views(t / "images.parquet", t / "scores.parquet", "trained", model_path=t / "model.pt")
        pa = decide_pa(t / "images.parquet", t / "scores.parquet", t / "pa.parquet", lateral_threshold=v["lateral_threshold"],
                       use_procedure=v["use_procedure"])
    wall = time.perf_counter() - t0
    df = images.merge(pa[["dicom_id", "is_pa", "p_lateral", "reason"]], on="dicom_id")
    truth_pa = df["label"] == "PA"
    tp = int((df["is_pa"] & truth_pa).sum())
    prec, rec = tp / max(int(df["is_pa"].sum()), 1), tp / int(truth_pa.sum())
    fr = df[df["label"].isin(["PA", "AP", "AP supine", "L"])]
    lat_true, lat_pred = fr["label"] == "L", fr["p_lateral"] >= v["lateral_threshold"]
    ltp = int((lat_true & lat_pred).sum())
    lines = [
        f"- decision (metadata PA and p_lateral < {v['lateral_threshold']}), PA vs everything else "
        f"({int(truth_pa.sum())} PA of {len(df)}): precision {prec:.3f}, recall {rec:.3f} "
        f"({int((truth_pa & ~df['is_pa']).sum())} PA images set aside as 'classifier says lateral')",
        f"- classifier alone, lateral vs frontal ({int(lat_true.sum())} L, {int((~lat_true).sum())} PA/AP): "
        f"lateral precision {ltp / max(int(lat_pred.sum()), 1):.3f}, recall {ltp / int(lat_true.sum()):.3f} "
        f"(the share of mislabelled laterals it would catch); frontal images called lateral: "
        f"{int((~lat_true & lat_pred).sum())}",
        f"- cross-fitting: {info['folds']} folds by patient, held-out accuracy {info['held_out_accuracy']}; "
        f"{info['n_labelled']} labelled images ({info['n_lateral']} lateral), {v['train_epochs']} epochs; {wall:.0f} s",
    ]
    print("\n".join(lines))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    header = (f"{SECTION}\n\n{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, "
              f"{platform.node()} ({os.cpu_count()} CPUs, shared), `.venv/bin/python benchmarks/views_real.py`, "
              f"340 real radiographs, labels = the corpus' metadata view.\n\n")
    replace_section(SECTION, header + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
