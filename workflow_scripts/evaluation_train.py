"""Rule `evaluation_train`: the trained evaluator backend (small CNN on the train split's real images)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.evaluation.evaluators import train_evaluator

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

studies, patients, admissions = snakemake.input.tables  # noqa: F821
train_evaluator(
    snakemake.input.instructions, studies, patients, admissions,  # noqa: F821
    snakemake.output.model, snakemake.output.info,  # noqa: F821
    seed=snakemake.params.seed, epochs=snakemake.params.epochs,  # noqa: F821
    max_images=snakemake.params.max_images, **snakemake.params.labels,  # noqa: F821
)
