"""Rule `training_train`: Lightning fine-tuning (auto resume from last.ckpt) and diffusers export."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys
from pathlib import Path

import torch

from instructx2x.provenance.store import is_rank_zero, write_file_manifest
from instructx2x.training.train import train

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821  (oversubscribed CPU threads are many times slower)

train(snakemake.input.init, snakemake.input.latents, snakemake.params.out_dir,  # noqa: F821
      dict(snakemake.params.training), int(snakemake.params.seed))  # noqa: F821
if is_rank_zero():  # the checkpoints (resume state, not an output) listed with their SHA-256 for the lineage
    write_file_manifest(Path(snakemake.params.out_dir) / "checkpoints", snakemake.output.checkpoints)  # noqa: F821
