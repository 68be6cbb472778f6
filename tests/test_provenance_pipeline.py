"""Provenance of the real DAG, on fresh copies of the ONE shared finished small run (conftest.py).

- The finished run audits clean; every file under results/ (logs and benchmarks aside) is in the
  lineage, the report included; Snakemake's own ``--report`` shows the pseudo masks and the loss
  curve with their captions.
- Honest reruns leave a clean audit: a partial rerun (``rse.tau``), then ``--forcerun provenance``.
- Tampering is reported whatever runs after it: a registration PNG edited, an edited image deleted
  and the report edited; ``snakemake -n`` schedules the job that re-makes the deleted image; after
  the rerun (which re-makes the image and the report) the registration PNG is still reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from instructx2x.provenance import audit, load_headers
from test_workflow_reruns import downstream, dry_run, parse_job_stats, rulegraph  # noqa: F401 (rulegraph: a fixture)

pytestmark = pytest.mark.slow


def cli_audit(work: Path) -> tuple[int, dict]:
    """`instructx2x audit results --json` with the run copy's own code."""
    proc = subprocess.run([sys.executable, "-m", "instructx2x.cli", "audit", "results", "--json"], cwd=work,
                          capture_output=True, text=True, env={"PYTHONPATH": str(work / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout)


def problem_set(result: dict) -> set[tuple[str, str]]:
    return {(p["path"], p["problem"].split(":")[0].split(" (")[0]) for p in result["problems"]}


def run_ok(small_run, *args, configfiles=()) -> str:
    proc = small_run.run(*args, configfiles=configfiles)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    return text


def test_finished_run_audits_clean_with_every_file_in_the_lineage(small_run, rulegraph):
    work = small_run.fresh_copy()
    code, result = cli_audit(work)
    assert code == 0 and result["ok"], result["problems"][:10]
    # every job of the DAG recorded itself; the report and the checkpoints are in the lineage
    headers = load_headers(work / "results")
    assert {h["rule"] for h in headers} == set(rulegraph) - {"all"}
    report = next(h for h in headers if h["rule"] == "report")
    assert {o["path"] for o in report["outputs"]} == {"report/report.html", "report/index.html"}
    assert "provenance/audit.json" in {i["path"] for i in report["inputs"]}
    training = next(h for h in headers if h["rule"] == "training_train")
    assert any(o["kind"] == "manifest" for o in training["outputs"]) and training["n_files"] >= 2
    infer = [h for h in headers if h["rule"] == "infer"]
    assert all(any(o["kind"] == "dir" for o in h["outputs"]) for h in infer)  # a shard may have no pair
    assert sum(o["files"] for h in infer for o in h["outputs"] if o["kind"] == "dir") > 0
    # the pipeline's own audit (provenance rule, shown by the report) passed too
    in_run = json.loads((work / "results/provenance/audit.json").read_text())
    assert in_run["ok"] and in_run["deferred"] == [], in_run  # no report existed yet when it ran
    assert result["checked_outputs"] > 300 and result["checked_jobs"] == len(headers)

    # Snakemake's own report: pseudo masks and loss curve with their captions
    proc = small_run.run("--report", "snakemake_report.html", timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    html = (work / "snakemake_report.html").read_text()
    for name, caption, phrase in (("pseudo_masks.png", "masks_pseudo_masks.rst", "union of the MS-CXR bounding boxes"),
                                  ("loss_curve.png", "training_loss_curve.rst", "noise-prediction MSE per optimizer step")):
        assert phrase in (work / "docs" / caption).read_text()
        assert name in html and phrase in html, (name, caption)


def test_honest_reruns_leave_a_clean_audit(small_run):
    work = small_run.fresh_copy()
    tau = yaml.safe_load((work / "run_config.yaml").read_text())["rse"]["tau"]
    (work / "tau.yaml").write_text(yaml.safe_dump({"rse": {"tau": round(tau + 0.15, 3)}}))
    text = run_ok(small_run, configfiles=["tau.yaml"])
    assert {"infer", "report", "provenance"} <= set(parse_job_stats(text)), text[-3000:]
    code, result = cli_audit(work)
    assert code == 0, result["problems"][:10]
    assert json.loads((work / "results/provenance/audit.json").read_text())["ok"]

    text = run_ok(small_run, "--forcerun", "provenance", configfiles=["tau.yaml"])
    assert set(parse_job_stats(text)) == {"provenance", "report", "all"}, text[-3000:]
    code, result = cli_audit(work)
    assert code == 0, result["problems"][:10]
    in_run = json.loads((work / "results/provenance/audit.json").read_text())
    # the old report, made from the audit this job replaces, was left to the rerun that follows
    assert in_run["ok"] and in_run["deferred"] == ["report[all]"], in_run


def test_tampering_is_reported_until_its_own_rule_remakes_the_file(small_run, rulegraph):
    work = small_run.fresh_copy()
    results = work / "results"
    reg_png = sorted((results / "registration/images").rglob("*.png"))[0]
    with Image.open(reg_png) as im:
        im = im.copy()
    im.putpixel((0, 0), (im.getpixel((0, 0)) + 37) % 256 if im.mode == "L" else (1, 2, 3))
    im.save(reg_png)
    edited = sorted((results / "inference/images").glob("shard_*/rse/*_edited.png"))[0]
    edited.unlink()
    with open(results / "report/index.html", "a") as fh:
        fh.write("<!-- edited by hand -->\n")

    code, result = cli_audit(work)
    assert code == 1
    key = lambda p: str(p.relative_to(results))  # noqa: E731
    assert problem_set(result) == {(key(reg_png), "changed since its rule made it"),
                                   (key(edited), "missing"),
                                   ("report/index.html", "changed since its rule made it")}, result["problems"]
    by_path = {p["path"]: p for p in result["problems"]}
    assert by_path[key(reg_png)]["rule"] == "registration_shard" and by_path[key(edited)]["rule"] == "infer"

    # the deleted edit is scheduled for re-making, by its own shard, and what follows it
    jobs, reasons, _ = dry_run(small_run)
    assert set(jobs) == downstream(rulegraph, {"infer"}) and jobs["infer"] == 1, dict(jobs)
    assert "Params have changed" in reasons["infer"][0]

    # the rerun re-makes the image and the report: those are clean; the registration PNG is not
    run_ok(small_run)
    assert edited.exists()
    code, result = cli_audit(work)
    assert code == 1 and problem_set(result) == {(key(reg_png), "changed since its rule made it")}, result
    in_run = json.loads((results / "provenance/audit.json").read_text())
    assert [p["path"] for p in in_run["problems"]] == [key(reg_png)]
    assert dry_run(small_run)[0] == {}  # and nothing is left to do: no rerun loop
    assert not audit(results)["ok"]
