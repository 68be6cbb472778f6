"""Rule `masks`: pseudo masks from the MS-CXR boxes of PA images."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys
from pathlib import Path

from instructx2x.masks import run_masks

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

run_masks(
    snakemake.input.boxes,  # noqa: F821
    snakemake.input.pa_images,  # noqa: F821
    snakemake.params.resolution,  # noqa: F821
    snakemake.output.npz,  # noqa: F821
    Path(snakemake.output.npz).parent,  # noqa: F821  (the PNGs sit beside the npz)
    snakemake.output.figure,  # noqa: F821
    snakemake.output.ledger,  # noqa: F821
    snakemake.output.counts,  # noqa: F821
)
