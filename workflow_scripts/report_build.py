"""Rule `report`: the self-contained HTML report."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.evaluation.report import build_report

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

inp = snakemake.input  # noqa: F821
build_report(
    snakemake.output.html, index_html=snakemake.output.index,  # noqa: F821
    metrics_path=inp.metrics, records_path=inp.records, table1_csv=inp.get("table1"), loss_csv=inp.get("loss"),
    montage_png=inp.get("montage"), variations_png=inp.variations, masks_png=inp.get("masks_png"), audit_path=inp.get("audit"),
    ledger_counts=list(inp.get("counts", [])), n_gallery=snakemake.params.gallery_pairs,  # noqa: F821
)
