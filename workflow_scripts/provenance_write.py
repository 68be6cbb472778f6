"""Rule `provenance`: write the provenance bundle of the results directory and audit it."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.provenance.bundle import summary, write_provenance

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

result = write_provenance(
    dict(snakemake.config),  # noqa: F821
    results_dir=snakemake.params.results_dir,  # noqa: F821
    raw_manifest=snakemake.input.raw_manifest,  # noqa: F821
    raw_roots=dict(snakemake.params.raw_roots),  # noqa: F821
    repo=snakemake.params.repo,  # noqa: F821
    own_outputs=list(snakemake.output),  # noqa: F821
    workers=snakemake.threads,  # noqa: F821
)
logging.info("audit %s: %d problem(s); %s", result["verdict"], len(result["problems"]), summary(result))
for problem in result["problems"]:
    logging.warning("audit: %s: %s", problem["path"], problem["problem"])
