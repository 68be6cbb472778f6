"""Rule `training_train`: Lightning fine-tuning (auto resume from last.ckpt) and diffusers export."""
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

import torch

from instructx2x.training.train import train

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821  (oversubscribed CPU threads are many times slower)

train(snakemake.input.init, snakemake.input.latents, snakemake.params.out_dir,  # noqa: F821
      dict(snakemake.params.training), int(snakemake.params.seed))  # noqa: F821
