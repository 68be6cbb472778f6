"""Rule `provenance`: write the provenance bundle of the results directory and audit it."""
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.provenance import write_provenance

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

result = write_provenance(
    dict(snakemake.config),  # noqa: F821
    results_dir=snakemake.params.results_dir,  # noqa: F821
    raw_manifest=snakemake.input.raw_manifest,  # noqa: F821
    repo=snakemake.params.repo,  # noqa: F821
)
logging.info("audit: ok=%s, %d problem(s)", result["ok"], len(result["problems"]))
