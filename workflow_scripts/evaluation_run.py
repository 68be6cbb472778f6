"""Rule `evaluation`: score real / input / wo_rse / rse and write report/metrics.json."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.evaluation.evaluate import evaluate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

inp, out, par = snakemake.input, snakemake.output, snakemake.params  # noqa: F821
studies, patients, admissions = inp.tables
evaluate(
    inp.records, studies, patients, admissions,
    out_metrics=out.metrics, out_predictions=out.predictions, ledger_path=out.ledger, counts_path=out.counts,
    backend=par.backend, weights_dir=par.weights_dir, model_path=inp.get("model"), evaluator_info_path=inp.get("info"),
    n_boot=par.n_boot, seed=par.seed, batch_size=par.batch_size, splits=par.splits, **par.labels,
)
