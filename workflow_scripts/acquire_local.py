"""Rule `local_manifest`: hash the tables of a local copy, list every other file."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.acquire.local_manifest import build_local_manifest

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

build_local_manifest(
    dict(snakemake.config),  # noqa: F821
    snakemake.output.manifest,  # noqa: F821
    snakemake.output.ledger,  # noqa: F821
    snakemake.output.counts,  # noqa: F821
)
