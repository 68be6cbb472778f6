"""Faults: the whole Snakemake process group SIGKILLed in the middle of a job, then the same command again.

Each scenario starts from a fresh copy of the finished small demo run (``small_run`` in
conftest.py), makes one stage out of date the way a user would (a library edit, a config change),
starts Snakemake in its own session and, as soon as the job is provably *running* (a file it
writes appears, newer than the start), kills the process group with SIGKILL. Then the same command
(with ``--rerun-incomplete``, as both profiles set) is run again: it must complete, re-make the
killed job's outputs (Snakemake had marked them incomplete; a partial output is never taken as a
result), and give tables byte-identical to those of the uninterrupted run.

A kill -9 also leaves Snakemake's directory lock behind: the next run stops with a LockException
until ``snakemake --unlock`` (what a person does after a crash); the tests accept exactly that.
"""

from __future__ import annotations

import io
import math
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import stop_snakemake

REG_TARGET = ["results/instructions/instructions.parquet"]
TRAIN_TARGET = ["results/model/pipeline", "results/model/metrics.csv", "results/model/loss_curve.png"]
KILL_WAIT_S = 300


def simulate_code_edit(path: Path) -> None:
    with open(path, "a") as fh:
        fh.write("\n# simulated code edit (tests/test_faults.py): changes the code version, not the results\n")


def mtime(path: Path) -> float:
    """The file's mtime, or -inf when it is gone: Snakemake may remove an old output between a glob and a stat."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("-inf")


def kill_when_running(proc, is_running, what: str, timeout: float = KILL_WAIT_S) -> float:
    """Poll ``is_running()``; when true SIGKILL Snakemake's whole process group. Returns the kill time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Snakemake ended (rc {proc.returncode}) before {what} was seen running")
        if is_running():
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = time.time()
            proc.wait()
            # nothing of the group survives (jobs run in Snakemake's process group)
            for _ in range(100):
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("processes of the killed Snakemake group are still alive")
            return killed_at
        time.sleep(0.02)
    stop_snakemake(proc)
    pytest.fail(f"{what} not seen running within {timeout} s")


def rerun_after_kill(small_run, targets, configfiles=()):
    """The same command again; a stale lock of the killed run is removed with --unlock, as a person would."""
    proc = small_run.run("--rerun-incomplete", "--", *targets, configfiles=configfiles)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        assert "LockException" in text and "--unlock" in text, text[-4000:]
        unlock = small_run.run("--unlock", configfiles=configfiles)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        proc = small_run.run("--rerun-incomplete", "--", *targets, configfiles=configfiles)
        text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-6000:]
    return text


def assert_up_to_date(small_run, targets, configfiles=()):
    proc = small_run.run("-n", "--", *targets, configfiles=configfiles)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def same_bytes(work: Path, pristine: Path, rels) -> dict[str, bool]:
    return {rel: (work / rel).read_bytes() == (pristine / rel).read_bytes() for rel in rels}


def tree_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(results: Path) -> list[str]:
    return sorted(p.relative_to(results).as_posix() for p in results.rglob("*")
                  if p.is_file() and (p.name.endswith((".tmp", ".part")) or ".tmp." in p.name))


# --- registration -------------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_during_registration_shard_then_rerun_gives_identical_tables(small_run):
    work = small_run.fresh_copy()
    results, pristine = work / "results", small_run.pristine / "results"
    shards = yaml.safe_load((work / "run_config.yaml").read_text())["registration"]["shards"]
    simulate_code_edit(work / "src/instructx2x/registration/stage.py")  # registration is out of date
    t0 = time.time()
    proc = small_run.popen("--rerun-incomplete", "--", *REG_TARGET)

    def shard_running():
        # a shard job is running: it has written a pair's PNGs (newer than the start) and not yet its table
        # (Snakemake removed the old outputs before starting the job)
        for s in range(shards):
            pngs = list((results / f"registration/images/shard_{s}").glob("*.png"))
            if any(mtime(p) > t0 for p in pngs) and not (results / f"registration/shards/shard_{s}.parquet").exists():
                return True
        return False

    killed_at = kill_when_running(proc, shard_running, "a registration_shard job")
    # the killed jobs left partial outputs: no shard table, and Snakemake's incomplete markers
    missing = [s for s in range(shards) if not (results / f"registration/shards/shard_{s}.parquet").exists()]
    assert missing, "no shard was interrupted"
    assert any((work / ".snakemake/incomplete").iterdir())
    # a run that does not re-run incomplete jobs refuses to take the partial shard directories as outputs
    check = small_run.run("-n", "--", *REG_TARGET)
    assert check.returncode != 0 and "IncompleteFilesException" in check.stdout + check.stderr
    assert "registration/images/shard_" in check.stdout + check.stderr

    text = rerun_after_kill(small_run, REG_TARGET)
    assert "registration_shard" in text
    for s in missing:  # the interrupted shards were re-made
        assert (results / f"registration/shards/shard_{s}.parquet").stat().st_mtime > killed_at
    rels = [f"registration/shards/shard_{s}.parquet" for s in range(shards)] + [
        "registration/registration.parquet", "registration/accepted_pairs.parquet", "registration/pair_fates.parquet",
        "instructions/instructions.parquet", "instructions/table1.csv", "ledger/registration.tsv",
        "ledger/registration_gate.tsv"]
    same = same_bytes(results, pristine, rels)
    assert all(same.values()), same
    for s in range(shards):  # the aligned PNGs too: same names, same bytes, nothing extra
        a, b = tree_files(results / f"registration/images/shard_{s}"), tree_files(pristine / f"registration/images/shard_{s}")
        assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), s
    assert not [p for p in leftovers(results) if p.startswith("registration/images/")]
    assert not list((work / ".snakemake/incomplete").iterdir())
    assert_up_to_date(small_run, REG_TARGET)


# --- training -----------------------------------------------------------------------------------

def steps_per_epoch(work: Path) -> int:
    config = yaml.safe_load((work / "run_config.yaml").read_text())["training"]
    n_train = int((pd.read_parquet(work / "results/instructions/instructions.parquet")["split"] == "train").sum())
    return math.ceil(n_train * config["latent_copies"] / (config["batch_size"] * config["gradient_accumulation"]))


def _train_kill_resume(small_run, *, checkpoint_every=None, code_edit=False) -> dict:
    """Training made out of date, killed right after its first checkpoint, then run again."""
    work = small_run.fresh_copy()
    results = work / "results"
    configfiles = []
    if checkpoint_every is not None:
        (work / "checkpoints.yaml").write_text(yaml.safe_dump({"training": {"checkpoint_every": checkpoint_every}}))
        configfiles = ["checkpoints.yaml"]
    if code_edit:
        simulate_code_edit(work / "src/instructx2x/training/module.py")
    config = yaml.safe_load((work / "run_config.yaml").read_text())["training"]
    every = checkpoint_every or config["checkpoint_every"]
    ckpt_dir = results / "model/checkpoints"
    t0 = time.time()
    proc = small_run.popen("--rerun-incomplete", "--", *TRAIN_TARGET, configfiles=configfiles)

    def first_checkpoint_written():
        last = ckpt_dir / "last.ckpt"
        return mtime(last) > t0 and (ckpt_dir / f"step{every:07d}.ckpt").exists()

    kill_when_running(proc, first_checkpoint_written, "training_train past its first checkpoint")
    killed_log = (results / "logs/training_train.log").read_text(errors="replace")
    partial = {rel: (results / rel).exists() for rel in ("model/pipeline", "model/metrics.csv", "model/loss_curve.png")}
    check = small_run.run("-n", "--", *TRAIN_TARGET, configfiles=configfiles)
    text = rerun_after_kill(small_run, TRAIN_TARGET, configfiles)
    return {
        "work": work, "every": every, "steps": config["steps"], "killed_log": killed_log, "partial": partial,
        "check": check, "rerun_text": text,
        "resumed_log": (results / "logs/training_train.log").read_text(errors="replace"),
        "pipeline": tree_files(results / "model/pipeline"),
        "pristine_pipeline": tree_files(small_run.pristine / "results/model/pipeline"),
        "metrics": (results / "model/metrics.csv").read_bytes(),
        "pristine_metrics": (small_run.pristine / "results/model/metrics.csv").read_bytes(),
        "up_to_date": small_run.run("-n", "--", *TRAIN_TARGET, configfiles=configfiles),
    }


def _training_settings(small_run) -> tuple[int, int, int]:
    """(steps per epoch, checkpoint_every, steps) of the small run."""
    config = yaml.safe_load((small_run.pristine / "run_config.yaml").read_text())["training"]
    return steps_per_epoch(small_run.pristine), config["checkpoint_every"], config["steps"]


@pytest.fixture(scope="module")
def training_mid_epoch(small_run):
    """A library edit re-runs training; checkpoints at a step inside an epoch (the small run's
    `checkpoint_every` unless that is an epoch end for its split sizes); killed after the first."""
    spe, default, steps = _training_settings(small_run)
    every = next((k for k in range(default, steps) if k % spe), None)
    if every is None:
        pytest.skip(f"{spe} steps per epoch: no mid-epoch step between {default} and the last step {steps}")
    out = _train_kill_resume(small_run, checkpoint_every=None if every == default else every, code_edit=True)
    out["mid_epoch"] = every % spe != 0
    return out


@pytest.fixture(scope="module")
def training_epoch_end(small_run):
    """Checkpoints every k epochs (a config change, which also re-runs training; a library edit too when
    k epochs happen to be the small run's own `checkpoint_every`); killed after the first."""
    spe, default, steps = _training_settings(small_run)
    every = spe * math.ceil(20 / spe)
    if every >= steps:
        pytest.skip(f"{spe} steps per epoch: no epoch-end checkpoint before the last step")
    return _train_kill_resume(small_run, checkpoint_every=every, code_edit=every == default)


def _check_resumed(run: dict) -> None:
    # the killed job's outputs had been removed before it started and were never half-written in place
    assert not any(run["partial"].values()), run["partial"]
    # ... so a plain dry run just schedules the job again (nothing of it counts as an output)
    check = run["check"].stdout + run["check"].stderr
    assert run["check"].returncode == 0 and "training_train" in check and "Missing output files" in check, check[-3000:]
    assert "resuming from" not in run["killed_log"]
    assert "resuming from" in run["resumed_log"] and "training_train" in run["rerun_text"]
    m = pd.read_csv(io.BytesIO(run["metrics"]))
    assert m["step"].tolist() == list(range(run["steps"])) and m["optimizer_steps"].iloc[-1] == run["steps"] - 1
    assert run["up_to_date"].returncode == 0 and "Nothing to be done" in run["up_to_date"].stdout


@pytest.mark.slow
def test_kill_during_training_mid_epoch_resumes_from_the_checkpoint(training_mid_epoch):
    run = training_mid_epoch
    _check_resumed(run)
    # the code edit made the old run's checkpoints (same settings, same inputs) stale: removed, not resumed
    assert "belong to another run: removed" in run["killed_log"], run["killed_log"][-3000:]
    # every row logged before the checkpoint is the uninterrupted run's
    rows, pristine_rows = run["metrics"].decode().splitlines(), run["pristine_metrics"].decode().splitlines()
    assert rows[: run["every"] + 1] == pristine_rows[: run["every"] + 1]
    assert run["pipeline"].keys() == run["pristine_pipeline"].keys()


@pytest.mark.slow
def test_training_resumed_mid_epoch_equals_the_uninterrupted_run(training_mid_epoch):
    run = training_mid_epoch
    assert run["mid_epoch"], "the fixture's checkpoint step falls on an epoch end: this test checks nothing new"
    assert run["pipeline"].keys() == run["pristine_pipeline"].keys()
    same = {k: run["pipeline"][k] == run["pristine_pipeline"][k] for k in run["pipeline"]}
    assert all(same.values()), same


@pytest.mark.slow
def test_kill_during_training_at_epoch_end_gives_the_identical_model(training_epoch_end):
    run = training_epoch_end
    _check_resumed(run)
    # the exported pipeline (EMA UNet weights and all) is byte-identical to the uninterrupted run's
    assert run["pipeline"].keys() == run["pristine_pipeline"].keys()
    same = {k: run["pipeline"][k] == run["pristine_pipeline"][k] for k in run["pipeline"]}
    assert all(same.values()), same
    m = pd.read_csv(io.BytesIO(run["metrics"]))
    p = pd.read_csv(io.BytesIO(run["pristine_metrics"]))
    pd.testing.assert_frame_equal(m.drop(columns="val_loss"), p.drop(columns="val_loss"))


@pytest.mark.slow
def test_training_resumed_at_epoch_end_has_identical_metrics_csv(training_epoch_end):
    assert training_epoch_end["metrics"] == training_epoch_end["pristine_metrics"]
