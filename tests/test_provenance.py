"""Lineage and audit on a small real Snakemake workflow (four rules, real job scripts, real records).

The workflow has the pipeline's layout: ``workflow_scripts/_job.py`` (the real one, copied) is the
first import of every script, ``src/`` is the repository's. One finished run is made per module and
copied per test. The end-to-end checks on the pipeline itself are in test_provenance_pipeline.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from instructx2x.cli import main as cli_main
from instructx2x.provenance import (
    audit,
    check_no_secrets,
    load_headers,
    scrub_argv,
    write_provenance,
)
from instructx2x.provenance.hashing import sha256_file

REPO = Path(__file__).resolve().parents[1]

SNAKEFILE = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, "src")
    from instructx2x.provenance.store import on_disk_param

    configfile: "config.yaml"
    RESULTS = "results"

    rule all:
        input: "results/b.txt", "results/c", "results/d.manifest.json"

    rule fetch:
        output: directory("results/raw/demo/physionet.org")
        params: code="ffffffffffff"
        script: "workflow_scripts/fetch.py"

    rule a:
        input: raw="results/raw/demo/physionet.org", ext=config["ext"]
        output: "results/a.txt"
        params: code="0123456789ab", token="hunter2-not-a-secret-name"
        script: "workflow_scripts/upper.py"

    rule b:
        input: "results/a.txt"
        output: "results/b.txt"
        params: code="bbbbbbbbbbbb"
        script: "workflow_scripts/rev.py"

    rule c:
        input: "results/a.txt"
        output: directory("results/c")
        params: code="cccccccccccc", on_disk=on_disk_param(workflow, RESULTS, "c")
        script: "workflow_scripts/split.py"

    rule e:  # not in `all`: writes its output, then fails
        output: "results/e.txt"
        params: code="eeeeeeeeeeee"
        script: "workflow_scripts/fail.py"

    rule d:
        input: "results/b.txt"
        output: "results/d.manifest.json"
        params: code="dddddddddddd"
        script: "workflow_scripts/scratch.py"
    """
)

SCRIPTS = {
    # like core.errors.report_stage_errors: the script installs its own excepthook
    "fail.py": "import sys\nfrom pathlib import Path\n"
               "sys.excepthook = lambda *exc: print('error: one line', file=sys.stderr)\n"
               "Path(snakemake.output[0]).write_text('complete but the job fails\\n')\n"
               "raise RuntimeError('failed after writing its output')\n",
    "fetch.py": "from pathlib import Path\n"
                "d = Path(snakemake.output[0]) / 'files/ms-cxr/1.1.0'; d.mkdir(parents=True)\n"
                "(d / 'x.csv').write_text('hello,world\\n')\n",
    "upper.py": "from pathlib import Path\n"
                "text = (Path(snakemake.input.raw) / 'files/ms-cxr/1.1.0/x.csv').read_text()\n"
                "Path(snakemake.output[0]).write_text(text.upper())\n",
    "rev.py": "from pathlib import Path\n"
              "Path(snakemake.output[0]).write_text(Path(snakemake.input[0]).read_text()[::-1])\n",
    "split.py": "from pathlib import Path\n"
                "out = Path(snakemake.output[0]); (out / 'sub').mkdir(parents=True)\n"
                "for i, ch in enumerate(Path(snakemake.input[0]).read_text()[:3]):\n"
                "    (out / ('sub' if i else '.') / f'{i}.txt').write_text(ch)\n",
    # files that cannot be outputs (like checkpoints) stand behind a manifest
    "scratch.py": "from pathlib import Path\n"
                  "from instructx2x.provenance.store import write_file_manifest\n"
                  "d = Path('results/scratch'); d.mkdir(exist_ok=True)\n"
                  "(d / 'state.bin').write_bytes(Path(snakemake.input[0]).read_bytes() * 2)\n"
                  "write_file_manifest(d, snakemake.output[0])\n",
}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args],
                          cwd=workdir, capture_output=True, text=True, env=env, timeout=300)


def run_ok(workdir: Path, *args: str) -> str:
    proc = snakemake(workdir, *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("lineage") / "pristine"
    (base / "workflow_scripts").mkdir(parents=True)
    shutil.copy2(REPO / "workflow_scripts" / "_job.py", base / "workflow_scripts" / "_job.py")
    os.symlink(REPO / "src", base / "src")
    for name, body in SCRIPTS.items():
        (base / "workflow_scripts" / name).write_text('"""test script"""\nimport _job  # noqa\n' + body)
    (base / "Snakefile").write_text(SNAKEFILE)
    ext = base.parent / "ext" / "settings.txt"  # an input outside the work dir (kept by absolute path)
    ext.parent.mkdir()
    ext.write_text("external input\n")
    (base / "config.yaml").write_text(f"results_dir: results\next: {ext}\n")
    run_ok(base, "all")
    return base


@pytest.fixture()
def work(finished, tmp_path) -> Path:
    dest = tmp_path / "work"
    shutil.copytree(finished, dest, symlinks=True)
    return dest


def records(workdir: Path) -> dict[str, dict]:
    return {h["rule"]: h for h in load_headers(workdir / "results")}


def problems(result: dict) -> set[tuple[str, str]]:
    return {(p["path"], p["problem"].split(":")[0].split(" (")[0]) for p in result["problems"]}


def test_each_job_records_inputs_outputs_code_and_environment(finished):
    recs = records(finished)
    assert set(recs) == {"fetch", "a", "b", "c", "d"}
    a, b, c, d = (recs[r] for r in "abcd")
    assert a["code_version"] == "0123456789ab" and a["params"]["token"] == "***"  # secret-looking names redacted
    out_a = {o["path"]: o for o in a["outputs"]}["a.txt"]
    assert out_a["sha256"] == sha256_file(finished / "results/a.txt")
    # b was made from exactly the a.txt that a recorded
    assert [(i["path"], i["sha256"]) for i in b["inputs"]] == [("a.txt", out_a["sha256"])]
    # inputs outside the results directory are kept by absolute path, raw files relative to it
    assert {i["path"] for i in a["inputs"]} == {"raw/demo/physionet.org", str(finished.parent / "ext/settings.txt")}
    # a directory output: its digest and every file inside; a manifest output: the files it lists
    assert {o["kind"] for o in c["outputs"]} == {"dir"} and c["n_files"] == 3
    assert d["outputs"][0]["kind"] == "manifest" and d["n_files"] == 1
    store = finished / "results/provenance/lineage"
    config = json.loads(next((store / "configs").glob("*.json")).read_text())
    packages = json.loads(next((store / "packages").glob("*.json")).read_text())
    assert config["results_dir"] == "results" and "snakemake" in packages["packages"]
    assert a["config_sha256"] == b["config_sha256"]


def test_audit_is_clean_after_the_run_and_names_each_change(finished, work, capsys):
    assert audit(work / "results")["ok"], audit(work / "results")["problems"]
    ext = finished.parent / "ext" / "settings.txt"  # shared with the other tests: restored below
    original = ext.read_text()
    try:
        _tamper_and_audit(work, ext, capsys)
    finally:
        ext.write_text(original)


def _tamper_and_audit(work, ext, capsys):
    (work / "results/b.txt").write_text("tampered\n")
    (work / "results/c/sub/1.txt").unlink()
    (work / "results/c/sub/new.txt").write_text("added inside a directory output\n")
    (work / "results/stray.txt").write_text("no rule made me\n")
    (work / "results/scratch/state.bin").write_bytes(b"edited checkpoint")
    ext.write_text("edited external input\n")
    result = audit(work / "results")
    assert not result["ok"] and result["verdict"] == "FAILED"
    found = problems(result)
    assert ("b.txt", "changed since its rule made it") in found
    assert ("c/sub/1.txt", "missing") in found
    assert ("c/sub/new.txt", "not in the lineage") in found
    assert ("stray.txt", "not in the lineage") in found
    assert ("scratch/state.bin", "changed since its rule made it") in found
    assert (str(ext), "input of a") in found
    assert len(found) == 6, result["problems"]  # d was made from b.txt as b made it: nothing to say about d
    changed = next(p for p in result["problems"] if p["path"] == "b.txt")
    assert changed["expected"] != changed["found"] == sha256_file(work / "results/b.txt")
    assert changed["rule"] == "b" and changed["when"].endswith("Z")

    # the command: verdict, table, exit 1; --json the same for scripts
    assert cli_main(["audit", str(work / "results")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("audit FAILED: 6 problem(s)")
    assert f"{work / 'results'}/stray.txt" in out and "changed since its rule made it" in out
    header = out.splitlines()[1].split()
    assert header == ["file", "expected", "found", "rule", "when", "problem"]
    assert cli_main(["audit", str(work / "results"), "--json"]) == 1
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["problems"] == result["problems"] and as_json["ok"] is False


def test_a_failed_job_records_nothing(work):
    proc = snakemake(work, "--", "results/e.txt")
    assert proc.returncode != 0 and "one line" in proc.stdout + proc.stderr
    assert not (work / "results/provenance/lineage/jobs/e").exists()
    assert "e" not in records(work)


@pytest.mark.slow
def test_a_rerun_never_launders_a_hand_edit(work):
    """a.txt edited by hand, then b re-run from it: a.txt is still reported (only rule a may
    re-record it) and b is flagged as made from an a.txt the lineage does not hold."""
    (work / "results/a.txt").write_text("EDITED BY HAND\n")
    run_ok(work, "--forcerun", "b", "--", "results/b.txt")
    found = problems(audit(work / "results"))
    assert ("a.txt", "changed since its rule made it") in found
    assert ("b.txt", "made from another version of a.txt than the lineage holds") in found
    # rule a re-makes it legitimately (and Snakemake re-makes what follows): clean again
    run_ok(work, "--forcerun", "a", "--", "all")
    result = audit(work / "results")
    assert result["ok"], result["problems"]


@pytest.mark.slow
def test_a_file_deleted_from_a_directory_output_reschedules_its_job(work):
    (work / "results/c/sub/2.txt").unlink()
    dry = run_ok(work, "-n", "all")
    assert "rule c:" in dry and "Params have changed" in dry, dry[-2000:]
    assert "rule a:" not in dry and "rule b:" not in dry
    run_ok(work, "all")
    assert (work / "results/c/sub/2.txt").exists()
    # the re-made job is up to date again (no rerun loop) and the audit is clean
    assert "Nothing to be done" in run_ok(work, "-n", "all")
    assert audit(work / "results")["ok"]


def test_provenance_bundle_tables_and_audit(work):
    """write_provenance: raw manifest with locations, the lineage table, the audit (its own outputs aside)."""
    results = work / "results"
    # raw files a download wrote (not outputs: the acquisition's manifest stands for them)
    raw = results / "raw/physionet/physionet.org/files/ms-cxr/1.1.0"
    raw.mkdir(parents=True)
    (raw / "y.csv").write_text("downloaded\n")
    manifest = pd.DataFrame([{"dataset": "ms_cxr", "path": "y.csv", "size": 11, "url": None, "fetched_at": None,
                              "sha256": sha256_file(raw / "y.csv")}])
    manifest.to_parquet(results / "raw/physionet_manifest.parquet")
    config = {"results_dir": "results", "seed": 1}
    roots = {"ms_cxr": "results/raw/physionet/physionet.org/files/ms-cxr/1.1.0"}
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = write_provenance(config, "results", "results/raw/physionet_manifest.parquet", roots, repo=work,
                                  own_outputs=[f"results/provenance/{n}" for n in OWN], raw_check="hash")
    finally:
        os.chdir(cwd)
    # the manifest itself was not made by a job of this workflow: named, everything else clean
    assert [p["path"] for p in result["problems"]] == ["raw/physionet_manifest.parquet"], result["problems"]
    assert result["checked_raw"] == 1
    located = pd.read_parquet(results / "provenance/raw_manifest.parquet")
    assert located["location"].tolist() == ["raw/physionet/physionet.org/files/ms-cxr/1.1.0/y.csv"]
    lineage = pd.read_parquet(results / "provenance/lineage.parquet")
    assert {"a.txt", "b.txt", "c", "c/0.txt", "c/sub/1.txt", "scratch/state.bin",
            "raw/demo/physionet.org/files/ms-cxr/1.1.0/x.csv"} <= set(lineage["path"])
    row = lineage.set_index("path").loc["b.txt"]
    assert row["rule"] == "b" and list(row["inputs"]) == ["a.txt"]
    # the raw file, checked through the raw manifest: by hash, or by size only
    own = {f"provenance/{n}" for n in OWN}  # written outside a job here: set aside as write_provenance does
    (raw / "y.csv").write_text("DOWNLOADED\n")
    assert ("raw/physionet/physionet.org/files/ms-cxr/1.1.0/y.csv", "raw file changed") in \
        problems(audit(results, exclude=own))
    assert audit(results, exclude=own, raw_check="size")["problems"] == result["problems"]  # same size: not seen
    (raw / "y.csv").unlink()
    assert ("raw/physionet/physionet.org/files/ms-cxr/1.1.0/y.csv", "raw file missing") in \
        problems(audit(results, exclude=own, raw_check="size"))


OWN = ("config.resolved.yaml", "versions.json", "git.json", "raw_manifest.parquet", "lineage.parquet", "audit.json")


def test_cannot_audit_exits_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "no_such_results"
    assert cli_main(["audit", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cannot audit {missing}: no such directory"
    (tmp_path / "empty").mkdir()
    assert cli_main(["audit", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot audit {tmp_path / 'empty'}: no lineage") and "\n" not in err


def test_secrets_never_recorded():
    assert "hunter2" not in scrub_argv(["snakemake", "--password", "hunter2", "--config", "token=hunter2"])
    with pytest.raises(ValueError, match="physionet.password"):
        check_no_secrets({"physionet": {"password": "hunter2"}})
    check_no_secrets({"physionet": {"base_url": "https://physionet.org/files/"}})
