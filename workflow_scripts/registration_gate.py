"""Rule `registration_gate`: MI gate, mirror and wrong-patient checks; fate of every pair."""
import _job  # noqa: F401  (first: the project's code from src/, and this job's lineage record)
from instructx2x.core.errors import report_stage_errors

report_stage_errors()  # an expected error prints one line on the terminal, not "message: None"

import logging
import sys

from instructx2x.registration.gate import GateSettings
from instructx2x.registration.stage import apply_gate

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)  # noqa: F821
sys.stderr = open(snakemake.log[0], "a")  # noqa: F821

apply_gate(
    snakemake.input.table,  # noqa: F821
    snakemake.input.pairs_ledger,  # noqa: F821
    snakemake.output.accepted,  # noqa: F821
    snakemake.output.fates,  # noqa: F821
    GateSettings(
        mi_threshold=snakemake.params.mi_threshold,  # noqa: F821
        mirror_margin=snakemake.params.mirror_margin,  # noqa: F821
        ncc_min=snakemake.params.ncc_min,  # noqa: F821
        structure_ncc_min=snakemake.params.structure_ncc_min,  # noqa: F821
        same_patient_action=snakemake.params.same_patient_action,  # noqa: F821
    ),
    ledger_path=snakemake.output.ledger,  # noqa: F821
    counts_path=snakemake.output.counts,  # noqa: F821
)
