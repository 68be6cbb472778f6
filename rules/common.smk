# Shared helpers for every rule file: validated config, result paths, code versions.
# Everything that computes is in the instructx2x package; this file only wires paths.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from instructx2x.config import validate_config
from instructx2x.codeversion import code_version
from instructx2x import sources

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

# Each rule file appends the ledger files (results/ledger/<stage>.tsv) its rules write; the
# `ledger` rule merges them into one table a person can read.
LEDGERS = []
