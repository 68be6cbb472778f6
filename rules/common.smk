# Shared helpers of the rule files (validated config, result paths, code versions).
# Everything that computes is in the instructx2x package; this file only wires paths.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from instructx2x.core.config import validate_config
from instructx2x.core.codeversion import code_version
from instructx2x.acquire import sources
from instructx2x.provenance.store import on_disk_param

validate_config(config)

RESULTS = config["results_dir"]
RAW_DIR = str(sources.raw_dir(config))
RAW_MANIFEST = str(sources.raw_manifest_path(config))
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

# Each rule file appends the final outputs of its stage; `rule all` requests them.
ALL_TARGETS = []


def results(path):
    """A path under the results directory."""
    return f"{RESULTS}/{path}"


def on_disk(rule_name):
    """Param ``on_disk`` of a job with directory outputs: Snakemake does not look inside a
    directory output, so this value changes when a file the job's lineage record lists there is
    missing, and the job is re-made (instructx2x.provenance.store.outputs_on_disk)."""
    return on_disk_param(workflow, RESULTS, rule_name)

# Each rule file appends the ledger files (results/ledger/<stage>.tsv) its rules write; the
# `ledger` rule merges them into one table a person can read.
LEDGERS = []


# Input functions of the stage rules (kept here so rule files hold rules only; they read the
# stage constants defined in each rule file, at DAG-building time).
def _views_score_inputs(wildcards):
    inputs = {"images": results("tables/images.parquet")}
    if VIEWS_CFG["backend"] == "trained":
        inputs["model"] = results("views/view_model.pt")
    return inputs


def _produced(path):
    return any(path in [str(f) for f in r.output] for r in workflow.rules)


def _report_inputs(wildcards):
    inputs = {"metrics": EVAL_METRICS, "records": INFER_RECORDS, "variations": results("report/variations.png")}
    inputs.update({k: p for k, p in REPORT_OPTIONAL.items() if _produced(p)})
    inputs["counts"] = [p.replace(".tsv", ".counts.tsv") for p in LEDGERS if _produced(p.replace(".tsv", ".counts.tsv"))]
    return inputs


def provenance_inputs(wildcards):
    """Every final output of the DAG except the report, which itself shows the audit."""
    return [t for t in ALL_TARGETS if not t.startswith(results("report/")) and t not in PROVENANCE_FILES]


def _evaluation_inputs(wildcards):
    inputs = {"records": INFER_RECORDS, "tables": EVAL_TABLES}
    if EVAL["backend"] == "trained":
        inputs["model"] = results("evaluation/trained_evaluator.pt")
        inputs["info"] = results("evaluation/trained_evaluator.json")
    return inputs
