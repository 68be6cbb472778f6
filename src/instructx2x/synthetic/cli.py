"""``instructx2x demo-data OUT_DIR [--patients N] [--seed S] [--tables-only]``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_parser(subparsers) -> None:
    from instructx2x.core.cliargs import non_negative_int

    p = subparsers.add_parser(
        "demo-data",
        help="write the synthetic demo dataset in PhysioNet's layout (+ ground_truth/)",
        description="Write a synthetic dataset with the exact file formats of MIMIC-CXR-JPG, MIMIC-CXR reports, "
        "MIMIC-IV hosp, Medical-Diff-VQA and MS-CXR under OUT_DIR/physionet.org/files/..., and its ground truth "
        "under OUT_DIR/ground_truth/. Same arguments give byte-identical files. OUT_DIR/demo_data.json is written "
        "last: ingest refuses a tree whose generation did not finish.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--patients", type=int, default=60, help="number of patients (2-5 studies each; default 60)")
    p.add_argument("--seed", type=non_negative_int, default=7, help="generator seed (default 7)")
    p.add_argument("--tables-only", action="store_true",
                   help="write the tables only (no JPGs, no report files): for scale benchmarks")
    p.add_argument("--race-mix", choices=["mimic", "balanced"], default="mimic",
                   help="race weights: mimic (MIMIC-like, default) or balanced (White/Black/Asian 30%% each)")
    p.add_argument("--manifest", default=None, help="also write the raw manifest (parquet) to this path")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .generate import generate_dataset

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from instructx2x.core.errors import InputError

    if args.patients < 2:
        raise InputError(f"--patients: at least 2 patients are needed (pairs need two studies of a patient), got {args.patients}")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"OUT_DIR {out}: exists and is not a folder; expected a folder to write the dataset into")
    m = generate_dataset(args.out_dir, patients=args.patients, seed=args.seed, tables_only=args.tables_only,
                         manifest_path=args.manifest, race_mix=args.race_mix)
    print(f"wrote {len(m)} files for {args.patients} patients under {args.out_dir}")
    return 0
