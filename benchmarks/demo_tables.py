"""README tables from a recorded demo run: Table 2 (+ edit success, ablation directions), funnel,
Table 1 and stage times, written with the run's date and commit. Never typed by hand.

    python benchmarks/demo_tables.py --record results [--wall-s 612] [--command "make demo"]
        copy what the tables need from a finished run into benchmarks/demo_run/ (+ run.json)
    python benchmarks/demo_tables.py --write
        rewrite README.md's <!-- demo_tables:NAME --> blocks from benchmarks/demo_run/
    python benchmarks/demo_tables.py --check
        exit 1 when a README block differs from what the recorded run gives

tests/test_demo_tables.py fails when README.md's blocks differ from the recorded run.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from instructx2x.evaluation import readme_tables as RT  # noqa: E402

RUN_DIR = ROOT / "benchmarks" / "demo_run"
README = ROOT / "README.md"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(results: Path, wall_s: float | None, command: str, cores: int) -> None:
    results = Path(results)
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
    (RUN_DIR / "ledger").mkdir(parents=True)
    shutil.copy(results / "report" / "metrics.json", RUN_DIR / "metrics.json")
    shutil.copy(results / "instructions" / "table1.csv", RUN_DIR / "table1.csv")
    for p in sorted((results / "ledger").glob("*.counts.tsv")):
        shutil.copy(p, RUN_DIR / "ledger" / p.name)
    times: dict[str, list[float]] = {}
    for p in sorted((results / "benchmarks").rglob("*.tsv")):
        rule = p.relative_to(results / "benchmarks").parts[0].removesuffix(".tsv")
        with open(p, newline="") as fh:
            for r in csv.DictReader(fh, delimiter="\t"):
                times.setdefault(rule, []).append(float(r["s"]))
    with open(RUN_DIR / "stage_times.tsv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["rule", "jobs", "seconds"])
        for rule, ts in sorted(times.items(), key=lambda kv: -sum(kv[1])):
            w.writerow([rule, len(ts), f"{sum(ts):.1f}"])
    if (results / "model" / "init" / "prepare_report.json").exists():  # the tiny VAE's val reconstruction
        shutil.copy(results / "model" / "init" / "prepare_report.json", RUN_DIR / "prepare_report.json")
    if (results / "raw" / "demo" / "ground_truth").is_dir():  # demo runs: the ground-truth check of the edits
        import demo_edit_truth

        (RUN_DIR / "edit_truth.json").write_text(json.dumps(demo_edit_truth.score(results), indent=1) + "\n")
    run = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d"), "commit": _commit(), "command": command,
           "wall_s": wall_s, "cores": cores, "machine": f"{platform.machine()}, {platform.system()}, "
                                                         f"{__import__('os').cpu_count()} CPUs"}
    (RUN_DIR / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    print(f"recorded {results} -> {RUN_DIR}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, default=None, help="a finished run's results directory")
    ap.add_argument("--wall-s", type=float, default=None, help="measured wall time of the run (seconds)")
    ap.add_argument("--command", default="make demo", help="the command that made the run")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="rewrite README.md's blocks")
    ap.add_argument("--check", action="store_true", help="exit 1 when README.md differs from the recorded run")
    a = ap.parse_args(argv)
    if a.record:
        record(a.record, a.wall_s, a.command, a.cores)
    blocks = RT.render(RUN_DIR)
    text = README.read_text()
    new = RT.write_blocks(text, blocks)
    if a.write:
        README.write_text(new)
        print(f"README.md: {len(blocks)} blocks written")
    if a.check and new != text:
        print("README.md's demo tables differ from benchmarks/demo_run/: run benchmarks/demo_tables.py --write")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
