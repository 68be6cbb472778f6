"""Provenance and audit on a small real Snakemake run (not the pipeline: a two-rule workflow)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from instructx2x.provenance import (
    audit,
    check_no_secrets,
    collect_lineage,
    scrub_argv,
    write_provenance,
)
from instructx2x.cli import main as cli_main

SNAKEFILE = textwrap.dedent(
    """
    rule all:
        input: "results/b.txt", "results/c"

    rule a:
        input: "results/raw/demo/physionet.org/files/ms-cxr/1.1.0/x.csv"
        output: "results/a.txt"
        params: code="0123456789ab"
        shell: "tr a-z A-Z < {input} > {output}"

    rule b:
        input: "results/a.txt"
        output: "results/b.txt"
        shell: "rev {input} > {output}"

    rule c:
        input: "results/a.txt"
        output: directory("results/c")
        shell: "mkdir -p {output} && cp {input} {output}/one.txt"
    """
)


@pytest.fixture()
def small_run(tmp_path: Path):
    raw = tmp_path / "results/raw/demo/physionet.org/files/ms-cxr/1.1.0"
    raw.mkdir(parents=True)
    (raw / "x.csv").write_text("hello,world\n")
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "all"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    from instructx2x.provenance import sha256_file

    manifest = pd.DataFrame(
        [{"dataset": "ms_cxr", "path": "x.csv", "sha256": sha256_file(raw / "x.csv"), "size": 12,
          "url": "https://physionet.org/files/ms-cxr/1.1.0/x.csv", "fetched_at": None}]
    )
    manifest_path = tmp_path / "results/raw/demo_manifest.parquet"
    manifest.to_parquet(manifest_path)
    config = {
        "source": "demo", "results_dir": "results", "seed": 1,
        "datasets": {"ms_cxr": {"slug": "ms-cxr", "version": "1.1.0", "root": None}},
    }
    return tmp_path, config, manifest_path


def test_lineage_records_rule_inputs_and_hashes(small_run):
    workdir, _config, _manifest = small_run
    lineage = collect_lineage(workdir / "results", workdir).set_index("path")
    assert lineage.loc["results/b.txt", "rule"] == "b"
    assert list(lineage.loc["results/b.txt", "inputs"]) == ["results/a.txt"]
    assert lineage.loc["results/a.txt", "code_version"] == "0123456789ab"
    # a file inside a directory output is attributed to the directory's rule
    assert lineage.loc["results/c/one.txt", "rule"] == "c"


def test_audit_passes_then_names_changed_and_missing_files(small_run, capsys):
    workdir, config, manifest = small_run
    result = write_provenance(config, workdir / "results", manifest, repo=workdir, workdir=workdir)
    assert result["ok"], result["problems"]
    assert (workdir / "results/provenance/audit.json").exists()

    (workdir / "results/b.txt").write_text("tampered\n")
    (workdir / "results/c/one.txt").unlink()
    (workdir / "results/raw/demo/physionet.org/files/ms-cxr/1.1.0/x.csv").write_text("changed\n")
    result = audit(workdir / "results", workdir=workdir)
    problems = {(p["path"], p["problem"]) for p in result["problems"]}
    assert ("results/b.txt", "output changed (SHA-256 differs)") in problems
    assert ("results/c/one.txt", "output missing") in problems
    assert any("x.csv" in p and "raw file changed" in q for p, q in problems)

    status = cli_main(["audit", str(workdir / "results"), "--workdir", str(workdir)])
    assert status == 1
    assert "results/b.txt" in capsys.readouterr().err


def test_untraced_input_is_reported(small_run):
    workdir, config, manifest = small_run
    write_provenance(config, workdir / "results", manifest, repo=workdir, workdir=workdir)
    lineage_path = workdir / "results/provenance/lineage.parquet"
    lineage = pd.read_parquet(lineage_path)
    lineage.loc[lineage.path == "results/b.txt", "inputs"] = pd.Series([["results/nowhere.txt"]] * 1, index=lineage.index[lineage.path == "results/b.txt"])
    lineage.to_parquet(lineage_path)
    result = audit(workdir / "results", workdir=workdir)
    assert not result["ok"]
    assert any("results/nowhere.txt" in p["problem"] for p in result["problems"])


def test_secrets_never_recorded():
    assert "hunter2" not in scrub_argv(["snakemake", "--password", "hunter2", "--config", "token=hunter2"])
    with pytest.raises(ValueError, match="physionet.password"):
        check_no_secrets({"physionet": {"password": "hunter2"}})
    check_no_secrets({"physionet": {"base_url": "https://physionet.org/files/"}})
