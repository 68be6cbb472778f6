"""Rule `instructions_operations`: parse every difference answer into operations."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.instructions.build import build_operations

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

df = build_operations(
    snakemake.input.vqa,  # noqa: F821
    snakemake.input.diseases,  # noqa: F821
    snakemake.input.reports,  # noqa: F821
    snakemake.output.operations,  # noqa: F821
    snakemake.output.ledger,  # noqa: F821
    snakemake.output.counts,  # noqa: F821
    settings=dict(snakemake.params.settings),  # noqa: F821
)
logging.info("pairs: %d; status: %s", len(df), df["status"].value_counts().to_dict())
