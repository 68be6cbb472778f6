"""Rule `instructions_build`: join operations with accepted pairs, splits, Table 1."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.instructions.build import build_instructions

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

df = build_instructions(
    snakemake.input.operations,  # noqa: F821
    snakemake.input.accepted,  # noqa: F821
    snakemake.input.studies,  # noqa: F821
    snakemake.output.instructions,  # noqa: F821
    snakemake.output.table1_csv,  # noqa: F821
    snakemake.output.table1_md,  # noqa: F821
    snakemake.output.ledger,  # noqa: F821
    snakemake.output.counts,  # noqa: F821
    split_settings=dict(snakemake.params.split_settings),  # noqa: F821
    seed=int(snakemake.params.seed),  # noqa: F821
    pairs_path=snakemake.input.pairs,  # noqa: F821
    results_dir=snakemake.config["results_dir"],  # noqa: F821  (image paths relative to it)
)
logging.info("samples: %d; splits: %s", len(df), df["split"].value_counts().to_dict())
