"""Rule `pairs`: difference rows -> pairs with one PA image per side."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.pairs import build_pairs

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

build_pairs(
    snakemake.input.vqa,  # noqa: F821
    snakemake.input.images,  # noqa: F821
    snakemake.input.pa,  # noqa: F821
    snakemake.output.pairs,  # noqa: F821
    require_chronological=snakemake.params.require_chronological,  # noqa: F821
    ledger_path=snakemake.output.ledger,  # noqa: F821
    counts_path=snakemake.output.counts,  # noqa: F821
)
