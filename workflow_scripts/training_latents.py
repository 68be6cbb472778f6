"""Rule `training_latents`: index.json over the latent jobs' shards, and the ledger of unreadable pairs."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import json
import logging
import sys

from instructx2x.core.ledger import Ledger
from instructx2x.training.latents import write_index

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

ledger = Ledger("training")
manifests = [json.loads(open(m).read()) for m in snakemake.input.manifests]  # noqa: F821
write_index(manifests, snakemake.output.latents, ledger)  # noqa: F821
ledger.write(snakemake.output.ledger, snakemake.output.counts)  # noqa: F821
