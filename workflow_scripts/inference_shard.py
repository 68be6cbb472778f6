"""Rule `infer`: edit one shard of the test/holdout pairs in every mode."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.inference.shards import run_shard

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

run_shard(
    snakemake.input.instructions,  # noqa: F821
    snakemake.input.model,  # noqa: F821
    snakemake.input.masks,  # noqa: F821
    dict(zip(snakemake.params.modes, snakemake.output.shards)),  # noqa: F821
    snakemake.output.images,  # noqa: F821  (inference/images/shard_<k>/; images go to <mode>/ inside)
    int(snakemake.wildcards.shard),  # noqa: F821
    snakemake.params.n_shards,  # noqa: F821
    dict(snakemake.params.rse),  # noqa: F821
    dict(snakemake.params.masks),  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
    splits=snakemake.params.splits,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    device="cuda" if snakemake.resources.get("gpu", 0) else "cpu",  # noqa: F821
)
