"""Rule `inference_records`: join the shard tables into records.parquet and write the ledger."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.inference.shards import merge_records

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

merge_records(
    snakemake.input.shards,  # noqa: F821
    snakemake.output.records,  # noqa: F821
    snakemake.output.ledger,  # noqa: F821
    snakemake.output.counts,  # noqa: F821
)
