"""Rule `training_prepare`: initial components (tiny preset + VAE pre-training, or pretrained)."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

import torch

from instructx2x.training.prepare import prepare

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821  (oversubscribed CPU threads are many times slower)

prepare(snakemake.input.instructions, snakemake.output.init, dict(snakemake.params.model),  # noqa: F821
        int(snakemake.params.seed), int(snakemake.params.resolution))  # noqa: F821
