"""Rule `registration_montage`: QA grid of kept and rejected pairs."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.registration.montage import montage

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

montage(
    snakemake.input.table,  # noqa: F821
    snakemake.input.fates,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    per_group=snakemake.params.per_group,  # noqa: F821
)
