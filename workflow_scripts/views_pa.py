"""Rule `views_pa`: the PA decision (metadata PA and classifier not lateral)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.views.decide import decide_pa

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

decide_pa(
    snakemake.input.images,  # noqa: F821
    snakemake.input.scores,  # noqa: F821
    snakemake.output.pa,  # noqa: F821
    lateral_threshold=snakemake.params.lateral_threshold,  # noqa: F821
    use_procedure=snakemake.params.use_procedure,  # noqa: F821
    ledger_path=snakemake.output.ledger,  # noqa: F821
    counts_path=snakemake.output.counts,  # noqa: F821
)
