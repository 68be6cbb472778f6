"""The demo DAG on a real one-node SLURM cluster with ``--profile profiles/slurm``.

``tests/slurm/slurm-ci.sh start`` installs Debian's slurmctld/slurmd/slurm-client/munge when
missing and starts them (no accounting, so the profile's ``slurm-status-command: squeue`` is what
makes the run finish at all); ``stop`` ends every daemon by its PID file. The same target is run
with ``profiles/local`` in another work dir, and the tables must be byte-identical.

The profile is used as it is, with only its CHANGE_ME placeholders overridden on the command line
(account ``ci``, partition ``debug``). The command line replaces a profile's whole
``default-resources``/``set-resources`` mapping, so the test passes every key of the profile's
mappings with just the placeholders swapped, which is what the profile's header tells users to do.
Two test-only settings: the first status check after 2 s instead of 20 s (each DAG level costs
about one check interval) and ``--slurm-keep-successful-logs`` (to see one Slurm log per job).

Run: ``make test-slurm`` (root only; ~4 min on the 2-CPU CI machine, see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "slurm" / "slurm-ci.sh"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
TARGET = "results/instructions/instructions.parquet"
PATIENTS = 10
ACCOUNT, PARTITION = "ci", "debug"   # what replaces the profile's placeholders on the test cluster
RUN_TIMEOUT_S = 600                  # per Snakemake run; both runs go in parallel
JOBCOMP = Path("/var/log/slurm/jobcomp.log")


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "the SLURM test cluster needs Linux (Debian packages)"
    if os.geteuid() != 0:
        return "the SLURM test cluster is installed and started as root (apt-get, daemons); not root"
    have_slurm = all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged"))
    if not have_slurm and not shutil.which("apt-get"):
        return "slurmctld/slurmd/munge are not installed and apt-get is unavailable to install them"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster (partition ``debug``) for this module; every daemon stopped after."""
    t0 = time.monotonic()
    start = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
    if start.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)
        pytest.fail(f"slurm-ci.sh start failed ({start.returncode}):\n{start.stdout}\n{start.stderr}")
    info = {"start_s": time.monotonic() - t0}
    try:
        yield info
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=300)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        for pidfile in ("/run/slurm/slurmctld.pid", "/run/slurm/slurmd.pid", "/run/munge/munged.pid"):
            if Path(pidfile).is_file():
                pid = int(Path(pidfile).read_text().strip() or 0)
                assert pid == 0 or not Path(f"/proc/{pid}").exists() or \
                    "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), f"{pidfile}: {pid} still running"


def _workdir(path: Path) -> Path:
    with open(REPO / "config.yaml") as fh:
        config = yaml.safe_load(fh)
    config["demo"]["patients"] = PATIENTS
    config["results_dir"] = "results"
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _placeholder(value, replacement):
    return replacement if isinstance(value, str) and value.startswith("CHANGE_ME") else value


def _cli_value(value) -> str:
    # as Snakemake's profile parser passes it: the YAML string itself (slurm_extra keeps its own quotes)
    return str(value)


def slurm_overrides() -> list[str]:
    """The profile's default-resources and set-resources with the CHANGE_ME placeholders replaced."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    account_or_partition = {"slurm_account": ACCOUNT, "slurm_partition": PARTITION}
    defaults = [f"{k}={_cli_value(_placeholder(v, account_or_partition.get(k, v)))}"
                for k, v in profile["default-resources"].items()]
    per_rule = [f"{rule}:{k}={_cli_value(_placeholder(v, account_or_partition.get(k, v)))}"
                for rule, res in profile.get("set-resources", {}).items() for k, v in res.items()]
    assert not any("CHANGE_ME" in a for a in defaults + per_rule)
    return ["--default-resources", *defaults, *(["--set-resources", *per_rule] if per_rule else [])]


def _start(workdir: Path, profile_args: list[str]) -> tuple[subprocess.Popen, float]:
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *profile_args, TARGET]
    (workdir / "command.txt").write_text(" ".join(cmd) + "\n")
    log = open(workdir / "snakemake.out", "w")
    # own session: a timeout interrupts Snakemake and everything it started (SIGINT: it cancels its
    # SLURM jobs and exits; it ignores SIGTERM while jobs are in flight)
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, time.monotonic()


def _wait_all(runs: list[tuple[subprocess.Popen, float]], timeout_s: float) -> list[tuple[int | None, float]]:
    """(returncode or None on timeout, wall seconds) of each run; on the deadline each still running
    Snakemake gets SIGINT (it cancels its SLURM jobs and exits), SIGKILL only if that did not end it in 60 s."""
    deadline = time.monotonic() + timeout_s
    done: dict[int, tuple[int | None, float]] = {}
    while len(done) < len(runs) and time.monotonic() < deadline:
        for i, (proc, started) in enumerate(runs):
            if i not in done and proc.poll() is not None:
                done[i] = (proc.returncode, time.monotonic() - started)
        time.sleep(0.5)
    for i, (proc, started) in enumerate(runs):
        if i in done:
            continue
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # last resort; the cluster fixture's stop scancels the rest
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        done[i] = (None, time.monotonic() - started)
    return [done[i] for i in range(len(runs))]


def _tail(workdir: Path, n: int = 60) -> str:
    return "\n".join((workdir / "snakemake.out").read_text(errors="replace").splitlines()[-n:])


def _files(results: Path) -> dict[str, Path]:
    # provenance/lineage/: each job's record holds its host, work dir and times (compared apart below)
    skip = ("logs/", "benchmarks/", "provenance/lineage/")
    return {p.relative_to(results).as_posix(): p for p in results.rglob("*")
            if p.is_file() and not p.relative_to(results).as_posix().startswith(skip)}


def _same_text_but_workdir(a: Path, b: Path, dir_a: Path, dir_b: Path) -> bool:
    """The same text once each run's work dir is written as <workdir> (ledger reasons name their file)."""
    ta, tb = a.read_text(errors="strict"), b.read_text(errors="strict")
    return ta != tb and ta.replace(str(dir_a), "<workdir>") == tb.replace(str(dir_b), "<workdir>")


def test_demo_target_on_slurm_equals_local(slurm_cluster, tmp_path):
    slurm_dir, local_dir = _workdir(tmp_path / "slurm"), _workdir(tmp_path / "local")
    jobcomp_before = JOBCOMP.read_text().count("\n") if JOBCOMP.exists() else 0
    slurm = _start(slurm_dir, ["--profile", str(REPO / "profiles" / "slurm"), *slurm_overrides(),
                               "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs"])
    local = _start(local_dir, ["--profile", str(REPO / "profiles" / "local"), "--cores", "2"])
    (slurm_rc, slurm_s), (local_rc, local_s) = _wait_all([slurm, local], RUN_TIMEOUT_S)
    print(f"\nslurm cluster start {slurm_cluster['start_s']:.1f} s; snakemake --profile profiles/slurm "
          f"{slurm_s:.1f} s (rc {slurm_rc}); --profile profiles/local {local_s:.1f} s (rc {local_rc})")
    assert slurm_rc == 0, f"SLURM run {'timed out' if slurm_rc is None else 'failed'}:\n{_tail(slurm_dir)}"
    assert local_rc == 0, f"local run failed:\n{_tail(local_dir)}"

    # the jobs really ran as SLURM batch jobs: one Slurm log per job, one COMPLETED jobcomp line
    # per job with this work dir; the local run submitted nothing
    out = (slurm_dir / "snakemake.out").read_text()
    n_jobs = int(re.findall(r"(\d+) of \1 steps \(100%\) done", out)[-1])
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) == n_jobs >= 10, out[-3000:]
    logs = sorted((slurm_dir / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {p.stem for p in logs} == set(submitted)
    rules = {p.relative_to(slurm_dir / ".snakemake" / "slurm_logs").parts[0] for p in logs}
    assert {"rule_demo_data", "rule_ingest", "rule_registration_shard", "rule_instructions_build"} <= rules
    lines = JOBCOMP.read_text().splitlines()[jobcomp_before:]
    mine = [ln for ln in lines if f"WorkDir={slurm_dir} " in ln]
    assert len(mine) == n_jobs and all("JobState=COMPLETED" in ln for ln in mine), "\n".join(mine)
    assert all(f"Partition={PARTITION} " in ln for ln in mine)
    assert not (local_dir / ".snakemake" / "slurm_logs").exists()
    assert "SLURM jobid" not in (local_dir / "snakemake.out").read_text()

    # same results: every file both runs wrote under results/ (logs and benchmarks aside)
    a, b = _files(slurm_dir / "results"), _files(local_dir / "results")
    assert TARGET.removeprefix("results/") in a and set(a) == set(b), sorted(set(a) ^ set(b))
    a.pop(INVOCATIONS), b.pop(INVOCATIONS)
    differ = sorted(k for k in a if a[k].read_bytes() != b[k].read_bytes())
    path_columns = {}
    for rel in differ:
        if rel.endswith(".parquet"):
            path_columns[rel] = _same_table_but_workdir(a[rel], b[rel], slurm_dir, local_dir)
        elif rel.endswith(".pt"):
            _same_torch_archive(a[rel], b[rel])
        elif rel.endswith((".tsv", ".json", ".csv")) and _same_text_but_workdir(a[rel], b[rel], slurm_dir, local_dir):
            path_columns[rel] = "text naming a file under the work dir (a ledger's unreadable image, ...)"
        else:
            pytest.fail(f"{rel} differs between the SLURM and the local run")
    print(f"byte-identical: {len(a) - len(differ)} files; equal up to the work dir in path columns: {path_columns}; "
          f"equal tensors, other archive name: {[r for r in differ if r.endswith('.pt')]}")

    # every job recorded its lineage, on the compute nodes too, and both results directories audit clean
    from instructx2x.provenance import audit, load_headers

    jobs = {d: sorted((h["rule"], h["key"]) for h in load_headers(d / "results")) for d in (slurm_dir, local_dir)}
    assert jobs[slurm_dir] == jobs[local_dir] and len(jobs[slurm_dir]) == n_jobs, jobs
    for d in (slurm_dir, local_dir):
        result = audit(d / "results")
        assert result["ok"], (d, result["problems"][:5])


# Files that legitimately differ between two work dirs:
# - provenance/invocations.tsv records each Snakemake command line, work dir and start time (by design).
# - tables with absolute paths (images.image_path, reports/studies.report_path, pairs.*_image_path,
#   registration.*_path, instructions.past_image/current_image, views_score's error message naming
#   the image file) hold each run's own work dir; with it replaced by a marker they must be equal.
# - torch.save names the zip archive's top folder after the file it writes to, and io.atomic_path
#   writes to `.<name>.<pid>` first, so a .pt differs in that folder name only: same members, same CRCs.
INVOCATIONS = "provenance/invocations.tsv"


def _same_table_but_workdir(pa: Path, pb: Path, wa: Path, wb: Path) -> list[str]:
    import pandas as pd

    ta, tb = pd.read_parquet(pa), pd.read_parquet(pb)
    assert list(ta.columns) == list(tb.columns) and len(ta) == len(tb), pa
    changed = []
    for col in ta.columns:
        if ta[col].equals(tb[col]):
            continue
        na = ta[col].astype("string").str.replace(str(wa), "<workdir>", regex=False)
        nb = tb[col].astype("string").str.replace(str(wb), "<workdir>", regex=False)
        assert na.equals(nb), f"{pa.name}: column {col} differs beyond the work dir"
        changed.append(col)
    assert changed, f"{pa.name}: equal as tables but not as bytes"
    return changed


def _same_torch_archive(pa: Path, pb: Path) -> None:
    import zipfile

    def members(p):
        with zipfile.ZipFile(p) as zf:
            return sorted((i.filename.split("/", 1)[1], i.CRC, i.file_size) for i in zf.infolist())

    assert members(pa) == members(pb), f"{pa.name}: tensors differ"
