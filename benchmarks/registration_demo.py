"""Registration accuracy and gate fates on generated demo datasets, scored against their ground truth.

For each dataset seed: ``generate_dataset`` (the demo generator), pairs from the Medical-Diff-VQA
``difference`` rows with ``instructx2x.pairs.build_pairs`` (PA images from the generator's truth,
so view errors do not mix in), every pair registered with the settings of ``config.yaml``
(``register_files`` as the shard rule does, mirror check included) and judged by the gate
(``registration_gate.gate_reason``). Reports, over the good pairs (no planted defect on either
side), the share within 0.5° and 1 px at 512² equivalent, the worst errors and the time per pair;
and for every planted pair (mirrored, another patient's image, unalignable crop) its fate.

Usage: .venv/bin/python benchmarks/registration_demo.py [--seeds 7,8] [--patients 16]
       [--set '{"refine_starts": 2}'] [--write]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

from instructx2x.core.config import validate_config  # noqa: E402
from instructx2x.pairs import build_pairs  # noqa: E402
from instructx2x.registration.algorithm import RegistrationSettings, register_files  # noqa: E402
from instructx2x.registration.quality import transform_errors, transform_matrix_of  # noqa: E402
from instructx2x.registration.gate import GateSettings, gate_reason  # noqa: E402
from instructx2x.synthetic.generate import generate_dataset  # noqa: E402
from instructx2x.synthetic.truth import transform_matrix  # noqa: E402

SECTION = "## Registration on demo datasets of {patients} patients: accuracy against the generator's truth, planted pairs"
PLANTED = ("mirrored", "foreign_image", "unalignable")


def tables(root: Path, out: Path) -> None:
    """images / vqa / pa tables in the columns build_pairs reads (PA decision from the truth)."""
    jpg = root / "physionet.org/files/mimic-cxr-jpg/2.1.0"
    meta = pd.read_csv(jpg / "mimic-cxr-2.0.0-metadata.csv.gz")
    meta["image_path"] = [str(jpg / "files" / f"p{str(s)[:2]}" / f"p{s}" / f"s{t}" / f"{d}.jpg")
                          for s, t, d in zip(meta["subject_id"], meta["study_id"], meta["dicom_id"])]
    meta.to_parquet(out / "images.parquet")
    vqa = pd.read_csv(root / "physionet.org/files/medical-diff-vqa/1.0.1/mimic_pair_questions.csv", keep_default_na=False)
    vqa["row"] = range(len(vqa))
    vqa[["study_id", "subject_id", "ref_id", "question_type", "question", "answer", "split", "row"]].to_parquet(out / "vqa.parquet")
    truth = pd.read_parquet(root / "ground_truth/images.parquet")
    is_pa = ((truth["true_view"] == "PA") & ~truth["truncated"]).set_axis(truth["dicom_id"])
    pa = meta[["dicom_id", "subject_id", "study_id", "ViewPosition"]].copy()
    pa["is_pa"] = pa["dicom_id"].map(is_pa).fillna(False).astype(bool)
    pa["p_lateral"] = 0.0
    pa["reason"] = np.where(pa["is_pa"], "", "not PA (truth)")
    pa.to_parquet(out / "pa.parquet")


def run_seed(seed: int, patients: int, s: RegistrationSettings, g: GateSettings, work: Path) -> list[dict]:
    root = work / f"seed{seed}"
    generate_dataset(root, patients=patients, seed=seed, manifest_path=root / "demo_manifest.parquet")
    t = root / "tables"
    t.mkdir()
    tables(root, t)
    build_pairs(t / "vqa.parquet", t / "images.parquet", t / "pa.parquet", t / "pairs.parquet")
    truth = pd.read_parquet(root / "ground_truth/images.parquet").set_index("dicom_id")
    defect = pd.read_parquet(root / "ground_truth/defects.parquet").set_index("dicom_id")["defect"].to_dict()
    rows = []
    for p in pd.read_parquet(t / "pairs.parquet").itertuples(index=False):
        kinds = {defect.get(d) for d in (p.current_dicom_id, p.past_dicom_id)} - {None}
        if kinds - set(PLANTED):
            continue  # other defects (truncated JPGs, wrong labels) are not registration cases
        t0 = time.perf_counter()
        res, _, _ = register_files(p.past_image_path, p.current_image_path, s)
        seconds = time.perf_counter() - t0
        tp, tc = truth.loc[p.past_dicom_id], truth.loc[p.current_dicom_id]
        a_p = np.vstack([transform_matrix(tp.angle_rad, tp.scale, tp.tx, tp.ty, (tp.ref_height, tp.ref_width), (tp.height, tp.width)), [0, 0, 1]])
        a_c = np.vstack([transform_matrix(tc.angle_rad, tc.scale, tc.tx, tc.ty, (tc.ref_height, tc.ref_width), (tc.height, tc.width)), [0, 0, 1]])
        est = transform_matrix_of(res.angle_rad, res.scale, res.tx, res.ty, res.center_x, res.center_y)
        ang, disp = transform_errors(est, a_c @ np.linalg.inv(a_p), (tp.height, tp.width))
        rows.append({"seed": seed, "pair_id": p.pair_id, "kind": ",".join(sorted(kinds)) or "good",
                     "angle_err": ang, "disp_err": disp, "seconds": seconds,
                     "fate": gate_reason({"status": "ok", **res.as_dict()}, g) or "kept",
                     "mi": res.mi, "mirror_mi": res.mirror_mi, "ncc": res.ncc, "structure_ncc": res.structure_ncc})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="7,8,9,10,11,12,13,14")
    ap.add_argument("--patients", type=int, default=16)
    ap.add_argument("--set", default="{}", help="JSON overrides of config.yaml's registration section")
    ap.add_argument("--write", action="store_true", help="replace this section of benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["registration"] = {**cfg["registration"], **json.loads(a.set)}
    cfg = validate_config(cfg)  # the schema's defaults fill what config.yaml leaves out, as in the pipeline
    section = cfg["registration"]
    s, g = RegistrationSettings.from_config(section, seed=cfg["seed"]), GateSettings.from_config(section)
    with tempfile.TemporaryDirectory(prefix="reg_demo_") as tmp:
        df = pd.DataFrame([r for seed in map(int, a.seeds.split(",")) for r in run_seed(seed, a.patients, s, g, Path(tmp))])
    good, planted = df[df["kind"] == "good"], df[df["kind"] != "good"]
    ok = (good["angle_err"] < 0.5) & (good["disp_err"] < 1.0)
    worst = good.sort_values("disp_err").tail(3)
    section_title = SECTION.format(patients=a.patients)
    lines = [section_title, "",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
             f"Python {platform.python_version()}, one process",
             f"- command: `python benchmarks/registration_demo.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             f"- settings: config.yaml `registration` (resolution {s.resolution}, estimation_resolution "
             f"{s.estimation_resolution}, refine_starts {s.refine_starts}) + overrides {a.set}",
             f"- datasets: seeds {a.seeds}, {a.patients} patients each; PA from the generator's truth", "",
             f"Good pairs within 0.5° and 1 px (512² equivalent): **{int(ok.sum())}/{len(good)}** "
             f"({100 * ok.mean():.1f}%); displacement error median {good['disp_err'].median():.2f} px, "
             f"p99 {good['disp_err'].quantile(0.99):.2f} px; worst: "
             + ", ".join(f"{r.pair_id} (seed {r.seed}) {r.angle_err:.2f}° / {r.disp_err:.2f} px" for r in worst.itertuples())
             + f". Good pairs kept by the gate: {int((good['fate'] == 'kept').sum())}/{len(good)}; "
             f"structure_ncc min {good['structure_ncc'].min():.3f}. Time per pair (both registrations): "
             f"mean {df['seconds'].mean():.3f} s.", "",
             "| planted | pairs | fates |", "|---|---:|---|"]
    for kind, grp in planted.groupby("kind"):
        fates = ", ".join(f"{f}: {n}" for f, n in grp["fate"].value_counts().items())
        lines.append(f"| {kind} | {len(grp)} | {fates} |")
    text = "\n".join(lines) + "\n"
    print(text)
    kept_bad = planted[planted["fate"] == "kept"]
    if len(kept_bad):
        print(kept_bad[["seed", "pair_id", "kind", "mi", "ncc", "structure_ncc"]].to_string())
    if a.write:
        replace_section(section_title, text)
        planted_kept = {k: [int((grp["fate"] == "kept").sum()), int(len(grp))] for k, grp in planted.groupby("kind")}
        planted_flagged = {k: [int((grp["fate"] != "kept").sum()), int(len(grp))] for k, grp in planted.groupby("kind")}
        summary = REPO / "benchmarks" / "real_run" / f"registration_demo_{a.patients}.json"
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps({
            "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "command": f"python benchmarks/registration_demo.py "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}", "seeds": a.seeds, "patients": a.patients,
            "good_within_1px": [int(ok.sum()), int(len(good))], "good_median_px": float(good["disp_err"].median()),
            "good_max_px": float(good["disp_err"].max()), "good_kept": [int((good["fate"] == "kept").sum()), int(len(good))],
            "planted_kept": planted_kept, "planted_not_kept": planted_flagged, "seconds_mean": float(df["seconds"].mean()),
            "level_histogram_bins": list(s.level_histogram_bins) if s.level_histogram_bins else None,
        }, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
