"""Rule demo_data: write the synthetic dataset and its raw manifest."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"


import logging

from instructx2x.synthetic.generate import generate_dataset

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
manifest = generate_dataset(
    snakemake.params.out_dir,
    patients=snakemake.params.patients,
    seed=snakemake.params.seed,
    tables_only=False,
    race_mix=snakemake.params.race_mix,
    manifest_path=snakemake.output.manifest,
)
logging.info("wrote %d raw files", len(manifest))
