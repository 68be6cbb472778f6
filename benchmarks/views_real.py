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

Next to them, the same measurement on a generated demo dataset (``--demo-patients``, ``--demo-seed``;
labels = the generator's truth: true view PA and not truncated), so the README can state the real
numbers beside the demo's. Appends the section "Views on real radiographs" to benchmarks/RESULTS.md
and writes ``benchmarks/real_run/views_real.json`` (read by ``benchmarks/real_data_tables.py``).

    .venv/bin/python benchmarks/views_real.py [--demo-patients 16 --demo-seed 7]
"""

from __future__ import annotations

import argparse
import datetime
import json
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
SUMMARY = ROOT / "benchmarks" / "real_run" / "views_real.json"


def cross_fitted_decision(images: pd.DataFrame, cfg: dict) -> tuple[pd.DataFrame, dict]:
    """Train (cross-fitted by patient), score and decide on an images table; returns (decisions, training info)."""
    v = cfg["views"]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        images.to_parquet(t / "images.parquet")
        info = classifier.train(t / "images.parquet", t / "model.pt", seed=cfg["seed"], epochs=v["train_epochs"],
                                max_images=v["train_max_images"], folds=v["folds"])
        score_views(t / "images.parquet", t / "scores.parquet", "trained", model_path=t / "model.pt")
        pa = decide_pa(t / "images.parquet", t / "scores.parquet", t / "pa.parquet", lateral_threshold=v["lateral_threshold"],
                       use_procedure=v["use_procedure"])
    return pa, info


def demo_measurement(cfg: dict, patients: int, seed: int) -> dict:
    """PA precision / recall of the same cross-fitted decision on a generated demo dataset (truth labels)."""
    from instructx2x.synthetic.generate import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        generate_dataset(root, patients=patients, seed=seed)
        jpg = root / "physionet.org/files/mimic-cxr-jpg/2.1.0"
        meta = pd.read_csv(jpg / "mimic-cxr-2.0.0-metadata.csv.gz")
        meta["image_path"] = [str(jpg / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{t}" / f"{d}.jpg")
                              for s, t, d in zip(meta["subject_id"], meta["study_id"], meta["dicom_id"])]
        truth = pd.read_parquet(root / "ground_truth/images.parquet").set_index("dicom_id")
        pa, info = cross_fitted_decision(meta, cfg)
    got = pa.set_index("dicom_id")["is_pa"]
    true_pa = ((truth["true_view"] == "PA") & ~truth["truncated"]).reindex(got.index).fillna(False).astype(bool)
    fragment = truth["cropped"].fillna(False).astype(bool).reindex(got.index).fillna(False).astype(bool)
    tp = int((got & true_pa).sum())
    return {"patients": patients, "seed": seed, "n_images": int(len(got)), "n_pa": int(true_pa.sum()),
            "precision": tp / max(int(got.sum()), 1), "recall": tp / max(int(true_pa.sum()), 1),
            "pa_missed": int((true_pa & ~got).sum()), "pa_missed_cropped_fragments": int((true_pa & ~got & fragment).sum()),
            "folds": info["folds"]}
VIEW = {"PA": "PA", "AP": "AP", "AP supine": "AP", "L": "LATERAL", "unknown": ""}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-patients", type=int, default=16)
    ap.add_argument("--demo-seed", type=int, default=7)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    v = cfg["views"]
    meta = real_cxr.metadata()
    images = pd.DataFrame({
        "dicom_id": meta["file"].str[7:12], "subject_id": meta["patient"].astype(str), "study_id": meta["file"].str[7:12],
        "ViewPosition": meta["view"].map(VIEW), "image_path": meta["path"], "label": meta["view"],
    })
    t0 = time.perf_counter()
    pa, info = cross_fitted_decision(images.drop(columns="label"), cfg)
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
    demo = demo_measurement(cfg, args.demo_patients, args.demo_seed)
    lines.append(
        f"- demo beside it (the same cross-fitted decision on `demo-data --patients {demo['patients']} --seed {demo['seed']}`, "
        f"labels = the generator's truth): PA precision {demo['precision']:.3f}, recall {demo['recall']:.3f} "
        f"({demo['n_pa']} PA of {demo['n_images']}; PA images missed {demo['pa_missed']}, of which planted cropped fragments "
        f"{demo['pa_missed_cropped_fragments']})")
    print("\n".join(lines))
    now = datetime.datetime.now(datetime.timezone.utc)
    command = " ".join(["python", "benchmarks/views_real.py"] + (argv if argv is not None else sys.argv[1:]))
    machine = f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, shared)"
    header = (f"{SECTION}\n\n- date: {now:%Y-%m-%d %H:%M} UTC; commit {commit}{' (+ uncommitted edits)' if dirty else ''}; "
              f"machine: {machine}\n- command: `{command}`\n- 340 real radiographs, labels = the corpus' metadata view\n\n")
    replace_section(SECTION, header + "\n".join(lines) + "\n")
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps({
        "date": f"{now:%Y-%m-%d %H:%M} UTC", "commit": commit + ("+" if dirty else ""), "machine": machine, "command": command,
        "real": {"n_images": int(len(df)), "n_pa": int(truth_pa.sum()), "precision": prec, "recall": rec,
                 "n_lateral": int(lat_true.sum()), "laterals_called_lateral": ltp,
                 "lateral_precision": ltp / max(int(lat_pred.sum()), 1), "folds": info["folds"]},
        "demo": demo,
    }, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
