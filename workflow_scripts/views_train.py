"""Rule `views_train`: train the tiny frontal-vs-lateral CNN on metadata view labels."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.views.classifier import train

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

train(
    snakemake.input.images,  # noqa: F821
    snakemake.output.model,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    epochs=snakemake.params.epochs,  # noqa: F821
    max_images=snakemake.params.max_images,  # noqa: F821
    folds=snakemake.params.folds,  # noqa: F821
)
