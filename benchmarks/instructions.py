"""Benchmark: the instructions stage (``build_operations``: parse every difference answer, attach
attributes from key information, questions and report text) at real scale: 700,703 QA rows,
~164k pairs, one report per study.

Input tables are synthesised here with a seeded RNG from the Diff-VQA templates and vocabularies
(vqa/diseases/reports parquet in the ingest layout); ~20% of key-information entities lack location
and level so the question and report sources are exercised.
Baseline: the same stage reading attributes from the report text only (spaCy on the report of
every operation's study, no key information or questions: what a report-only extractor does).
Ours: the cascade (key information -> questions -> spaCy only for what is still missing).
Appends/updates a section of benchmarks/RESULTS.md.

Usage: .venv/bin/python benchmarks/instructions.py [--pairs 164324] [--rows 700703]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from instructx2x.instructions.build import build_operations
from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Instructions: difference answers -> operations with attributes at real scale"
FINDINGS = {  # name: (sides, zones, levels)
    "pleural effusion": (["left", "right", "bilateral"], [None], ["small", "moderate", "moderate to large"]),
    "atelectasis": (["left", "right"], ["basal", None], ["minimal", "mild"]),
    "cardiomegaly": ([None], [None], ["mild", "moderate", "severe"]),
    "edema": (["bilateral", None], [None], ["mild", "moderate", "mild to moderate"]),
    "pneumothorax": (["left", "right"], ["apical"], ["small", "moderate"]),
    "lung opacity": (["left", "right"], ["upper", "lower"], ["mild", "subtle"]),
    "consolidation": (["left", "right"], ["lower", None], ["mild", "moderate"]),
    "pneumonia": (["left", "right"], ["lower", None], ["mild", "moderate"]),
    "enlargement of the cardiac silhouette": ([None], [None], ["mild", "moderate"]),
    "vascular congestion": ([None], [None], ["mild", "moderate"]),
}
NAMES = list(FINDINGS)
Q = "what has changed compared to the reference image?"


def _series(xs):
    return xs[0] if len(xs) == 1 else "".join(f"{x}, " for x in xs[:-2]) + f"{xs[-2]}, and {xs[-1]}"


def _study(rnd):
    ents = {}
    for d in rnd.sample(NAMES, rnd.randint(0, 4)):
        sides, zones, levels = FINDINGS[d]
        ents[d] = (rnd.choice(sides), rnd.choice(zones), rnd.choice(levels))
    return ents


def _answer(main, ref):
    out = [f"the level of {d} has changed from {ref[d][2]} to {e[2]}. " for d, e in main.items()
           if d in ref and ref[d][2] != e[2]]
    add = [d for d in main if d not in ref]
    miss = [d for d in ref if d not in main]
    if add:
        out.append(f"the main image has an additional finding of {add[0]} than the reference image. " if len(add) == 1
                   else f"the main image has additional findings of {_series(add)} than the reference image. ")
    if miss:
        out.append(f"the main image is missing the finding of {miss[0]} than the reference image. " if len(miss) == 1
                   else f"the main image is missing the findings of {_series(miss)} than the reference image. ")
    return "".join(out) or "nothing has changed."


def make_tables(n_pairs: int, n_rows: int, out: Path, seed: int = 0) -> dict:
    rnd = random.Random(seed)
    studies, vqa, dis, rep = {}, [], [], []
    next_study = 50_000_000
    subject = 10_000_000
    pairs = []
    while len(pairs) < n_pairs:
        subject += 1
        chain = []
        for _ in range(rnd.randint(2, 4)):
            next_study += 1
            studies[next_study] = (subject, _study(rnd))
            chain.append(next_study)
        for cur, past in zip(chain[1:], chain[:-1]):
            pairs.append((subject, cur, past))
    pairs = pairs[:n_pairs]
    extra_per_pair = max(0, (n_rows - n_pairs) // n_pairs)
    for subject, cur, past in pairs:
        main, ref = studies[cur][1], studies[past][1]
        names = list(main)
        for k in range(extra_per_pair):
            if names and k == 0:
                d = rnd.choice(names)
                loc = " ".join(w for w in main[d][:2] if w)
                vqa.append((cur, subject, past, "location", f"where is the {d}?", f"{loc or 'left'} area", "train"))
            elif names and k == 1:
                d = rnd.choice(names)
                vqa.append((cur, subject, past, "level", f"what level is the {d}?", main[d][2], "train"))
            else:
                vqa.append((cur, subject, past, "presence", "is there edema?", "no", "train"))
        vqa.append((cur, subject, past, "difference", Q, _answer(main, ref), "train"))
    while len(vqa) < n_rows:
        subject, cur, past = pairs[len(vqa) % len(pairs)]
        vqa.append((cur, subject, past, "view", "is this PA view?", "yes", "train"))
    for s, (subject, ents) in studies.items():
        sentences = []
        for d, (side, zone, level) in ents.items():
            hide = rnd.random() < 0.2
            words = [w for w in (side, zone) if w]
            dis.append((subject, s, d, None if hide else (words or None), None, None if hide else [level], None))
            sentences.append(f"There is {level} {' '.join(words)} {d}.")
        sentences.append("No pneumothorax.")
        rep.append((subject, s, "x", " FINDINGS: " + "  ".join(sentences)))
    v = pd.DataFrame(vqa, columns=["study_id", "subject_id", "ref_id", "question_type", "question", "answer", "split"])
    v["row"] = range(len(v))
    paths = {"vqa": out / "vqa.parquet", "diseases": out / "diseases.parquet", "reports": out / "reports.parquet"}
    v.to_parquet(paths["vqa"], index=False)
    pd.DataFrame(dis, columns=["subject_id", "study_id", "entity", "location", "type", "level", "post_location"]
                 ).to_parquet(paths["diseases"], index=False)
    pd.DataFrame(rep, columns=["subject_id", "study_id", "report_path", "text"]).to_parquet(paths["reports"], index=False)
    return paths


def run(paths, out: Path, tag: str, settings: dict) -> tuple[float, float, pd.DataFrame]:
    t0, c0 = time.perf_counter(), time.process_time()
    df = build_operations(paths["vqa"], paths["diseases"], paths["reports"], out / f"ops_{tag}.parquet",
                          out / f"l_{tag}.tsv", out / f"c_{tag}.tsv", settings=settings)
    return time.perf_counter() - t0, time.process_time() - c0, df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=164_324)
    ap.add_argument("--rows", type=int, default=700_703)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        paths = make_tables(args.pairs, args.rows, out)
        gen_s = time.perf_counter() - t0
        n_rows = len(pd.read_parquet(paths["vqa"], columns=["study_id"]))
        import spacy  # noqa: F401  (import once, outside both timings)

        base_s, base_c, base = run(paths, out, "base", {"use_keyinfo": False, "use_questions": False})
        ours_s, ours_c, ours = run(paths, out, "ours", {})
        load = os.getloadavg()[0]
    src = pd.Series([o["sources"]["location"] for ops in ours["operations"] for o in ops
                     if o["sources"].get("location")]).value_counts()
    lines = [
        SECTION, "",
        f"- machine: {platform.node() or 'vm'} ({platform.machine()}, {os.cpu_count()} CPUs), Python {platform.python_version()}",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- command: `python benchmarks/instructions.py --pairs {args.pairs} --rows {args.rows}`",
        f"- input: {n_rows:,} QA rows, {len(ours):,} pairs (synthesised in {gen_s:.1f} s, not timed); "
        f"status {ours['status'].value_counts().to_dict()}; location sources (ours) {src.to_dict()}",
        "- baseline: attributes from the report text only (spaCy on every operation's study); ours: key info -> questions -> spaCy for the rest",
        f"- load average at the end: {load:.1f} on {os.cpu_count()} CPUs (the machine is shared: wall > CPU)",
        "",
        "| run | wall (s) | CPU (s) | QA rows/s (CPU) | pairs/s (CPU) | goal |",
        "|---|---:|---:|---:|---:|---|",
        f"| baseline (report-only) | {base_s:.1f} | {base_c:.1f} | {n_rows / base_c:,.0f} | {len(base) / base_c:,.0f} | |",
        f"| ours (cascade) | {ours_s:.1f} | {ours_c:.1f} | {n_rows / ours_c:,.0f} | {len(ours) / ours_c:,.0f} | <= 60 s |",
        "",
        f"- ratio ours/baseline (CPU): {ours_c / base_c:.2f}; the baseline finds fewer attributes (report text only)",
        "",
    ]
    replace_section(SECTION, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
