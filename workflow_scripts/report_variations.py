"""Rule `report_variations`: severity/laterality variations of one input (the paper's Figure 4)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.evaluation.variations import variations_figure

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

variations_figure(
    snakemake.input.records, snakemake.input.model, snakemake.input.masks, snakemake.output.png,  # noqa: F821
    rse_cfg=snakemake.params.rse, masks_cfg=snakemake.params.masks, seed=snakemake.params.seed,  # noqa: F821
)
