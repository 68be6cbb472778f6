"""Benchmark: registration and its gate on real chest radiographs (../shared/real-cxr, all 340 images).

Real-data settings: the schema's defaults (``registration.resolution: 512``, the 512² pyramid,
``refine_starts: 2``) and the schema's real-data gate (``mi_threshold``, ``mirror_margin``,
``ncc_min``, ``structure_ncc_min``, ``same_patient_action``). Cases (tests/real_cxr.py):

- same-patient follow-ups: consecutive PA studies of each patient with two or more (57 pairs);
- other-patient pairs: each PA image with a PA image of another patient (161 pairs, seeded);
- mirrors: each PA image against a left-right mirror of a moved and re-exposed copy of itself,
  and each same-patient pair with its current image mirrored;
- known similarity transforms: each PA image against a copy moved by a random similarity (angle
  ±10°, scale 0.9-1.1, shift ±6%, 90-100% field of view) with an exposure change (gamma 0.7-1.4,
  contrast 0.8-1.2, brightness ±15, noise): error at 512² (largest displacement over the central
  80%, ``registration.transform_errors``) and time per pair (end to end, mirror registration
  included, one thread per process).

For each kind: how many pairs the paper's MI gate alone keeps, how many our gate keeps, and how
many of the MI-kept pairs we keep, on all patients and on half of them (patients with an odd
CRC32 of their id). The values were looked at on all patients: the only real-data threshold that
decides (``mirror_margin: 0``) is set by symmetry (mirroring a pair's current swaps mi and
mirror_mi), and ``structure_ncc_min`` only flags on real data; no held-out collection is here. Appends the section
``Registration on real radiographs`` to benchmarks/RESULTS.md and writes the per-pair table to ``--out``.

    .venv/bin/python benchmarks/registration_real.py --jobs 2
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import real_cxr  # noqa: E402
from results_md import replace_section  # noqa: E402

from instructx2x.core.config import validate_config  # noqa: E402
from instructx2x.core.images import read_gray  # noqa: E402
from instructx2x.registration.algorithm import (  # noqa: E402
    RegistrationSettings, register_arrays, transform_errors, transform_matrix_of,
)
from instructx2x.registration.gate import GateSettings, gate_reason  # noqa: E402


SECTION = "## Registration on real radiographs: follow-ups, other patients, mirrors, known transforms"


def real_data_settings(seed: int = 1234) -> tuple[RegistrationSettings, GateSettings]:
    import yaml

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["registration"] = {}
    section = validate_config(config)["registration"]  # the schema's defaults = the real-data settings
    return RegistrationSettings.from_config(section, seed=seed), GateSettings.from_config(section)


def cases(meta: pd.DataFrame, seed: int) -> list[dict]:
    out = []
    for r in real_cxr.same_patient_pairs(meta).itertuples(index=False):
        out.append({"kind": "same patient", "pair_id": r.pair_id, "patient": r.patient, "past": r.past, "current": r.current})
        out.append({"kind": "mirrored follow-up", "pair_id": "mirror_" + r.pair_id, "patient": r.patient, "past": r.past,
                    "current": r.current, "mirror": True})
    for r in real_cxr.other_patient_pairs(meta, seed=seed).itertuples(index=False):
        out.append({"kind": "other patient", "pair_id": r.pair_id, "patient": r.patient, "past": r.past, "current": r.current})
    for i, r in enumerate(real_cxr.pa_images(meta).itertuples(index=False)):
        out.append({"kind": "known transform", "pair_id": f"warp_{r.file[7:12]}", "patient": r.patient, "past": r.path,
                    "current": r.path, "warp_seed": seed * 100_000 + i})
        out.append({"kind": "mirrored copy", "pair_id": f"mirrorcopy_{r.file[7:12]}", "patient": r.patient, "past": r.path,
                    "current": r.path, "warp_seed": seed * 100_000 + 50_000 + i, "mirror": True})
    return out


def run_case(args) -> dict:
    case, s = args
    past = read_gray(case["past"])
    cur = read_gray(case["current"])
    truth = None
    if "warp_seed" in case:
        cur, truth = real_cxr.warp(cur, case["warp_seed"])
    if case.get("mirror"):
        cur = np.ascontiguousarray(cur[:, ::-1])
    t0 = time.perf_counter()
    res, _ = register_arrays(past, cur, s)
    seconds = time.perf_counter() - t0
    row = {k: case[k] for k in ("kind", "pair_id", "patient")}
    row.update(res.as_dict(), seconds=seconds, held_out=real_cxr.held_out(case["patient"]), status="ok")
    if truth is not None:
        est = transform_matrix_of(res.angle_rad, res.scale, res.tx, res.ty, res.center_x, res.center_y)
        row["angle_err_deg"], row["disp_err_px512"] = transform_errors(est, truth, past.shape, at=512)
    return row


def summarise(df: pd.DataFrame, g: GateSettings) -> pd.DataFrame:
    df = df.copy()
    df["reason"] = [gate_reason(r, g) for r in df.to_dict("records")]
    df["flag"] = [_flag(r, g) for r in df.to_dict("records")]
    df["mi_kept"] = df["mi"] <= g.mi_threshold
    df["kept"] = df["reason"] == ""
    return df


def _flag(row: dict, g: GateSettings) -> str:
    from instructx2x.registration.gate import gate_flag

    return gate_flag(row, g)


def fmt_table(df: pd.DataFrame) -> str:
    lines = ["| pairs | patients | n | MI gate alone keeps | our gate keeps | of the MI-kept, we keep | flagged (kept, same-patient check) |",
             "|---|---|---|---|---|---|---|"]
    for kind in ("same patient", "other patient", "mirrored follow-up", "mirrored copy", "known transform"):
        for label, part in (("all", df[df["kind"] == kind]), ("CRC-odd half", df[(df["kind"] == kind) & df["held_out"]])):
            n = len(part)
            if not n:
                continue
            mi_k, k = int(part["mi_kept"].sum()), int(part["kept"].sum())
            both = int((part["mi_kept"] & part["kept"]).sum())
            fl = int((part["kept"] & (part["flag"] != "")).sum())
            lines.append(f"| {kind} | {label} | {n} | {mi_k} ({100 * mi_k / n:.0f}%) | {k} ({100 * k / n:.0f}%) | "
                         f"{both}/{mi_k}" + (f" ({100 * both / mi_k:.0f}%)" if mi_k else "") + f" | {fl} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="at most this many cases of each kind (0: all)")
    ap.add_argument("--out", default="/tmp/registration_real.parquet", help="per-pair table")
    ap.add_argument("--from-table", default=None, help="summarise an existing per-pair table (no registration)")
    ap.add_argument("--no-record", action="store_true", help="do not write benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    s, g = real_data_settings()
    if args.from_table:
        df = pd.read_parquet(args.from_table)
        wall = float("nan")
    else:
        meta = real_cxr.metadata()
        todo = cases(meta, args.seed)
        if args.limit:
            todo = [c for kind in dict.fromkeys(c["kind"] for c in todo) for c in [c for c in todo if c["kind"] == kind][: args.limit]]
        t0 = time.perf_counter()
        with Pool(args.jobs) as pool:
            rows = pool.map(run_case, [(c, s) for c in todo], chunksize=1)
        wall = time.perf_counter() - t0
        df = pd.DataFrame(rows)
        df.to_parquet(args.out)
    df = summarise(df, g)
    table = fmt_table(df)
    known = df[df["kind"] == "known transform"]
    good = known[known["kept"]]
    same = df[df["kind"] == "same patient"]
    other = df[df["kind"] == "other patient"]
    q = lambda x, p: float(np.quantile(x, p)) if len(x) else float("nan")  # noqa: E731
    lines = [
        table, "",
        f"- known transforms: {int((known['disp_err_px512'] <= 1.0).sum())}/{len(known)} within 1 px at 512² "
        f"(kept by the gate: {int((good['disp_err_px512'] <= 1.0).sum())}/{len(good)}); error median "
        f"{known['disp_err_px512'].median():.2f} px, max {known['disp_err_px512'].max():.2f} px, rotation max "
        f"{known['angle_err_deg'].max():.3f}°; {known['seconds'].median():.2f} s per pair (median; mirror registration included), "
        f"{known['seconds'].mean():.2f} s mean",
        f"- statistics, same patient (MI-kept, n={int(same['mi_kept'].sum())}): structure_ncc min "
        f"{same.loc[same['mi_kept'], 'structure_ncc'].min():.3f}, 10% {q(same.loc[same['mi_kept'], 'structure_ncc'], .1):.3f}, median "
        f"{same.loc[same['mi_kept'], 'structure_ncc'].median():.3f}; ncc min {same.loc[same['mi_kept'], 'ncc'].min():.3f}; "
        f"mirror_mi - mi min {(same.loc[same['mi_kept'], 'mirror_mi'] - same.loc[same['mi_kept'], 'mi']).min():.3f}",
        f"- statistics, other patient (MI-kept, n={int(other['mi_kept'].sum())}): structure_ncc "
        + ", ".join(f"{v:.3f}" for v in sorted(other.loc[other['mi_kept'], 'structure_ncc'])),
        f"- MI: same patient median {same['mi'].median():.3f} (MI-kept {int(same['mi_kept'].sum())}/{len(same)}), other patient median "
        f"{other['mi'].median():.3f} (MI-kept {int(other['mi_kept'].sum())}/{len(other)})",
        f"- gate: mi_threshold {g.mi_threshold}, mirror_margin {g.mirror_margin}, ncc_min {g.ncc_min}, "
        f"structure_ncc_min {g.structure_ncc_min}, same_patient_action {g.same_patient_action}; registration.resolution "
        f"{s.resolution}, refine_starts {s.refine_starts}",
    ]
    print("\n".join(lines))
    if not args.no_record and not args.from_table and not args.limit:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        header = (f"{SECTION}\n\n{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}"
                  f"{' (+ uncommitted edits)' if dirty else ''}, {platform.node()} ({os.cpu_count()} CPUs, shared), "
                  f"`{' '.join(['.venv/bin/python', 'benchmarks/registration_real.py'] + (argv if argv is not None else sys.argv[1:]))}`, "
                  f"{len(df)} registrations of {df['kind'].nunique()} kinds on {real_cxr.corpus_root().name} "
                  f"(340 real radiographs), {args.jobs} processes, {wall / 60:.1f} min wall.\n\n")
        replace_section(SECTION, header + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
