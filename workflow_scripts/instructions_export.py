"""Rule `instructions_export`: the authors' layout (instructions.csv + past/ + current/, holdout/, README.md)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.instructions.build import export_authors_layout

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

counts = export_authors_layout(snakemake.input.instructions, snakemake.output[0])  # noqa: F821
logging.info("exported rows per split: %s", counts)
