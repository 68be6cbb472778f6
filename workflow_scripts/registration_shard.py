"""Rule `registration_shard`: register the pairs of one shard."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.registration.algorithm import RegistrationSettings
from instructx2x.registration.stage import register_shard

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

register_shard(
    snakemake.input.pairs,  # noqa: F821
    int(snakemake.wildcards.shard),  # noqa: F821
    snakemake.params.shards,  # noqa: F821
    RegistrationSettings.from_config(dict(snakemake.params.settings), seed=snakemake.params.seed),  # noqa: F821
    snakemake.output.images,  # noqa: F821
    snakemake.output.table,  # noqa: F821
    results_dir=snakemake.config["results_dir"],  # noqa: F821  (image paths relative to it)
)
