"""Benchmark: reading + validating raw tables at real scale (377,110 metadata rows, 700,703 QA rows).

Baseline: the straightforward reader, ``csv.DictReader`` with a per-row Python check and
conversion of every cell (what a first version typically does). Ours:
``instructx2x.core.tableschema.read_csv_table`` (pandas, every cell as text, vectorised checks).
Both produce the same typed columns (asserted). Appends/updates a section of benchmarks/RESULTS.md.

Usage: .venv/bin/python benchmarks/ingest_scale.py [--rows-meta 377110] [--rows-vqa 700703]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import os
import platform
import re
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from instructx2x.core.tableschema import ID_FORMATS, load_schema, read_csv_table
from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Ingest: reading and validating raw tables at real scale"


def make_metadata(n: int, rng: np.random.Generator) -> str:
    hexes = rng.integers(0, 2**32, size=(n, 5), dtype=np.uint64)
    dicom = pd.Series([f"{a:08x}-{b:08x}-{c:08x}-{d:08x}-{e:08x}" for a, b, c, d, e in hexes])
    subj = pd.Series(rng.integers(10_000_000, 20_000_000, n)).astype(str)
    study = pd.Series(rng.integers(50_000_000, 60_000_000, n)).astype(str)
    views = np.array(["AP", "PA", "LATERAL", "LL", ""])[rng.integers(0, 5, n)]
    times = pd.Series(np.round(rng.uniform(0, 235959, n), 3)).astype(str)
    df = pd.DataFrame(
        {
            "dicom_id": dicom,
            "subject_id": subj,
            "study_id": study,
            "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
            "ViewPosition": views,
            "Rows": "3056",
            "Columns": "2544",
            "StudyDate": "21800506",
            "StudyTime": times,
            "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
            "ViewCodeSequence_CodeMeaning": "postero-anterior",
            "PatientOrientationCodeSequence_CodeMeaning": "Erect",
        }
    )
    return df.to_csv(index=False)


def make_vqa(n: int, rng: np.random.Generator) -> str:
    types = np.array(["abnormality", "presence", "view", "location", "level", "type", "difference"])[rng.integers(0, 7, n)]
    answer = np.where(
        types == "difference",
        "the main image has additional findings of consolidation, and pneumonia than the reference image. ",
        "yes",
    )
    df = pd.DataFrame(
        {
            "study_id": rng.integers(50_000_000, 60_000_000, n),
            "subject_id": rng.integers(10_000_000, 20_000_000, n),
            "ref_id": rng.integers(50_000_000, 60_000_000, n),
            "question_type": types,
            "question": "what has changed compared to the reference image?",
            "answer": answer,
            "split": np.array(["train", "val", "test"])[rng.integers(0, 3, n)],
        }
    )
    return df.to_csv(index=False)


def baseline_read(path: Path, schema: dict) -> dict[str, list]:
    """Per-row Python: csv.DictReader, check and convert every cell."""
    cols = schema["columns"]
    out: dict[str, list] = {c["name"]: [] for c in cols}
    regex = {c["name"]: re.compile(ID_FORMATS[c["id"]]["pattern"]) for c in cols if c.get("id") and c["dtype"] == "str"}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != [c["name"] for c in cols]:
            raise ValueError(f"{path}: bad header")
        for line, row in enumerate(reader, start=2):
            for c in cols:
                v = row[c["name"]]
                if v == "":
                    if not c.get("nullable"):
                        raise ValueError(f"{path}: line {line}: empty {c['name']}")
                    out[c["name"]].append(None)
                    continue
                if c["dtype"] == "int64":
                    x = int(v)
                    if c.get("id"):
                        f = ID_FORMATS[c["id"]]
                        if not f["min"] <= x <= f["max"]:
                            raise ValueError(f"{path}: line {line}: {c['name']}")
                    out[c["name"]].append(x)
                elif c["dtype"] == "float64":
                    out[c["name"]].append(float(v))
                else:
                    if c["name"] in regex and not regex[c["name"]].fullmatch(v):
                        raise ValueError(f"{path}: line {line}: {c['name']}")
                    if "enum" in c and v not in c["enum"]:
                        raise ValueError(f"{path}: line {line}: {c['name']}")
                    out[c["name"]].append(v)
    return out


def timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows-meta", type=int, default=377_110)
    ap.add_argument("--rows-vqa", type=int, default=700_703)
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp) / "mimic-cxr-2.0.0-metadata.csv.gz"
        with gzip.open(meta, "wt") as fh:
            fh.write(make_metadata(args.rows_meta, rng))
        vqa = Path(tmp) / "mimic_pair_questions.csv"
        vqa.write_text(make_vqa(args.rows_vqa, rng))
        for path, schema_name, n in ((meta, "raw_mimic_cxr_metadata", args.rows_meta), (vqa, "raw_diffvqa_questions", args.rows_vqa)):
            schema = load_schema(schema_name)
            t_base, base = timed(baseline_read, path, schema)
            t_ours, ours = timed(read_csv_table, path, schema)
            for c in schema["columns"]:  # same values both ways
                a = pd.Series(base[c["name"]], dtype="object").where(lambda s: s.notna(), None)
                b = ours[c["name"]].astype("object").where(ours[c["name"]].notna(), None)
                assert a.tolist() == b.tolist(), c["name"]
            rows.append((path.name, n, t_base, t_ours))
            print(f"{path.name}: {n} rows  baseline {t_base:.2f} s  ours {t_ours:.2f} s  speed-up {t_base / t_ours:.1f}x")
    if not args.no_write:
        write_results(rows, argv)
    return 0


def write_results(rows, argv) -> None:
    cmd = "python benchmarks/ingest_scale.py" + ("" if not argv else " " + " ".join(argv))
    lines = [
        SECTION,
        "",
        f"- machine: {platform.node()} ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs), Python {sys.version.split()[0]}, pandas {pd.__version__}",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{cmd}`",
        "- baseline: csv.DictReader + per-row Python checks/conversion; ours: `tableschema.read_csv_table` (pandas, vectorised checks)",
        "",
        "| file | rows | baseline (s) | ours (s) | speed-up |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {name} | {n:,} | {tb:.2f} | {to:.2f} | {tb / to:.1f}x |" for name, n, tb, to in rows]
    block = "\n".join(lines) + "\n"
    replace_section(SECTION, block)


if __name__ == "__main__":
    sys.exit(main())
