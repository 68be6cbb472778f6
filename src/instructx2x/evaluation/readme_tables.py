"""README tables generated from a recorded demo run (``benchmarks/demo_tables.py``): never typed.

A recorded run is a directory (``benchmarks/demo_run/``) holding the run's ``metrics.json``,
``table1.csv``, the ledger ``*.counts.tsv`` files, ``stage_times.tsv`` (Snakemake benchmark
seconds per rule) and ``run.json`` (date, commit, command, wall time). Each README block lives
between ``<!-- demo_tables:NAME -->`` and ``<!-- /demo_tables:NAME -->`` and is rewritten whole.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

BLOCKS = ("run", "table2", "edit_success", "edit_truth", "directions", "funnel", "table1", "stage_times")
ROWS = (("real", "real (ceiling)"), ("input", "input (floor)"), ("wo_rse", "wo-RSE"), ("rse", "RSE"))
COLS = (("patho_auroc", "patho AUROC"), ("race_auroc", "race AUROC"), ("age_pearson", "age r"), ("cmig", "CMIG"),
        ("kl", "KL (nats)"), ("fid", "FID"))


def _v(x, ci=None) -> str:
    if x is None:
        return "n/a"
    s = f"{x:.3f}"
    return s + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else " [no interval]")


def table2_md(metrics: dict) -> str:
    lines = ["| row | " + " | ".join(t for _, t in COLS) + " |", "|---|" + "---:|" * len(COLS)]
    for key, label in ROWS:
        r = (metrics.get("rows") or {}).get(key)
        if r is None:
            lines.append(f"| {label} | " + " | ".join("not run" for _ in COLS) + " |")
            continue
        ci = r.get("intervals") or {}
        lines.append(f"| {label} | " + " | ".join(_v(r.get(k), ci.get(k)) for k, _ in COLS) + " |")
    by = metrics.get("n_pairs_by_split") or {}
    split = " + ".join(f"{v} {k}" for k, v in by.items())
    lines.append("")
    lines.append(f"{metrics.get('n_pairs')} evaluated pairs ({split}), {metrics.get('n_with_race')} with a race label; "
                 f"evaluator backend `{metrics.get('backend')}`; 95% bootstrap intervals over pairs in brackets.")
    reasons = [(key, k, v) for key, _ in ROWS for k, v in (((metrics.get("rows") or {}).get(key) or {})
                                                          .get("interval_reasons") or {}).items() if "/" not in k]
    for key, k, v in reasons:
        lines.append(f"No interval for {key} {k}: {v}.")
    return "\n".join(lines)


def edit_success_md(metrics: dict) -> str:
    es = metrics.get("edit_success")
    if not es:
        return "Edit success: not in this run's metrics.json."

    def pct(v, c):
        return "n/a" if v is None else f"{100 * v:.0f}%" + (f" [{100 * c[0]:.0f}, {100 * c[1]:.0f}]" if c else "")

    lines = ["| mode | region | pairs | median distance ratio | pairs closer than the input | Add/Remove ops | "
             "evaluator moved as instructed |", "|---|---|---:|---:|---:|---:|---:|"]
    for mode, label in (("rse", "RSE"), ("wo_rse", "wo-RSE")):
        m = es.get(mode) or {}
        med, c = m.get("median_ratio"), m.get("median_ratio_interval")
        lines.append(f"| {label} | {m.get('region')} | {m.get('n_pairs')} | "
                     + ("n/a" if med is None else f"{med:.2f}" + (f" [{c[0]:.2f}, {c[1]:.2f}]" if c else ""))
                     + f" | {pct(m.get('share_closer'), m.get('share_closer_interval'))} | {m.get('n_operations')} | "
                     f"{pct(m.get('share_moved_as_instructed'), m.get('share_moved_interval'))} |")
    return "\n".join(lines)


def edit_truth_md(truth: dict | None) -> str:
    """The ground-truth check of ``benchmarks/demo_edit_truth.py`` (``edit_truth.json`` of the run)."""
    if not truth:
        return "Ground-truth check: not recorded for this run."

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.0f}%"

    lines = ["| mode | Add/Remove ops scored | named finding changed the instructed way on its region (and side) | "
             "Add | Remove | the target itself (reference) |", "|---|---:|---:|---:|---:|---:|"]
    for mode, label in (("rse", "RSE"), ("wo_rse", "wo-RSE")):
        m = truth["modes"].get(mode) or {}
        lines.append(f"| {label} | {m.get('ops')} | {pct(m.get('edit_ok'))} | {pct(m.get('add_ok'))} | "
                     f"{pct(m.get('remove_ok'))} | {pct(m.get('target_ok'))} |")
    return "\n".join(lines)


def directions_md(metrics: dict) -> str:
    out = []
    for d in metrics.get("ablation_directions") or []:
        ci = d.get("difference_interval")
        if d.get("holds") is None:
            out.append(f"- {d['check']}: undefined on this run (a value is missing).")
            continue
        verdict = "holds" if d["holds"] else "does **not** hold"
        interval = (f"difference {d['difference']:+.3f}, 95% paired bootstrap interval [{ci[0]:+.3f}, {ci[1]:+.3f}]"
                    if ci else f"difference {d['difference']:+.3f}, no interval")
        support = "" if d.get("supported") is None else (
            "; the interval excludes the other side" if d["supported"] else "; the interval includes the other side")
        out.append(f"- {d['check']}: {verdict} ({d['left']:.3f} vs {d['right']:.3f}; {interval}{support}).")
    return "\n".join(out) or "No ablation directions in this run's metrics.json."


def funnel_md(counts_dir: Path) -> str:
    rows = []
    for p in sorted(Path(counts_dir).glob("*.counts.tsv")):
        with open(p, newline="") as fh:
            rows.extend(csv.DictReader(fh, delimiter="\t"))
    lines = ["| stage | step | in | kept | dropped |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['step']} | {r['rows_in']} | {r['rows_out']} | {r['dropped']} |")
    return "\n".join(lines)


def table1_md(table1_csv: Path) -> str:
    with open(table1_csv, newline="") as fh:
        rows = list(csv.reader(fh))
    head, body = rows[0], rows[1:]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def stage_times_md(stage_tsv: Path, run: dict) -> str:
    with open(stage_tsv, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    lines = ["| rule | jobs | seconds (sum over jobs) |", "|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['jobs']} | {float(r['seconds']):.0f} |")
    wall = run.get("wall_s")
    lines.append("")
    lines.append(f"Wall time of the whole run: {'n/a' if wall is None else f'{wall / 60:.1f} min'} "
                 f"({run.get('cores', 2)} cores; jobs overlap, so the sum exceeds the wall time).")
    return "\n".join(lines)


def run_md(run: dict) -> str:
    return (f"Recorded run: {run.get('date')} at commit `{str(run.get('commit'))[:12]}`, command `{run.get('command')}`"
            f", machine: {run.get('machine')}. Regenerate with `python benchmarks/demo_tables.py --record results --write`.")


def render(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    return {
        "run": run_md(run),
        "table2": table2_md(metrics),
        "edit_success": edit_success_md(metrics),
        "edit_truth": edit_truth_md(json.loads((run_dir / "edit_truth.json").read_text())
                                    if (run_dir / "edit_truth.json").exists() else None),
        "directions": directions_md(metrics),
        "funnel": funnel_md(run_dir / "ledger"),
        "table1": table1_md(run_dir / "table1.csv"),
        "stage_times": stage_times_md(run_dir / "stage_times.tsv", run),
    }


def block_re(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- demo_tables:{name} -->\n)(.*?)(\n<!-- /demo_tables:{name} -->)", re.S)


def read_block(text: str, name: str) -> str | None:
    m = block_re(name).search(text)
    return None if m is None else m.group(2)


def write_blocks(text: str, blocks: dict) -> str:
    for name, body in blocks.items():
        pat = block_re(name)
        if not pat.search(text):
            raise ValueError(f"README has no block <!-- demo_tables:{name} --> ... <!-- /demo_tables:{name} -->")
        text = pat.sub(lambda m: m.group(1) + body + m.group(3), text)
    return text
