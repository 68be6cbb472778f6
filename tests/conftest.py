"""Shared fixtures. The synthetic demo dataset is generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """A small synthetic dataset (16 patients, seed 7), generated once per test session.

    Returns OUT_DIR: ``OUT_DIR/physionet.org/files/<slug>/<version>/...`` (PhysioNet layout),
    ``OUT_DIR/ground_truth/*.parquet`` (see docs/synthetic.md) and ``OUT_DIR/demo_manifest.parquet``.
    """
    from instructx2x.synthetic.generate import generate_dataset

    out = tmp_path_factory.mktemp("demo_dataset")
    generate_dataset(out, patients=16, seed=7, manifest_path=out / "demo_manifest.parquet")
    return out


# --- One small complete run of the whole DAG, shared by test_workflow_reruns.py and test_faults.py ---
# The workflow (Snakefile, rules, scripts, library source, schemas, envs, docs) is copied into the
# run directory and PYTHONPATH points at the copy's src/, so code versions and the code the jobs
# run are those of the copy (a test may edit them) and edits in the checkout during the session do
# not leak in. The run is built in BASE/work and then renamed BASE/pristine; each test gets a fresh
# copy at BASE/work again, so the absolute paths the tables hold stay valid and tables of a
# re-run can be compared byte for byte with the pristine ones.

import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import yaml  # noqa: E402


SMALL_RUN_OVERRIDES = {
    "demo": {"patients": 12},
    "model": {"tiny": {"vae_steps": 20}},
    "training": {"steps": 60, "checkpoint_every": 20, "batch_size": 4, "latent_copies": 1},
    "rse": {"steps": 2},
    "views": {"train_epochs": 2},
    "evaluation": {"bootstrap": 10, "train_epochs": 2},
    "report": {"gallery_pairs": 2},
}
SMALL_RUN_FILES = ("Snakefile", "config.yaml", "rules", "workflow_scripts", "src", "schemas", "envs", "docs")
SMALL_RUN_CONFIG = "run_config.yaml"
SMALL_RUN_TIMEOUT_S = 900


def _deep_update(base: dict, update: dict) -> dict:
    for k, v in update.items():
        base[k] = _deep_update(dict(base.get(k) or {}), v) if isinstance(v, dict) else v
    return base


class SmallRun:
    """A finished small demo run (``pristine``) and helpers to run Snakemake in a fresh copy of it."""

    def __init__(self, base: Path):
        self.base = base
        self.pristine = base / "pristine"
        self.work = base / "work"
        self.build_s = None

    # -- directories -------------------------------------------------------------------------
    def fresh_copy(self) -> Path:
        """``BASE/work``: a new copy of the finished run (metadata, mtimes and all)."""
        if self.work.exists():
            shutil.rmtree(self.work)
        shutil.copytree(self.pristine, self.work, symlinks=True)
        return self.work

    # -- Snakemake ---------------------------------------------------------------------------
    def command(self, *args: str, configfiles=()) -> list[str]:
        snakemake = str(Path(sys.executable).parent / "snakemake")
        return ["nice", "-n", "5", snakemake, "-s", "Snakefile", "--configfile", SMALL_RUN_CONFIG,
                *[str(c) for c in configfiles], "--cores", "2", *args]

    def env(self, workdir: Path | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHYSIONET_")}
        env["PYTHONPATH"] = str((workdir or self.work) / "src")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *args: str, configfiles=(), workdir: Path | None = None, timeout: float = SMALL_RUN_TIMEOUT_S):
        workdir = workdir or self.work
        return subprocess.run(self.command(*args, configfiles=configfiles), cwd=workdir, env=self.env(workdir),
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, configfiles=(), out_name: str = "snakemake.out") -> subprocess.Popen:
        """Snakemake in its own session (process group = its pid), output to ``work/<out_name>``."""
        out = open(self.work / out_name, "w")
        try:
            return subprocess.Popen(self.command(*args, configfiles=configfiles), cwd=self.work, env=self.env(),
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()


def stop_snakemake(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Interrupt a Snakemake started by SmallRun.popen and all its jobs (SIGINT, SIGKILL as a last resort)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> SmallRun:
    """The whole demo DAG on a small config (12 patients, 60 training steps, 2 DDIM steps), run once."""
    run = SmallRun(tmp_path_factory.mktemp("small_run"))
    run.work.mkdir()
    for name in SMALL_RUN_FILES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, run.work / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "img"))
        else:
            shutil.copy2(src, run.work / name)
    with open(REPO_ROOT / "config.yaml") as fh:
        config = _deep_update(yaml.safe_load(fh), SMALL_RUN_OVERRIDES)
    config["results_dir"] = "results"
    (run.work / SMALL_RUN_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    t0 = time.monotonic()
    proc = run.run()
    run.build_s = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    os.rename(run.work, run.pristine)
    return run
