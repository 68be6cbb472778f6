"""Rule `views_score`: frontal-vs-lateral classifier scores per image (cached)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import os
import sys

from instructx2x.views.score import score_views

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

weights_dir = snakemake.params.weights_dir or os.path.expanduser("~/.torchxrayvision/models_data")  # noqa: F821
score_views(
    snakemake.input.images,  # noqa: F821
    snakemake.output.scores,  # noqa: F821
    snakemake.params.backend,  # noqa: F821
    weights_dir=weights_dir,
    model_path=snakemake.input.get("model"),  # noqa: F821
    batch_size=snakemake.params.batch_size,  # noqa: F821
)
