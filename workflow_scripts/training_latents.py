"""Rule `training_latents`: the frozen VAE's latents of (augmented copies of) train/val pairs."""
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

import torch

from instructx2x.core.ledger import Ledger
from instructx2x.training.latents import cache_latents

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821  (oversubscribed CPU threads are many times slower)

ledger = Ledger("training")
p = snakemake.params  # noqa: F821
cache_latents(snakemake.input.instructions, snakemake.input.init, snakemake.output.latents,  # noqa: F821
              list(p.splits), int(p.copies), int(p.resolution), int(p.seed), dict(p.augment), ledger=ledger)
ledger.write(snakemake.output.ledger, snakemake.output.counts)  # noqa: F821
