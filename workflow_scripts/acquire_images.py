"""Rule `physionet_images`: the images and reports the tables call for; the raw manifest."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.acquire.download import fetch_images

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

fetch_images(
    dict(snakemake.config),  # noqa: F821
    snakemake.params.raw_dir,  # noqa: F821
    tables_manifest=snakemake.input.tables,  # noqa: F821
    manifest_out=snakemake.output.manifest,  # noqa: F821
    summary_out=snakemake.output.summary,  # noqa: F821
    ledger_path=snakemake.output.ledger,  # noqa: F821
    counts_path=snakemake.output.counts,  # noqa: F821
)
