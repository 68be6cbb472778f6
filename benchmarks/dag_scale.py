"""Benchmark: the Snakemake DAG at real scale (dry run) and a no-op rerun of the demo.

1. Dry run at real scale. ``instructx2x demo-data RAW --tables-only --patients 65000`` (real-scale
   tables, no images) is used as a ``source: local`` dataset; ``snakemake -n`` of the full DAG is
   timed (goal <= 30 s) with registration.shards / inference.shards at 2 and at 64. The job count
   is fixed by the shard settings (it grows by exactly the shard delta), never by the number of
   studies or pairs. With ``--with-ingest`` the stages that need no images (local_manifest, ingest)
   are then really run at that scale and the dry run is repeated over their outputs.
2. No-op rerun. In a work dir holding a completed demo run (results/ + .snakemake/; ``--demo-workdir``,
   e.g. a ``cp -a`` of a finished ``make demo``), ``snakemake`` again with nothing to do is timed
   (goal <= 15 s). Without ``--demo-workdir`` the demo is first run in a temporary work dir.

The Snakefile's own ``src/`` goes first on PYTHONPATH, so a snapshot of the repository can be
benchmarked while the working tree changes (a changed module is a code change: jobs re-run).

Usage: .venv/bin/python benchmarks/dag_scale.py [--raw-dir DIR] [--patients 65000]
       [--demo-workdir DIR] [--snakefile Snakefile] [--repeats 3] [--with-ingest] [--write]
(``--write`` replaces this benchmark's own section of benchmarks/RESULTS.md.)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from results_md import replace_section  # noqa: E402  (benchmarks/ is the script directory)

REPO = Path(__file__).resolve().parents[1]
SECTION = "## DAG scale: dry run at real scale, no-op rerun"
BIN = Path(sys.executable).parent
SNAKEMAKE = str(BIN / "snakemake")


def run(cmd: list[str], cwd: Path, env: dict, timeout: float = 1800) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-4000:]}")
    return wall, out


def job_count(out: str) -> int:
    m = re.findall(r"^total\s+(\d+)\s*$", out, flags=re.M)
    if m:
        return int(m[-1])
    if "Nothing to be done" in out:
        return 0
    raise SystemExit(f"no job count in:\n{out[-3000:]}")


def write_config(workdir: Path, raw_dir: Path | None, **sections) -> Path:
    with open(REPO / "config.yaml") as fh:
        config = yaml.safe_load(fh)
    config["results_dir"] = "results"
    if raw_dir is not None:
        config["source"] = "local"
        config["local"] = {"raw_dir": str(raw_dir)}
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def smk(snakefile: Path, workdir: Path, *extra: str) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(snakefile), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--profile", str(REPO / "profiles" / "local"),
            "--cores", "2", *extra]


def env_for(snakefile: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(snakefile.parent / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def scontrol_penalty() -> float | None:
    """Seconds `scontrol show config` takes (the SLURM executor plugin runs it at every Snakemake start)."""
    if not shutil.which("scontrol"):
        return None
    t0 = time.perf_counter()
    subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=30)
    return time.perf_counter() - t0


def dry_runs(snakefile: Path, raw_dir: Path, repeats: int, with_ingest: bool, work_root: Path) -> list[dict]:
    rows = []
    env = env_for(snakefile)
    for shards in (2, 64):
        work = work_root / f"dry_shards{shards}"
        work.mkdir(parents=True, exist_ok=True)
        write_config(work, raw_dir, registration={"shards": shards}, inference={"shards": shards})
        times, jobs = [], None
        for _ in range(repeats):
            wall, out = run(smk(snakefile, work, "-n", "--quiet", "rules"), work, env)
            times.append(wall)
            jobs = job_count(out)
        rows.append({"state": "nothing computed", "shards": shards, "jobs": jobs, "times": times})
    if with_ingest:
        work = work_root / "dry_shards2"
        wall, _ = run(smk(snakefile, work, "results/tables/images.parquet"), work, env)
        times = []
        for _ in range(repeats):
            t, out = run(smk(snakefile, work, "-n", "--quiet", "rules"), work, env)
            times.append(t)
        rows.append({"state": f"local_manifest + ingest done at this scale ({wall:.0f} s)", "shards": 2,
                     "jobs": job_count(out), "times": times})
    return rows


def noop_reruns(snakefile: Path, demo_workdir: Path | None, repeats: int, work_root: Path) -> tuple[Path, list[float], str]:
    env = env_for(snakefile)
    if demo_workdir is None:
        demo_workdir = work_root / "demo"
        demo_workdir.mkdir(parents=True, exist_ok=True)
        write_config(demo_workdir, None)
        run(smk(snakefile, demo_workdir), demo_workdir, env, timeout=3600)
    config = demo_workdir / "config.yaml"
    if not config.exists():
        shutil.copy(REPO / "config.yaml", config)
    wall, out = run(smk(snakefile, demo_workdir, "-n"), demo_workdir, env)
    if "Nothing to be done" not in out:
        raise SystemExit(f"{demo_workdir} is not a completed demo run for this code (a dry run would run jobs):\n"
                         f"{out[-3000:]}")
    times = []
    for _ in range(repeats):
        wall, out = run(smk(snakefile, demo_workdir), demo_workdir, env)
        assert "Nothing to be done" in out, out[-2000:]
        times.append(wall)
    results = demo_workdir / "results"
    n_files = sum(1 for p in results.rglob("*") if p.is_file())
    return demo_workdir, times, f"{n_files} files under results/"


def fmt(times: list[float]) -> str:
    return f"{statistics.median(times):.1f} (" + ", ".join(f"{t:.1f}" for t in times) + ")"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--raw-dir", type=Path, default=Path(tempfile.gettempdir()) / "instructx2x_dag_scale" / "raw",
                    help="real-scale tables-only dataset (generated here when missing)")
    ap.add_argument("--patients", type=int, default=65000)
    ap.add_argument("--demo-workdir", type=Path, default=None, help="work dir with a completed demo run")
    ap.add_argument("--snakefile", type=Path, default=REPO / "Snakefile")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--with-ingest", action="store_true", help="also run local_manifest+ingest at scale, then dry-run")
    ap.add_argument("--write", action="store_true", help="update this section of benchmarks/RESULTS.md")
    args = ap.parse_args()
    snakefile = args.snakefile.resolve()

    gen_s = None
    if not (args.raw_dir / "physionet.org").is_dir():
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "instructx2x"), "demo-data", str(args.raw_dir), "--tables-only",
                        "--patients", str(args.patients)], check=True)
        gen_s = time.perf_counter() - t0
    meta = args.raw_dir / "physionet.org/files/mimic-cxr-jpg/2.1.0/mimic-cxr-2.0.0-metadata.csv.gz"
    vqa = args.raw_dir / "physionet.org/files/medical-diff-vqa/1.0.1/mimic_pair_questions.csv"
    import gzip
    with gzip.open(meta, "rt") as fh:
        n_images = sum(1 for _ in fh) - 1
    with open(vqa) as fh:
        n_qa = sum(1 for _ in fh) - 1
    penalty = scontrol_penalty()

    with tempfile.TemporaryDirectory(prefix="dag_scale_") as tmp:
        rows = dry_runs(snakefile, args.raw_dir.resolve(), args.repeats, args.with_ingest, Path(tmp))
        demo_dir, noop, demo_desc = noop_reruns(snakefile, args.demo_workdir, args.repeats, Path(tmp))

    import snakemake
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/dag_scale.py " + " ".join(sys.argv[1:])
    lines = [
        SECTION, "",
        f"- machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, shared), "
        f"Python {platform.python_version()}, Snakemake {snakemake.__version__}",
        f"- date: {now}",
        f"- command: `{cmd.strip()}`",
        f"- dataset: `instructx2x demo-data RAW --tables-only --patients {args.patients}` as `source: local` "
        f"({n_images:,} metadata rows, {n_qa:,} QA rows, no images"
        + (f"; generated in {gen_s:.0f} s" if gen_s else "") + ")",
        f"- each number: median (each of {args.repeats} runs) of the wall time of the whole `snakemake` "
        "process (start-up + parse + DAG), `--profile profiles/local`",
        "",
        "| run | DAG state | registration / inference shards | jobs | wall (s) | goal |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| `snakemake -n` (full DAG) | {r['state']} | {r['shards']} / {r['shards']} | {r['jobs']} | "
                     f"{fmt(r['times'])} | <= 30 s |")
    lines.append(f"| `snakemake` no-op rerun | completed demo run ({demo_desc}) | 2 / 2 | 0 | {fmt(noop)} | <= 15 s |")
    d = {r["shards"]: r["jobs"] for r in rows if r["state"] == "nothing computed"}
    lines += [
        "",
        f"- job count: {d[2]} jobs with 2+2 shards, {d[64]} with 64+64: +{d[64] - d[2]} = exactly the "
        f"{2 * (64 - 2)} extra shard jobs (registration_shard and infer are the only rules with a job per "
        "shard; every other rule has one job), independent of the number of studies and pairs.",
    ]
    if penalty is not None:
        lines.append(f"- slurm-client is installed here; `scontrol show config` took {penalty:.1f} s (included above). "
                     "snakemake-executor-plugin-slurm runs it whenever Snakemake starts, with any executor. With a "
                     "slurm.conf but no controller reachable it waits ~9 s, adding ~9 s to every number above "
                     "(so `tests/slurm/slurm-ci.sh stop` moves slurm.conf aside).")
    block = "\n".join(lines) + "\n"
    print(block)
    if args.write:
        replace_section(SECTION, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
