"""Rule `physionet_tables`: SHA256SUMS.txt of each project, then the tables (credentials from env/netrc)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.acquire.download import fetch_tables

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

fetch_tables(dict(snakemake.config), snakemake.params.raw_dir, snakemake.output.manifest)  # noqa: F821
