"""Rule `registration_gather`: the shard tables -> registration.parquet (+ ledger of failures)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.registration.stage import gather

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

gather(
    list(snakemake.input.shards),  # noqa: F821
    snakemake.output.table,  # noqa: F821
    ledger_path=snakemake.output.ledger,  # noqa: F821
    counts_path=snakemake.output.counts,  # noqa: F821
)
